"""Checks made before anything loads: the models and datasets named, the files a run will write.

An output path that cannot be written (a folder, a place under a file, a read-only
folder) or a baseline file that cannot be used would otherwise surface as a traceback
after every audit had run, with the extraction's hours spent. Each problem is a
``MedprobeUsageError`` naming the option that gave the path.
"""

from __future__ import annotations

import os
from pathlib import Path

from pytest_medprobe.config import MedprobeSettings
from pytest_medprobe.errors import MedprobeUsageError
from pytest_medprobe.naming import mention, mention_full


def check_writable_file(setting: str, path: Path) -> None:
    """Refuse ``path`` unless a file can be written there (its folders may still be missing)."""
    if path.is_dir():
        raise MedprobeUsageError(
            f"{mention_full(setting)}: {path} is a folder; give the path of a file in it, e.g. {path / 'out.json'}."
        )
    ancestor = path.parent
    while not ancestor.exists() and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise MedprobeUsageError(
            f"{mention_full(setting)}: cannot write {path}: {ancestor} is a file, not a folder. Choose another path."
        )
    if not os.access(ancestor, os.W_OK | os.X_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise MedprobeUsageError(
            f"{mention_full(setting)}: cannot write {path}: {ancestor if not path.exists() else path} is not "
            "writable for this user. Choose a writable path, or fix the permissions."
        )


def check_outputs(settings: MedprobeSettings, invocation_dir: Path) -> None:
    """Check every output path and baseline file of ``settings`` (``MedprobeUsageError``)."""
    if settings.json_path is not None:
        path = settings.json_path if settings.json_path.is_absolute() else invocation_dir / settings.json_path
        check_writable_file("json_path", path)
    if settings.save_baseline_path is None and settings.baseline_path is None:
        return
    from pytest_medprobe.baseline import read_baseline

    if settings.save_baseline_path is not None:
        check_writable_file("save_baseline_path", settings.save_baseline_path)
        read_baseline(settings.save_baseline_path, "save_baseline_path")  # it is updated, so it must be sound
    if settings.baseline_path is not None:
        read_baseline(settings.baseline_path, "baseline_path")


def check_datasets(settings: MedprobeSettings) -> MedprobeSettings:
    """Check every ``--dataset`` before anything loads (``MedprobeUsageError``); returns the
    settings with each multi-label dataset expanded into one task per ``--medprobe-finding``."""
    from dataclasses import replace

    from pytest_medprobe.data import check_dataset_spec, dataset_options, expand_findings, has_columns
    from pytest_medprobe.errors import MedprobeUsageError

    options = dataset_options(settings)
    datasets = expand_findings(settings.datasets, settings.findings, settings.data_root, options)
    for dataset in datasets:
        check_dataset_spec(dataset, settings.data_root, medmnist_url=settings.medmnist_url, options=options)
    if settings.subgroups and not any(map(has_columns, datasets)):
        raise MedprobeUsageError(
            f"{mention('subgroups')}={', '.join(settings.subgroups)}: subgroups are columns of a csv: or "
            "hf: dataset, and "
            f"none of the datasets ({', '.join(datasets)}) has columns."
        )
    return replace(settings, datasets=datasets)


def check_sources(settings: MedprobeSettings) -> MedprobeSettings:
    """Check every ``--model`` and ``--dataset`` before anything loads (``MedprobeUsageError``);
    returns the settings with the run's dataset tasks (``check_datasets``)."""
    from pytest_medprobe.models.registry import check_distinct_names, check_model_spec

    for model in settings.models:
        check_model_spec(model, settings.trust_remote_code, offline=settings.offline)
    check_distinct_names(settings.models)
    return check_datasets(settings)
