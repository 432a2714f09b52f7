"""A missing MedMNIST file fetched through pytest from a mirror (a stand-in on 127.0.0.1), then audited."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from pytest_medprobe.data.medmnist_files import MD5
from tests.stand_in_server import StandIn

AUDIT = """
def test_health(verdicts, check_verdict):
    check_verdict(verdicts.health)
"""


def test_a_missing_file_is_downloaded_from_the_mirror_then_audited(
    pytester: pytest.Pytester, stand_in: StandIn, shared_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = stand_in.files["breastmnist.npz"]
    monkeypatch.setitem(MD5["breastmnist"], 28, hashlib.md5(data, usedforsecurity=False).hexdigest())
    stand_in.cut_first_response_at = 4096  # the connection drops once; the download resumes
    root = pytester.mkdir("medmnist")
    pytester.makepyfile(AUDIT)
    result = pytester.runpytest(
        "--dataset=medmnist:breastmnist", f"--data-root={root}", f"--medprobe-medmnist-url={stand_in.url}",
        f"--medprobe-cache={shared_cache}", "--medprobe-json=r.json", "--medprobe-bootstrap=100",
        "-p", "no:cacheprovider",
    )  # fmt: skip
    assert result.ret in (pytest.ExitCode.OK, pytest.ExitCode.TESTS_FAILED), result.stdout.str()
    assert (root / "breastmnist.npz").read_bytes() == data and stand_in.ranges == [None, "bytes=4096-"]
    run = json.loads((pytester.path / "r.json").read_text())["runs"][0]
    assert (run["dataset"]["n_fit"], run["dataset"]["n_test"]) == (40, 20)


def test_a_download_with_the_wrong_checksum_stops_the_run_and_keeps_nothing(
    pytester: pytest.Pytester, stand_in: StandIn
) -> None:
    root = pytester.mkdir("medmnist")
    pytester.makepyfile(AUDIT)
    result = pytester.runpytest(
        "--dataset=medmnist:breastmnist", f"--data-root={root}", f"--medprobe-medmnist-url={stand_in.url}"
    )
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*downloading breastmnist.npz failed*published checksum is*nothing is kept*"])
    assert [path.name for path in root.iterdir() if not path.name.endswith(".lock")] == []
