"""The library without pytest: ``probe`` from plain Python gives what ``pytest audits/`` gives."""

from __future__ import annotations

import json
import os
import pydoc
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import pytest_medprobe as mp

README = Path(__file__).resolve().parents[2] / "README.md"

# Run in a fresh interpreter: no pytest, no plugin; prints the numbers as JSON.
NO_PYTEST = """
import json, sys
import pytest_medprobe as mp
from transformers import AutoModelForImageTextToText, AutoProcessor

cache = sys.argv[1]
by_name = mp.probe("medprobe-tiny", dataset="synthetic-lesions", max_samples=120, n_bootstrap=200, cache_dir=cache)
folder = mp.reference_checkpoint()
model = AutoModelForImageTextToText.from_pretrained(folder)
in_memory = mp.probe(model, AutoProcessor.from_pretrained(folder), "synthetic-lesions", max_samples=120,
                     n_bootstrap=200, cache_dir=cache, name="in-memory")
assert "_pytest" not in sys.modules and "pytest_medprobe.plugin" not in sys.modules, "pytest was imported"
print(json.dumps({"by_name": by_name.as_dict(), "in_memory": in_memory.as_dict()}))
"""


def _plain_python(code: str, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("PYTEST")}
    return subprocess.run(
        [sys.executable, "-c", code, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=600
    )


def _numbers(record: dict[str, object]) -> dict[str, object]:
    """What must agree: every stage's score and interval, the answer, health, every verdict's numbers."""
    verdicts = [
        {key: verdict[key] for key in ("mode", "statistic", "low", "high", "threshold", "verdict", "stage")}
        for verdict in record["failure_modes"]  # type: ignore[attr-defined]
    ]
    answer = record["answer"]
    return {
        "stages": record["stages"],
        "answer": [answer[key] for key in ("score", "low", "high")],  # type: ignore[index]
        "health": record["health"],
        "failure_modes": verdicts,
        "root_cause": record["root_cause"],
    }


def test_the_entry_point_is_documented_and_the_public_names_import() -> None:
    text = pydoc.render_doc(mp.probe, renderer=pydoc.plaintext)
    assert "probe(model: 'Any', processor: 'Any' = None, dataset: 'str | ProbeDataset' = 'synthetic-lesions', *" in text
    assert "Example::" in text and "thresholds: 'Thresholds | None' = None" in text and "-> 'ProbeReport'" in text
    for name in mp.__all__:
        assert getattr(mp, name) is not None, name
    assert {"probe", "ProbeReport", "ProbeCurve", "HealthScores", "Verdict", "Thresholds", "make_verdict"} <= set(
        mp.__all__
    )
    assert {"FamilyAdapter", "register_family", "load_dataset", "dataset_from_arrays"} <= set(mp.__all__)
    with pytest.raises(AttributeError, match="no attribute 'AuditSession'"):
        mp.AuditSession  # noqa: B018 - private


@pytest.mark.slow
def test_plain_python_without_pytest_gets_the_numbers_of_pytest_audits(
    shipped_audits: pytest.Pytester, fast_options: list[str], shared_cache: Path
) -> None:
    shipped_audits.runpytest(*fast_options, "--medprobe-json=results.json")
    [audited] = json.loads((shipped_audits.path / "results.json").read_text())["runs"]
    run = _plain_python(NO_PYTEST, str(shared_cache), cwd=shipped_audits.path)
    assert run.returncode == 0, run.stderr[-3000:]
    found = json.loads(run.stdout.strip().splitlines()[-1])
    assert _numbers(found["by_name"]) == _numbers(audited)
    # The same weights in memory: their own fingerprint (computed from the state dict), the same numbers.
    assert found["in_memory"]["model"]["fingerprint"] != audited["model"]["fingerprint"]
    assert _numbers(found["in_memory"]) == _numbers(audited)


@pytest.mark.slow
def test_the_readme_example_of_python_use_runs_as_printed(tmp_path: Path) -> None:
    text = README.read_text()
    section = text[text.index("## Use it from Python") : text.index("## Write your own audit")]
    [example] = re.findall(r"```python\n(.*?)```", section, flags=re.S)
    run = _plain_python(example, cwd=tmp_path)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "health 0.9" in run.stdout and "root cause None" in run.stdout
    assert "connector fidelity: vision" in run.stdout
    assert (tmp_path / ".medprobe-cache").is_dir()  # cached where the README says


def test_a_dataset_from_arrays_is_identified_by_its_content() -> None:
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(8, 16, 16, 3), dtype=np.uint8)
    labels = [0, 1] * 4

    def build(name: str, fit: np.ndarray) -> mp.ProbeDataset:
        return mp.dataset_from_arrays(name, ["benign", "malignant"], fit, labels, images, labels, modality="dermoscopy")

    first = build("lesions", images)
    assert first.n_fit == first.n_test == 8 and first.fit_images[0].shape == (16, 16, 3)
    assert build("renamed", images.copy()).fingerprint == first.fingerprint  # the name is not identity
    changed = images.copy()
    changed[3, 0, 0, 0] ^= 1
    assert build("lesions", changed).fingerprint != first.fingerprint
