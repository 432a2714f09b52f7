"""Helpers of the pytester tests: the shipped audits and fast common options."""

from __future__ import annotations

from pathlib import Path

import pytest

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
    return [
        f"--medprobe-cache={shared_cache}",
        "--max-samples=120",
        "--medprobe-bootstrap=200",
        "-p",
        "no:cacheprovider",
    ]
