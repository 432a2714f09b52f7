"""``csv:<file>``: a CSV manifest of image paths, labels and patient attributes.

The layout of CheXpert, ISIC, HAM10000 and most hospital exports: one row per image, an
image-path column (relative to the CSV's folder, or absolute), a label column, and more
columns (site, sex, age band) that can split the scores into subgroups. Three label
layouts:

* one label column (``label``, ``class``, ``diagnosis``, ``dx``, ... or
  ``--medprobe-image-column`` / ``--medprobe-label-column``): classes are its values;
* one 0/1 column per finding (two or more, and no label column): a multi-label set, audited
  one finding at a time (``--medprobe-finding``);
* an optional ``split`` column (``train`` / ``test``; ``val`` rows are unused, as in
  MedMNIST), else a stratified 70/30 split, seed-fixed.

Classes are sorted (numerically when they are numbers) unless ``classes.txt`` next to the
CSV lists them in the order the question should offer them; ``modality.txt`` there gives
the modality word, as in folder datasets.

The file is read with the ``csv`` module (quoted commas and newlines, a UTF-8 byte-order
mark); Windows separators in paths are read as ``/``. The scan checks every path without
opening an image, so a bad manifest stops the run before any model loads. The fingerprint
hashes the CSV's bytes and the content of every image read, never names or mtimes.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pytest_medprobe.data.base import (
    FINDING_CLASSES,
    DatasetOptions,
    ProbeDataset,
    compute_fingerprint,
    finding_task,
    stratified_cap,
    stratified_split,
    subgroup_values,
)
from pytest_medprobe.data.images import IMAGE_SUFFIXES, read_images
from pytest_medprobe.errors import DatasetError, MedprobeUsageError
from pytest_medprobe.files import file_sha256
from pytest_medprobe.naming import mention

PREFIX = "csv:"
TEST_FRACTION = 0.3
DEFAULT_MODALITY = "medical"
MODALITY_FILE = "modality.txt"
CLASSES_FILE = "classes.txt"
MAX_NAMED = 5  # rows or paths a message names before "and N more"
# Detected by name, case-insensitively, in this order of preference.
IMAGE_COLUMN_NAMES = ("image", "image_path", "path", "filepath", "file_path", "file", "filename", "file_name", "img")
LABEL_COLUMN_NAMES = ("label", "class", "diagnosis", "dx", "target", "category")
SPLIT_COLUMN_NAMES = ("split",)
FIT_SPLIT, TEST_SPLIT, UNUSED_SPLITS = "train", "test", ("val", "valid", "validation")
BINARY_VALUES = {"0": 0, "1": 1, "0.0": 0, "1.0": 1}
PATH_SUFFIXES = IMAGE_SUFFIXES  # how a column of image paths is recognized (DICOM included)


@dataclass(frozen=True)
class Manifest:
    """What a CSV says, checked: which column is what, and every image file's path."""

    path: Path  # the CSV, resolved
    columns: dict[str, list[str]]  # column -> one cell per row, in file order
    rows: list[int]  # the CSV line each row ends on, for messages
    image_column: str
    files: tuple[Path, ...]  # one per row, resolved
    label_column: str | None  # None: a multi-label manifest
    findings: tuple[str, ...]  # 0/1 columns; the findings of a multi-label manifest
    split_column: str | None

    @property
    def multi_label(self) -> bool:
        return self.label_column is None


def csv_path(spec: str) -> Path:
    raw = spec.removeprefix(PREFIX).strip()
    if not raw:
        raise MedprobeUsageError(f"dataset {spec!r}: no file given; write csv:<file>.")
    return Path(raw).expanduser()


def _rows_named(rows: Sequence[int]) -> str:
    named = ", ".join(str(row) for row in rows[:MAX_NAMED])
    return named + (f" and {len(rows) - MAX_NAMED} more" if len(rows) > MAX_NAMED else "")


def _read_table(path: Path) -> tuple[dict[str, list[str]], list[int]]:
    """Columns and the line of each row; ``utf-8-sig`` drops a byte-order mark (Excel writes one)."""
    try:
        with path.open(encoding="utf-8-sig", newline="") as stream:
            reader = csv.reader(stream)
            header = next(reader, None)
            if header is None or not any(cell.strip() for cell in header):
                raise DatasetError(f"{path}: the file is empty; a manifest needs a header row and one row per image.")
            names = [cell.strip() for cell in header]
            repeated = sorted({name for name in names if names.count(name) > 1})
            if repeated or "" in names:
                problem = f"repeats column(s) {repeated}" if repeated else "has a column without a name"
                raise DatasetError(f"{path}: the header {problem}; give every column one distinct name.")
            columns: dict[str, list[str]] = {name: [] for name in names}
            lines: list[int] = []
            for cells in reader:
                if not any(cell.strip() for cell in cells):
                    continue  # blank lines (a trailing newline, spreadsheet padding)
                if len(cells) != len(names):
                    raise DatasetError(
                        f"{path}, line {reader.line_num}: {len(cells)} fields but the header has {len(names)} "
                        "columns. Quote fields that contain commas or newlines."
                    )
                for name, cell in zip(names, cells):
                    columns[name].append(cell)
                lines.append(reader.line_num)
    except UnicodeDecodeError as exc:
        raise DatasetError(f"{path}: not UTF-8 text ({exc}). Save the manifest as UTF-8 CSV.") from None
    except csv.Error as exc:
        raise DatasetError(f"{path}: not a readable CSV ({exc}).") from None
    except OSError as exc:
        raise DatasetError(f"{path}: cannot read the manifest ({exc}).") from None
    if not lines:
        raise DatasetError(f"{path}: the manifest has a header but no rows; add one row per image.")
    return columns, lines


def _named(names: Sequence[str], candidates: Sequence[str]) -> str | None:
    lowered = {name.lower(): name for name in names}
    return next((lowered[candidate] for candidate in candidates if candidate in lowered), None)


def _given(path: Path, columns: dict[str, list[str]], name: str, flag: str) -> str:
    if name not in columns:
        raise MedprobeUsageError(f"{path}: {flag} names column {name!r}, but the columns are {list(columns)}.")
    return name


def _binary(values: Sequence[str]) -> bool:
    return all(value.strip() in BINARY_VALUES for value in values)


def _image_column(path: Path, columns: dict[str, list[str]], options: DatasetOptions) -> str:
    if options.image_column is not None:
        return _given(path, columns, options.image_column, mention("image_column"))
    by_name = _named(list(columns), IMAGE_COLUMN_NAMES)
    if by_name is not None:
        return by_name
    by_content = [
        name for name, values in columns.items() if all(v.strip().lower().endswith(PATH_SUFFIXES) for v in values)
    ]
    if len(by_content) == 1:
        return by_content[0]
    raise MedprobeUsageError(
        f"{path}: cannot tell which column holds the image paths (columns: {list(columns)}; looked for one named "
        f"{', '.join(IMAGE_COLUMN_NAMES)}, or the only column of {', '.join(PATH_SUFFIXES)} paths). "
        f"Name it with {mention('image_column')}=COLUMN."
    )


def _files(path: Path, cells: Sequence[str], lines: Sequence[int], column: str) -> tuple[Path, ...]:
    """Every row's image path: relative to the CSV's folder, ``\\`` read as ``/``; all must exist."""
    files: list[Path] = []
    empty: list[int] = []
    missing: list[tuple[int, str]] = []
    for cell, line in zip(cells, lines):
        value = cell.strip().replace("\\", "/")  # Windows exports; a POSIX name never holds "\"
        if not value:
            empty.append(line)
            continue
        file = Path(value).expanduser()
        file = file if file.is_absolute() else path.parent / file
        if not file.is_file():
            missing.append((line, value))
        files.append(file)
    if empty:
        lines_named = _rows_named(empty)
        raise DatasetError(f"{path}: column {column!r} is empty on line(s) {lines_named}; give every row an image.")
    if missing:
        named = "; ".join(f"line {line}: {value}" for line, value in missing[:MAX_NAMED])
        more = f" and {len(missing) - MAX_NAMED} more" if len(missing) > MAX_NAMED else ""
        raise DatasetError(
            f"{path}: {len(missing)} of {len(cells)} image paths do not exist ({named}{more}); relative paths "
            f"are read from the CSV's folder {path.parent}. Fix the paths or move the CSV next to the images."
        )
    return tuple(files)


def scan_manifest(spec: str, options: DatasetOptions) -> Manifest:
    """Read and check the manifest of ``spec``; no image is opened."""
    path = csv_path(spec)
    if not path.is_file():
        raise MedprobeUsageError(
            f"dataset {spec!r}: no file at {path.resolve()}; csv:<file> needs a CSV with an image-path column "
            "and a label column."
        )
    path = path.resolve()
    columns, lines = _read_table(path)
    image_column = _image_column(path, columns, options)
    split_column = _named(list(columns), SPLIT_COLUMN_NAMES)
    for column in options.subgroups:
        subgroup_values(path, _given(path, columns, column, mention("subgroups")), columns[column])
    reserved = {image_column, split_column, *options.subgroups}
    findings = tuple(name for name, values in columns.items() if name not in reserved and _binary(values))
    if options.label_column is not None:
        label_column: str | None = _given(path, columns, options.label_column, mention("label_column"))
    else:
        label_column = _named([name for name in columns if name not in reserved], LABEL_COLUMN_NAMES)
        if label_column is None and len(findings) < 2:
            raise MedprobeUsageError(
                f"{path}: no label column (columns: {list(columns)}; looked for one named "
                f"{', '.join(LABEL_COLUMN_NAMES)}, or two or more 0/1 finding columns). Name it with "
                f"{mention('label_column')}=COLUMN."
            )
    files = _files(path, columns[image_column], lines, image_column)
    manifest = Manifest(path, columns, lines, image_column, files, label_column, findings, split_column)
    if label_column is not None:
        _class_labels(manifest, label_column)  # spelling, blank and one-class problems, before the run
    return manifest


def _class_labels(manifest: Manifest, column: str) -> tuple[tuple[str, ...], np.ndarray]:
    """Class names (sorted; numerically when all are numbers) and each row's label index."""
    path, cells = manifest.path, manifest.columns[column]
    blank = [line for cell, line in zip(cells, manifest.rows) if not cell.strip()]
    if blank:
        raise DatasetError(
            f"{path}: label column {column!r} is empty on line(s) {_rows_named(blank)}; every image needs a class "
            "(drop those rows or fill them in)."
        )
    spellings: dict[str, dict[str, int]] = {}
    for cell in cells:
        key = " ".join(cell.split()).casefold()
        spellings.setdefault(key, {}).setdefault(cell, 0)
        spellings[key][cell] += 1
    for variants in spellings.values():
        if len(variants) > 1:
            named = " and ".join(f"{spelling!r} ({count} rows)" for spelling, count in variants.items())
            raise MedprobeUsageError(
                f"{path}: label column {column!r} spells one class several ways: {named}. Write each class one way."
            )
    names = _class_order(path.parent, set(cells)) or sorted(
        set(cells), key=lambda name: (0, float(name), name) if _is_number(name) else (1, 0.0, name)
    )
    if len(names) < 2:
        raise DatasetError(
            f"{path}: label column {column!r} holds one class only ({names[0]!r}, {len(cells)} rows); "
            "a probe needs at least 2 classes."
        )
    index = {name: label for label, name in enumerate(names)}
    return tuple(names), np.array([index[cell] for cell in cells], dtype=np.int64)


def _class_order(folder: Path, present: set[str]) -> list[str] | None:
    """The class order of ``classes.txt`` (one class a line), when the CSV's folder has one.

    The order of the prompt's options: a model trained or benchmarked on one order is asked
    in that order. Every listed class must have images and every label must be listed.
    """
    path = folder / CLASSES_FILE
    if not path.is_file():
        return None
    try:
        listed = [line.strip() for line in path.read_text(encoding="utf-8-sig").splitlines() if line.strip()]
    except (OSError, UnicodeDecodeError) as exc:
        raise DatasetError(f"{path}: cannot read the class order ({exc}); save it as UTF-8 text.") from None
    empty = [name for name in listed if name not in present]
    unlisted = sorted(present - set(listed))
    if empty or unlisted:
        problem = f"class(es) {empty} have no images" if empty else f"label(s) {unlisted} are not listed"
        raise DatasetError(
            f"{path}: {problem}; list each class of the label column once, in the order the question should "
            "offer them (or delete the file to have them sorted)."
        )
    return list(dict.fromkeys(listed))


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _split_rows(manifest: Manifest, labels: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray, bool]:
    """Fit and test row indices: the ``split`` column's, else a stratified split."""
    column = manifest.split_column
    if column is None:
        fit, test = stratified_split(labels, TEST_FRACTION, seed)
        return fit, test, False
    values = [cell.strip().lower() for cell in manifest.columns[column]]
    allowed = (FIT_SPLIT, TEST_SPLIT, *UNUSED_SPLITS)
    unknown = sorted({value for value in values if value not in allowed})
    if unknown:
        raise DatasetError(f"{manifest.path}: split column {column!r} holds {unknown}; allowed: {', '.join(allowed)}.")
    fit = np.array([row for row, value in enumerate(values) if value == FIT_SPLIT], dtype=np.int64)
    test = np.array([row for row, value in enumerate(values) if value == TEST_SPLIT], dtype=np.int64)
    for name, rows in ((FIT_SPLIT, fit), (TEST_SPLIT, test)):
        if len(rows) == 0:
            raise DatasetError(
                f"{manifest.path}: split column {column!r} has no {name!r} rows; give both train and test rows, "
                "or drop the column to have a stratified split drawn."
            )
    return fit, test, True


def manifest_findings(spec: str, options: DatasetOptions) -> tuple[str, ...] | None:
    """The findings of a multi-label manifest; None when it has a label column."""
    manifest = scan_manifest(spec, options)
    return manifest.findings if manifest.multi_label else None


def _modality(folder: Path) -> str:
    path = folder / MODALITY_FILE
    if not path.is_file():
        return DEFAULT_MODALITY
    try:
        lines = [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    except (OSError, UnicodeDecodeError) as exc:
        raise DatasetError(f"{path}: cannot read the modality word ({exc}); save it as UTF-8 text.") from None
    return lines[0] if lines else DEFAULT_MODALITY


def load_csv(
    spec: str, finding: str | None, options: DatasetOptions, max_samples: int | None, seed: int
) -> ProbeDataset:
    """Read the manifest of ``spec`` (one finding of it when multi-label), each split capped, seed-fixed."""
    manifest = scan_manifest(spec, options)
    if manifest.multi_label:
        if finding is None or finding not in manifest.findings:
            raise MedprobeUsageError(
                f"dataset {spec!r}: a multi-label manifest (findings: {', '.join(manifest.findings)}); "
                f"audit one finding at a time with {mention('findings')}=NAME."
            )
        class_names: tuple[str, ...] = FINDING_CLASSES
        labels = np.array([BINARY_VALUES[cell.strip()] for cell in manifest.columns[finding]], dtype=np.int64)
        label_identity: object = {"finding": finding}
    else:
        class_names, labels = _class_labels(manifest, str(manifest.label_column))
        label_identity = {"label_column": manifest.label_column, "classes": list(class_names)}
    groups = {column: subgroup_values(manifest.path, column, manifest.columns[column]) for column in options.subgroups}
    fit_rows, test_rows, own_split = _split_rows(manifest, labels, seed)
    fit_rows = fit_rows[stratified_cap(labels[fit_rows], max_samples, seed)]
    test_rows = test_rows[stratified_cap(labels[test_rows], max_samples, seed)]
    modality = _modality(manifest.path.parent)
    identity = {
        "dataset": "csv",
        "csv_sha256": file_sha256(manifest.path),
        "image_column": manifest.image_column,
        "labels": label_identity,
        "split": "own" if own_split else {"seed": seed, "test_fraction": TEST_FRACTION},
        "modality": modality,
        # Content, not names: a re-exported image with new bytes gives a new fingerprint.
        "fit": [file_sha256(manifest.files[row]) for row in fit_rows],
        "test": [file_sha256(manifest.files[row]) for row in test_rows],
    }
    # One reader for every format (DICOM included), as folder datasets use.
    images, notes = read_images([manifest.files[row] for row in (*fit_rows, *test_rows)])
    return ProbeDataset(
        name=finding_task(spec, finding),
        class_names=class_names,
        modality=modality,
        fit_images=images[: len(fit_rows)],
        fit_labels=labels[fit_rows],
        test_images=images[len(fit_rows) :],
        test_labels=labels[test_rows],
        source=str(manifest.path),
        fingerprint=compute_fingerprint(identity, fit_rows, test_rows),
        finding=finding,
        test_subgroups={column: tuple(values[row] for row in test_rows) for column, values in groups.items()},
        notes=notes,
    )


def short_name(spec: str) -> str:
    return csv_path(spec).stem
