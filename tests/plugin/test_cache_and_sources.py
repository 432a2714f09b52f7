"""The cache across runs, a checkpoint directory as --model, and a MedMNIST file as --dataset."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

AUDIT = """
def test_health(verdicts, check_verdict):
    check_verdict(verdicts.health)
"""


def _run(pytester: pytest.Pytester, *args: str) -> dict:
    pytester.runpytest(
        "--medprobe-json=r.json", "--max-samples=60", "--medprobe-bootstrap=100", "-p", "no:cacheprovider", *args
    )
    return json.loads((pytester.path / "r.json").read_text())


def test_a_second_identical_run_reads_the_cache_and_does_no_forward_pass(
    pytester: pytest.Pytester, tmp_path: Path
) -> None:
    pytester.makepyfile(AUDIT)
    cache = f"--medprobe-cache={tmp_path / 'cache'}"
    first = _run(pytester, cache)["runs"][0]
    second = _run(pytester, cache)["runs"][0]
    assert first["features"]["cache_hit"] is False and first["features"]["forward_passes"] > 0
    assert second["features"] == {**first["features"], "cache_hit": True, "forward_passes": 0}
    assert second["stages"] == first["stages"]  # same numbers from the cached features
    refreshed = _run(pytester, cache, "--medprobe-refresh")["runs"][0]
    assert refreshed["features"]["forward_passes"] == first["features"]["forward_passes"]


def test_a_llava_checkpoint_directory_is_audited_offline(
    pytester: pytest.Pytester, tiny_llava_dir: Path, shared_cache: Path
) -> None:
    pytester.makepyfile(AUDIT)
    run = _run(pytester, f"--model={tiny_llava_dir}", f"--medprobe-cache={shared_cache}")["runs"][0]
    assert run["model"]["family"] == "llava"
    assert run["model"]["source"] == str(tiny_llava_dir.resolve())
    assert [a["outcome"] for a in json.loads((pytester.path / "r.json").read_text())["audits"]] in (
        ["passed"],
        ["failed"],
    )


def _write_breastmnist(root: Path, n_train: int = 60, n_test: int = 40) -> Path:
    """A file in the official MedMNIST layout: grayscale (N, 28, 28) uint8, labels (N, 1)."""
    rng = np.random.default_rng(0)

    def images(n: int) -> np.ndarray:
        return rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)

    def labels(n: int) -> np.ndarray:
        return (np.arange(n) % 2).reshape(n, 1).astype(np.uint8)

    path = root / "breastmnist.npz"
    np.savez(
        path,
        train_images=images(n_train),
        train_labels=labels(n_train),
        val_images=images(10),
        val_labels=labels(10),
        test_images=images(n_test),
        test_labels=labels(n_test),
    )
    return path


def test_a_medmnist_file_in_the_official_layout_is_audited(pytester: pytest.Pytester, shared_cache: Path) -> None:
    root = pytester.mkdir("medmnist")
    _write_breastmnist(root)
    pytester.makepyfile(AUDIT)
    run = _run(pytester, "--dataset=medmnist:breastmnist", f"--data-root={root}", f"--medprobe-cache={shared_cache}")[
        "runs"
    ][0]
    assert run["dataset"]["classes"] == ["malignant", "normal, benign"]
    assert run["dataset"]["n_fit"] == 60 and run["dataset"]["n_test"] == 40
    assert run["dataset"]["modality"] == "breast ultrasound"
