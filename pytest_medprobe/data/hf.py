"""``hf:<name or path>[:<config>]``: a Hugging Face ``datasets`` dataset as a probe dataset.

Three sources, tried in this order: a directory written by ``save_to_disk`` (it holds
``dataset_dict.json`` or ``state.json``), any other local directory or data file that
``datasets.load_dataset`` reads (parquet, an ``imagefolder`` of class sub-folders, CSV/JSON
with image paths), and a dataset on the hub, read from the local cache when offline.

Columns: the image column is the one ``Image`` feature (or ``--medprobe-image-column``,
which may also name a column of file paths); the label column is the one ``ClassLabel``
feature, whose names become the class names, else a column named like a label (or
``--medprobe-label-column``), whose sorted distinct values become the class names.
Splits: ``train`` fits the probes; ``test``, else ``validation``, scores them; a dataset
with a single split is split here (stratified 70/30, seed-fixed). Images are decoded by
``data.images`` (so DICOM cells work too). The fingerprint hashes content only: every label,
the bytes of every selected decoded image, the class names and how the split was made;
never a path, a dataset name or a time. ``datasets`` is imported here only, on first use.
"""

from __future__ import annotations

import hashlib
import warnings
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from pytest_medprobe.data.base import (
    DatasetOptions,
    ProbeDataset,
    compute_fingerprint,
    stratified_cap,
    stratified_split,
    subgroup_values,
)
from pytest_medprobe.data.images import DecodedImage, decode_image, decode_image_bytes, multi_frame_note
from pytest_medprobe.errors import DatasetError, MedprobeUsageError
from pytest_medprobe.naming import mention

if TYPE_CHECKING:
    from datasets import Dataset, DatasetDict

PREFIX = "hf:"
FIT_SPLIT = "train"
TEST_SPLITS = ("test", "validation", "valid", "val")
TEST_FRACTION = 0.3
DEFAULT_MODALITY = "medical"
SAVED_MARKERS = ("dataset_dict.json", "state.json")  # what save_to_disk writes
# Column names taken as the label when no ClassLabel feature says so (compared lower-case).
LABEL_NAMES = ("label", "labels", "class", "class_name", "diagnosis", "target", "finding")


@dataclass(frozen=True)
class HfSpec:
    source: str  # a hub name, or the local path as written
    config: str | None
    local: Path | None  # the directory or file, when the source is local

    @property
    def short_name(self) -> str:
        name = self.local.resolve().name if self.local is not None else self.source.rsplit("/", 1)[-1]
        return f"{name}-{self.config}" if self.config else name


def parse_spec(spec: str) -> HfSpec:
    """``hf:<path or name>[:<config>]``; a path that exists wins over reading ``:x`` as a config."""
    body = spec.removeprefix(PREFIX).strip()
    if not body:
        raise MedprobeUsageError(f"dataset {spec!r}: nothing after hf:; write hf:<hub name or local path>[:<config>].")
    if Path(body).expanduser().exists():
        return HfSpec(body, None, Path(body).expanduser())
    head, sep, tail = body.rpartition(":")
    if sep and head and tail and "/" not in tail:
        source, config = head, tail
    else:
        source, config = body, None
    local = Path(source).expanduser()
    if local.exists():
        return HfSpec(source, config, local)
    if source.startswith((".", "/", "~")) or source.count("/") > 1 or "\\" in source:
        raise MedprobeUsageError(
            f"dataset {spec!r}: no dataset at {local.resolve()}; hf: takes a folder written by save_to_disk, "
            "a local parquet/imagefolder folder, or a hub name like org/name."
        )
    return HfSpec(source, config, None)


@contextmanager
def _hub_offline(offline: bool) -> Iterator[None]:
    """Offline mode for the hub client while ``offline`` (``--medprobe-offline``), restored after.

    ``datasets`` and ``huggingface_hub`` read HF_HUB_OFFLINE once, at import; their module
    flags are what they consult on each call.
    """
    if not offline:
        yield
        return
    import datasets.config
    from huggingface_hub import constants

    before = (datasets.config.HF_HUB_OFFLINE, constants.HF_HUB_OFFLINE)
    datasets.config.HF_HUB_OFFLINE = constants.HF_HUB_OFFLINE = True
    try:
        yield
    finally:
        datasets.config.HF_HUB_OFFLINE, constants.HF_HUB_OFFLINE = before


def _open(parsed: HfSpec, spec: str, offline: bool = False) -> DatasetDict | Dataset:
    """The dataset of ``parsed``; a hub dataset that is not cached offline is a usage error."""
    try:
        import datasets
    except ImportError:
        raise MedprobeUsageError(
            f"dataset {spec!r}: hf: datasets are read with the Hugging Face `datasets` package, which is not "
            "installed; pip install 'pytest-medprobe[hf]' (or pip install datasets)."
        ) from None

    with warnings.catch_warnings():
        # datasets warns about its own deprecations; under ``-W error`` they would stop an
        # audit the data itself does not stop.
        warnings.simplefilter("ignore")
        if parsed.local is not None:
            if parsed.local.is_dir() and any((parsed.local / marker).is_file() for marker in SAVED_MARKERS):
                try:
                    return datasets.load_from_disk(str(parsed.local))
                except (OSError, ValueError, KeyError) as exc:
                    raise DatasetError(f"{parsed.local}: cannot read the saved dataset ({exc}).") from None
            try:
                return datasets.load_dataset(str(parsed.local), parsed.config)
            except (OSError, ValueError, KeyError, TypeError) as exc:
                raise MedprobeUsageError(
                    f"dataset {spec!r}: datasets cannot read {parsed.local.resolve()} ({type(exc).__name__}: {exc}). "
                    "Give a folder written by save_to_disk, or one of parquet files or class sub-folders of images."
                ) from None
        try:
            with _hub_offline(offline):
                return datasets.load_dataset(parsed.source, parsed.config)
        except ConnectionError as exc:  # offline (HF_HUB_OFFLINE) and not in the cache
            raise MedprobeUsageError(
                f"dataset {spec!r}: {parsed.source} is not cached on this machine and the hub cannot be reached "
                f"({exc}). Run once online (without {mention('offline')} or HF_HUB_OFFLINE), or download it with "
                f"`hf download --repo-type dataset {parsed.source}`, or save it to a folder and pass hf:<folder>."
            ) from None
        except (OSError, ValueError) as exc:  # not found on the hub, a bad config, a gated set
            raise MedprobeUsageError(f"dataset {spec!r}: cannot load {parsed.source} ({type(exc).__name__}: {exc}).")


def _splits(loaded: DatasetDict | Dataset) -> dict[str, Dataset]:
    from datasets import Dataset

    if isinstance(loaded, Dataset):
        return {"": loaded}
    return dict(loaded.items())


def _fit_split(splits: Mapping[str, Dataset], spec: str) -> str:
    if FIT_SPLIT in splits:
        return FIT_SPLIT
    if len(splits) == 1:
        return next(iter(splits))
    raise MedprobeUsageError(
        f"dataset {spec!r}: splits {', '.join(sorted(splits))}; expected 'train' (fits the probes) with 'test' or "
        "'validation' (scores them), or a single split (split here 70/30)."
    )


def _hidden_labels(split: Dataset, column: str) -> bool:
    """A split whose every label is -1: benchmarks publish test splits with the labels held back."""
    from datasets import ClassLabel

    if not isinstance(split.features.get(column), ClassLabel) or len(split) == 0:
        return False
    return bool((np.asarray(split[column]) == -1).all())


def _test_split(splits: Mapping[str, Dataset], fit: str, label_column: str) -> tuple[str | None, tuple[str, ...]]:
    """The split that scores the probes (None: split the fit split here), and a note on any skipped."""
    if fit != FIT_SPLIT:
        return None, ()
    present = [name for name in TEST_SPLITS if name in splits]
    hidden = [name for name in present if _hidden_labels(splits[name], label_column)]
    usable = [name for name in present if name not in hidden]
    note = (
        (
            f"split {hidden[0]!r} has no labels (all -1, held back by its publisher); "
            f"{('split ' + repr(usable[0])) if usable else 'a 30% share of train, drawn per class'} scores the probes.",
        )
        if hidden
        else ()
    )
    return (usable[0] if usable else None), note


def _columns(features: Mapping[str, Any], options: DatasetOptions, spec: str) -> tuple[str, str]:
    """(image column, label column) from the features, or as the user named them."""
    from datasets import ClassLabel, Image

    listed = ", ".join(f"{name} ({type(feature).__name__})" for name, feature in features.items())
    for given, setting in ((options.image_column, "image_column"), (options.label_column, "label_column")):
        if given is not None and given not in features:
            raise MedprobeUsageError(
                f"dataset {spec!r}: no column {given!r} ({mention(setting)}); the columns are: {listed}."
            )
    images = [name for name, feature in features.items() if isinstance(feature, Image)]
    image = options.image_column or (images[0] if len(images) == 1 else None)
    if image is None:
        found = f"{len(images)} image columns ({', '.join(images)})" if images else "no image column"
        raise MedprobeUsageError(
            f"dataset {spec!r}: {found}; the columns are: {listed}. Name the one to audit with "
            f"{mention('image_column')}."
        )
    labels = [name for name, feature in features.items() if isinstance(feature, ClassLabel) and name != image]
    if options.label_column is not None:
        label = options.label_column
    elif len(labels) == 1:
        label = labels[0]
    else:
        named = [name for name in features if name.lower() in LABEL_NAMES and name != image]
        candidates = [name for name in labels if name.lower() in LABEL_NAMES] if labels else named
        if len(candidates) != 1:
            raise MedprobeUsageError(
                f"dataset {spec!r}: cannot tell which column is the label (columns: {listed}). "
                f"Name it with {mention('label_column')}."
            )
        label = candidates[0]
    return image, label


def _label_codes(splits: Sequence[Dataset], column: str, spec: str) -> tuple[tuple[str, ...], list[np.ndarray]]:
    """Class names, and each split's labels as int64 codes into them."""
    from datasets import ClassLabel

    feature = splits[0].features[column]
    if isinstance(feature, ClassLabel):
        codes = [np.asarray(split[column], dtype=np.int64) for split in splits]
        unlabelled = sum(int((part < 0).sum()) for part in codes)
        if unlabelled:
            raise DatasetError(
                f"dataset {spec!r}: {unlabelled} rows have no label (-1) in column {column!r}; every image needs "
                "its class. Drop them (dataset.filter) and save the dataset again."
            )
        return tuple(feature.names), codes
    raw = [list(split[column]) for split in splits]
    values = [value for part in raw for value in part]
    if any(value is None or isinstance(value, (list, dict)) for value in values):
        raise DatasetError(
            f"dataset {spec!r}: label column {column!r} holds empty or nested values (a multi-label column?); "
            "each image needs exactly one class."
        )
    distinct = sorted(set(values), key=lambda value: (str(type(value)), value))
    index = {value: code for code, value in enumerate(distinct)}
    names = tuple(str(value) for value in distinct)
    return names, [np.asarray([index[value] for value in part], dtype=np.int64) for part in raw]


def _decode_cell(cell: object, root: Path | None, where: str) -> DecodedImage:
    """One image cell: ``{"bytes", "path"}`` of an undecoded Image feature, or a file path."""
    if isinstance(cell, dict):
        if cell.get("bytes"):
            return decode_image_bytes(cell["bytes"], where)
        cell = cell.get("path")
    if isinstance(cell, str) and cell:
        path = Path(cell)
        if not path.is_absolute() and root is not None:
            path = root / path
        if not path.is_file():
            raise DatasetError(f"{where}: image file {path} does not exist.")
        return decode_image(path)
    raise DatasetError(f"{where}: holds no image ({type(cell).__name__}); every row needs one.")


def _read_images(
    split: Dataset, column: str, rows: np.ndarray, root: Path | None, where: str
) -> list[tuple[str, DecodedImage]]:
    """The images of ``rows`` of ``split``, each with the place a message would name."""
    from datasets import Image

    chosen = split.select(rows.tolist())
    if isinstance(chosen.features[column], Image):  # undecoded: our reader, not PIL's defaults
        chosen = chosen.cast_column(column, Image(decode=False))
    places = [f"{where} row {int(row)}" for row in rows]
    return [(place, _decode_cell(cell, root, place)) for place, cell in zip(places, chosen[column])]


def _where(spec: str, split: str) -> str:
    return f"dataset {spec!r}, split {split!r}" if split else f"dataset {spec!r}"


def _content_digest(labels: Sequence[np.ndarray], images: Sequence[DecodedImage]) -> str:
    """SHA-256 of every label and of each selected image as decoded (shape and pixels)."""
    digest = hashlib.sha256()
    for part in labels:
        digest.update(b"|labels|" + np.ascontiguousarray(part, dtype="<i8").tobytes())
    for image in images:
        digest.update(b"|image|" + np.asarray(image.pixels.shape, dtype="<i8").tobytes())
        digest.update(np.ascontiguousarray(image.pixels).tobytes())
    return digest.hexdigest()


def _subgroups(split: Dataset, rows: np.ndarray, options: DatasetOptions, spec: str) -> dict[str, tuple[str, ...]]:
    """Each ``--medprobe-subgroup`` column's value for ``rows`` of ``split`` (a usage error when absent)."""
    groups = {}
    for column in options.subgroups:
        if column not in split.column_names:
            raise MedprobeUsageError(
                f"dataset {spec!r}: no column {column!r} ({mention('subgroups')}); the columns are: "
                f"{', '.join(split.column_names)}."
            )
        cells = split.select_columns([column])[[int(row) for row in rows]][column]
        groups[column] = tuple(subgroup_values(f"dataset {spec!r}", column, cells))
    return groups


def check_spec(spec: str, options: DatasetOptions) -> None:
    """Up-front check: the dataset opens (or is cached), its splits and its columns are usable."""
    parsed = parse_spec(spec)
    splits = _splits(_open(parsed, spec, options.offline))
    fit = splits[_fit_split(splits, spec)]
    _columns(fit.features, options, spec)
    _subgroups(fit, np.arange(len(fit)), options, spec)  # the columns exist, with two values or more


def load_hf(spec: str, options: DatasetOptions, max_samples: int | None, seed: int) -> ProbeDataset:
    """Read the dataset of ``spec``; each split capped to ``max_samples`` (stratified, seed-fixed)."""
    parsed = parse_spec(spec)
    splits = _splits(_open(parsed, spec, options.offline))
    fit_name = _fit_split(splits, spec)
    image_column, label_column = _columns(splits[fit_name].features, options, spec)
    test_name, split_note = _test_split(splits, fit_name, label_column)
    for name in (fit_name, test_name):
        if name is not None and image_column not in splits[name].features:
            raise DatasetError(f"dataset {spec!r}: split {name!r} has no column {image_column!r}.")
    used = [splits[fit_name]] if test_name is None else [splits[fit_name], splits[test_name]]
    class_names, codes = _label_codes(used, label_column, spec)
    if test_name is None:
        fit_rows, test_rows = stratified_split(codes[0], TEST_FRACTION, seed)
        sources = [(fit_name, fit_rows), (fit_name, test_rows)]
        fit_labels, test_labels = codes[0][fit_rows], codes[0][test_rows]
    else:
        fit_labels, test_labels = codes
        fit_rows, test_rows = np.arange(len(fit_labels)), np.arange(len(test_labels))
        sources = [(fit_name, fit_rows), (test_name, test_rows)]
    fit_keep = stratified_cap(fit_labels, max_samples, seed)
    test_keep = stratified_cap(test_labels, max_samples, seed)
    root = parsed.local if parsed.local is not None and parsed.local.is_dir() else None
    decoded = [
        *_read_images(splits[sources[0][0]], image_column, sources[0][1][fit_keep], root, _where(spec, sources[0][0])),
        *_read_images(splits[sources[1][0]], image_column, sources[1][1][test_keep], root, _where(spec, sources[1][0])),
    ]
    images = [image for _, image in decoded]
    identity = {
        "dataset": "hf",
        "content": _content_digest(codes, images),
        "classes": list(class_names),
        "own_split": test_name is not None,
        "split_seed": seed,
        "test_fraction": TEST_FRACTION,
    }
    return ProbeDataset(
        name=spec,
        class_names=class_names,
        modality=DEFAULT_MODALITY,
        fit_images=[image.pixels for image in images[: len(fit_keep)]],
        fit_labels=fit_labels[fit_keep],
        test_images=[image.pixels for image in images[len(fit_keep) :]],
        test_labels=test_labels[test_keep],
        source=str(parsed.local.resolve()) if parsed.local is not None else f"hub:{parsed.source}",
        fingerprint=compute_fingerprint(identity, fit_keep, test_keep),
        notes=split_note + multi_frame_note(decoded),
        test_subgroups=_subgroups(splits[sources[1][0]], sources[1][1][test_keep], options, spec),
    )
