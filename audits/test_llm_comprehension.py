"""Failure mode 3: comprehension deficit in LLM reasoning (metrics.md §3).

The audit itself lives in the package (``pytest_medprobe/audits/test_llm_comprehension.py``), so that an
installed plugin ships it; this module only collects it from the repository.
"""

from pytest_medprobe.audits.test_llm_comprehension import test_llm_comprehension  # noqa: F401
