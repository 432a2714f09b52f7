"""Subgroup gates: no subgroup (site, sex, age band, scanner) may do worse than the whole test

The audit itself lives in the package (``pytest_medprobe/audits/test_subgroups.py``), so that an
installed plugin ships it; this module only collects it from the repository.
"""

from pytest_medprobe.audits.test_subgroups import test_subgroups  # noqa: F401
