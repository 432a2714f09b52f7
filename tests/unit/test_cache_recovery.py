"""The cache never ends a run: shared folders, unwritable or full disks, SIGTERM mid-write.

Each condition is reported once through ``notify`` (never as a Python warning) and the run
carries on; nothing half-written stays behind.
"""

from __future__ import annotations

import os
import shutil
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from pytest_medprobe.cache import FEATURES_FILE, MANIFEST_FILE, FeatureCache, cache_key
from pytest_medprobe.extract import FeatureBank, SplitFeatures

ROOT = Path(__file__).resolve().parents[2]


def _bank(offset: float = 0.0) -> FeatureBank:
    def split(n: int) -> SplitFeatures:
        return SplitFeatures(
            stages={"vision": np.full((n, 4), offset, dtype=np.float32)},
            answers=np.zeros(n, dtype=np.int64),
            letter_logits=np.zeros((n, 2), dtype=np.float32),
        )

    return FeatureBank(stage_names=("vision",), has_image_view=False, fit=split(4), test=split(2))


def _cache(root: Path) -> tuple[FeatureCache, list[str]]:
    notices: list[str] = []
    return FeatureCache(root, notify=notices.append), notices


@pytest.mark.parametrize("umask", [0o002, 0o022, 0o077])
def test_entries_honour_the_umask(tmp_path: Path, umask: int) -> None:
    cache, _ = _cache(tmp_path)
    previous = os.umask(umask)
    try:
        entry = cache.store(cache_key({"model": "m"}), _bank(), {})
    finally:
        os.umask(previous)
    assert entry is not None
    assert stat.S_IMODE(entry.stat().st_mode) == 0o777 & ~umask
    for name in (FEATURES_FILE, MANIFEST_FILE):
        assert stat.S_IMODE((entry / name).stat().st_mode) == 0o666 & ~umask


def test_entries_in_a_group_shared_folder_stay_group_shared(tmp_path: Path) -> None:
    (tmp_path / "features").mkdir()
    os.chmod(tmp_path / "features", 0o2775)  # the set-group-ID bit of a shared project folder
    cache, _ = _cache(tmp_path)
    previous = os.umask(0o002)
    try:
        entry = cache.store(cache_key({"model": "m"}), _bank(), {})
    finally:
        os.umask(previous)
    assert entry is not None
    assert entry.stat().st_mode & stat.S_ISGID and entry.parent.stat().st_mode & stat.S_ISGID
    assert stat.S_IMODE(entry.stat().st_mode) & 0o070 == 0o070


COLLEAGUE = """
import sys
from pathlib import Path
from pytest_medprobe.cache import FeatureCache
sys.path.insert(0, {tests!r})
from unit.test_cache_recovery import _bank
notices = []
cache = FeatureCache(Path({root!r}), notify=notices.append)
key = {key!r}
assert cache.load(key) is None
with cache.lock(key):
    assert cache.store(key, _bank(2.0), {{}}) is None
print(len(notices), "|".join(notices))
"""


def test_another_users_unreadable_entry_is_skipped_with_a_message_not_a_crash(tmp_path: Path) -> None:
    cache, _ = _cache(tmp_path)
    key = cache_key({"model": "m"})
    with cache.lock(key):
        entry = cache.store(key, _bank(1.0), {})
    assert entry is not None
    os.chmod(entry, 0o000)  # as a colleague's entry under a private umask looks to us
    command = [sys.executable, "-c", COLLEAGUE.format(tests=str(ROOT / "tests"), root=str(tmp_path), key=key)]
    if os.geteuid() == 0:  # root reads everything: without its override capabilities it is like anyone
        if shutil.which("setpriv") is None:
            pytest.skip("running as root without setpriv (util-linux), which drops root's file-access override")
        command = ["setpriv", "--bounding-set=-dac_override,-dac_read_search,-fowner", *command]
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    try:
        done = subprocess.run(command, capture_output=True, text=True, env=env)
    finally:
        os.chmod(entry, 0o755)
    assert done.returncode == 0, done.stderr
    count, messages = done.stdout.strip().split(" ", 1)
    assert int(count) == 2  # the unusable entry, then once that the cache cannot be written
    assert "unusable" in messages and "extracting again" in messages and "cannot be written" in messages
    assert float(cache.load(key).test.stages["vision"][0, 0]) == 1.0  # type: ignore[union-attr]


@pytest.mark.parametrize("where", ["a-file", "inside-a-file"])
def test_an_unwritable_cache_is_reported_once_and_the_run_carries_on(tmp_path: Path, where: str) -> None:
    (tmp_path / "a-file").write_text("not a folder")
    root = tmp_path / "a-file" if where == "a-file" else tmp_path / "a-file" / "cache"
    cache, notices = _cache(root)
    for model in ("a", "b"):
        key = cache_key({"model": model})
        assert cache.load(key) is None
        with cache.lock(key):
            assert cache.store(key, _bank(), {}) is None
    assert len(notices) == 1 and "cannot be written" in notices[0] and "--medprobe-cache" in notices[0]


def test_a_full_disk_mid_write_leaves_nothing_half_written(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from safetensors import SafetensorError
    from safetensors import numpy as safetensors_numpy

    def fill_the_disk(arrays: object, path: str) -> None:
        Path(path).write_bytes(b"\0" * 1000)  # part of the file made it, then the disk was full
        raise SafetensorError("Error while serializing: IoError(No space left on device (os error 28))")

    monkeypatch.setattr(safetensors_numpy, "save_file", fill_the_disk)
    cache, notices = _cache(tmp_path)
    key = cache_key({"model": "m"})
    with cache.lock(key):
        assert cache.store(key, _bank(), {}) is None
    assert len(notices) == 1 and "No space left on device" in notices[0]
    folder = cache.entry_dir(key).parent
    assert [path.name for path in folder.iterdir()] == [f"{key}.lock"]  # no entry, no temporary folder


SLOW_WRITER = """
import sys, time
from pathlib import Path
from safetensors import numpy as safetensors_numpy
sys.path.insert(0, {tests!r})
from unit.test_cache_recovery import _bank
from pytest_medprobe.cache import FeatureCache

def slow_save(arrays, path):
    Path(path).write_bytes(b"\\0" * 4096)  # a large write in progress
    print("writing", flush=True)
    time.sleep(60)

safetensors_numpy.save_file = slow_save
FeatureCache(Path({root!r})).store({key!r}, _bank(), {{}})
"""


def test_sigterm_during_a_write_removes_the_temporary_folder(tmp_path: Path) -> None:
    key = cache_key({"model": "m"})
    code = SLOW_WRITER.format(tests=str(ROOT / "tests"), root=str(tmp_path), key=key)
    with subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True) as writer:
        assert writer.stdout is not None and writer.stdout.readline().strip() == "writing"
        staging = [path for path in (tmp_path / "features" / key[:2]).iterdir() if path.name.startswith(".")]
        assert len(staging) == 1 and (staging[0] / FEATURES_FILE).is_file()
        writer.send_signal(signal.SIGTERM)
        assert writer.wait(timeout=60) == 128 + signal.SIGTERM
    assert list((tmp_path / "features" / key[:2]).iterdir()) == []


HOLDER = """
import sys, time
from filelock import FileLock
lock = FileLock({lock!r})
lock.acquire()
print("held", flush=True)
time.sleep(60)
"""


def test_temporaries_of_killed_writers_are_swept_by_the_next_run_but_not_those_being_written(tmp_path: Path) -> None:
    cache, _ = _cache(tmp_path)
    killed, alive = cache_key({"model": "killed"}), cache_key({"model": "alive"})
    leftovers = {}
    for key in (killed, alive):
        folder = cache.entry_dir(key).parent
        folder.mkdir(parents=True, exist_ok=True)
        leftovers[key] = folder / f".{key[:12]}.abc123"
        leftovers[key].mkdir()
        (leftovers[key] / FEATURES_FILE).write_bytes(b"\0" * 100)
        old = time.time() - 3600
        os.utime(leftovers[key], (old, old))
    lock = str(cache.entry_dir(alive).with_suffix(".lock"))
    with subprocess.Popen(
        [sys.executable, "-c", HOLDER.format(lock=lock)], stdout=subprocess.PIPE, text=True
    ) as holder:
        try:
            assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
            with cache.lock(cache_key({"model": "another pair"})):
                pass
        finally:
            holder.kill()
    assert not leftovers[killed].exists()
    assert leftovers[alive].exists()  # its writer is alive: not ours to remove
    with cache.lock(alive):  # the next writer of that entry removes it under the lock
        pass
    assert not leftovers[alive].exists()
