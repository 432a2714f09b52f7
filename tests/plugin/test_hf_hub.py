"""A hub dataset through pytest: fetched from a stand-in hub (HF_ENDPOINT) online, read from the cache offline."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest

from tests.stand_in_server import serving_hub

datasets = pytest.importorskip("datasets")
REPO = "medorg/tiny-derm"
AUDIT = """
def test_health(verdicts, check_verdict):
    check_verdict(verdicts.health)
"""


def _parquet_repo() -> dict[str, bytes]:
    """A hub dataset repository as the hub stores one: a parquet file per split, with features."""
    from PIL import Image

    features = datasets.Features({"image": datasets.Image(), "label": datasets.ClassLabel(names=["nevus", "melanoma"])})
    files = {}
    for split, n, seed in (("train", 12, 0), ("test", 8, 1)):
        rng = np.random.default_rng(seed)
        images = [Image.fromarray(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)) for _ in range(n)]
        table = datasets.Dataset.from_dict({"image": images, "label": [i % 2 for i in range(n)]}, features=features)
        buffer = io.BytesIO()
        table.to_parquet(buffer)
        files[f"data/{split}-00000-of-00001.parquet"] = buffer.getvalue()
    return files


def _run(pytester: pytest.Pytester, cache: Path) -> tuple[pytest.RunResult, dict]:
    result = pytester.runpytest_subprocess(
        f"--dataset=hf:{REPO}", f"--medprobe-cache={cache}", "--medprobe-json=r.json", "--medprobe-bootstrap=100",
        "-p", "no:cacheprovider",
    )  # fmt: skip
    document = json.loads((pytester.path / "r.json").read_text()) if (pytester.path / "r.json").exists() else {}
    return result, document


@pytest.mark.slow
def test_a_hub_dataset_is_downloaded_online_then_read_from_the_cache_offline(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    pytester.makepyfile(AUDIT)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))  # an empty hub cache of our own
    monkeypatch.delenv("HF_DATASETS_OFFLINE", raising=False)
    with serving_hub(REPO, _parquet_repo()) as hub:
        monkeypatch.setenv("HF_ENDPOINT", hub.url)
        monkeypatch.setenv("HF_HUB_OFFLINE", "0")
        online, document = _run(pytester, tmp_path / "cache")
    assert online.ret in (pytest.ExitCode.OK, pytest.ExitCode.TESTS_FAILED), online.stdout.str() + online.stderr.str()
    assert any(request.endswith("data/train-00000-of-00001.parquet") for request in hub.requests)
    run = document["runs"][0]
    assert run["dataset"]["classes"] == ["nevus", "melanoma"]
    assert (run["dataset"]["n_fit"], run["dataset"]["n_test"]) == (12, 8)

    (pytester.path / "r.json").unlink()
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # the stand-in is gone too: only the cache can answer
    offline, again = _run(pytester, tmp_path / "cache")
    assert offline.ret == online.ret, offline.stdout.str() + offline.stderr.str()
    assert again["runs"][0]["dataset"]["fingerprint"] == run["dataset"]["fingerprint"]
    assert again["runs"][0]["features"]["cache_hit"] is True

    monkeypatch.setenv("HF_HOME", str(tmp_path / "another-empty-home"))
    missing = pytester.runpytest_subprocess(f"--dataset=hf:{REPO}")
    assert missing.ret == pytest.ExitCode.USAGE_ERROR
    missing.stderr.fnmatch_lines([f"*{REPO} is not cached on this machine and the hub cannot be reached*"])
