"""Failure mode 2: fidelity loss in connector projection (metrics.md §3).

The audit itself lives in the package (``pytest_medprobe/audits/test_connector_fidelity.py``), so that an
installed plugin ships it; this module only collects it from the repository.
"""

from pytest_medprobe.audits.test_connector_fidelity import test_connector_fidelity  # noqa: F401
