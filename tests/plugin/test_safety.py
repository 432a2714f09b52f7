"""Safety: remote code runs only when asked for and the report says so; data cannot inject markup."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

AUDIT = """
def test_health(verdicts, check_verdict):
    check_verdict(verdicts.health)
"""
REFERENCE = Path(__file__).resolve().parents[2] / "pytest_medprobe" / "zoo" / "medprobe-tiny"


def _checkpoint_with_remote_code(folder: Path, marker: Path) -> Path:
    """The reference model with a processor class in a Python file of its own (an auto_map)."""
    checkpoint = shutil.copytree(REFERENCE, folder)
    (checkpoint / "custom_processing.py").write_text(
        "import pathlib\n"
        "from transformers import LlavaProcessor\n"
        f"pathlib.Path({str(marker)!r}).write_text('the checkpoint ran its own code')\n"
        "class CustomLlavaProcessor(LlavaProcessor):\n"
        "    pass\n"
    )
    config_path = checkpoint / "processor_config.json"
    config = json.loads(config_path.read_text())
    config["auto_map"] = {"AutoProcessor": "custom_processing.CustomLlavaProcessor"}
    config["processor_class"] = "CustomLlavaProcessor"
    config_path.write_text(json.dumps(config))
    return checkpoint


def test_checkpoint_code_never_runs_without_the_flag_and_the_report_says_when_it_did(
    pytester: pytest.Pytester, shared_cache: Path
) -> None:
    marker = pytester.path / "remote-code-ran"
    checkpoint = _checkpoint_with_remote_code(pytester.path / "custom-checkpoint", marker)
    pytester.makepyfile(AUDIT)
    common = [f"--model={checkpoint}", f"--medprobe-cache={shared_cache}", "--max-samples=40", "-p", "no:cacheprovider"]

    refused = pytester.runpytest(*common)
    refused.assert_outcomes(errors=1)
    refused.stdout.fnmatch_lines(["*ships its own Python code*never runs*--medprobe-trust-remote-code*"])
    assert not marker.exists()

    allowed = pytester.runpytest(*common, "--medprobe-trust-remote-code", "--medprobe-json=r.json", "--html=r.html")
    allowed.assert_outcomes(passed=1)
    assert marker.exists()
    allowed.stdout.fnmatch_lines(["medprobe: trust_remote_code is ON*"])
    [run] = json.loads((pytester.path / "r.json").read_text())["runs"]
    assert run["model"]["trust_remote_code"] is True
    assert "trust_remote_code was ON" in (pytester.path / "r.html").read_text()


def test_a_hostile_class_name_cannot_inject_markup_into_the_report(
    pytester: pytest.Pytester, shared_cache: Path
) -> None:
    hostile = "<b onmouseover=alert(1)>naevus"
    rng = np.random.default_rng(0)
    for split in ("train", "test"):
        for name in (hostile, "plain lesion"):
            folder = pytester.path / "images" / split / name
            folder.mkdir(parents=True)
            for index in range(6):
                Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(folder / f"{index}.png")
    pytester.makepyfile(AUDIT)
    pytester.runpytest(
        f"--dataset=folder:{pytester.path / 'images'}",
        f"--medprobe-cache={shared_cache}",
        "--html=r.html",
        "--self-contained-html",
        "-p",
        "no:cacheprovider",
    )
    html = (pytester.path / "r.html").read_text()
    assert "<b onmouseover" not in html
    assert "&lt;b onmouseover=alert(1)&gt;naevus" in html
