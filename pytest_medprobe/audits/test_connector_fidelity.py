"""Failure mode 2: fidelity loss in connector projection (metrics.md §3).

The projector must hand the LLM the signal the vision encoder produced:
score(vision) - score(connector) stays within max_connector_loss.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pytest_medprobe.failure_modes import AuditVerdicts, Verdict


def test_connector_fidelity(verdicts: AuditVerdicts, check_verdict: Callable[[Verdict], None]) -> None:
    check_verdict(verdicts.connector_fidelity)
