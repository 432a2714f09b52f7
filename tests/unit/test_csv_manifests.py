"""``csv:`` manifests and single findings of multi-label sets, read without a model.

Images are real handwritten digits (scikit-learn's ``load_digits``) written as PNG files.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pytest_medprobe.data import check_dataset_spec, dataset_short_name, expand_findings, load_dataset
from pytest_medprobe.data.base import FINDING_CLASSES, DatasetOptions, ProbeDataset
from pytest_medprobe.data.medmnist import FLAGS
from pytest_medprobe.errors import DatasetError, MedprobeError, MedprobeUsageError
from pytest_medprobe.prompts import closed_question
from tests.manifests import digit_images, write_digit_manifest, write_fake_chestmnist, write_manifest


def _load(path: Path, options: DatasetOptions = DatasetOptions(), seed: int = 0) -> ProbeDataset:
    return load_dataset(f"csv:{path}", data_root=None, max_samples=None, seed=seed, options=options)


def _digit_folder(folder: Path, n: int = 6) -> list[str]:
    """``n`` digit PNGs (alternating 0 and 1) in ``folder/img``; their paths relative to ``folder``."""
    images, _ = digit_images((0, 1), n)
    (folder / "img").mkdir(parents=True, exist_ok=True)
    names = []
    for index, image in enumerate(images[:n]):
        Image.fromarray(image).save(folder / "img" / f"{index}.png")
        names.append(f"img/{index}.png")
    return names


def test_a_manifest_is_split_70_30_stratified_with_rgb_images_and_sorted_classes(tmp_path: Path) -> None:
    path = write_digit_manifest(tmp_path, digits=(3, 7), per_class=10)
    dataset = _load(path)
    assert dataset.class_names == ("digit 3", "digit 7")
    assert (dataset.n_fit, dataset.n_test) == (14, 6)
    assert np.bincount(dataset.test_labels).tolist() == [3, 3]
    assert all(image.shape == (32, 32, 3) and image.dtype == np.uint8 for image in dataset.fit_images)
    assert dataset.modality == "medical" and dataset.finding is None
    assert dataset_short_name(f"csv:{path}") == "labels"
    assert _load(path).fingerprint == dataset.fingerprint
    assert _load(path, seed=1).fingerprint != dataset.fingerprint


def test_the_fingerprint_follows_image_content_not_names_or_mtimes(tmp_path: Path) -> None:
    path = write_digit_manifest(tmp_path / "a")
    before = _load(path).fingerprint
    image = tmp_path / "a" / "images" / "000.png"
    os.utime(image, ns=(1, 1))
    assert _load(path).fingerprint == before  # a touched file is the same content
    shutil.copytree(tmp_path / "a", tmp_path / "b")
    assert _load(tmp_path / "b" / "labels.csv").fingerprint == before  # a copy elsewhere is the same data
    pixels = np.asarray(Image.open(image)).copy()
    pixels[0, 0] ^= 0xFF
    stat = image.stat()
    Image.fromarray(pixels).save(image)
    os.utime(image, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # new bytes, old mtime
    assert _load(path).fingerprint != before


def test_columns_are_detected_by_name_or_content_or_given(tmp_path: Path) -> None:
    names = _digit_folder(tmp_path)
    rows = [(f"case {i}", name, i % 2, "site A") for i, name in enumerate(names)]
    path = write_manifest(tmp_path / "m.csv", ("case", "scan", "dx", "site"), rows)
    dataset = _load(path)  # "scan" holds the only .png paths; "dx" is a label name
    assert dataset.class_names == ("0", "1") and dataset.n_fit + dataset.n_test == 6
    given = write_manifest(tmp_path / "g.csv", ("scan", "grade"), [(name, i % 2) for i, name in enumerate(names)])
    with pytest.raises(MedprobeUsageError, match="no label column.*--medprobe-label-column=COLUMN"):
        _load(given)
    assert _load(given, DatasetOptions(label_column="grade")).class_names == ("0", "1")
    unknown = r"--medprobe-image-column names column 'picture'.*\['scan', 'grade'\]"
    with pytest.raises(MedprobeUsageError, match=unknown):
        _load(given, DatasetOptions(image_column="picture", label_column="grade"))


def test_a_split_column_gives_the_split_and_val_rows_are_unused(tmp_path: Path) -> None:
    names = _digit_folder(tmp_path, 8)
    splits = ["train", "train", "test", "Test", "train", "train", "val", "test"]
    rows = [(name, i % 2, split) for i, (name, split) in enumerate(zip(names, splits))]
    dataset = _load(write_manifest(tmp_path / "m.csv", ("path", "label", "split"), rows))
    assert (dataset.n_fit, dataset.n_test) == (4, 3)
    tuned = [(name, i % 2, "tune") for i, name in enumerate(names)]
    bad = write_manifest(tmp_path / "bad.csv", ("path", "label", "split"), tuned)
    with pytest.raises(DatasetError, match=r"split column 'split' holds \['tune'\]; allowed: train, test, val"):
        _load(bad)


def test_paths_that_do_not_exist_are_named_first_few_with_the_folder_searched(tmp_path: Path) -> None:
    names = _digit_folder(tmp_path, 4)
    rows = [(name, i % 2) for i, name in enumerate(names)] + [(f"gone/{i}.png", i % 2) for i in range(8)]
    path = write_manifest(tmp_path / "m.csv", ("image", "label"), rows)
    with pytest.raises(MedprobeUsageError) as excinfo:
        check_dataset_spec(f"csv:{path}", None)
    message = str(excinfo.value)
    assert "8 of 12 image paths do not exist" in message and "line 6: gone/0.png" in message
    assert "gone/4.png" in message and "gone/5.png" not in message and "and 3 more" in message
    assert f"CSV's folder {tmp_path}" in message


def test_a_bom_quoted_newlines_and_windows_separators_are_read_as_meant(tmp_path: Path) -> None:
    names = _digit_folder(tmp_path, 6)
    rows = [
        (name.replace("/", "\\") if i % 2 else name, f"digit {i % 2}", f"note {i},\nsecond line")
        for i, name in enumerate(names)
    ]
    path = write_manifest(tmp_path / "m.csv", ("image", "label", "note"), rows, bom=True)
    assert path.read_bytes().startswith(b"\xef\xbb\xbfimage,")
    dataset = _load(path)  # the BOM does not hide the "image" column; quoted newlines stay in one row
    assert dataset.class_names == ("digit 0", "digit 1") and dataset.n_fit + dataset.n_test == 6


def test_a_label_spelled_two_ways_is_a_usage_error_naming_both(tmp_path: Path) -> None:
    names = _digit_folder(tmp_path, 6)
    labels = ["Melanoma", "nevus", "melanoma ", "nevus", "Melanoma", "nevus"]
    path = write_manifest(tmp_path / "m.csv", ("image", "label"), list(zip(names, labels)))
    both = r"spells one class several ways: 'Melanoma' \(2 rows\) and 'melanoma ' \(1 rows\)"
    with pytest.raises(MedprobeUsageError, match=both):
        _load(path)


@pytest.mark.parametrize(
    ("labels", "classes_txt", "expected"),
    [
        (["a"] * 6, None, r"holds one class only \('a', 6 rows\)"),
        (["a", "", "b", "a", "", "b"], None, r"label column 'label' is empty on line\(s\) 3, 6"),
        (["a", "b"] * 3, "b\nc\na\n", r"class\(es\) \['c'\] have no images"),
    ],
    ids=["one-class", "empty-label", "empty-class"],
)
def test_labels_that_cannot_be_probed_are_refused(
    tmp_path: Path, labels: list[str], classes_txt: str | None, expected: str
) -> None:
    names = _digit_folder(tmp_path, 6)
    path = write_manifest(tmp_path / "m.csv", ("image", "label"), list(zip(names, labels)))
    if classes_txt is not None:
        (tmp_path / "classes.txt").write_text(classes_txt)
    with pytest.raises(MedprobeError, match=expected):
        _load(path)


def test_classes_txt_orders_the_options_of_the_question(tmp_path: Path) -> None:
    names = _digit_folder(tmp_path, 6)
    path = write_manifest(tmp_path / "m.csv", ("image", "label"), [(n, "ab"[i % 2]) for i, n in enumerate(names)])
    (tmp_path / "classes.txt").write_text("b\na\n")
    dataset = _load(path)
    assert dataset.class_names == ("b", "a")
    assert all(dataset.class_names[label] == "ab"[0] for label in dataset.fit_labels[:0])


def _finding_manifest(folder: Path) -> Path:
    names = _digit_folder(folder, 12)
    rows = [(name, i % 2, 1 - i % 2, int(i % 3 == 0), "north" if i < 6 else "south") for i, name in enumerate(names)]
    return write_manifest(folder / "m.csv", ("image", "effusion", "edema", "mass", "site"), rows)


def test_a_manifest_of_0_1_finding_columns_is_audited_one_finding_at_a_time(tmp_path: Path) -> None:
    path = _finding_manifest(tmp_path)
    spec = f"csv:{path}"
    with pytest.raises(MedprobeUsageError, match="multi-label.*among: effusion, edema, mass"):
        check_dataset_spec(spec, None)
    with pytest.raises(MedprobeUsageError, match="no finding 'nodule'; its findings are: effusion, edema, mass"):
        expand_findings([spec], ["nodule"], None)
    tasks = expand_findings([spec, "synthetic-lesions"], ["edema", "effusion"], None)
    assert tasks == (f"{spec}#edema", f"{spec}#effusion", "synthetic-lesions")
    dataset = load_dataset(tasks[0], data_root=None, max_samples=None, seed=0)
    assert dataset.class_names == FINDING_CLASSES and dataset.finding == "edema"
    assert dataset.name == tasks[0] and dataset_short_name(tasks[0]) == "m-edema"
    other = load_dataset(tasks[1], data_root=None, max_samples=None, seed=0)
    assert other.fingerprint != dataset.fingerprint
    # Each finding is split stratified by its own labels: both answers on both sides.
    for task in (dataset, other):
        assert set(task.fit_labels) == set(task.test_labels) == {0, 1}


def test_subgroup_columns_are_checked_and_kept_per_test_image(tmp_path: Path) -> None:
    path = _finding_manifest(tmp_path)
    dataset = load_dataset(
        f"csv:{path}#mass", data_root=None, max_samples=None, seed=0, options=DatasetOptions(subgroups=("site",))
    )
    assert len(dataset.test_subgroups["site"]) == dataset.n_test
    assert set(dataset.test_subgroups["site"]) <= {"north", "south"}
    with pytest.raises(MedprobeUsageError, match=r"--medprobe-subgroup names column 'sex'"):
        check_dataset_spec(f"csv:{path}#mass", None, options=DatasetOptions(subgroups=("sex",)))
    names = _digit_folder(tmp_path / "one", 6)
    one_site = [(name, i % 2, "x") for i, name in enumerate(names)]
    single = write_manifest(tmp_path / "one" / "m.csv", ("image", "label", "site"), one_site)
    with pytest.raises(MedprobeUsageError, match="subgroup column 'site' holds one value only"):
        _load(single, DatasetOptions(subgroups=("site",)))


def test_chestmnist_in_the_official_layout_is_read_one_finding_at_a_time(tmp_path: Path) -> None:
    write_fake_chestmnist(tmp_path)
    findings = FLAGS["chestmnist"].class_names
    with pytest.raises(MedprobeUsageError, match="no finding 'Effusion'; its findings are: atelectasis, cardiomegaly"):
        expand_findings(["medmnist:chestmnist"], ["Effusion"], tmp_path)
    assert expand_findings(["medmnist:chestmnist_64", "medmnist:chestmnist"], ["effusion"], tmp_path) == (
        "medmnist:chestmnist_64#effusion",
        "medmnist:chestmnist#effusion",
    )
    dataset = load_dataset("medmnist:chestmnist#effusion", data_root=tmp_path, max_samples=None, seed=0)
    labels = np.load(tmp_path / "chestmnist.npz")["test_labels"]
    assert (dataset.test_labels == labels[:, findings.index("effusion")]).all()
    assert dataset.class_names == FINDING_CLASSES and dataset.modality == "chest X-ray"
    assert dataset_short_name(dataset.name) == "chestmnist-effusion"
    question = closed_question(dataset.class_names, dataset.modality, dataset.finding)
    assert question == (
        "Is there effusion in this chest X-ray image? Options: (A) absent (B) present Answer with the letter."
    )
    hernia = load_dataset("medmnist:chestmnist#hernia", data_root=tmp_path, max_samples=None, seed=0)
    assert hernia.fingerprint != dataset.fingerprint
