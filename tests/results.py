"""Helpers for comparing results files of two runs."""

from __future__ import annotations

from typing import Any

# Where and how a run was started: the results file records it (the rerun record), and it
# differs between two runs whose results must otherwise agree exactly.
INVOCATION_SETTINGS = ("cache_dir", "baseline", "data_root")

# Where the tests' features are computed, as each results file records it.
ON_THE_CPU = {"device": "cpu", "dtype": "float32"}


def without_invocation(results: dict[str, Any]) -> dict[str, Any]:
    """A results document less its command line and the settings that are paths of this run."""
    settings = {key: value for key, value in results["settings"].items() if key not in INVOCATION_SETTINGS}
    return {**{key: value for key, value in results.items() if key != "command"}, "settings": settings}
