"""``folder:<dir>``: a labelled image folder, one sub-folder per class.

Layouts: ``<dir>/<class>/<image>`` (split here: stratified 70/30, seed-fixed) or
``<dir>/train/<class>/<image>`` with ``<dir>/test/<class>/<image>`` (the folder's own split).
Class names are the sorted sub-folder names with underscores read as spaces; an optional
``<dir>/modality.txt`` gives the modality word for the prompt. The layout is scanned
without opening images, so a bad folder is reported before any model is loaded.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pytest_medprobe.data.base import (
    ProbeDataset,
    compute_fingerprint,
    stratified_cap,
    stratified_split,
    to_rgb_uint8,
)
from pytest_medprobe.errors import DatasetError, MedprobeUsageError

PREFIX = "folder:"
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
TEST_FRACTION = 0.3
DEFAULT_MODALITY = "medical"
MODALITY_FILE = "modality.txt"


@dataclass(frozen=True)
class FolderLayout:
    root: Path
    class_folders: tuple[str, ...]  # sorted sub-folder names; label k is class_folders[k]
    fit_files: tuple[Path, ...]
    fit_labels: np.ndarray
    test_files: tuple[Path, ...] | None  # None: no own split, one will be drawn
    test_labels: np.ndarray | None

    @property
    def class_names(self) -> tuple[str, ...]:
        return tuple(name.replace("_", " ") for name in self.class_folders)


def folder_path(spec: str) -> Path:
    raw = spec.removeprefix(PREFIX).strip()
    if not raw:
        raise MedprobeUsageError(f"dataset {spec!r}: no folder given; write folder:<dir>.")
    return Path(raw).expanduser()


def _subfolders(directory: Path) -> list[Path]:
    return sorted(entry for entry in directory.iterdir() if entry.is_dir() and not entry.name.startswith("."))


def _class_files(directory: Path) -> tuple[tuple[str, ...], list[Path], np.ndarray]:
    classes = _subfolders(directory)
    if len(classes) < 2:
        found = ", ".join(entry.name for entry in classes) or "none"
        raise DatasetError(
            f"{directory}: {len(classes)} class folder(s) ({found}); a probe needs at least 2. "
            f"Put each class's images in its own sub-folder, e.g. {directory / 'benign'} and "
            f"{directory / 'malignant'}."
        )
    files: list[Path] = []
    labels: list[int] = []
    for label, folder in enumerate(classes):
        images = sorted(
            entry for entry in folder.iterdir()
            if entry.is_file() and not entry.name.startswith(".") and entry.suffix.lower() in IMAGE_SUFFIXES
        )  # fmt: skip
        if not images:
            raise DatasetError(
                f"{folder}: class folder holds no images (looked for {', '.join(IMAGE_SUFFIXES)}). "
                "Add images to it or remove the folder."
            )
        files += images
        labels += [label] * len(images)
    return tuple(folder.name for folder in classes), files, np.asarray(labels, dtype=np.int64)


def scan_folder(spec: str) -> FolderLayout:
    """The folder's classes and image files, read from directory listings only."""
    root = folder_path(spec)
    if not root.is_dir():
        raise MedprobeUsageError(
            f"dataset {spec!r}: no folder at {root.resolve()}; folder:<dir> needs a directory holding one "
            "sub-folder of images per class."
        )
    train, test = root / "train", root / "test"
    if train.is_dir() and test.is_dir() and _subfolders(train) and _subfolders(test):
        classes, fit_files, fit_labels = _class_files(train)
        test_classes, test_files, test_labels = _class_files(test)
        if test_classes != classes:
            raise DatasetError(
                f"{root}: train/ and test/ hold different class folders (train: {', '.join(classes)}; "
                f"test: {', '.join(test_classes)}). Give both splits the same class folders."
            )
        return FolderLayout(root, classes, tuple(fit_files), fit_labels, tuple(test_files), test_labels)
    classes, files, labels = _class_files(root)
    return FolderLayout(root, classes, tuple(files), labels, None, None)


def read_image(path: Path) -> np.ndarray:
    """One image file as ``[H, W, 3]`` uint8; 16-bit, palette, alpha and CMYK are converted."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            image.load()  # decode now, so a truncated file fails here with its name
            if image.mode in ("1", "L", "RGB", "RGBA", "F") or image.mode.startswith("I;16"):
                array = np.asarray(image)
            elif image.mode == "I":  # 16-bit PNG/TIFF on some Pillow versions: int32 values
                array = np.asarray(image)
                if array.size and (array.min() < 0 or array.max() > 65535):
                    raise DatasetError(
                        f"{path}: 32-bit integer image with values {array.min()}..{array.max()} outside the "
                        "16-bit range; save it as 8- or 16-bit."
                    )
                array = array.astype(np.uint16)
            else:  # palette, LA, CMYK, YCbCr, ...: let PIL map them to RGB(A)
                array = np.asarray(image.convert("RGBA" if "A" in image.mode or image.mode == "P" else "RGB"))
    except (OSError, ValueError, UnidentifiedImageError, Image.DecompressionBombError) as exc:
        raise DatasetError(f"{path}: cannot read the image ({exc}). Replace or remove the file.") from None
    if array.dtype.byteorder == ">":  # "I;16B": big-endian words
        array = array.astype(array.dtype.newbyteorder("="))
    return to_rgb_uint8(array, str(path))


def _modality(root: Path) -> str:
    path = root / MODALITY_FILE
    if not path.is_file():
        return DEFAULT_MODALITY
    lines = [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return lines[0] if lines else DEFAULT_MODALITY


def _file_identity(root: Path, files: tuple[Path, ...]) -> list[tuple[str, int, int]]:
    identity = []
    for path in files:
        stat = path.stat()
        identity.append((path.relative_to(root).as_posix(), stat.st_size, stat.st_mtime_ns))
    return identity


def load_folder(spec: str, max_samples: int | None, seed: int) -> ProbeDataset:
    """Read the folder of ``spec``; each split capped to ``max_samples`` (stratified, seed-fixed)."""
    layout = scan_folder(spec)
    root = layout.root.resolve()
    if layout.test_files is None or layout.test_labels is None:
        fit_rows, test_rows = stratified_split(layout.fit_labels, TEST_FRACTION, seed)
        fit_files = tuple(layout.fit_files[row] for row in fit_rows)
        test_files = tuple(layout.fit_files[row] for row in test_rows)
        fit_labels, test_labels = layout.fit_labels[fit_rows], layout.fit_labels[test_rows]
    else:
        fit_files, test_files = layout.fit_files, layout.test_files
        fit_labels, test_labels = layout.fit_labels, layout.test_labels
    fit_keep = stratified_cap(fit_labels, max_samples, seed)
    test_keep = stratified_cap(test_labels, max_samples, seed)
    modality = _modality(layout.root)
    identity = {
        "dataset": "folder",
        "root": str(root),
        "own_split": layout.test_files is not None,
        "split_seed": seed,
        "test_fraction": TEST_FRACTION,
        "classes": list(layout.class_folders),
        "modality": modality,
        "fit": _file_identity(layout.root, fit_files),
        "test": _file_identity(layout.root, test_files),
    }
    return ProbeDataset(
        name=spec,
        class_names=layout.class_names,
        modality=modality,
        fit_images=[read_image(fit_files[row]) for row in fit_keep],
        fit_labels=fit_labels[fit_keep],
        test_images=[read_image(test_files[row]) for row in test_keep],
        test_labels=test_labels[test_keep],
        source=str(root),
        fingerprint=compute_fingerprint(identity, fit_keep, test_keep),
    )
