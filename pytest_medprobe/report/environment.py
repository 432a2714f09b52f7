"""The record that makes a results file self-explaining: software versions, the resolved
settings, and the command that produced it (``python -m pytest_medprobe rerun`` replays it).

Versions are read from the installed distributions' metadata; torch is imported only
for its CUDA build and GPUs, and only when the run audited something (torch is loaded by
then in the process that computed it).
"""

from __future__ import annotations

import platform
import shlex
import sys
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pytest_medprobe.config import MedprobeSettings

DISTRIBUTIONS = ("pytest-medprobe", "torch", "transformers", "numpy", "scikit-learn", "pytest", "pytest-html")


def _version(distribution: str) -> str | None:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return None


def environment_record() -> dict[str, Any]:
    """Python, the versions of the libraries that shape the numbers, and the CUDA build."""
    import torch

    versions = {name: _version(name) for name in DISTRIBUTIONS}
    cuda_available = bool(torch.cuda.is_available())
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "versions": versions,
        "cuda": {
            "torch_build": torch.version.cuda,  # None for a CPU-only torch build
            "available": cuda_available,
            "devices": [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
            if cuda_available
            else [],
        },
    }


def _probe_record(settings: MedprobeSettings) -> dict[str, Any]:
    """How probes were fit; the cross-validation and device keys only where they were set, so
    that the record of a run with the defaults reads as it always has."""
    record: dict[str, Any] = {"backend": settings.probe_backend, "c": settings.probe_c}
    if settings.probe_c_grid:
        from pytest_medprobe.cv import tolerance

        record.update(
            c_grid=list(settings.probe_c_grid),
            cv_folds=settings.probe_cv_folds,
            tolerance=tolerance(cross_validated=True),
        )
    if settings.probe_device != "auto":
        record["device_requested"] = settings.probe_device
    record["n_bootstrap"] = settings.n_bootstrap
    return record


def settings_record(settings: MedprobeSettings) -> dict[str, Any]:
    """Every resolved setting (command line > ini > default) that can change a number or a verdict."""
    return {
        "models": list(settings.models),
        "datasets": list(settings.datasets),
        "data_root": None if settings.data_root is None else str(settings.data_root),
        "seed": settings.seed,
        "max_samples": settings.max_samples,
        "batch_size": settings.batch_size,
        "device_requested": settings.device,
        "dtype_requested": settings.dtype,
        "answer_mode": settings.answer_mode,
        "max_new_tokens": settings.max_new_tokens,
        "decision": settings.decision,
        "thresholds": settings.thresholds.as_dict(),
        "probe": _probe_record(settings),
        "baseline": None if settings.baseline_path is None else str(settings.baseline_path),
        "label": settings.label,
        "tolerance": settings.tolerance,
        "trust_remote_code": settings.trust_remote_code,
        "cache_dir": str(settings.cache_dir),
    }


def command_record(args: Sequence[str], invocation_dir: Path) -> dict[str, Any]:
    """The exact pytest command line and where it ran."""
    arguments = [str(argument) for argument in args]
    return {
        "args": arguments,
        "invocation_dir": str(invocation_dir),
        "python": sys.executable,
        "line": shlex.join(["python", "-m", "pytest", *arguments]),
    }


def run_context(settings: MedprobeSettings, args: Sequence[str], invocation_dir: Path) -> dict[str, Any]:
    """The run-wide part of the results file."""
    return {
        "environment": environment_record(),
        "settings": settings_record(settings),
        "command": command_record(args, invocation_dir),
    }


def environment_rows(context: dict[str, Any], records: Sequence[dict[str, Any]]) -> dict[str, str]:
    """The rows this run adds to the HTML report's environment table."""
    environment, settings = context["environment"], context["settings"]
    versions = environment["versions"]
    thresholds = ", ".join(f"{name}={value}" for name, value in settings["thresholds"].items())
    probe = settings["probe"]
    cuda = environment["cuda"]
    rows = {
        "medprobe: pytest-medprobe": str(versions["pytest-medprobe"]),
        "medprobe: torch": str(versions["torch"]),
        "medprobe: transformers": str(versions["transformers"]),
        "medprobe: Python": environment["python"],
        "medprobe: CUDA": f"{cuda['torch_build'] or 'none (CPU build)'}; "
        f"{', '.join(cuda['devices']) if cuda['devices'] else 'no GPU visible'}",
        "medprobe: seed": str(settings["seed"]),
        "medprobe: decision rule": settings["decision"],
        "medprobe: thresholds": thresholds,
        "medprobe: probes": f"backend={probe['backend']}, C={probe['c']}, bootstrap={probe['n_bootstrap']}",
        "medprobe: command": context["command"]["line"],
    }
    for record in records:
        name = f"{record['model']['name']} × {record['dataset']['name']}"
        features = record["features"]
        rows[f"medprobe: {name}"] = (
            f"model {record['model']['fingerprint'][:16]}, dataset {record['dataset']['fingerprint'][:16]}, "
            f"device {features.get('device') or 'not recorded'}, dtype {features.get('dtype') or 'not recorded'}"
        )
    return rows
