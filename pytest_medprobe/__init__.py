"""pytest-medprobe: probe a medical multimodal LLM layer by layer and audit where it loses a diagnosis.

The public API (everything else is private):

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
    from pytest_medprobe.curve import ProbeCurve
    from pytest_medprobe.failure_modes import AuditVerdicts, FailureMode, register_failure_mode
    from pytest_medprobe.health import HealthScores
    from pytest_medprobe.models.base import FamilyAdapter
    from pytest_medprobe.models.families import register_family
    from pytest_medprobe.thresholds import Thresholds
    from pytest_medprobe.verdict import Verdict, make_verdict

__version__ = "0.1.0"

# name -> the module that defines it
_PUBLIC = {
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
