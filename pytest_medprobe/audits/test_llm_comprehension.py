"""Failure mode 3: comprehension deficit in LLM reasoning (metrics.md §3).

No decoder layer may drop the image signal (image view), and the decoder must carry
it to the answer position: score(connector) - score(last layer @answer) stays within
max_llm_loss.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pytest_medprobe.failure_modes import AuditVerdicts, Verdict


def test_llm_comprehension(verdicts: AuditVerdicts, check_verdict: Callable[[Verdict], None]) -> None:
    check_verdict(verdicts.llm_comprehension)
