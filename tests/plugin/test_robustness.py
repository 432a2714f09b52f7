"""Interrupted, concurrent and repeated runs: the feature cache stays trustworthy, results do not move.

Every run is a real ``python -m pytest`` process on a copy of the shipped audits, as a user
or CI starts it, so signals, file locks and process deaths are the operating system's own.
A module-scoped reference run (fresh cache, never interrupted) is the yardstick.
"""

from __future__ import annotations

import json
import os
import re
import select
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from pytest_medprobe import cache as cache_module
from pytest_medprobe.cache import MANIFEST_FILE, FeatureCache
from pytest_medprobe.config import BATCH_SIZE, BOOTSTRAP, CACHE, DATASET, JSON, MAX_SAMPLES, SAVE_BASELINE
from tests.results import ON_THE_CPU, without_invocation

AUDITS_DIR = Path(__file__).resolve().parents[2] / "audits"
SAMPLES_PER_SPLIT = 120
BATCH = 4
# 120 images per split in batches of 4: 60 forward passes, under 1 s on an idle CPU and
# more under load, the rest of a run being imports and probes (about 10 s in all).
RUN_OPTIONS = (
    f"{DATASET.flag}=synthetic-lesions",
    f"{BATCH_SIZE.flag}={BATCH}",
    f"{MAX_SAMPLES.flag}={SAMPLES_PER_SPLIT}",
    f"{BOOTSTRAP.flag}=100",
    "-p",
    "no:cacheprovider",
)
FORWARD_PASSES = 2 * SAMPLES_PER_SPLIT // BATCH
RUN_TIMEOUT_S = 300.0  # far above a run's ~15 s: reached only when a lock blocks or a run hangs
COMPARED = ("stages", "failure_modes", "health")  # what a rerun must reproduce exactly
# An interrupted run stores nothing and the batch size is not part of the cache key, so it
# runs one image per pass: 240 passes, three times as long a window for the signal, free.
INTERRUPTED_BATCH = 1
# tqdm's bar for the fit split, e.g. "medprobe-tiny × synthetic-lesions [fit]:  12%|█▏  | 14/120 [...]".
FIT_PROGRESS = re.compile(r"\[fit\]:[^\r\n]*?(\d+)/(\d+)")
BATCHES_BEFORE_SIGNAL = 1

posix_only = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals and pseudo-terminals")


@dataclass(frozen=True)
class Run:
    """A finished audit run: its exit status, and the files it wrote into ``folder``."""

    folder: Path
    name: str
    returncode: int

    @property
    def json_path(self) -> Path:
        return self.folder / f"{self.name}.json"

    @property
    def baseline_path(self) -> Path:
        return self.folder / f"{self.name}.baseline.json"

    @property
    def output(self) -> str:
        """The end of the run's stdout and stderr, for assertion messages."""
        return (self.folder / f"{self.name}.log").read_text(encoding="utf-8", errors="replace")[-3000:]

    @property
    def record(self) -> dict[str, Any]:
        """The run's only entry of ``runs`` in the results file."""
        runs = json.loads(self.json_path.read_text(encoding="utf-8"))["runs"]
        assert len(runs) == 1, runs
        return runs[0]


def _audit_folder(folder: Path) -> Path:
    """A folder holding a copy of the shipped audits and an empty ini (it is the rootdir)."""
    folder.mkdir(parents=True)
    for path in AUDITS_DIR.glob("*.py"):
        shutil.copy(path, folder / path.name)
    # Pins the rootdir, so node ids in the results file do not depend on the tmp folder,
    # and keeps any ini file above the tmp folder out.
    (folder / "pytest.ini").write_text("[pytest]\n", encoding="utf-8")
    return folder


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTEST_ADDOPTS", "PYTEST_DISABLE_PLUGIN_AUTOLOAD")}
    return {**env, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}


def _command(folder: Path, cache: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "pytest", str(folder), f"{CACHE.flag}={cache}", *RUN_OPTIONS, *extra]


def _start(folder: Path, cache: Path, name: str) -> subprocess.Popen[bytes]:
    """Start a complete run writing ``<name>.json``, ``<name>.baseline.json`` and ``<name>.log``."""
    unfinished = Run(folder, name, returncode=-1)
    command = _command(
        folder, cache, f"{JSON.flag}={unfinished.json_path}", f"{SAVE_BASELINE.flag}={unfinished.baseline_path}"
    )
    with (folder / f"{name}.log").open("wb") as log:
        return subprocess.Popen(
            command, cwd=folder, env=_env(), stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT
        )


def _finish(process: subprocess.Popen[bytes], folder: Path, name: str) -> Run:
    try:
        returncode = process.wait(timeout=RUN_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
        pytest.fail(
            f"run {name} did not finish within {RUN_TIMEOUT_S:g} s:\n{Run(folder, name, -1).output}", pytrace=False
        )
    return Run(folder, name, returncode)


def _run(folder: Path, cache: Path, name: str) -> Run:
    return _finish(_start(folder, cache, name), folder, name)


def _interrupt_during_extraction(folder: Path, cache: Path, sig: signal.Signals) -> tuple[int, str]:
    """Run the audits, send ``sig`` once the fit split's progress bar has moved, return status and output.

    The run writes to a pseudo-terminal so tqdm draws its bar; the bar is the one sign from
    outside that the forward passes have begun and most of them are still to come.
    """
    import fcntl
    import pty
    import struct
    import termios

    primary, secondary = pty.openpty()
    # A terminal of 0 columns (a new pty's size) gets no bar from tqdm at all.
    fcntl.ioctl(secondary, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 120, 0, 0))
    process = subprocess.Popen(
        _command(folder, cache, f"{BATCH_SIZE.flag}={INTERRUPTED_BATCH}"),
        cwd=folder,
        env=_env(),
        stdin=subprocess.DEVNULL,
        stdout=secondary,
        stderr=secondary,
    )
    os.close(secondary)
    output = bytearray()
    deadline = time.monotonic() + RUN_TIMEOUT_S
    signalled = False
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([primary], [], [], 0.05)
            if ready:
                try:
                    chunk = os.read(primary, 65536)
                except OSError:  # EIO: every writer of the terminal has exited
                    chunk = b""
                if not chunk:
                    break
                output += chunk
            elif process.poll() is not None:
                break
            if not signalled:
                done = [int(n) for n, _ in FIT_PROGRESS.findall(output.decode("utf-8", errors="replace"))]
                if done and max(done) >= BATCHES_BEFORE_SIGNAL:
                    process.send_signal(sig)
                    signalled = True
    finally:
        os.close(primary)
        if process.poll() is None and not signalled:
            process.kill()
        try:
            returncode = process.wait(timeout=RUN_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            process.kill()
            returncode = process.wait()
    text = output.decode("utf-8", errors="replace")
    assert signalled, f"the extraction progress bar never reached {BATCHES_BEFORE_SIGNAL} batches:\n{text[-3000:]}"
    return returncode, text


def _paths_under(cache: Path) -> list[str]:
    """Every file and folder of the feature cache, relative to it (staging folders included)."""
    return sorted(str(path.relative_to(cache)) for path in (cache / "features").rglob("*"))


def _manifests(cache: Path) -> list[Path]:
    return sorted((cache / "features").glob(f"*/*/{MANIFEST_FILE}"))


def _load_without_notice(cache: Path, key: str) -> object:
    """The cached bank (or None); a notice here means a half-written or corrupt entry."""

    def fail(notice: str) -> None:
        raise AssertionError(notice)

    return FeatureCache(cache, notify=fail).load(key)


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> Run:
    """An uninterrupted run on a fresh cache: the results every other run must reproduce."""
    root = tmp_path_factory.mktemp("reference")
    run = _run(_audit_folder(root / "audits"), root / "cache", "reference")
    assert run.returncode == 0, run.output
    assert run.record["features"]["forward_passes"] == FORWARD_PASSES
    return run


@pytest.mark.slow
@posix_only
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGKILL], ids=["SIGINT", "SIGKILL"])
def test_a_run_interrupted_during_extraction_leaves_no_entry_and_the_next_run_gets_the_reference_results(
    sig: signal.Signals, reference: Run, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder, cache = _audit_folder(tmp_path / "audits"), tmp_path / "cache"
    key = reference.record["features"]["cache_key"]
    lock_file = f"features/{key[:2]}/{key}.lock"

    status, output = _interrupt_during_extraction(folder, cache, sig)

    expected = pytest.ExitCode.INTERRUPTED if sig == signal.SIGINT else -signal.SIGKILL
    assert status == expected, output[-3000:]
    # Interrupted before the store: only the lock file, no entry, no staging folder. The lock
    # file itself stays (filelock never deletes it), which the rerun must not mind.
    assert _paths_under(cache) == [f"features/{key[:2]}", lock_file]
    assert _manifests(cache) == []
    assert _load_without_notice(cache, key) is None
    monkeypatch.setattr(cache_module, "LOCK_TIMEOUT_S", 5.0)
    with FeatureCache(cache).lock(key):  # the OS freed the dead run's lock: no wait, no timeout
        pass

    rerun = _run(folder, cache, "rerun")

    assert rerun.returncode == 0, rerun.output
    assert rerun.record["features"] == {
        "cache_key": key,
        "cache_hit": False,
        "forward_passes": FORWARD_PASSES,
        **ON_THE_CPU,
    }
    for name in COMPARED:
        assert rerun.record[name] == reference.record[name], name
    assert [path.parent.name for path in _manifests(cache)] == [key]
    assert _load_without_notice(cache, key) is not None


@pytest.mark.slow
def test_two_sessions_started_together_on_one_cache_extract_once_and_agree(reference: Run, tmp_path: Path) -> None:
    folder, cache = _audit_folder(tmp_path / "audits"), tmp_path / "cache"
    key = reference.record["features"]["cache_key"]

    names = ("first", "second")
    processes = [_start(folder, cache, name) for name in names]  # before waiting for either
    try:
        runs = [_finish(process, folder, name) for process, name in zip(processes, names)]
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait()

    for run in runs:
        assert run.returncode == 0, run.output
    assert [path.parent.name for path in _manifests(cache)] == [key]
    provenance = sorted((run.record["features"] for run in runs), key=lambda features: features["forward_passes"])
    assert provenance == [
        {"cache_key": key, "cache_hit": True, "forward_passes": 0, **ON_THE_CPU},  # waited for the lock, then read
        {"cache_key": key, "cache_hit": False, "forward_passes": FORWARD_PASSES, **ON_THE_CPU},
    ]
    for name in COMPARED:
        assert runs[0].record[name] == runs[1].record[name] == reference.record[name], name


def test_waiting_too_long_for_a_locked_entry_raises_a_message_saying_what_how_long_and_what_to_do(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(cache_module, "LOCK_TIMEOUT_S", 0.5)
    key = "ab" * 32
    holder, waiter = FeatureCache(tmp_path), FeatureCache(tmp_path)

    with holder.lock(key):
        started = time.monotonic()
        with pytest.raises(TimeoutError) as raised:
            with waiter.lock(key):
                pytest.fail("took a lock that is held")
        waited = time.monotonic() - started

    assert 0.5 <= waited < 5
    message = str(raised.value)
    assert f"feature cache entry {key[:12]} is locked" in message  # what
    assert str(holder.entry_dir(key).with_suffix(".lock")) in message
    assert "waited 0.5 s, the limit" in message  # how long, against what
    assert "Wait for that run to finish" in message and CACHE.flag in message  # what to do
    assert "delete" not in message  # deleting a held flock file would let two runs extract at once
    with waiter.lock(key):  # free again once the holder lets go
        pass


@pytest.mark.slow
def test_two_runs_from_fresh_caches_write_byte_identical_results_and_baselines(reference: Run, tmp_path: Path) -> None:
    again = _run(_audit_folder(tmp_path / "audits"), tmp_path / "cache", "again")

    assert again.returncode == 0, again.output
    assert again.record["features"]["forward_passes"] == FORWARD_PASSES  # extracted, not read from a cache
    # Compared whole but for the command line and this run's paths: the results file has no
    # timestamps or durations to leave out.
    again_results, reference_results = (
        json.loads(run.json_path.read_text(encoding="utf-8")) for run in (again, reference)
    )
    assert without_invocation(again_results) == without_invocation(reference_results)
    assert again.baseline_path.read_bytes() == reference.baseline_path.read_bytes()
