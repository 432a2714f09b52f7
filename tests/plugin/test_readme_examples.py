"""The README's own-audit examples run as printed, against the reference model."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[2] / "README.md"


def _own_audit_examples() -> list[str]:
    text = README.read_text()
    section = text[text.index("## Write your own audit") : text.index("## What is measured")]
    return re.findall(r"```python\n(.*?)```", section, flags=re.S)


def test_the_readme_examples_of_own_audits_pass_on_the_reference_model(
    pytester: pytest.Pytester, shared_cache: Path
) -> None:
    examples = _own_audit_examples()
    assert len(examples) == 3
    pytester.makepyfile(**{f"test_example_{index}": code for index, code in enumerate(examples)})
    common = [f"--medprobe-cache={shared_cache}", "-p", "no:cacheprovider"]
    pytester.runpytest(*common, "--medprobe-save-baseline=base.json").assert_outcomes(passed=5, skipped=1)
    pytester.runpytest(*common, "--medprobe-baseline=base.json").assert_outcomes(passed=6)
