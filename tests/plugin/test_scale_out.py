"""Scale-out: sharded extraction from separate processes, and audits under pytest-xdist.

Every extraction and audit run here is a real process (``python -m pytest_medprobe
extract``, ``python -m pytest [-n 2]``), as a user or a cluster job starts it; the
processes share nothing but the cache folder. A rank of ``torchrun`` / ``accelerate
launch`` is such a process with ``RANK`` and ``WORLD_SIZE`` set, which is how one is
started here (the launchers themselves only add seconds of start-up). The yardstick is a
single-process extraction made in this process through ``AuditSession``, the code path
of a plain ``pytest audits/`` run.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from pytest_medprobe.cache import FeatureCache
from pytest_medprobe.commands import SHARD_FLAG
from pytest_medprobe.config import BATCH_SIZE, BOOTSTRAP, CACHE, JSON, MAX_SAMPLES, SAVE_BASELINE, resolve_settings
from pytest_medprobe.extract import FeatureBank
from pytest_medprobe.session import AuditSession, Pair
from pytest_medprobe.shards import IncompleteShards, Shard, extract_shard
from tests.processes import finish
from tests.results import ON_THE_CPU, without_invocation

AUDITS_DIR = Path(__file__).resolve().parents[2] / "audits"
SAMPLES = 40  # per split
BATCH = 6  # 7 batches per split, the last one short: shard 0/2 takes rows 0-18, shard 1/2 rows 18-40
FORWARD_PASSES = 2 * -(-SAMPLES // BATCH)
EXTRACT_OPTIONS = (f"{MAX_SAMPLES.flag}={SAMPLES}", f"{BATCH_SIZE.flag}={BATCH}")
AUDIT_OPTIONS = (*EXTRACT_OPTIONS, f"{BOOTSTRAP.flag}=100", "-p", "no:cacheprovider")
THREADS = 1  # torch threads of every extraction here (another count sums in another order: ~1e-6 apart)
PAIR = Pair("medprobe-tiny", "synthetic-lesions")


def _env() -> dict[str, str]:
    drop = ("PYTEST_ADDOPTS", "PYTEST_DISABLE_PLUGIN_AUTOLOAD", "RANK", "WORLD_SIZE", "LOCAL_RANK")
    env = {k: v for k, v in os.environ.items() if k not in drop and not k.startswith("PYTEST_XDIST")}
    # One torch thread per process, as in the reference: processes started together then do not
    # wait on each other's threads, and every process sums floats in the same order.
    return {**env, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "OMP_NUM_THREADS": str(THREADS)}


def _start(command: list[str], cwd: Path, **env: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        command,
        cwd=cwd,
        env={**_env(), **env},
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _extract_command(cache: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "pytest_medprobe", "extract", f"{CACHE.flag}={cache}", *EXTRACT_OPTIONS, *extra]


def _audit_folder(folder: Path) -> Path:
    """A copy of the shipped audits with an empty ini (the rootdir: node ids stay short)."""
    folder.mkdir(parents=True)
    for path in AUDITS_DIR.glob("*.py"):
        shutil.copy(path, folder / path.name)
    (folder / "pytest.ini").write_text("[pytest]\n", encoding="utf-8")
    return folder


def _audit(folder: Path, cache: Path, name: str, *extra: str) -> tuple[int, str, dict[str, Any]]:
    """Run the shipped audits; exit status, output, and the results file (the baseline: ``<name>.baseline.json``)."""
    results = folder / f"{name}.json"
    command = [sys.executable, "-m", "pytest", str(folder), f"{CACHE.flag}={cache}", f"{JSON.flag}={results}"]
    command.append(f"{SAVE_BASELINE.flag}={folder / f'{name}.baseline.json'}")
    status, output = finish(_start([*command, *AUDIT_OPTIONS, *extra], folder))
    assert results.is_file(), output[-3000:]
    return status, output, json.loads(results.read_text(encoding="utf-8"))


def _session(cache: Path) -> AuditSession:
    """An audit session with the settings of the runs here, as pytest would resolve them."""
    cli = {"max_samples": str(SAMPLES), "batch_size": str(BATCH), "cache_dir": str(cache)}
    return AuditSession(resolve_settings(cli, {}, cache.parent))


@contextmanager
def _torch_threads(count: int) -> Iterator[None]:
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _assert_same_arrays(bank: FeatureBank, reference: FeatureBank) -> None:
    assert (bank.stage_names, bank.has_image_view) == (reference.stage_names, reference.has_image_view)
    for split in ("fit", "test"):
        ours, theirs = getattr(bank, split), getattr(reference, split)
        for stage in reference.stage_names:
            assert ours.stages[stage].dtype == theirs.stages[stage].dtype
            np.testing.assert_array_equal(ours.stages[stage], theirs.stages[stage], err_msg=f"{split} {stage}")
        np.testing.assert_array_equal(ours.answers, theirs.answers, err_msg=f"{split} answers")
        np.testing.assert_array_equal(ours.letter_logits, theirs.letter_logits, err_msg=f"{split} letter logits")


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, FeatureBank]:
    """The pair's cache key and its features, extracted by one process (this one) in one go."""
    session = _session(tmp_path_factory.mktemp("reference") / "cache")
    with _torch_threads(THREADS):
        bank, provenance = session.features(PAIR)
    assert provenance.forward_passes == FORWARD_PASSES
    return session.features_key(PAIR), bank


@pytest.fixture(scope="module")
def serial(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], bytes]:
    """Results file and baseline file of a plain serial audit run on a fresh cache (it extracts)."""
    root = tmp_path_factory.mktemp("serial")
    folder = _audit_folder(root / "audits")
    status, output, results = _audit(folder, root / "cache", "serial")
    assert status == 0, output[-3000:]
    assert [run["features"]["forward_passes"] for run in results["runs"]] == [FORWARD_PASSES]
    return results, (folder / "serial.baseline.json").read_bytes()


def _verdicts(results: dict[str, Any]) -> list[dict[str, Any]]:
    """What a run concluded about each pair: its records without the features' provenance."""
    return [{name: value for name, value in run.items() if name != "features"} for run in results["runs"]]


@pytest.mark.slow
def test_two_shard_processes_write_the_arrays_of_one_process_and_the_audits_then_run_without_a_forward_pass(
    reference: tuple[str, FeatureBank], serial: tuple[dict[str, Any], bytes], tmp_path: Path
) -> None:
    key, expected = reference
    cache = tmp_path / "cache"

    # Started together, so either may finish last (the last one merges): shard 0 named on the
    # command line, shard 1 from the variables torchrun and accelerate launch give each rank.
    processes = [
        _start(_extract_command(cache, f"{SHARD_FLAG}=0/2"), tmp_path),
        _start(_extract_command(cache), tmp_path, RANK="1", WORLD_SIZE="2", LOCAL_RANK="1"),
    ]
    finished = [finish(process) for process in processes]

    for status, output in finished:
        assert status == 0, output[-3000:]
    outputs = "\n".join(output for _, output in finished)
    assert "fit rows 0-18 of 40" in outputs and "fit rows 18-40 of 40" in outputs  # whole batches of 6
    assert f"merged into cache entry {key[:12]}" in outputs  # the CLI computed the audits' key
    assert not _session(cache).store.shards_dir(key).exists()  # merged, then removed
    merged = FeatureCache(cache).load(key)
    assert merged is not None
    _assert_same_arrays(merged, expected)
    manifest = json.loads((FeatureCache(cache).entry_dir(key) / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["description"]["shards"] == 2
    assert manifest["description"]["forward_passes"] == FORWARD_PASSES  # no batch run twice

    status, output, results = _audit(_audit_folder(tmp_path / "audits"), cache, "audits")

    assert status == 0, output[-3000:]
    assert [run["features"] for run in results["runs"]] == [
        {"cache_key": key, "cache_hit": True, "forward_passes": 0, **ON_THE_CPU}
    ]
    assert _verdicts(results) == _verdicts(serial[0])


@pytest.mark.slow
def test_a_missing_shard_fails_the_audits_with_what_exists_what_is_missing_and_the_command_that_writes_it(
    reference: tuple[str, FeatureBank], shipped_audits: pytest.Pytester, tmp_path: Path
) -> None:
    key, expected = reference
    cache = tmp_path / "cache"
    with _torch_threads(THREADS):
        extract_shard(_session(cache), PAIR, Shard(0, 2))  # rank 1 never ran

    with pytest.raises(IncompleteShards) as raised:
        _session(cache).features(PAIR)
    message = str(raised.value)
    assert f"feature cache entry {key[:12]} of medprobe-tiny × synthetic-lesions is incomplete" in message
    assert "1 of 2 shards written (0/2), missing 1/2" in message
    assert str(_session(cache).store.shards_dir(key)) in message
    command = next(line.strip() for line in message.splitlines() if f"{SHARD_FLAG}=1/2" in line)
    assert command.startswith("python -m pytest_medprobe extract ")
    assert "torchrun --nproc-per-node=2 -m pytest_medprobe extract " in message

    results_path = tmp_path / "results.json"
    run = shipped_audits.runpytest(f"{CACHE.flag}={cache}", f"{JSON.flag}={results_path}", *AUDIT_OPTIONS)

    assert run.ret == pytest.ExitCode.TESTS_FAILED
    run.stdout.fnmatch_lines(["*is incomplete: 1 of 2 shards written (0/2), missing 1/2*", f"*{SHARD_FLAG}=1/2*"])
    results = json.loads(results_path.read_text(encoding="utf-8"))
    assert [run.get("error", "") for run in results["runs"]] == [f"{PAIR.model} × {PAIR.dataset}: {message}"]
    outcomes = {audit["nodeid"]: audit["outcome"] for audit in results["audits"]}
    # Every audit that reads the pair's features errors; the subgroup audit skips before it
    # asks for them, since no --medprobe-subgroup is set.
    assert {outcome for nodeid, outcome in outcomes.items() if "test_subgroups" not in nodeid} == {"error"}
    assert {outcome for nodeid, outcome in outcomes.items() if "test_subgroups" in nodeid} == {"skipped"}

    # The command from the message, as printed (with this interpreter), completes the entry.
    status, output = finish(_start([sys.executable, *shlex.split(command)[1:]], tmp_path))

    assert status == 0, output
    assert f"merged into cache entry {key[:12]}" in output
    merged = FeatureCache(cache).load(key)
    assert merged is not None
    _assert_same_arrays(merged, expected)


@pytest.mark.slow
def test_two_xdist_workers_extract_each_pair_once_and_write_the_files_of_a_serial_run(
    serial: tuple[dict[str, Any], bytes], tmp_path: Path
) -> None:
    folder = _audit_folder(tmp_path / "audits")
    status, output, parallel = _audit(folder, tmp_path / "cache", "xdist", "-n", "2", "-v")

    assert status == 0, output[-3000:]
    # The pair's audits ran on both workers, so both needed its features ...
    assert set(re.findall(r"\[(gw\d)\] .*PASSED .*\[medprobe-tiny-synthetic-lesions\]", output)) == {"gw0", "gw1"}
    # ... and one extracted them while the other waited for the cache entry's lock, then read it.
    assert [run["features"]["forward_passes"] for run in parallel["runs"]] == [FORWARD_PASSES]
    assert len(list((tmp_path / "cache" / "features").glob("*/*/manifest.json"))) == 1
    # Written once, by the controller: the serial run's files (pairs, provenance, audits in collection order).
    assert without_invocation(parallel) == without_invocation(serial[0])
    assert (folder / "xdist.baseline.json").read_bytes() == serial[1]
    assert output.count("medprobe summary") == 1
    assert re.search(r"medprobe-tiny +synthetic-lesions +.* none +extracted", output), output[-3000:]
