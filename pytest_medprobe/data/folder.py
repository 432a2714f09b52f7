"""``folder:<dir>``: a labelled image folder, one sub-folder per class.

Layouts: ``<dir>/<class>/<image>`` (split here: stratified 70/30, seed-fixed) or
``<dir>/train/<class>/<image>`` with ``<dir>/test/<class>/<image>`` (the folder's own split).
Class names are the sorted sub-folder names with underscores read as spaces; an optional
``<dir>/modality.txt`` gives the modality word for the prompt. Images are PNG, JPEG, TIFF,
BMP or DICOM (by suffix, or by the DICOM preamble for files without one), decoded by
``data.images``. The layout is scanned without decoding images (only the first bytes of
suffix-less files are read), so a bad folder is reported before any model is loaded.
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
)
from pytest_medprobe.data.file_images import measure_files
from pytest_medprobe.data.images import IMAGE_SUFFIXES, is_image_file, multi_frame_note, read_image
from pytest_medprobe.errors import DatasetError, MedprobeUsageError
from pytest_medprobe.files import content_sha256s

__all__ = ["PREFIX", "FolderLayout", "folder_path", "load_folder", "read_image", "scan_folder"]

PREFIX = "folder:"
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
        return tuple(prompt_name(name) for name in self.class_folders)


def folder_path(spec: str) -> Path:
    raw = spec.removeprefix(PREFIX).strip()
    if not raw:
        raise MedprobeUsageError(f"dataset {spec!r}: no folder given; write folder:<dir>.")
    return Path(raw).expanduser()


# Folders that archive tools and systems add, never classes: macOS zips carry __MACOSX/.
IGNORED_FOLDERS = ("__MACOSX", "__pycache__")


def _subfolders(directory: Path) -> list[Path]:
    return sorted(
        entry
        for entry in directory.iterdir()
        if entry.is_dir() and not entry.name.startswith(".") and entry.name not in IGNORED_FOLDERS
    )


def prompt_name(folder_name: str) -> str:
    """How a class folder reads in the prompt: underscores as spaces."""
    return folder_name.replace("_", " ")


def _check_distinct_in_prompt(directory: Path, classes: tuple[str, ...]) -> None:
    """Refuse two class folders the model cannot tell apart: they read the same in the prompt."""
    seen: dict[str, str] = {}
    for name in classes:
        spoken = " ".join(prompt_name(name).split()).casefold()
        if spoken in seen:
            raise DatasetError(
                f"{directory}: class folders {seen[spoken]!r} and {name!r} both read {prompt_name(name)!r} in "
                "the prompt, so the model could not tell them apart. Rename one, or merge them if they are "
                "one class."
            )
        seen[spoken] = name


def _check_two_per_class(directory: Path, classes: tuple[str, ...], labels: np.ndarray) -> None:
    """Without its own split, a class needs one image to fit the probe and one to test it."""
    counts = np.bincount(labels, minlength=len(classes))
    single = [name for name, count in zip(classes, counts) if count < 2]
    if single:
        raise DatasetError(
            f"{directory}: class folder(s) {', '.join(single)} hold a single image; each class needs at least "
            "two (one to fit the probe on, one to test it). Add images, or remove the folder."
        )


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
        images = sorted(entry for entry in folder.iterdir() if is_image_file(entry))
        if not images:
            raise DatasetError(
                f"{folder}: class folder holds no images (looked for {', '.join(IMAGE_SUFFIXES)} and "
                "DICOM files without a suffix). Add images to it or remove the folder."
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
    _modality(root)  # a modality.txt that cannot be read is reported now, before anything loads
    train, test = root / "train", root / "test"
    if train.is_dir() != test.is_dir():
        have, missing = ("train", "test") if train.is_dir() else ("test", "train")
        raise DatasetError(
            f"{root}: has {have}/ but no {missing}/. A folder with its own split needs both, each holding "
            f"the same class folders; add {root / missing}, or put the class folders directly in {root} "
            "to have a split drawn here."
        )
    if train.is_dir() and test.is_dir():
        classes, fit_files, fit_labels = _class_files(train)
        test_classes, test_files, test_labels = _class_files(test)
        if test_classes != classes:
            raise DatasetError(
                f"{root}: train/ and test/ hold different class folders (train: {', '.join(classes)}; "
                f"test: {', '.join(test_classes)}). Give both splits the same class folders."
            )
        _check_distinct_in_prompt(train, classes)
        return FolderLayout(root, classes, tuple(fit_files), fit_labels, tuple(test_files), test_labels)
    classes, files, labels = _class_files(root)
    _check_distinct_in_prompt(root, classes)
    _check_two_per_class(root, classes, labels)
    return FolderLayout(root, classes, tuple(files), labels, None, None)


def _modality(root: Path) -> str:
    path = root / MODALITY_FILE
    if not path.is_file():
        return DEFAULT_MODALITY
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise DatasetError(
            f"{path}: not UTF-8 text (byte {exc.start}: {exc.reason}); save it as UTF-8 with the modality "
            "word (e.g. dermatoscopy) on its first line."
        ) from None
    except OSError as exc:
        raise DatasetError(f"{path}: cannot be read ({exc}); fix its permissions or remove it.") from None
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[0] if lines else DEFAULT_MODALITY


def _file_identity(root: Path, files: tuple[Path, ...], hash_memo: Path | None) -> list[tuple[str, str]]:
    """Each file's place in the folder and the SHA-256 of its bytes (never its size or time)."""
    try:
        hashes = content_sha256s(files, hash_memo)
    except OSError as exc:
        raise DatasetError(f"{root}: cannot read an image file ({exc}). Check its permissions.") from None
    return [(path.relative_to(root).as_posix(), sha256) for path, sha256 in zip(files, hashes)]


def load_folder(spec: str, max_samples: int | None, seed: int, hash_memo: Path | None = None) -> ProbeDataset:
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
    # Kept as files, decoded per batch (data.file_images): never every full-resolution image at once.
    images, frames = measure_files([fit_files[row] for row in fit_keep] + [test_files[row] for row in test_keep])
    notes = multi_frame_note(frames)
    identity = {
        "dataset": "folder",
        "own_split": layout.test_files is not None,
        "split_seed": seed,
        "test_fraction": TEST_FRACTION,
        "classes": list(layout.class_folders),
        "modality": modality,
        "fit": _file_identity(layout.root, fit_files, hash_memo),
        "test": _file_identity(layout.root, test_files, hash_memo),
    }
    return ProbeDataset(
        name=spec,
        class_names=layout.class_names,
        modality=modality,
        fit_images=images[: len(fit_keep)],
        fit_labels=fit_labels[fit_keep],
        test_images=images[len(fit_keep) :],
        test_labels=test_labels[test_keep],
        source=str(root),
        fingerprint=compute_fingerprint(identity, fit_keep, test_keep),
        notes=notes,
    )
