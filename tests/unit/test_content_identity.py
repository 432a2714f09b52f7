"""Identity is content: files, checkpoints, datasets and cache entries are known by their bytes.

Names, sizes and modification times are kept by ``cp -p``, ``rsync -a``, tar and CI cache
restores while the bytes change, so none of them may decide what a file is.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from pytest_medprobe import files
from pytest_medprobe.cache import MANIFEST_FILE, FeatureCache, cache_key
from pytest_medprobe.config import resolve_settings
from pytest_medprobe.extract import FeatureBank, SplitFeatures
from pytest_medprobe.files import HASH_MEMO_FILE, content_sha256, content_sha256s
from pytest_medprobe.models.registry import checkpoint_fingerprint
from pytest_medprobe.session import AuditSession, Pair
from pytest_medprobe.zoo import SHIPPED_DIR


def _overwrite_keeping_name_size_and_mtime(path: Path, data: bytes) -> None:
    """What ``cp -p other path`` does: the same inode, new bytes, the old modification time."""
    before = path.stat()
    assert len(data) == before.st_size
    with path.open("r+b") as stream:  # in place: the inode stays
        stream.write(data)
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    after = path.stat()
    assert (after.st_ino, after.st_size, after.st_mtime_ns) == (before.st_ino, before.st_size, before.st_mtime_ns)


def test_the_same_bytes_under_another_path_and_time_have_one_identity(tmp_path: Path) -> None:
    first, second = tmp_path / "a.bin", tmp_path / "b.bin"
    first.write_bytes(b"weights" * 1000)
    shutil.copy(first, second)  # a plain copy: new inode, new mtime
    os.utime(second, ns=(1, 1))
    assert content_sha256(first) == content_sha256(second) == hashlib.sha256(b"weights" * 1000).hexdigest()


@pytest.mark.parametrize("memo", [False, True], ids=["no-memo", "warm-memo"])
def test_other_bytes_with_the_same_name_size_mtime_and_inode_have_another_identity(tmp_path: Path, memo: bool) -> None:
    path = tmp_path / "model.safetensors"
    path.write_bytes(b"a" * 4096)
    memo_dir = tmp_path / "cache" if memo else None
    before = content_sha256(path, memo_dir)
    _overwrite_keeping_name_size_and_mtime(path, b"b" * 4096)
    assert content_sha256(path, memo_dir) == hashlib.sha256(b"b" * 4096).hexdigest() != before


def test_the_memo_spares_rereading_an_unchanged_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    paths = [tmp_path / f"shard-{i}.safetensors" for i in range(3)]
    for i, path in enumerate(paths):
        path.write_bytes(bytes([i]) * 1000)
    reads: list[Path] = []
    real = files.file_sha256
    monkeypatch.setattr(files, "file_sha256", lambda path: reads.append(path) or real(path))
    cold = content_sha256s(paths, tmp_path / "cache")
    assert len(reads) == 3 and (tmp_path / "cache" / HASH_MEMO_FILE).is_file()
    assert content_sha256s(paths, tmp_path / "cache") == cold and len(reads) == 3  # warm: nothing read
    paths[1].write_bytes(b"x" * 1000)
    assert content_sha256s(paths, tmp_path / "cache")[1] == hashlib.sha256(b"x" * 1000).hexdigest()
    assert len(reads) == 4  # only the changed file was read again


@pytest.mark.parametrize("damage", ["not-json", "list", "unwritable"])
def test_a_damaged_or_unwritable_memo_only_costs_a_reread(tmp_path: Path, damage: str) -> None:
    path = tmp_path / "w.bin"
    path.write_bytes(b"w" * 100)
    memo_dir = tmp_path / "cache"
    memo_dir.mkdir()
    if damage == "unwritable":
        memo_dir = tmp_path / "a-file"
        memo_dir.write_text("")  # the memo's folder is a file: nothing can be written there
    else:
        (memo_dir / HASH_MEMO_FILE).write_text("{nope" if damage == "not-json" else "[1, 2]")
    assert content_sha256(path, memo_dir) == hashlib.sha256(b"w" * 100).hexdigest()


def test_a_hugging_face_blob_is_identified_by_its_name_without_reading_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = b"large weights" * 100
    sha = hashlib.sha256(data).hexdigest()
    blobs, snapshot = tmp_path / "blobs", tmp_path / "snapshots" / "abc123"
    blobs.mkdir()
    snapshot.mkdir(parents=True)
    (blobs / sha).write_bytes(data)
    (snapshot / "model.safetensors").symlink_to(Path("../../blobs") / sha)
    (blobs / ("0" * 40)).write_text("{}")  # a small file: a git SHA-1 name, hashed instead
    (snapshot / "config.json").symlink_to(Path("../../blobs") / ("0" * 40))
    monkeypatch.setattr(files, "file_sha256", lambda path: pytest.fail(f"{path} was read"))
    assert content_sha256(snapshot / "model.safetensors") == sha
    monkeypatch.undo()
    assert content_sha256(snapshot / "config.json") == hashlib.sha256(b"{}").hexdigest()


@pytest.fixture
def checkpoint(tmp_path: Path) -> Path:
    return Path(shutil.copytree(SHIPPED_DIR, tmp_path / "final"))


def test_a_plain_copy_of_a_checkpoint_is_the_same_model(checkpoint: Path, tmp_path: Path) -> None:
    copy = Path(shutil.copytree(checkpoint, tmp_path / "elsewhere" / "copy", copy_function=shutil.copy))
    assert checkpoint_fingerprint(copy) == checkpoint_fingerprint(checkpoint) == checkpoint_fingerprint(SHIPPED_DIR)


@pytest.mark.parametrize("memo", [False, True], ids=["no-memo", "warm-memo"])
def test_other_weights_copied_with_their_mtime_are_another_model(checkpoint: Path, tmp_path: Path, memo: bool) -> None:
    memo_dir = tmp_path / "cache" if memo else None
    before = checkpoint_fingerprint(checkpoint, memo_dir)
    weights = checkpoint / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0x01  # a fine-tune: same architecture, same size, one different bit
    _overwrite_keeping_name_size_and_mtime(weights, bytes(data))
    assert checkpoint_fingerprint(checkpoint, memo_dir) != before


def _bank(offset: float = 0.0) -> FeatureBank:
    def split(n: int) -> SplitFeatures:
        return SplitFeatures(
            stages={"vision": np.full((n, 4), offset, dtype=np.float32)},
            answers=np.zeros(n, dtype=np.int64),
            letter_logits=np.zeros((n, 2), dtype=np.float32),
        )

    return FeatureBank(stage_names=("vision",), has_image_view=False, fit=split(4), test=split(2))


@pytest.mark.parametrize("how", ["copied", "symlinked-entry", "symlinked-file"])
def test_an_entry_of_another_key_is_never_served(tmp_path: Path, how: str) -> None:
    notices: list[str] = []
    cache = FeatureCache(tmp_path, notify=notices.append)
    healthy, blind = cache_key({"model": "healthy"}), cache_key({"model": "blind"})
    source = cache.store(healthy, _bank(1.0), {})
    target = cache.entry_dir(blind)
    target.parent.mkdir(parents=True, exist_ok=True)
    if how == "copied":
        shutil.copytree(source, target)
    elif how == "symlinked-entry":
        target.symlink_to(source, target_is_directory=True)
    else:  # a real folder, its files linked to the other entry's
        target.mkdir()
        for path in source.iterdir():
            (target / path.name).symlink_to(path)
    assert cache.load(blind) is None
    assert len(notices) == 1 and "extracting again" in notices[0]
    cache.store(blind, _bank(2.0), {})  # the re-extracted entry replaces the foreign one
    assert float(cache.load(blind).test.stages["vision"][0, 0]) == 2.0  # type: ignore[union-attr]
    assert float(cache.load(healthy).test.stages["vision"][0, 0]) == 1.0  # type: ignore[union-attr]
    assert json.loads((cache.entry_dir(blind) / MANIFEST_FILE).read_text())["key"] == blind


def _session(tmp_path: Path, **cli: object) -> AuditSession:
    return AuditSession(resolve_settings({"cache_dir": str(tmp_path), **cli}, {}, tmp_path))


def test_the_cache_key_holds_the_dtype_used_not_the_setting(tmp_path: Path) -> None:
    pair = Pair("medprobe-tiny", "synthetic-lesions")
    auto = _session(tmp_path, dtype="auto", device="cpu").features_key(pair)
    assert auto == _session(tmp_path, dtype="float32", device="cpu").features_key(pair)  # auto is float32 on a CPU
    assert auto != _session(tmp_path, dtype="bfloat16", device="cpu").features_key(pair)


def test_the_cache_key_holds_the_device_type(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    pair = Pair("medprobe-tiny", "synthetic-lesions")
    on_cpu = _session(tmp_path, dtype="bfloat16", device="auto")
    cpu_key = on_cpu.features_key(pair)
    assert on_cpu.numerics() == ("bfloat16", "cpu")
    # As on a machine with a GPU: auto resolves to cuda and bfloat16. Nothing loads, only the key.
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *args, **kwargs: True)
    on_gpu = _session(tmp_path, dtype="auto", device="auto")
    assert on_gpu.numerics() == ("bfloat16", "cuda")
    assert on_gpu.features_key(pair) != cpu_key
