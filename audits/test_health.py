"""Feature-evolution health (metrics.md §5): one number for the whole pipeline.

The audit itself lives in the package (``pytest_medprobe/audits/test_health.py``), so that an
installed plugin ships it; this module only collects it from the repository.
"""

from pytest_medprobe.audits.test_health import test_health  # noqa: F401
