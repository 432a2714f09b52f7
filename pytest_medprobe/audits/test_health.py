"""Feature-evolution health (metrics.md §5): one number for the whole pipeline.

Fails below min_health and names the weakest of fidelity, stability, retention and
alignment.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pytest_medprobe.failure_modes import AuditVerdicts, Verdict


def test_health(verdicts: AuditVerdicts, check_verdict: Callable[[Verdict], None]) -> None:
    check_verdict(verdicts.health)
