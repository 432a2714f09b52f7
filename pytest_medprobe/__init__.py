"""pytest-medprobe: probe a medical multimodal LLM layer by layer and audit where it loses a diagnosis.

The public API (everything else is private):

- ``probe(model, processor, dataset, ...) -> ProbeReport``: probe a model (in memory, or a
  name or folder as ``--model`` takes it) on a dataset from plain Python, no pytest;
  ``reference_checkpoint()`` is the tiny reference model shipped in the package.
- Datasets: a ``--dataset`` string, ``load_dataset(spec, ...)``, or
  ``dataset_from_arrays(...)`` for images already in memory (both give a ``ProbeDataset``).
- ``make_verdict`` (keyword-only) makes a ``Verdict`` that ``check_verdict`` reports like a
  shipped audit; ``FailureMode`` with ``register_failure_mode`` adds a failure mode;
  ``Thresholds`` holds the audit thresholds.
- ``FamilyAdapter`` (say where a model's stages live) with ``register_family`` (make
  pytest-medprobe use it), for in-house architectures.
- ``ProbeCurve`` and ``HealthScores``: the numbers every audit reads.

Names are imported on first use, so importing the package (as pytest does for
``--help``) stays light.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pytest_medprobe.api import ProbeReport, probe, reference_checkpoint
    from pytest_medprobe.curve import ProbeCurve
    from pytest_medprobe.data import load_dataset
    from pytest_medprobe.data.arrays import dataset_from_arrays
    from pytest_medprobe.data.base import ProbeDataset
    from pytest_medprobe.failure_modes import AuditVerdicts, FailureMode, register_failure_mode
    from pytest_medprobe.health import HealthScores
    from pytest_medprobe.models.base import FamilyAdapter
    from pytest_medprobe.models.families import register_family
    from pytest_medprobe.thresholds import Thresholds
    from pytest_medprobe.verdict import Verdict, make_verdict

from pytest_medprobe._version import __version__

# name -> the module that defines it
_PUBLIC = {
    "ProbeDataset": "pytest_medprobe.data.base",
    "ProbeReport": "pytest_medprobe.api",
    "dataset_from_arrays": "pytest_medprobe.data.arrays",
    "load_dataset": "pytest_medprobe.data",
    "probe": "pytest_medprobe.api",
    "reference_checkpoint": "pytest_medprobe.api",
    "AuditVerdicts": "pytest_medprobe.failure_modes",
    "FailureMode": "pytest_medprobe.failure_modes",
    "FamilyAdapter": "pytest_medprobe.models.base",
    "HealthScores": "pytest_medprobe.health",
    "ProbeCurve": "pytest_medprobe.curve",
    "Thresholds": "pytest_medprobe.thresholds",
    "Verdict": "pytest_medprobe.verdict",
    "make_verdict": "pytest_medprobe.verdict",
    "register_failure_mode": "pytest_medprobe.failure_modes",
    "register_family": "pytest_medprobe.models.families",
}
__all__ = [
    "AuditVerdicts",
    "ProbeDataset",
    "ProbeReport",
    "dataset_from_arrays",
    "load_dataset",
    "probe",
    "reference_checkpoint",
    "FailureMode",
    "FamilyAdapter",
    "HealthScores",
    "ProbeCurve",
    "Thresholds",
    "Verdict",
    "__version__",
    "make_verdict",
    "register_failure_mode",
    "register_family",
]


def __getattr__(name: str) -> Any:
    if name in _PUBLIC:
        return getattr(import_module(_PUBLIC[name]), name)
    raise AttributeError(f"module 'pytest_medprobe' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
