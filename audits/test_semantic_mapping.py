"""Failure mode 4: misalignment of semantic mapping (metrics.md §3).

The audit itself lives in the package (``pytest_medprobe/audits/test_semantic_mapping.py``), so that an
installed plugin ships it; this module only collects it from the repository.
"""

from pytest_medprobe.audits.test_semantic_mapping import test_semantic_mapping  # noqa: F401
