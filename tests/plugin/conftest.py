"""Helpers of the pytester tests: the shipped audits and fast common options."""

from __future__ import annotations

from pathlib import Path

import pytest


def _import_heavy_modules_once() -> None:
    """Import what an audit run imports, before any in-process pytester run.

    pytester restores ``sys.modules`` after each in-process run; a C extension first
    imported inside a run (numpy.fft through scikit-learn, say) would then be imported a
    second time by the next run, which such extensions refuse.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.figure  # noqa: F401
    import numpy.fft  # noqa: F401
    import pytest_html  # noqa: F401
    import safetensors.numpy  # noqa: F401
    import sklearn.linear_model  # noqa: F401
    import sklearn.preprocessing  # noqa: F401
    import torch  # noqa: F401
    from transformers import AutoModelForImageTextToText, AutoProcessor, LlavaForConditionalGeneration  # noqa: F401
    from transformers.models.clip import image_processing_clip  # noqa: F401

    from pytest_medprobe import curve, extract, failure_modes, health, probes  # noqa: F401
    from pytest_medprobe.report import json_results, plots, terminal  # noqa: F401


_import_heavy_modules_once()

AUDITS_DIR = Path(__file__).resolve().parents[2] / "audits"
AUDIT_NAMES = tuple(sorted(path.stem for path in AUDITS_DIR.glob("test_*.py")))


@pytest.fixture
def shipped_audits(pytester: pytest.Pytester) -> pytest.Pytester:
    """A pytester folder holding a copy of the shipped ``audits/`` modules."""
    pytester.makepyfile(**{name: (AUDITS_DIR / f"{name}.py").read_text() for name in AUDIT_NAMES})
    return pytester


@pytest.fixture
def fast_options(shared_cache: Path) -> list[str]:
    """Options that keep an end-to-end run to a few seconds: small splits, fewer resamples."""
    return [f"--medprobe-cache={shared_cache}", "--max-samples=120", "--medprobe-bootstrap=200", "-p", "no:cacheprovider"]
