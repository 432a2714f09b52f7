"""Recoverable cache conditions never fail a run, under any warnings filter.

A damaged entry is extracted again and an unwritable cache is worked around in memory;
each is reported once in a "medprobe notices" section of the terminal summary, never as
a Python warning, which ``filterwarnings = error`` (this project's own setting, and many
users') would turn into an error of every audit.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pytest_medprobe.cache import FEATURES_FILE

AUDIT = """
def test_health(verdicts, check_verdict):
    check_verdict(verdicts.health)

def test_connector(verdicts, check_verdict):
    check_verdict(verdicts.connector_fidelity)
"""
STRICT_INI = "[pytest]\nfilterwarnings =\n    error\n"


def _run(pytester: pytest.Pytester, *args: str) -> tuple[pytest.RunResult, dict]:
    result = pytester.runpytest(
        "--medprobe-json=r.json", "--max-samples=60", "--medprobe-bootstrap=100", "-p", "no:cacheprovider", *args
    )
    return result, json.loads((pytester.path / "r.json").read_text())["runs"][0]


def test_a_damaged_entry_heals_under_filterwarnings_error(pytester: pytest.Pytester, tmp_path: Path) -> None:
    pytester.makepyfile(AUDIT)
    pytester.makeini(STRICT_INI)
    cache = f"--medprobe-cache={tmp_path / 'cache'}"
    first, _ = _run(pytester, cache)
    first.assert_outcomes(passed=2)
    [features] = (tmp_path / "cache" / "features").glob(f"*/*/{FEATURES_FILE}")
    features.write_bytes(features.read_bytes()[:200])  # truncated, as by a full disk or a bad copy
    healed, record = _run(pytester, cache)
    healed.assert_outcomes(passed=2)
    assert record["features"]["cache_hit"] is False
    healed.stdout.fnmatch_lines(["*medprobe notices*", "feature cache entry * is unusable (*); extracting again"])
    again, record = _run(pytester, cache)
    again.assert_outcomes(passed=2)
    assert record["features"]["cache_hit"] is True
    assert "medprobe notices" not in again.stdout.str()


def test_an_unwritable_cache_is_reported_once_and_the_audits_run_from_memory(
    pytester: pytest.Pytester, tmp_path: Path
) -> None:
    pytester.makepyfile(AUDIT)
    pytester.makeini(STRICT_INI)
    (tmp_path / "not-a-folder").write_text("")
    result, record = _run(pytester, f"--medprobe-cache={tmp_path / 'not-a-folder'}")
    result.assert_outcomes(passed=2)
    assert record["features"]["forward_passes"] > 0
    result.stdout.fnmatch_lines(["*medprobe notices*", "the feature cache * cannot be written (*); carrying on*"])
    assert result.stdout.str().count("cannot be written") == 1


def test_the_extract_command_refuses_a_cache_it_cannot_write_before_loading_anything(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The audits carry on from memory; ``extract``, whose only output is the cache, must not pass."""
    from pytest_medprobe.__main__ import main

    (tmp_path / "not-a-folder").write_text("")
    for mode in ([], ["--all-pairs"], ["--shard", "1/2"]):
        status = main(["extract", f"--medprobe-cache={tmp_path / 'not-a-folder'}", "--max-samples=40", *mode])
        captured = capsys.readouterr()
        assert status == 2, mode
        assert "error: extract fills the feature cache, and" in captured.err and "--medprobe-cache" in captured.err
        assert "loading medprobe-tiny" not in captured.out and "extracted (" not in captured.out  # nothing ran


def test_the_extract_command_fails_when_the_cache_fills_up_during_the_run(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    from pytest_medprobe import cache
    from pytest_medprobe.__main__ import main

    def full(*args: object, **kwargs: object) -> Path:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(cache, "write_bank", full)
    status = main(["extract", f"--medprobe-cache={tmp_path / 'cache'}", "--max-samples=40"])
    captured = capsys.readouterr()
    assert status == 1
    assert "No space left on device" in caplog.text  # the cache's own notice, said once
    assert "error: the feature cache" in captured.err and "the features of this run are not stored" in captured.err
    assert not list((tmp_path / "cache" / "features").rglob("*.safetensors"))  # nothing half-written


def test_the_extract_command_reads_a_read_only_cache_that_holds_every_pair(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A shared cache another user filled: nothing is left to write, so nothing must be refused."""
    from pytest_medprobe.__main__ import main
    from pytest_medprobe.cache import FeatureCache

    options = ["extract", f"--medprobe-cache={tmp_path / 'cache'}", "--max-samples=40"]
    assert main(options) == 0
    capsys.readouterr()

    def read_only(self: FeatureCache) -> None:
        raise PermissionError(13, "Permission denied", str(self.root / "features"))

    monkeypatch.setattr(FeatureCache, "check_writable", read_only)
    assert main(options) == 0
    assert "medprobe-tiny × synthetic-lesions: cached" in capsys.readouterr().out
    (tmp_path / "other").mkdir()  # a pair still to extract is refused, before any model loads
    assert main([*options[:1], f"--medprobe-cache={tmp_path / 'other'}", *options[2:]]) == 2
