"""Baseline entries are keyed by a name the user chose or by the model's content, never by a folder name alone.

``x/final`` and ``y/final`` are two models: saved in one run they are two entries, and the
second never silently replaces the first (after which a blind model would pass the gate).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from pytest_medprobe.baseline import default_release_line, find_entry
from pytest_medprobe.errors import MedprobeUsageError
from pytest_medprobe.zoo import SHIPPED_DIR

AUDIT = """
def test_health(verdicts, check_verdict):
    check_verdict(verdicts.health)
"""
FAST = ["--max-samples=60", "--medprobe-bootstrap=200", "-p", "no:cacheprovider"]


def test_two_folders_of_one_name_save_two_baseline_entries(
    pytester: pytest.Pytester, shared_cache: Path, tiny_llava_dir: Path
) -> None:
    pytester.makepyfile(AUDIT)
    healthy = shutil.copytree(SHIPPED_DIR, pytester.path / "x" / "final")
    other = shutil.copytree(tiny_llava_dir, pytester.path / "y" / "final")
    result = pytester.runpytest(
        *FAST,
        f"--medprobe-cache={shared_cache}",
        f"--model={healthy}",
        f"--model={other}",
        "--medprobe-save-baseline=b.json",
    )
    assert result.ret in (0, 1), result.stdout.str()  # tiny-llava is random: its health may fail
    entries = json.loads((pytester.path / "b.json").read_text())["entries"]
    assert len(entries) == 2
    lines = sorted(entry["release_line"] for entry in entries.values())
    assert all(line.startswith("final@") for line in lines) and lines[0] != lines[1]
    assert len({entry["model"]["fingerprint"] for entry in entries.values()}) == 2


def test_two_models_of_one_run_with_one_name_are_a_usage_error(pytester: pytest.Pytester, tiny_llava_dir: Path) -> None:
    pytester.makepyfile(AUDIT)
    result = pytester.runpytest(f"--model=final={SHIPPED_DIR}", f"--model=final={tiny_llava_dir}")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*share the name 'final'*one release line*NAME=DIR*"])


def test_a_named_model_is_its_own_release_line_and_a_bare_folder_carries_its_content() -> None:
    assert default_release_line(f"release-2={SHIPPED_DIR}", "ab" * 32) == "release-2"
    assert default_release_line("medprobe-tiny", "ab" * 32) == "medprobe-tiny"
    assert default_release_line("/models/x/final", "ab" * 32) == "final@" + "ab" * 6
    assert default_release_line("/models/y/final", "cd" * 32) != default_release_line("/models/x/final", "ab" * 32)


def _entry(line: str, fingerprint: str) -> dict:
    return {"release_line": line, "model": {"fingerprint": fingerprint}, "dataset": {"fingerprint": "d"}}


def test_a_candidate_folder_finds_its_own_content_and_otherwise_asks_for_a_label() -> None:
    document = {
        "entries": {
            f"final@{'a' * 12}|d|test": _entry(f"final@{'a' * 12}", "a" * 64),
            f"final@{'b' * 12}|d|test": _entry(f"final@{'b' * 12}", "b" * 64),
        }
    }
    found = find_entry(document, "/x/final", None, "d", "a" * 64)
    assert found is not None and found[1]["model"]["fingerprint"] == "a" * 64
    with pytest.raises(MedprobeUsageError, match="several release lines"):
        find_entry(document, "/z/final", None, "d", "c" * 64)
    found = find_entry(document, "/z/final", f"final@{'b' * 12}", "d", "c" * 64)
    assert found is not None and found[1]["model"]["fingerprint"] == "b" * 64
