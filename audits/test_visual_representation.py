"""Failure mode 1: quality limitation in visual representation (metrics.md §3).

The audit itself lives in the package (``pytest_medprobe/audits/test_visual_representation.py``), so that an
installed plugin ships it; this module only collects it from the repository.
"""

from pytest_medprobe.audits.test_visual_representation import test_visual_representation  # noqa: F401
