"""Regression against a baseline (release gating): the candidate must not be worse than the
release it replaces, on health or on any failure-mode statistic, by more than the
tolerance, judged on the paired bootstrap interval of the difference.

Runs with ``--medprobe-baseline PATH``; skips without one, and skips a pair that has no
entry (``--medprobe-baseline-required`` fails it instead).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import pytest

from pytest_medprobe.baseline import STATISTICS

if TYPE_CHECKING:
    from pytest_medprobe.baseline import BaselineComparison
    from pytest_medprobe.failure_modes import Verdict


@pytest.mark.parametrize("statistic", STATISTICS)
def test_regression(baseline: BaselineComparison, check_verdict: Callable[[Verdict], None], statistic: str) -> None:
    check_verdict(baseline.verdict(statistic))
