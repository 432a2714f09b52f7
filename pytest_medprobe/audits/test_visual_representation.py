"""Failure mode 1: quality limitation in visual representation (metrics.md §3).

The vision encoder must carry more diagnostic signal than the raw pixels it starts
from; a connector and an LLM cannot recover what the encoder never encoded.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pytest_medprobe.failure_modes import AuditVerdicts, Verdict


def test_visual_representation(verdicts: AuditVerdicts, check_verdict: Callable[[Verdict], None]) -> None:
    check_verdict(verdicts.visual_representation)
