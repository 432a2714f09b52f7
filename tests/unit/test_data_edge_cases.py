"""Dataset edge cases found by a held-out bad-input sweep: each one clear message, never a traceback.

Folder datasets are checked up front (``check_dataset_spec``: a usage error before any
model loads); MedMNIST files when read (a ``DatasetError`` the audits report).
"""

from __future__ import annotations

import io
import zipfile
from collections.abc import Callable
from fnmatch import fnmatch
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pytest_medprobe.data import check_dataset_spec, load_dataset
from pytest_medprobe.errors import DatasetError, MedprobeUsageError


def _images(folder: Path, count: int) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(len(str(folder)))
    for index in range(count):
        Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)).save(folder / f"{index}.png")


def _two_classes(root: Path, per_class: int = 3) -> None:
    _images(root / "benign", per_class)
    _images(root / "malignant", per_class)


def _modality_not_utf8(root: Path) -> None:
    _two_classes(root)
    (root / "modality.txt").write_bytes("dermatoscopía\n".encode("latin-1"))


def _train_without_test(root: Path) -> None:
    _two_classes(root / "train")


def _test_without_train(root: Path) -> None:
    _two_classes(root / "test")


def _one_image_per_class(root: Path) -> None:
    _images(root / "benign", 3)
    _images(root / "malignant", 1)


def _same_in_the_prompt(root: Path) -> None:
    _images(root / "ring_lesion", 3)
    _images(root / "ring lesion", 3)
    _images(root / "other", 3)


FOLDER_CASES: dict[str, tuple[Callable[[Path], None], str]] = {
    "modality-not-utf8": (_modality_not_utf8, "modality.txt: not UTF-8 text*save it as UTF-8"),
    "train-without-test": (_train_without_test, "has train/ but no test/*add */test*"),
    "test-without-train": (_test_without_train, "has test/ but no train/*"),
    "one-image-per-class": (_one_image_per_class, "malignant hold a single image; each class needs at least two*"),
    "same-in-the-prompt": (_same_in_the_prompt, "class folders 'ring lesion' and 'ring_lesion' both read*"),
}


@pytest.mark.parametrize("case", list(FOLDER_CASES))
def test_a_bad_folder_dataset_is_one_usage_error_before_anything_loads(tmp_path: Path, case: str) -> None:
    build, message = FOLDER_CASES[case]
    build(tmp_path / "data")
    with pytest.raises(MedprobeUsageError) as raised:
        check_dataset_spec(f"folder:{tmp_path / 'data'}", None)
    assert fnmatch(str(raised.value), f"*{message}*"), str(raised.value)


def test_macos_archive_folders_are_not_classes(tmp_path: Path) -> None:
    _two_classes(tmp_path / "data")
    _images(tmp_path / "data" / "__MACOSX" / "benign", 3)  # what unzipping a macOS zip leaves
    check_dataset_spec(f"folder:{tmp_path / 'data'}", None)
    dataset = load_dataset(f"folder:{tmp_path / 'data'}", data_root=None, max_samples=None, seed=0)
    assert dataset.class_names == ("benign", "malignant")


def _npz(path: Path, members: dict[str, bytes]) -> None:
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in members.items():
            archive.writestr(f"{name}.npy", data)


def _npy(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


def _npy_claiming_rows(rows: int, row_shape: tuple[int, ...], dtype: str, body: bytes) -> bytes:
    """An .npy member whose header claims ``rows`` rows, followed by ``body`` only."""
    buffer = io.BytesIO()
    header = {"descr": np.dtype(dtype).str, "fortran_order": False, "shape": (rows, *row_shape)}
    np.lib.format.write_array_header_1_0(buffer, header)
    return buffer.getvalue() + body


def _official(split_sizes: dict[str, int], image_shape: tuple[int, int]) -> dict[str, bytes]:
    members = {}
    rng = np.random.default_rng(0)
    for split, n in split_sizes.items():
        members[f"{split}_images"] = _npy(rng.integers(0, 256, (n, *image_shape), dtype=np.uint8))
        members[f"{split}_labels"] = _npy((np.arange(n) % 2).reshape(n, 1).astype(np.uint8))
    return members


@pytest.mark.parametrize("cap", [None, 4])
def test_medmnist_images_of_zero_pixels_are_a_clear_error(tmp_path: Path, cap: int | None) -> None:
    _npz(tmp_path / "breastmnist.npz", _official({"train": 8, "val": 2, "test": 6}, (0, 0)))
    with pytest.raises(DatasetError, match=r"images of 0×0 pixels; an image needs at least one pixel"):
        load_dataset("medmnist:breastmnist", data_root=tmp_path, max_samples=cap, seed=0)


@pytest.mark.parametrize("member", ["train_images", "train_labels"])
@pytest.mark.parametrize("cap", [None, 4])
def test_a_npy_header_claiming_10_to_the_11_rows_is_refused_without_allocating(
    tmp_path: Path, member: str, cap: int | None
) -> None:
    members = _official({"train": 8, "val": 2, "test": 6}, (28, 28))
    if member == "train_images":  # 10^11 × 28 × 28 bytes: about 71 TiB
        members[member] = _npy_claiming_rows(10**11, (28, 28), "|u1", b"\0" * (8 * 28 * 28))
    else:
        members[member] = _npy_claiming_rows(10**11, (1,), "|u1", b"\0" * 8)
    _npz(tmp_path / "breastmnist.npz", members)
    with pytest.raises(DatasetError, match=r"claims shape \(100000000000, .*the file is damaged. Re-download"):
        load_dataset("medmnist:breastmnist", data_root=tmp_path, max_samples=cap, seed=0)
