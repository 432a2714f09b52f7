"""Subgroup gates: no subgroup (site, sex, age band, scanner) may do worse than the whole test
split by more than max_subgroup_gap, on health or on any failure-mode statistic.

Runs with ``--medprobe-subgroup=COLUMN`` (repeatable) on a dataset with columns; skips
without one. The probes are fit on the whole fit split and scored per subgroup value;
subgroups with too few test images to tell are reported, not judged.
"""


def test_subgroups(subgroups, check_verdict):
    check_verdict(subgroups.verdict)
