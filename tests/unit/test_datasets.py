"""The dataset readers: synthetic lesions, MedMNIST files, class folders, and their shared helpers."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from pytest_medprobe.config import DATA_ROOT
from pytest_medprobe.data import KNOWN_DATASETS, check_dataset_spec, dataset_short_name, load_dataset
from pytest_medprobe.data.base import (
    ProbeDataset,
    pixel_features,
    stratified_cap,
    stratified_split,
    to_rgb_uint8,
    validate_labels,
)
from pytest_medprobe.data.medmnist import FLAGS
from pytest_medprobe.data.synthetic import CLASS_NAMES, make_synthetic_lesions, render_lesion
from pytest_medprobe.errors import DatasetError, MedprobeUsageError

# --- synthetic-lesions ---------------------------------------------------------------


@pytest.fixture(scope="module")
def lesions() -> ProbeDataset:
    """The default synthetic-lesions dataset of seed 0 (read-only)."""
    return make_synthetic_lesions(seed=0)


def test_synthetic_lesions_have_the_documented_size_classes_and_modality(lesions: ProbeDataset) -> None:
    assert (lesions.n_fit, lesions.n_test, lesions.n_classes) == (480, 240, 4)
    assert lesions.class_names == ("round lesion", "ring lesion", "stellate lesion", "elongated lesion")
    assert lesions.modality == "dermatoscopy" and lesions.source == "embedded"
    assert np.asarray(lesions.fit_images).shape == (480, 64, 64, 3)
    assert np.asarray(lesions.test_images).dtype == np.uint8
    assert lesions.fit_labels.dtype == np.int64


def test_synthetic_lesion_classes_are_balanced_in_both_splits(lesions: ProbeDataset) -> None:
    assert np.bincount(lesions.fit_labels).tolist() == [120] * 4
    assert np.bincount(lesions.test_labels).tolist() == [60] * 4


def test_the_same_seed_gives_identical_images_labels_and_fingerprint(lesions: ProbeDataset) -> None:
    again = make_synthetic_lesions(seed=0)
    assert np.array_equal(np.asarray(again.fit_images), np.asarray(lesions.fit_images))
    assert np.array_equal(np.asarray(again.test_images), np.asarray(lesions.test_images))
    assert np.array_equal(again.fit_labels, lesions.fit_labels)
    assert again.fingerprint == lesions.fingerprint


def test_a_different_seed_gives_different_images_and_fingerprint(lesions: ProbeDataset) -> None:
    other = make_synthetic_lesions(seed=1)
    assert not np.array_equal(np.asarray(other.fit_images), np.asarray(lesions.fit_images))
    assert other.fingerprint != lesions.fingerprint


def test_the_fingerprint_is_the_same_in_another_process() -> None:
    code = "from pytest_medprobe.data.synthetic import make_synthetic_lesions as m; print(m(3, 8, 8).fingerprint)"
    output = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert output.strip() == make_synthetic_lesions(3, 8, 8).fingerprint


def test_the_test_split_does_not_depend_on_the_fit_split_size() -> None:
    small, large = make_synthetic_lesions(5, n_fit=8, n_test=12), make_synthetic_lesions(5, n_fit=40, n_test=12)
    assert np.array_equal(np.asarray(small.test_images), np.asarray(large.test_images))
    assert not np.array_equal(np.asarray(small.fit_images[:8]), np.asarray(small.test_images[:8]))


def test_render_lesion_draws_one_rgb_image_and_refuses_unknown_classes() -> None:
    image = render_lesion(2, np.random.default_rng(0), image_size=32)
    assert image.shape == (32, 32, 3) and image.dtype == np.uint8
    with pytest.raises(ValueError, match="label must be in 0..3"):
        render_lesion(len(CLASS_NAMES), np.random.default_rng(0))


def test_mean_intensity_and_lesion_darkening_do_not_reveal_the_class(lesions: ProbeDataset) -> None:
    images = np.concatenate([lesions.fit_images, lesions.test_images]).astype(np.float64).mean(axis=3)
    labels = np.concatenate([lesions.fit_labels, lesions.test_labels])
    flat = images.reshape(len(images), -1)
    means = np.array([flat[labels == k].mean() for k in range(4)])
    # Skin tone varies a lot between images (std ~13 grey levels); 4.5 is about 4 standard errors.
    assert means.max() - means.min() < 4.5, means
    background = np.median(flat, axis=1, keepdims=True)
    ink = ((background - flat) / background).sum(axis=1)  # lesion darkness x area, skin tone removed
    ink_means = np.array([ink[labels == k].mean() for k in range(4)])
    assert (ink_means.max() - ink_means.min()) / ink_means.mean() < 0.12, ink_means


def _morphology_features(images: np.ndarray) -> np.ndarray:
    """Shape descriptors of the darkest blob: hole share, elongation, compactness, reach."""
    from scipy import ndimage

    rows: list[list[float]] = []
    for image in images:
        gray = image.astype(np.float64).mean(axis=2)
        labelled, count = ndimage.label(gray < np.median(gray) * 0.85)
        if count == 0:
            rows.append([0.0] * 5)
            continue
        blob = labelled == 1 + int(np.argmax(np.bincount(labelled.ravel())[1:]))
        filled = ndimage.binary_fill_holes(blob)
        ys, xs = np.nonzero(filled)
        eigen = np.linalg.eigvalsh(np.cov(np.stack([ys, xs])) + 1e-6 * np.eye(2))
        perimeter = (blob ^ ndimage.binary_erosion(blob)).sum()
        reach = np.hypot(ys - ys.mean(), xs - xs.mean())
        rows.append([
            1 - blob.sum() / filled.sum(),
            np.log(eigen[1] / eigen[0]),
            np.log(perimeter**2 / blob.sum()),
            reach.max() / np.sqrt(filled.sum()),
            reach.std() / reach.mean(),
        ])  # fmt: skip
    return np.asarray(rows)


def _probe_score(fit: np.ndarray, fit_labels: np.ndarray, test: np.ndarray, test_labels: np.ndarray) -> float:
    """Balanced accuracy of the protocol's probe: standardized logistic regression, C = 1."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import balanced_accuracy_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from threadpoolctl import threadpool_limits

    # One BLAS thread: on a busy machine threads contend and the fit is 50x slower.
    with threadpool_limits(limits=1):
        probe = make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=5000)).fit(fit, fit_labels)
        return float(balanced_accuracy_score(test_labels, probe.predict(test)))


def test_a_pixel_probe_scores_far_below_a_probe_on_shape_features(lesions: ProbeDataset) -> None:
    fit, test = np.asarray(lesions.fit_images), np.asarray(lesions.test_images)
    pixels = _probe_score(pixel_features(fit), lesions.fit_labels, pixel_features(test), lesions.test_labels)
    shape = _probe_score(_morphology_features(fit), lesions.fit_labels, _morphology_features(test), lesions.test_labels)
    # The weak hue cue keeps the baseline above chance (0.25), far below shape (>= 0.85).
    assert 0.35 <= pixels <= 0.65, f"pixel probe {pixels:.3f} outside 0.35-0.65: the pixel cue is off"
    assert shape >= 0.85, f"shape probe {shape:.3f} < 0.85: the lesions are not distinguishable by shape"


# --- shared helpers ----------------------------------------------------------------------


def test_pixel_features_are_16px_rgb_flattened_into_0_1() -> None:
    images = [np.full((40, 30, 3), 51, np.uint8), np.zeros((8, 8), np.uint8)]
    features = pixel_features(images)
    assert features.shape == (2, 16 * 16 * 3) and features.dtype == np.float32
    assert np.allclose(features[0], 0.2) and np.all(features[1] == 0.0)
    assert pixel_features(images, size=4).shape == (2, 48)


@pytest.mark.parametrize(
    ("image", "expected"),
    [
        (np.array([[0, 128]], np.uint8), [[0, 0, 0], [128, 128, 128]]),
        (np.array([[[7], [9]]], np.uint8), [[7, 7, 7], [9, 9, 9]]),
        (np.array([[[1, 2, 3, 0], [4, 5, 6, 255]]], np.uint8), [[1, 2, 3], [4, 5, 6]]),
        (np.array([[0, 257 * 100, 65535]], np.uint16), [[0, 0, 0], [100, 100, 100], [255, 255, 255]]),
        (np.array([[False, True]]), [[0, 0, 0], [255, 255, 255]]),
        (np.array([[0.0, 0.5, 1.0]], np.float32), [[0, 0, 0], [128, 128, 128], [255, 255, 255]]),
    ],
    ids=["gray", "gray-1-channel", "rgba-drops-alpha", "uint16-full-range", "bool", "float-0-1"],
)
def test_to_rgb_uint8_converts_accepted_images(image: np.ndarray, expected: list[list[int]]) -> None:
    converted = to_rgb_uint8(image, "sample.png")
    assert converted.dtype == np.uint8 and converted.shape == (*image.shape[:2], 3)
    assert converted[0].tolist() == expected


@pytest.mark.parametrize(
    ("image", "detail"),
    [
        (np.zeros((4, 4), np.int32), "int32"),
        (np.full((4, 4), 1.5), "outside [0, 1]"),
        (np.full((4, 4), np.nan, np.float32), "not finite"),
        (np.zeros((4, 4, 2), np.uint8), "(4, 4, 2)"),
        (np.zeros((2, 4, 4, 3), np.uint8), "(2, 4, 4, 3)"),
    ],
    ids=["int32", "float-above-1", "nan", "two-channels", "batch"],
)
def test_to_rgb_uint8_refuses_other_images_naming_where_what_and_what_is_accepted(
    image: np.ndarray, detail: str
) -> None:
    with pytest.raises(DatasetError) as excinfo:
        to_rgb_uint8(image, "scan-17.png")
    message = str(excinfo.value)
    assert "scan-17.png" in message and detail in message and "accepted" in message


def test_stratified_cap_keeps_every_class_in_proportion() -> None:
    labels = np.array([0] * 90 + [1] * 9 + [2] * 1)
    chosen = stratified_cap(labels, 20, seed=0)
    assert chosen.dtype == np.int64 and np.all(np.diff(chosen) > 0)
    assert np.bincount(labels[chosen]).tolist() == [18, 1, 1]
    assert np.array_equal(chosen, stratified_cap(labels, 20, seed=0))
    assert not np.array_equal(chosen, stratified_cap(labels, 20, seed=1))


def test_stratified_cap_keeps_everything_without_a_cap_or_with_a_large_one() -> None:
    labels = np.array([1, 0, 1])
    assert stratified_cap(labels, None, 0).tolist() == [0, 1, 2]
    assert stratified_cap(labels, 3, 0).tolist() == [0, 1, 2]


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(0, 5), min_size=1, max_size=80), st.integers(1, 90), st.integers(0, 2**32 - 1))
def test_stratified_cap_returns_cap_distinct_indices_with_every_class_when_cap_allows(
    labels_list: list[int], cap: int, seed: int
) -> None:
    labels = np.array(labels_list)
    chosen = stratified_cap(labels, cap, seed)
    assert len(chosen) == min(cap, len(labels)) and len(np.unique(chosen)) == len(chosen)
    if cap >= len(np.unique(labels)):
        assert set(labels[chosen]) == set(labels)


def test_stratified_split_puts_about_30_percent_of_each_class_in_test() -> None:
    labels = np.array([0] * 20 + [1] * 10 + [2] * 2)
    fit, test = stratified_split(labels, 0.3, seed=4)
    assert np.bincount(labels[test]).tolist() == [6, 3, 1]
    assert sorted(np.concatenate([fit, test]).tolist()) == list(range(32))
    assert np.array_equal(test, stratified_split(labels, 0.3, seed=4)[1])


@pytest.mark.parametrize(
    ("fit", "test", "names", "detail"),
    [
        ([0, 1], [0, 0], ("a", "b"), "only class 'a'"),
        ([0, 1], [], ("a", "b"), "test split is empty"),
        ([0, 1, 2], [0, 1], ("a", "b"), "labels range over 0..2, but there are 2 class names"),
        ([0, 1], [0, 1], ("a",), "at least 2 classes"),
    ],
    ids=["one-class-in-test", "empty-split", "label-beyond-names", "one-name"],
)
def test_validate_labels_refuses_what_cannot_be_scored(
    fit: list[int], test: list[int], names: tuple[str, ...], detail: str
) -> None:
    with pytest.raises(DatasetError, match="my-data") as excinfo:
        validate_labels(np.array(fit, np.int64), np.array(test, np.int64), names, "my-data")
    assert detail in str(excinfo.value)


# --- medmnist ----------------------------------------------------------------------------


def _write_medmnist(
    root: Path, file_name: str, n_classes: int, *, colour: bool = False, n_train: int = 40, n_test: int = 20,
    save: Callable[..., None] = np.savez, override: dict[str, np.ndarray] | None = None,
) -> Path:  # fmt: skip
    """A file in the official layout; each image's first two pixels encode its row index."""

    def split(n: int) -> dict[str, np.ndarray]:
        images = np.zeros((n, 28, 28, 3) if colour else (n, 28, 28), np.uint8)
        index = np.arange(n).reshape(n, *[1] * (images.ndim - 3))
        images[:, 0, 0], images[:, 0, 1] = index % 256, index // 256
        return {"images": images, "labels": (np.arange(n) % n_classes).reshape(n, 1).astype(np.uint8)}

    arrays = {f"{name}_{key}": value for name, n in (("train", n_train), ("val", 6), ("test", n_test))
              for key, value in split(n).items()}  # fmt: skip
    arrays.update(override or {})
    root.mkdir(parents=True, exist_ok=True)
    save(root / file_name, **arrays)
    return root / file_name


def test_a_grayscale_medmnist_file_is_read_as_rgb_with_official_names(tmp_path: Path) -> None:
    path = _write_medmnist(tmp_path, "breastmnist.npz", 2)
    dataset = load_dataset("medmnist:breastmnist", data_root=tmp_path, max_samples=None, seed=0)
    assert dataset.class_names == ("malignant", "normal, benign") and dataset.modality == "breast ultrasound"
    assert (dataset.n_fit, dataset.n_test) == (40, 20)
    fit = np.asarray(dataset.fit_images)
    assert fit.shape == (40, 28, 28, 3) and np.array_equal(fit[:, :, :, 0], fit[:, :, :, 2])
    assert dataset.fit_labels.dtype == np.int64 and dataset.fit_labels.tolist() == [0, 1] * 20
    assert dataset.source == str(path.resolve()) and dataset.name == "medmnist:breastmnist"


def test_a_colour_medmnist_file_keeps_its_channels(tmp_path: Path) -> None:
    _write_medmnist(tmp_path, "dermamnist.npz", 7, colour=True, n_train=35, n_test=14)
    dataset = load_dataset("medmnist:dermamnist", data_root=tmp_path, max_samples=None, seed=0)
    assert dataset.n_classes == 7 and dataset.class_names[4] == "melanoma"
    assert dataset.modality == "dermatoscopy" and np.asarray(dataset.test_images).shape == (14, 28, 28, 3)


def test_the_64_suffix_reads_the_64_pixel_file(tmp_path: Path) -> None:
    _write_medmnist(tmp_path, "pneumoniamnist_64.npz", 2)
    dataset = load_dataset("medmnist:pneumoniamnist_64", data_root=tmp_path, max_samples=None, seed=0)
    assert dataset.class_names == ("normal", "pneumonia") and dataset.modality == "chest X-ray"
    assert dataset_short_name("medmnist:pneumoniamnist_64") == "pneumoniamnist_64"
    assert dataset_short_name("medmnist:breastmnist") == "breastmnist"


def test_every_2d_flag_has_its_classes_and_a_modality() -> None:
    counts = {name: len(flag.class_names) for name, flag in FLAGS.items()}
    assert counts == {"pathmnist": 9, "chestmnist": 14, "dermamnist": 7, "octmnist": 4, "pneumoniamnist": 2,
                      "retinamnist": 5, "breastmnist": 2, "bloodmnist": 8, "tissuemnist": 8, "organamnist": 11,
                      "organcmnist": 11, "organsmnist": 11}  # fmt: skip
    assert FLAGS["retinamnist"].class_names[0] == "grade 0" and FLAGS["organsmnist"].modality == "abdominal CT"


@pytest.mark.parametrize("save", [np.savez, np.savez_compressed], ids=["stored", "compressed"])
def test_max_samples_caps_each_medmnist_split_stratified_reading_the_right_rows(
    tmp_path: Path, save: Callable[..., None]
) -> None:
    labels = np.array([0] * 300 + [1] * 30 + [2] * 10, np.uint8).reshape(-1, 1)
    _write_medmnist(tmp_path, "octmnist.npz", 4, n_train=340, save=save, override={"train_labels": labels})
    capped = load_dataset("medmnist:octmnist", data_root=tmp_path, max_samples=34, seed=0)
    full = load_dataset("medmnist:octmnist", data_root=tmp_path, max_samples=None, seed=0)
    assert np.bincount(capped.fit_labels).tolist() == [30, 3, 1] and capped.n_test == 20
    pixels = np.asarray(capped.fit_images).astype(int)
    rows = pixels[:, 0, 0, 0] + 256 * pixels[:, 0, 1, 0]
    assert np.array_equal(capped.fit_labels, labels.ravel()[rows])  # image and label from the same row
    assert capped.fingerprint != full.fingerprint
    again = load_dataset("medmnist:octmnist", data_root=tmp_path, max_samples=34, seed=0)
    assert again.fingerprint == capped.fingerprint


def test_the_medmnist_fingerprint_follows_the_file_content(tmp_path: Path) -> None:
    _write_medmnist(tmp_path, "breastmnist.npz", 2)
    before = load_dataset("medmnist:breastmnist", data_root=tmp_path, max_samples=None, seed=0).fingerprint
    _write_medmnist(tmp_path, "breastmnist.npz", 2, override={"train_images": np.ones((40, 28, 28), np.uint8)})
    assert load_dataset("medmnist:breastmnist", data_root=tmp_path, max_samples=None, seed=0).fingerprint != before


def test_a_missing_medmnist_file_names_the_path_the_file_and_the_fix(tmp_path: Path) -> None:
    spec = "medmnist:breastmnist_64"
    for call in (lambda: check_dataset_spec(spec, tmp_path),
                 lambda: load_dataset(spec, data_root=tmp_path, max_samples=None, seed=0)):  # fmt: skip
        with pytest.raises(MedprobeUsageError) as excinfo:
            call()
        message = str(excinfo.value)
        assert str(tmp_path / "breastmnist_64.npz") in message and "expected file name: breastmnist_64.npz" in message
        assert DATA_ROOT.flag in message and "medmnist" in message


def test_an_unknown_medmnist_flag_lists_the_known_flags() -> None:
    with pytest.raises(MedprobeUsageError, match="unknown MedMNIST flag 'kneemnist'") as excinfo:
        check_dataset_spec("medmnist:kneemnist", None)
    assert all(flag in str(excinfo.value) for flag in FLAGS)


def test_an_unknown_medmnist_size_lists_the_sizes() -> None:
    with pytest.raises(MedprobeUsageError, match=r"unknown MedMNIST size '32'; sizes: 28 \(no suffix\), 64, 128, 224"):
        check_dataset_spec("medmnist:breastmnist_32", None)


def test_chestmnist_without_a_finding_is_refused_listing_its_findings() -> None:
    with pytest.raises(MedprobeUsageError, match="multi-label.*--medprobe-finding=NAME") as excinfo:
        check_dataset_spec("medmnist:chestmnist", None)
    assert all(finding in str(excinfo.value) for finding in FLAGS["chestmnist"].class_names)


def test_a_3d_medmnist_flag_is_refused_as_out_of_scope() -> None:
    with pytest.raises(MedprobeUsageError, match="3D MedMNIST flag"):
        check_dataset_spec("medmnist:organmnist3d_64", None)


def test_an_unknown_dataset_lists_the_known_forms() -> None:
    with pytest.raises(MedprobeUsageError) as excinfo:
        check_dataset_spec("imagenet", None)
    message = str(excinfo.value)
    assert "'imagenet'" in message and all(form in message for form in KNOWN_DATASETS)
    assert all(flag in KNOWN_DATASETS[1] for flag in FLAGS)


def test_a_truncated_medmnist_file_is_a_dataset_error_naming_the_file(tmp_path: Path) -> None:
    path = _write_medmnist(tmp_path, "breastmnist.npz", 2)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(DatasetError, match="truncated or corrupt") as excinfo:
        load_dataset("medmnist:breastmnist", data_root=tmp_path, max_samples=None, seed=0)
    assert str(path.resolve()) in str(excinfo.value)


@pytest.mark.parametrize("max_samples", [None, 10], ids=["whole-split", "capped-split"])
def test_damaged_image_bytes_are_caught_even_when_only_some_rows_are_read(
    tmp_path: Path, max_samples: int | None
) -> None:
    noise = np.random.default_rng(0).integers(1, 256, (400, 28, 28), dtype=np.uint8)
    path = _write_medmnist(tmp_path, "breastmnist.npz", 2, n_train=400, override={"train_images": noise})
    data = bytearray(path.read_bytes())
    data[len(data) // 3 : len(data) // 3 + 64] = bytes(64)  # inside train_images, far from the zip directory
    path.write_bytes(bytes(data))
    with pytest.raises(DatasetError, match=r"cannot read 'train_images' \(BadZipFile: Bad CRC-32"):
        load_dataset("medmnist:breastmnist", data_root=tmp_path, max_samples=max_samples, seed=0)


def test_a_medmnist_file_without_test_labels_names_the_missing_key(tmp_path: Path) -> None:
    path = tmp_path / "breastmnist.npz"
    np.savez(path, train_images=np.zeros((4, 28, 28), np.uint8), train_labels=np.zeros((4, 1), np.uint8),
             test_images=np.zeros((4, 28, 28), np.uint8))  # fmt: skip
    with pytest.raises(DatasetError, match="no array 'test_labels'"):
        load_dataset("medmnist:breastmnist", data_root=tmp_path, max_samples=None, seed=0)


@pytest.mark.parametrize(
    ("override", "detail"),
    [
        ({"train_images": np.zeros((40, 28, 28), np.float32)}, "'train_images' has shape (40, 28, 28) and dtype float"),
        ({"test_labels": np.zeros((20, 1), np.float64)}, "'test_labels' has shape (20, 1) and dtype float64"),
        ({"test_labels": np.zeros((20, 3), np.uint8)}, "multi-label"),
        ({"test_images": np.zeros((19, 28, 28), np.uint8)}, "'test_images' holds 19 images but the labels count 20"),
    ],
    ids=["float-images", "float-labels", "multi-label-labels", "count-mismatch"],
)
def test_wrong_arrays_in_a_medmnist_file_name_the_file_and_key(
    tmp_path: Path, override: dict[str, np.ndarray], detail: str
) -> None:
    path = _write_medmnist(tmp_path, "breastmnist.npz", 2, override=override)
    with pytest.raises(DatasetError) as excinfo:
        load_dataset("medmnist:breastmnist", data_root=tmp_path, max_samples=None, seed=0)
    assert str(path.resolve()) in str(excinfo.value) and detail in str(excinfo.value)


# --- folder -------------------------------------------------------------------------------


def _save(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


def _class_folders(root: Path, per_class: int = 10) -> None:
    """Two classes: RGB nevi; melanomas as grayscale, RGBA and 16-bit PNGs."""
    rng = np.random.default_rng(0)
    for index in range(per_class):
        _save(root / "benign_nevus" / f"n{index}.png", rng.integers(0, 256, (12, 10, 3), dtype=np.uint8))
        kind = index % 3
        shape = [(12, 10), (12, 10, 4), (12, 10)][kind]
        dtype = np.uint16 if kind == 2 else np.uint8
        _save(root / "melanoma" / f"m{index}.png", rng.integers(0, np.iinfo(dtype).max, shape, dtype=dtype))


def test_a_class_folder_dataset_is_split_70_30_with_every_image_as_rgb(tmp_path: Path) -> None:
    _class_folders(tmp_path / "skin")
    (tmp_path / "skin" / "melanoma" / "notes.txt").write_text("not an image")
    dataset = load_dataset(f"folder:{tmp_path / 'skin'}", data_root=None, max_samples=None, seed=0)
    assert dataset.class_names == ("benign nevus", "melanoma") and dataset.modality == "medical"
    assert (dataset.n_fit, dataset.n_test) == (14, 6) and np.bincount(dataset.test_labels).tolist() == [3, 3]
    images = [*dataset.fit_images, *dataset.test_images]
    assert all(image.shape == (12, 10, 3) and image.dtype == np.uint8 for image in images)
    assert dataset.source == str((tmp_path / "skin").resolve())
    assert dataset_short_name(f"folder:{tmp_path / 'skin'}/") == "skin"


def test_a_16_bit_png_is_scaled_by_the_full_16_bit_range(tmp_path: Path) -> None:
    from pytest_medprobe.data.folder import read_image

    _save(tmp_path / "x.png", np.array([[0, 257 * 200, 65535]], np.uint16))
    assert read_image(tmp_path / "x.png")[0, :, 0].tolist() == [0, 200, 255]


def test_a_folder_with_train_and_test_uses_them_as_the_split_and_reads_modality_txt(tmp_path: Path) -> None:
    _class_folders(tmp_path / "data" / "train", per_class=4)
    _class_folders(tmp_path / "data" / "test", per_class=2)
    (tmp_path / "data" / "modality.txt").write_text("\ndermatoscopy\n")
    dataset = load_dataset(f"folder:{tmp_path / 'data'}", data_root=None, max_samples=None, seed=0)
    assert (dataset.n_fit, dataset.n_test, dataset.modality) == (8, 4, "dermatoscopy")
    capped = load_dataset(f"folder:{tmp_path / 'data'}", data_root=None, max_samples=2, seed=0)
    assert capped.fit_labels.tolist() == [0, 1] and capped.fingerprint != dataset.fingerprint


def test_the_folder_fingerprint_changes_when_an_image_is_replaced(tmp_path: Path) -> None:
    _class_folders(tmp_path, per_class=4)
    before = load_dataset(f"folder:{tmp_path}", data_root=None, max_samples=None, seed=0).fingerprint
    assert load_dataset(f"folder:{tmp_path}", data_root=None, max_samples=None, seed=0).fingerprint == before
    _save(tmp_path / "melanoma" / "m0.png", np.zeros((3, 3), np.uint8))
    assert load_dataset(f"folder:{tmp_path}", data_root=None, max_samples=None, seed=0).fingerprint != before


def test_a_missing_folder_is_a_usage_error_naming_the_path(tmp_path: Path) -> None:
    with pytest.raises(MedprobeUsageError, match="no folder at .*nowhere"):
        check_dataset_spec(f"folder:{tmp_path / 'nowhere'}", None)
    with pytest.raises(MedprobeUsageError, match="no folder at"):
        load_dataset(f"folder:{tmp_path / 'nowhere'}", data_root=None, max_samples=None, seed=0)


def test_a_folder_with_one_class_folder_is_refused(tmp_path: Path) -> None:
    _save(tmp_path / "only" / "a.png", np.zeros((4, 4), np.uint8))
    with pytest.raises(MedprobeUsageError, match=r"1 class folder\(s\) \(only\); a probe needs at least 2"):
        check_dataset_spec(f"folder:{tmp_path}", None)


def test_an_empty_class_folder_is_refused_naming_it(tmp_path: Path) -> None:
    _class_folders(tmp_path, per_class=3)
    (tmp_path / "naevus_spilus").mkdir()
    with pytest.raises(DatasetError, match="naevus_spilus: class folder holds no images"):
        load_dataset(f"folder:{tmp_path}", data_root=None, max_samples=None, seed=0)


def test_an_unreadable_image_is_a_dataset_error_naming_the_file(tmp_path: Path) -> None:
    _class_folders(tmp_path, per_class=3)
    (tmp_path / "melanoma" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    with pytest.raises(DatasetError, match=r"broken\.png: cannot read the image"):
        load_dataset(f"folder:{tmp_path}", data_root=None, max_samples=None, seed=0)


# --- load_dataset ------------------------------------------------------------------------


def test_max_samples_caps_synthetic_lesions_stratified_and_keys_the_fingerprint(lesions: ProbeDataset) -> None:
    capped = load_dataset("synthetic-lesions", data_root=None, max_samples=40, seed=0)
    assert (capped.n_fit, capped.n_test) == (40, 40)
    assert np.bincount(capped.fit_labels).tolist() == [10] * 4
    assert capped.fingerprint != lesions.fingerprint
    assert capped.fingerprint == load_dataset("synthetic-lesions", data_root=None, max_samples=40, seed=0).fingerprint
    uncapped = load_dataset("synthetic-lesions", data_root=None, max_samples=None, seed=0)
    assert uncapped.n_fit == 480 and dataset_short_name("synthetic-lesions") == "synthetic-lesions"
