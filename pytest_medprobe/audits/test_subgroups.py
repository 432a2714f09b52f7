"""Subgroup gates: no subgroup (site, sex, age band, scanner) may do worse than the whole test
split by more than max_subgroup_gap, on health or on any failure-mode statistic.

Runs with ``--medprobe-subgroup=COLUMN`` (repeatable) on a dataset with columns; skips
without one. The probes are fit on the whole fit split and scored per subgroup value;
subgroups with too few test images to tell are reported, not judged.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pytest_medprobe.failure_modes import Verdict
    from pytest_medprobe.subgroups import SubgroupReport


def test_subgroups(subgroups: SubgroupReport, check_verdict: Callable[[Verdict], None]) -> None:
    check_verdict(subgroups.verdict)
