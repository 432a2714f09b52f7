"""Regression against a baseline (release gating): the candidate must not be worse than the

The audit itself lives in the package (``pytest_medprobe/audits/test_regression.py``), so that an
installed plugin ships it; this module only collects it from the repository.
"""

from pytest_medprobe.audits.test_regression import test_regression  # noqa: F401
