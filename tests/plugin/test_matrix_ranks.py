"""``extract --all-pairs`` as ranks of a launcher: whole models per rank, the shared cache, a rank that dies.

Each rank is a real process (``python -m pytest_medprobe extract --all-pairs``) with
``RANK`` / ``WORLD_SIZE`` set, as torchrun starts it; the processes share nothing but
the cache folder. One torch thread everywhere, so that every process sums in the same
order and results can be compared exactly.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from pytest_medprobe.config import BATCH_SIZE, BOOTSTRAP, CACHE, DATASET, JSON, MAX_SAMPLES, MODEL
from pytest_medprobe.matrix import INJECT_OOM_ENV
from pytest_medprobe.ranks import ALL_PAIRS_FLAG, assign_models
from tests.processes import finish

SETTINGS = (f"{MAX_SAMPLES.flag}=12", f"{BATCH_SIZE.flag}=8")
AUDIT_OPTIONS = (*SETTINGS, f"{BOOTSTRAP.flag}=50", "-p", "no:cacheprovider")
FORWARD_PASSES = 4


def _env(**extra: str) -> dict[str, str]:
    drop = ("PYTEST_ADDOPTS", "RANK", "WORLD_SIZE", "LOCAL_RANK", INJECT_OOM_ENV)
    env = {k: v for k, v in os.environ.items() if k not in drop and not k.startswith("PYTEST_XDIST")}
    return {**env, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "OMP_NUM_THREADS": "1", **extra}


def _matrix(models: list[str], datasets: list[str], cache: Path, data_root: Path) -> list[str]:
    return [
        *(f"{MODEL.flag}={model}" for model in models),
        *(f"{DATASET.flag}={dataset}" for dataset in datasets),
        f"--data-root={data_root}",
        f"{CACHE.flag}={cache}",
        *SETTINGS,
    ]


def _start(arguments: list[str], cwd: Path, **env: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, *arguments],
        cwd=cwd,
        env=_env(**env),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _audit(folder: Path, matrix: list[str], name: str) -> tuple[int, str, dict[str, Any]]:
    results = folder / f"{name}.json"
    status, output = finish(
        _start(["-m", "pytest", str(folder), *matrix, *AUDIT_OPTIONS, f"{JSON.flag}={results}"], folder)
    )
    assert results.is_file(), output[-3000:]
    return status, output, json.loads(results.read_text(encoding="utf-8"))


def _verdicts(results: dict[str, Any]) -> list[dict[str, Any]]:
    return [{k: v for k, v in run.items() if k != "features"} for run in results["runs"]]


def test_models_go_whole_to_ranks_largest_first_to_the_least_loaded() -> None:
    sizes = [("a", 10), ("b", 40), ("c", 30), ("d", 20), ("e", 5)]
    assert assign_models(sizes, 2) == [["a", "b", "e"], ["c", "d"]]  # 40 + 10 + 5 against 30 + 20
    assert assign_models([("a", 1), ("b", 1), ("c", 1), ("d", 1)], 2) == [["a", "c"], ["b", "d"]]
    assert assign_models([("a", 1)], 3) == [["a"], [], []]


@pytest.mark.slow
def test_two_ranks_extract_each_pair_once_and_the_audit_run_then_matches_a_single_process_without_a_forward_pass(
    shipped_audits: pytest.Pytester, tiny_matrix_models: list[str], medmnist_root: Path, tmp_path: Path
) -> None:
    datasets = ["synthetic-lesions", "medmnist:breastmnist"]
    cache = tmp_path / "cache"
    matrix = _matrix(tiny_matrix_models, datasets, cache, medmnist_root)
    command = ["-m", "pytest_medprobe", "extract", ALL_PAIRS_FLAG, *matrix]

    ranks = [_start(command, tmp_path, RANK=str(rank), WORLD_SIZE="2", LOCAL_RANK=str(rank)) for rank in (0, 1)]
    finished = [finish(process) for process in ranks]

    for status, output in finished:
        assert status == 0, output[-3000:]
    extracted = [re.findall(r"\] (tiny-\d)=\S+ × (\S+): extracted \((\d+) forward passes", out) for _, out in finished]
    assert all(len(lines) == 4 for lines in extracted)  # two whole models per rank, two datasets each
    assert sorted(pair[:2] for lines in extracted for pair in lines) == sorted(
        (f"tiny-{seed}", dataset) for seed in range(1, 5) for dataset in datasets
    )  # every pair, each exactly once
    assert {int(passes) for lines in extracted for *_, passes in lines} == {FORWARD_PASSES}
    assert {model for model, *_ in extracted[0]}.isdisjoint(model for model, *_ in extracted[1])
    assert len(list((cache / "features").glob("*/*/manifest.json"))) == 8
    assert not list((cache / "claims").glob("*.json"))  # every claim settled

    folder = shipped_audits.path
    status, output, after = _audit(folder, matrix, "after")
    assert re.search(r"8 cached \(not extracted again\), 0 to extract: 0 forward passes", output), output[:3000]
    assert [run["features"]["forward_passes"] for run in after["runs"]] == [0] * 8

    single = _matrix(tiny_matrix_models, datasets, tmp_path / "single-cache", medmnist_root)
    _, _, reference = _audit(folder, single, "single")
    assert [run["features"]["forward_passes"] for run in reference["runs"]] == [FORWARD_PASSES] * 8
    assert _verdicts(after) == _verdicts(reference)
    assert after["matrix"]["cells"] == [{**cell, "features": "cached"} for cell in reference["matrix"]["cells"]]


@pytest.mark.slow
def test_when_a_rank_dies_the_audit_run_lists_its_missing_pairs_and_the_command_that_extracts_them(
    shipped_audits: pytest.Pytester, tiny_matrix_models: list[str], medmnist_root: Path, tmp_path: Path
) -> None:
    models = tiny_matrix_models[:2]  # equal sizes: rank 0 takes tiny-1, rank 1 tiny-2
    cache = tmp_path / "cache"
    matrix = _matrix(models, ["synthetic-lesions"], cache, medmnist_root)
    rank = _start(["-m", "pytest_medprobe", "extract", ALL_PAIRS_FLAG, *matrix], tmp_path, RANK="1", WORLD_SIZE="2")
    assert rank.stdout is not None
    for line in rank.stdout:
        if "claimed 1 pair" in line:
            rank.send_signal(signal.SIGKILL)  # dies before writing its pair
            break
    rank.communicate()
    assert rank.returncode == -signal.SIGKILL

    status, output, results = _audit(shipped_audits.path, matrix, "audits")

    assert status == pytest.ExitCode.TESTS_FAILED
    assert re.search(r"tiny-2=\S+ +rank died \(4\)", output), output[:3000]  # in the plan
    [ok, missing] = results["runs"]
    assert ok["features"]["forward_passes"] == FORWARD_PASSES  # rank 0 never ran: no claim, the audit run extracts it
    message = missing["error"]
    assert "1 pair of this run was left to an `extract --all-pairs` rank that died before writing it" in message
    assert f"{models[1]} × synthetic-lesions: claimed by rank 1 of 2" in message
    command = next(line.strip() for line in message.splitlines() if line.strip().startswith("python -m"))
    assert f"{MODEL.flag}={models[1]}" in command and f"{MODEL.flag}={models[0]}" not in command

    status, output = finish(_start(shlex.split(command)[1:], tmp_path))

    assert status == 0, output[-3000:]
    assert f"{models[1]} × synthetic-lesions: extracted ({FORWARD_PASSES} forward passes" in output
    assert not list((cache / "claims").glob("*.json"))
