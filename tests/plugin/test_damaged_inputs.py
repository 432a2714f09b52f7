"""Damaged checkpoints and unusable output paths: one clear usage error each, before anything runs.

A truncated ``model.safetensors``, random bytes, a ``pytorch_model.bin`` that is not a
pickle, or an output path that is a folder would otherwise end the run in a traceback,
some only after every audit had run.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from pytest_medprobe.zoo import SHIPPED_DIR

AUDIT = """
def test_health(verdicts, check_verdict):
    check_verdict(verdicts.health)
"""


def _damage(checkpoint: Path, how: str) -> None:
    weights = checkpoint / "model.safetensors"
    if how == "truncated":
        weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    elif how == "random-bytes":
        weights.write_bytes(bytes(range(256)) * 64)
    elif how == "html-error-page":
        weights.write_bytes(b"<!DOCTYPE html><html><body>502 Bad Gateway</body></html>")
    elif how == "bin-not-a-pickle":
        weights.rename(checkpoint / "pytorch_model.bin")
        (checkpoint / "pytorch_model.bin").write_bytes(b"this is not a torch.save file" * 10)


@pytest.mark.parametrize("how", ["truncated", "random-bytes", "html-error-page", "bin-not-a-pickle"])
def test_a_damaged_weight_file_is_a_usage_error_naming_it(pytester: pytest.Pytester, how: str) -> None:
    checkpoint = Path(shutil.copytree(SHIPPED_DIR, pytester.path / "checkpoint"))
    _damage(checkpoint, how)
    pytester.makepyfile(AUDIT)
    result = pytester.runpytest(f"--model={checkpoint}", f"--medprobe-cache={pytester.path / 'cache'}")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    name = "pytorch_model.bin" if how == "bin-not-a-pickle" else "model.safetensors"
    result.stderr.fnmatch_lines([f"ERROR: --medprobe-model *damaged weight file: *{name}*Re-download the checkpoint*"])
    assert "Traceback" not in result.stderr.str() + result.stdout.str()


def test_a_config_that_disagrees_with_the_weights_errors_the_audits_with_one_line(pytester: pytest.Pytester) -> None:
    checkpoint = Path(shutil.copytree(SHIPPED_DIR, pytester.path / "checkpoint"))
    config = json.loads((checkpoint / "config.json").read_text())
    config["text_config"]["intermediate_size"] = 2 * config["text_config"].get("intermediate_size", 128)
    (checkpoint / "config.json").write_text(json.dumps(config))
    pytester.makepyfile(AUDIT)
    result = pytester.runpytest(
        f"--model={checkpoint}", f"--medprobe-cache={pytester.path / 'cache'}", "--max-samples=20"
    )
    result.assert_outcomes(errors=1)  # the audit's setup fails with the message, no traceback
    result.stdout.fnmatch_lines(["*config.json disagrees with the weights' shapes*Re-download the checkpoint*"])
    assert "Traceback" not in result.stdout.str()


def _baseline(entries: dict) -> str:
    return json.dumps({"format_version": 1, "entries": entries})


def _valid_entry() -> dict:
    statistics = {
        name: {"point": 0.5, "better": "higher", "sd": 0.1, "samples": [0.5] * 4}
        for name in ("health", "visual_gain", "connector_loss", "layer_drop", "llm_loss", "semantic_gap")
    }
    return {
        "release_line": "r",
        "model": {"name": "m", "fingerprint": "f"},
        "dataset": {"name": "d", "fingerprint": "d", "split": "test"},
        "bootstrap": {"n": 4, "seed": 0, "n_test": 10},
        "stages": [],
        "answer": {"score": 0.5, "low": 0.4, "high": 0.6},
        "health": {"health": 0.9},
        "statistics": statistics,
    }


def _without_statistics() -> str:
    entry = _valid_entry()
    del entry["statistics"]
    return _baseline({"r|d|test": entry})


def _truncated_samples() -> str:
    entry = _valid_entry()
    entry["statistics"]["health"]["samples"] = [0.5, 0.5]
    return _baseline({"r|d|test": entry})


CASES = {
    "json-is-a-folder": ("--medprobe-json=out", None, "--medprobe-json*is a folder*"),
    "json-under-a-file": ("--medprobe-json=a-file/r.json", None, "--medprobe-json*a-file is a file, not a folder*"),
    "save-baseline-is-a-folder": ("--medprobe-save-baseline=out", None, "--medprobe-save-baseline*is a folder*"),
    "save-baseline-corrupt": (
        "--medprobe-save-baseline=b.json",
        "{not json",
        "--medprobe-save-baseline*b.json is not a usable*baseline file*",
    ),
    "baseline-corrupt": ("--medprobe-baseline=b.json", "{not json", "--medprobe-baseline*b.json is not a usable*"),
    "baseline-without-statistics": (
        "--medprobe-baseline=b.json",
        _without_statistics(),
        "--medprobe-baseline*entry 'r|d|test' has no 'statistics'*",
    ),
    "baseline-with-truncated-samples": (
        "--medprobe-baseline=b.json",
        _truncated_samples(),
        "--medprobe-baseline*holds 2 bootstrap samples of 'health', but its bootstrap has n=4*",
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_an_unusable_output_path_or_baseline_file_is_a_usage_error_at_start_up(
    pytester: pytest.Pytester, case: str
) -> None:
    option, content, message = CASES[case]
    pytester.mkdir("out")
    (pytester.path / "a-file").write_text("")
    if content is not None:
        (pytester.path / "b.json").write_text(content)
    pytester.makepyfile(AUDIT)
    result = pytester.runpytest(option, f"--medprobe-cache={pytester.path / 'cache'}")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"ERROR: {message}"])
    assert not (pytester.path / "cache" / "features").exists()  # nothing was extracted
