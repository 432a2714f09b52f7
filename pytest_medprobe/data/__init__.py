"""The labelled image sets pytest-medprobe audits on, by the name a user gives.

Five forms: ``synthetic-lesions`` (embedded, generated), ``medmnist:<flag>[_<size>]``
(a MedMNIST file on disk, downloaded when missing), ``folder:<dir>`` (one sub-folder per
class; PNG, JPEG, TIFF, BMP or DICOM files, decoded by ``data.images``), ``csv:<file>`` (a
manifest of image paths and labels) and ``hf:<name or dir>[:<config>]`` (a Hugging Face
dataset). A multi-label set (chestmnist; a manifest with one 0/1 column per finding) is
audited one finding at a time: ``<spec>#<finding>`` names that binary task, and
``expand_findings`` turns each multi-label spec into one task per ``--medprobe-finding``.
This module parses a spec and hands it to its reader; ``check_dataset_spec`` validates it
up front without decoding images, so a typo stops the run before any model is loaded.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from pytest_medprobe.data import csv_manifest, folder, hf, medmnist, synthetic
from pytest_medprobe.data.base import (
    DatasetOptions,
    ProbeDataset,
    as_image_sequence,
    compute_fingerprint,
    finding_task,
    split_finding,
    stratified_cap,
)
from pytest_medprobe.data.images import check_decodable
from pytest_medprobe.errors import DatasetError, MedprobeUsageError
from pytest_medprobe.naming import mention

if TYPE_CHECKING:
    from pytest_medprobe.config import MedprobeSettings

__all__ = [
    "KNOWN_DATASETS",
    "DatasetOptions",
    "ProbeDataset",
    "check_dataset_spec",
    "dataset_options",
    "dataset_short_name",
    "expand_findings",
    "load_dataset",
]

KNOWN_DATASETS: tuple[str, ...] = (
    synthetic.NAME,
    f"{medmnist.PREFIX}<flag>[_<size>] with flag one of {', '.join(medmnist.FLAGS)} "
    f"and size one of 64, 128, 224 (no suffix: 28)",
    f"{folder.PREFIX}<dir>",
    f"{csv_manifest.PREFIX}<file>",
    f"{hf.PREFIX}<hub name or local dir>[:<config>]",
)
_WITH_FINDINGS = (medmnist.PREFIX, csv_manifest.PREFIX)  # schemes that can be multi-label
_WITH_COLUMNS = (csv_manifest.PREFIX, hf.PREFIX)  # schemes whose columns can name subgroups
_NO_OPTIONS = DatasetOptions()


def dataset_options(settings: MedprobeSettings) -> DatasetOptions:
    """What the settings say about datasets' columns."""
    return DatasetOptions(
        image_column=settings.image_column,
        label_column=settings.label_column,
        offline=settings.offline,
        subgroups=settings.subgroups,
    )


def _unknown(spec: str) -> MedprobeUsageError:
    return MedprobeUsageError(f"dataset {spec!r}: unknown dataset; known forms: {'; '.join(KNOWN_DATASETS)}.")


def _parts(spec: str) -> tuple[str, str | None]:
    """The spec without its finding, and the finding (only schemes that can be multi-label have one)."""
    return split_finding(spec) if spec.startswith(_WITH_FINDINGS) else (spec, None)


def dataset_findings(
    spec: str, data_root: Path | None, options: DatasetOptions = _NO_OPTIONS
) -> tuple[str, ...] | None:
    """The findings of a multi-label ``spec`` (without its ``#finding``); None for a single-label set."""
    try:
        if spec.startswith(medmnist.PREFIX):
            return medmnist.findings_of(spec)
        if spec.startswith(csv_manifest.PREFIX):
            return csv_manifest.manifest_findings(spec, options)
    except DatasetError as exc:  # a file the user named: a usage problem, found before the run
        raise MedprobeUsageError(f"dataset {spec!r}: {exc}") from None
    return None


def _check_finding(spec: str, finding: str, valid: tuple[str, ...] | None) -> None:
    if valid is None:
        raise MedprobeUsageError(
            f"dataset {spec!r}: names finding {finding!r}, but the dataset has one label per image, not findings."
        )
    if finding not in valid:
        raise MedprobeUsageError(
            f"dataset {spec!r}: no finding {finding!r}; its findings are: {', '.join(valid)}. "
            f"Pass one of them to {mention('findings')}."
        )


def expand_findings(
    specs: Sequence[str], findings: Sequence[str], data_root: Path | None, options: DatasetOptions = _NO_OPTIONS
) -> tuple[str, ...]:
    """Every dataset task of the run: a multi-label spec becomes one ``<spec>#<finding>`` per finding.

    Refuses a multi-label spec without findings (listing them), a finding it does not have
    (listing the valid ones), and findings when no dataset is multi-label.
    """
    tasks: list[str] = []
    multi_label = False
    for spec in specs:
        base, finding = _parts(spec)
        valid = dataset_findings(base, data_root, options)
        multi_label = multi_label or valid is not None
        if finding is not None:
            _check_finding(base, finding, valid)
            tasks.append(spec)
        elif valid is None:
            tasks.append(spec)
        elif not findings:
            raise MedprobeUsageError(
                f"dataset {spec!r}: multi-label (several findings per image), so it is audited one finding at a "
                f"time, as 'finding present / absent'. Choose with {mention('findings')}=NAME (repeatable) among: "
                f"{', '.join(valid)}."
            )
        else:
            for name in findings:
                _check_finding(spec, name, valid)
            tasks.extend(finding_task(spec, name) for name in findings)
    if findings and not multi_label:
        raise MedprobeUsageError(
            f"{mention('findings')}={', '.join(findings)}: none of the datasets ({', '.join(specs)}) is multi-label; "
            "findings are chosen from chestmnist or a CSV with one 0/1 column per finding."
        )
    return tuple(dict.fromkeys(tasks))


def check_dataset_spec(
    spec: str, data_root: Path | None, *, medmnist_url: str | None = None, options: DatasetOptions | None = None
) -> None:
    """Refuse an unusable spec with a ``MedprobeUsageError`` saying what is wrong and how to fix it.

    A missing MedMNIST file is downloaded from ``medmnist_url`` first (None: never).
    """
    options = options or _NO_OPTIONS
    base, finding = _parts(spec)
    if base == synthetic.NAME:
        return
    if base.startswith(hf.PREFIX):
        try:
            hf.check_spec(base, options)
        except DatasetError as exc:
            raise MedprobeUsageError(f"dataset {spec!r}: {exc}") from None
        return
    if base.startswith(folder.PREFIX):
        try:
            layout = folder.scan_folder(base)
        except DatasetError as exc:  # a folder the user named: a usage problem, found before the run
            raise MedprobeUsageError(f"dataset {spec!r}: {exc}") from None
        try:
            check_decodable(layout.fit_files + (layout.test_files or ()))
        except MedprobeUsageError as exc:
            raise MedprobeUsageError(f"dataset {spec!r}: {exc}") from None
        return
    if not base.startswith(_WITH_FINDINGS):
        raise _unknown(spec)
    valid = dataset_findings(base, data_root, options)  # scans a manifest, too
    if finding is not None:
        _check_finding(base, finding, valid)
    elif valid is not None:
        expand_findings([spec], (), data_root, options)  # raises, listing the findings
    if base.startswith(medmnist.PREFIX):
        medmnist.check_spec(base, data_root, medmnist_url)
    else:
        try:
            check_decodable(csv_manifest.scan_manifest(base, options).files)
        except MedprobeUsageError as exc:
            raise MedprobeUsageError(f"dataset {spec!r}: {exc}") from None


def has_columns(spec: str) -> bool:
    """Whether ``spec`` names a dataset with columns (where subgroups come from)."""
    return _parts(spec)[0].startswith(_WITH_COLUMNS)


def load_dataset(
    spec: str,
    *,
    data_root: Path | None,
    max_samples: int | None,
    seed: int,
    options: DatasetOptions | None = None,
    hash_memo: Path | None = None,
) -> ProbeDataset:
    """The dataset of ``spec``, each split capped to ``max_samples`` (stratified, seed-fixed).

    ``options.subgroups`` apply to datasets with columns (csv:, hf:); the others have no subgroups.
    Files are identified by content (``files.content_sha256s``); ``hash_memo`` is the folder
    (the feature cache) where their hashes are remembered between runs.
    """
    options = options or _NO_OPTIONS
    base, finding = _parts(spec)
    if base.startswith(hf.PREFIX):
        return hf.load_hf(base, options, max_samples, seed)
    if base.startswith(medmnist.PREFIX):
        return medmnist.load_medmnist(base, data_root, max_samples, seed, finding, hash_memo)
    if base.startswith(csv_manifest.PREFIX):
        return csv_manifest.load_csv(base, finding, options, max_samples, seed)
    if base.startswith(folder.PREFIX):
        return folder.load_folder(base, max_samples, seed, hash_memo)
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
    """A short, id-friendly name: ``synthetic-lesions``, ``breastmnist_64``, a folder's or CSV's name;
    a finding task adds its finding (``chestmnist-effusion``)."""
    base, finding = _parts(spec)
    if base.startswith(medmnist.PREFIX):
        short = medmnist.parse_spec(base).short_name
    elif base.startswith(csv_manifest.PREFIX):
        short = csv_manifest.short_name(base)
    elif base.startswith(folder.PREFIX):
        path = folder.folder_path(base)
        short = path.name or path.resolve().name
    elif base.startswith(hf.PREFIX):
        short = hf.parse_spec(base).short_name
    else:
        short = base
    return short if finding is None else f"{short}-{'-'.join(finding.split())}"
