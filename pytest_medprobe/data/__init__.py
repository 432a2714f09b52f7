"""The labelled image sets pytest-medprobe audits on, by the name a user gives.

Four forms: ``synthetic-lesions`` (embedded, generated), ``medmnist:<flag>[_<size>]``
(a MedMNIST file on disk, downloaded when missing), ``folder:<dir>`` (one sub-folder per
class; PNG, JPEG, TIFF, BMP or DICOM files, decoded by ``data.images``) and
``hf:<name or dir>[:<config>]`` (a Hugging Face dataset). This module parses a spec and
hands it to its reader; ``check_dataset_spec`` validates it up front without decoding
images, so a typo stops the run before any model is loaded.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from pytest_medprobe.data import folder, hf, medmnist, synthetic
from pytest_medprobe.data.base import (
    DatasetOptions,
    ProbeDataset,
    as_image_sequence,
    compute_fingerprint,
    stratified_cap,
)
from pytest_medprobe.data.images import check_decodable
from pytest_medprobe.errors import DatasetError, MedprobeUsageError

if TYPE_CHECKING:
    from pytest_medprobe.config import MedprobeSettings

__all__ = [
    "KNOWN_DATASETS",
    "DatasetOptions",
    "ProbeDataset",
    "check_dataset_spec",
    "dataset_options",
    "dataset_short_name",
    "load_dataset",
]

KNOWN_DATASETS: tuple[str, ...] = (
    synthetic.NAME,
    f"{medmnist.PREFIX}<flag>[_<size>] with flag one of {', '.join(medmnist.MULTI_CLASS_FLAGS)} "
    f"and size one of 64, 128, 224 (no suffix: 28)",
    f"{folder.PREFIX}<dir>",
    f"{hf.PREFIX}<hub name or local dir>[:<config>]",
)


def dataset_options(settings: MedprobeSettings) -> DatasetOptions:
    """What the settings say about datasets' columns."""
    return DatasetOptions(
        image_column=settings.image_column, label_column=settings.label_column, offline=settings.offline
    )


def _unknown(spec: str) -> MedprobeUsageError:
    return MedprobeUsageError(f"dataset {spec!r}: unknown dataset; known forms: {'; '.join(KNOWN_DATASETS)}.")


def check_dataset_spec(
    spec: str, data_root: Path | None, *, medmnist_url: str | None = None, options: DatasetOptions | None = None
) -> None:
    """Refuse an unusable spec with a ``MedprobeUsageError`` saying what is wrong and how to fix it.

    A missing MedMNIST file is downloaded from ``medmnist_url`` first (None: never).
    """
    if spec == synthetic.NAME:
        return
    if spec.startswith(hf.PREFIX):
        try:
            hf.check_spec(spec, options or DatasetOptions())
        except DatasetError as exc:
            raise MedprobeUsageError(f"dataset {spec!r}: {exc}") from None
        return
    if spec.startswith(medmnist.PREFIX):
        medmnist.check_spec(spec, data_root, medmnist_url)
    elif spec.startswith(folder.PREFIX):
        try:
            layout = folder.scan_folder(spec)
        except DatasetError as exc:  # a folder the user named: a usage problem, found before the run
            raise MedprobeUsageError(f"dataset {spec!r}: {exc}") from None
        try:
            check_decodable(layout.fit_files + (layout.test_files or ()))
        except MedprobeUsageError as exc:
            raise MedprobeUsageError(f"dataset {spec!r}: {exc}") from None
    else:
        raise _unknown(spec)


def load_dataset(
    spec: str,
    *,
    data_root: Path | None,
    max_samples: int | None,
    seed: int,
    options: DatasetOptions | None = None,
) -> ProbeDataset:
    """The dataset of ``spec``, each split capped to ``max_samples`` (stratified, seed-fixed)."""
    if spec.startswith(hf.PREFIX):
        return hf.load_hf(spec, options or DatasetOptions(), max_samples, seed)
    if spec.startswith(medmnist.PREFIX):
        return medmnist.load_medmnist(spec, data_root, max_samples, seed)
    if spec.startswith(folder.PREFIX):
        return folder.load_folder(spec, max_samples, seed)
    if spec != synthetic.NAME:
        raise _unknown(spec)
    full = synthetic.make_synthetic_lesions(seed)
    fit_rows = stratified_cap(full.fit_labels, max_samples, seed)
    test_rows = stratified_cap(full.test_labels, max_samples, seed)
    return ProbeDataset(
        name=spec,
        class_names=full.class_names,
        modality=full.modality,
        fit_images=as_image_sequence(np.asarray(full.fit_images)[fit_rows]),
        fit_labels=full.fit_labels[fit_rows],
        test_images=as_image_sequence(np.asarray(full.test_images)[test_rows]),
        test_labels=full.test_labels[test_rows],
        source=full.source,
        fingerprint=compute_fingerprint({"full": full.fingerprint}, fit_rows, test_rows),
    )


def dataset_short_name(spec: str) -> str:
    """A short, id-friendly name: ``synthetic-lesions``, ``breastmnist``, ``breastmnist_64``, a folder's name."""
    if spec.startswith(medmnist.PREFIX):
        return medmnist.parse_spec(spec).short_name
    if spec.startswith(folder.PREFIX):
        path = folder.folder_path(spec)
        return path.name or path.resolve().name
    if spec.startswith(hf.PREFIX):
        return hf.parse_spec(spec).short_name
    return spec
