"""Failure mode 4: misalignment of semantic mapping (metrics.md §3).

What the model holds at the answer position it must also say: the probe at the last
decoder layer's answer position and the model's own answer differ by at most
max_semantic_gap.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pytest_medprobe.failure_modes import AuditVerdicts, Verdict


def test_semantic_mapping(verdicts: AuditVerdicts, check_verdict: Callable[[Verdict], None]) -> None:
    check_verdict(verdicts.semantic_mapping)
