"""Regression against a baseline (release gating): the candidate must not be worse than the
release it replaces, on health or on any failure-mode statistic, by more than the
tolerance, judged on the paired bootstrap interval of the difference.

Runs with ``--medprobe-baseline PATH``; skips without one, and skips a pair that has no
entry (``--medprobe-baseline-required`` fails it instead).
"""

import pytest

from pytest_medprobe.baseline import STATISTICS


@pytest.mark.parametrize("statistic", STATISTICS)
def test_regression(baseline, check_verdict, statistic):
    check_verdict(baseline.verdict(statistic))
