"""``hf:`` datasets built here with the ``datasets`` library: saved, parquet, imagefolder, hub offline."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

datasets = pytest.importorskip("datasets")
from PIL import Image as PILImage  # noqa: E402

from pytest_medprobe.data import DatasetOptions, check_dataset_spec, dataset_short_name, load_dataset  # noqa: E402
from pytest_medprobe.errors import MedprobeUsageError  # noqa: E402

CLASSES = ["benign", "malignant"]


@pytest.fixture(autouse=True)
def _private_datasets_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    # load_dataset writes Arrow caches; keep them out of the user's ~/.cache.
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path_factory.mktemp("hf-cache"))


def _images(n: int, seed: int, size: int = 12) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (size, size, 3), dtype=np.uint8) for _ in range(n)]


def _split(n: int, seed: int) -> datasets.Dataset:
    features = datasets.Features({"image": datasets.Image(), "label": datasets.ClassLabel(names=CLASSES)})
    images = [PILImage.fromarray(image) for image in _images(n, seed)]
    return datasets.Dataset.from_dict({"image": images, "label": [i % 2 for i in range(n)]}, features=features)


def _saved(root: Path, n_train: int = 10, n_test: int = 6) -> Path:
    datasets.DatasetDict({"train": _split(n_train, 0), "test": _split(n_test, 1)}).save_to_disk(str(root))
    return root


def _load(spec: str, options: DatasetOptions | None = None, seed: int = 0, cap: int | None = None):  # type: ignore[no-untyped-def]
    check_dataset_spec(spec, None, options=options)
    return load_dataset(spec, data_root=None, max_samples=cap, seed=seed, options=options)


def test_a_saved_dataset_dict_maps_train_to_fit_and_test_to_test_with_classlabel_names(tmp_path: Path) -> None:
    root = _saved(tmp_path / "lesions")
    dataset = _load(f"hf:{root}")
    assert dataset.class_names == ("benign", "malignant")
    assert (dataset.n_fit, dataset.n_test) == (10, 6)
    assert np.array_equal(dataset.fit_images[3], _images(10, 0)[3]) and list(dataset.fit_labels[:4]) == [0, 1, 0, 1]
    assert np.array_equal(dataset.test_images[5], _images(6, 1)[5])
    assert dataset_short_name(f"hf:{root}") == "lesions"


def test_validation_scores_the_probes_when_there_is_no_test_split(tmp_path: Path) -> None:
    datasets.DatasetDict({"train": _split(8, 0), "validation": _split(4, 1)}).save_to_disk(str(tmp_path))
    assert _load(f"hf:{tmp_path}").n_test == 4


def test_a_single_split_is_split_here_stratified_and_seed_fixed(tmp_path: Path) -> None:
    _split(20, 0).save_to_disk(str(tmp_path))
    first, again, other = _load(f"hf:{tmp_path}"), _load(f"hf:{tmp_path}"), _load(f"hf:{tmp_path}", seed=1)
    assert (first.n_fit, first.n_test) == (14, 6) and sorted(first.test_labels) == [0, 0, 0, 1, 1, 1]
    assert first.fingerprint == again.fingerprint and first.fingerprint != other.fingerprint


def test_local_parquet_files_are_read_with_their_image_and_label_features(tmp_path: Path) -> None:
    root = tmp_path / "parquet"
    (root / "data").mkdir(parents=True)
    _split(10, 0).to_parquet(str(root / "data" / "train-00000-of-00001.parquet"))
    _split(6, 1).to_parquet(str(root / "data" / "test-00000-of-00001.parquet"))
    dataset = _load(f"hf:{root}")
    assert dataset.class_names == ("benign", "malignant") and (dataset.n_fit, dataset.n_test) == (10, 6)
    assert np.array_equal(dataset.fit_images[0], _images(10, 0)[0])


def test_an_imagefolder_directory_takes_its_classes_from_the_sub_folders(tmp_path: Path) -> None:
    for split, n in (("train", 6), ("test", 4)):
        for index, image in enumerate(_images(n, 2)):
            folder = tmp_path / split / CLASSES[index % 2]
            folder.mkdir(parents=True, exist_ok=True)
            PILImage.fromarray(image).save(folder / f"{index}.png")
    dataset = _load(f"hf:{tmp_path}")
    assert dataset.class_names == ("benign", "malignant") and (dataset.n_fit, dataset.n_test) == (6, 4)


def test_named_columns_read_string_labels_and_image_paths(tmp_path: Path) -> None:
    paths = []
    for index, image in enumerate(_images(12, 3)):
        PILImage.fromarray(image).save(tmp_path / f"scan{index}.png")
        paths.append(f"scan{index}.png")  # relative to the dataset folder
    diagnosis = ["nevus" if index % 3 else "melanoma" for index in range(12)]
    table = datasets.Dataset.from_dict({"file": paths, "diagnosis": diagnosis, "site": ["a"] * 12})
    table.save_to_disk(str(tmp_path / "saved"))
    (tmp_path / "saved").rename(tmp_path / "table")
    for index in range(12):
        shutil.copy(tmp_path / f"scan{index}.png", tmp_path / "table" / f"scan{index}.png")
    options = DatasetOptions(image_column="file", label_column="diagnosis")
    dataset = _load(f"hf:{tmp_path / 'table'}", options)
    assert dataset.class_names == ("melanoma", "nevus") and dataset.n_fit + dataset.n_test == 12


def test_the_fingerprint_follows_content_not_the_folder_name(tmp_path: Path) -> None:
    first = _load(f"hf:{_saved(tmp_path / 'a')}").fingerprint
    assert _load(f"hf:{_saved(tmp_path / 'b')}").fingerprint == first  # same content elsewhere
    changed = datasets.DatasetDict({"train": _split(10, 7), "test": _split(6, 1)})
    changed.save_to_disk(str(tmp_path / "c"))
    assert _load(f"hf:{tmp_path / 'c'}").fingerprint != first


def test_dicom_bytes_in_an_image_column_are_read_as_dicom(tmp_path: Path) -> None:
    from pydicom.data import get_testdata_file

    from pytest_medprobe.data.images import read_image

    names = ["CT_small.dcm", "MR_small.dcm"] * 4
    cells = [{"bytes": Path(get_testdata_file(name)).read_bytes(), "path": None} for name in names]
    features = datasets.Features(
        {"image": datasets.Image(decode=False), "label": datasets.ClassLabel(names=["ct", "mr"])}
    )
    table = datasets.Dataset.from_dict({"image": cells, "label": [0, 1] * 4}, features=features)
    table.save_to_disk(str(tmp_path))
    dataset = _load(f"hf:{tmp_path}")
    ct = read_image(Path(get_testdata_file("CT_small.dcm")))
    assert any(np.array_equal(image, ct) for image in [*dataset.fit_images, *dataset.test_images])


def test_a_dataset_without_an_image_column_is_one_clear_usage_error(tmp_path: Path) -> None:
    datasets.Dataset.from_dict({"text": ["a", "b"], "label": [0, 1]}).save_to_disk(str(tmp_path))
    with pytest.raises(MedprobeUsageError) as caught:
        check_dataset_spec(f"hf:{tmp_path}", None)
    assert str(caught.value) == (
        f"dataset 'hf:{tmp_path}': no image column; the columns are: text (Value), label (Value). "
        "Name the one to audit with --medprobe-image-column."
    )


def test_a_column_option_naming_no_column_lists_the_columns(tmp_path: Path) -> None:
    root = _saved(tmp_path)
    with pytest.raises(
        MedprobeUsageError, match=r"no column 'img' \(--medprobe-image-column\); the columns are: image"
    ):
        check_dataset_spec(f"hf:{root}", None, options=DatasetOptions(image_column="img"))


def test_a_hub_dataset_not_cached_offline_says_so_and_how_to_fetch_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    with pytest.raises(MedprobeUsageError) as caught:
        check_dataset_spec("hf:medprobe-tests/no-such-set", None)
    message = str(caught.value)
    assert message.startswith("dataset 'hf:medprobe-tests/no-such-set': medprobe-tests/no-such-set is not cached")
    assert "hf download --repo-type dataset medprobe-tests/no-such-set" in message


def test_a_missing_local_path_is_not_mistaken_for_a_hub_name(tmp_path: Path) -> None:
    with pytest.raises(MedprobeUsageError, match="no dataset at"):
        check_dataset_spec(f"hf:{tmp_path / 'nowhere'}", None)


def test_a_test_split_with_held_back_labels_gives_way_to_validation_and_says_so(tmp_path: Path) -> None:
    hidden = _split(6, 1).map(lambda row: {"label": -1})
    datasets.DatasetDict({"train": _split(10, 0), "test": hidden, "validation": _split(4, 2)}).save_to_disk(
        str(tmp_path)
    )
    dataset = _load(f"hf:{tmp_path}")
    assert dataset.n_test == 4
    assert dataset.notes == (
        "split 'test' has no labels (all -1, held back by its publisher); split 'validation' scores the probes.",
    )


def test_the_offline_setting_keeps_a_hub_dataset_to_the_cache_even_when_the_client_is_online(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from huggingface_hub import constants

    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", False)  # as on a machine with internet
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    with pytest.raises(MedprobeUsageError, match="is not cached on this machine.*without --medprobe-offline"):
        check_dataset_spec("hf:medprobe-tests/no-such-set", None, options=DatasetOptions(offline=True))
    assert datasets.config.HF_HUB_OFFLINE is False and constants.HF_HUB_OFFLINE is False  # restored


def test_subgroup_columns_of_a_hf_dataset_are_kept_per_test_image_and_checked(tmp_path: Path) -> None:
    def with_site(split: datasets.Dataset) -> datasets.Dataset:
        return split.add_column("site", [("north", "south")[i % 3 == 0] for i in range(len(split))])

    root = tmp_path / "sites"
    datasets.DatasetDict({"train": with_site(_split(10, 0)), "test": with_site(_split(6, 1))}).save_to_disk(str(root))
    dataset = _load(f"hf:{root}", DatasetOptions(subgroups=("site",)))
    assert dataset.test_subgroups == {"site": ("south", "north", "north", "south", "north", "north")}
    with pytest.raises(
        MedprobeUsageError, match=r"no column 'scanner' \(--medprobe-subgroup\); the columns are: image"
    ):
        _load(f"hf:{root}", DatasetOptions(subgroups=("scanner",)))
    one = tmp_path / "one-site"
    _split(10, 0).add_column("site", ["x"] * 10).save_to_disk(str(one))
    with pytest.raises(MedprobeUsageError, match=r"subgroup column 'site' holds one value only \('x'\)"):
        _load(f"hf:{one}", DatasetOptions(subgroups=("site",)))
