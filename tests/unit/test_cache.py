"""The feature cache: round trips, atomic entries, verification on read."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from pytest_medprobe.cache import FEATURES_FILE, MANIFEST_FILE, FeatureCache, cache_key
from pytest_medprobe.extract import FeatureBank, SplitFeatures


def _bank(seed: int = 0) -> FeatureBank:
    rng = np.random.default_rng(seed)
    names = ("vision.0", "vision", "connector", "llm.0", "llm.0@answer")

    def split(n: int) -> SplitFeatures:
        return SplitFeatures(
            stages={name: rng.normal(size=(n, 8)).astype(np.float32) for name in names},
            answers=rng.integers(0, 3, n).astype(np.int64),
            letter_logits=rng.normal(size=(n, 3)).astype(np.float32),
        )

    return FeatureBank(stage_names=names, has_image_view=True, fit=split(10), test=split(6))


def _same(a: FeatureBank, b: FeatureBank) -> bool:
    if a.stage_names != b.stage_names or a.has_image_view != b.has_image_view:
        return False
    for left, right in ((a.fit, b.fit), (a.test, b.test)):
        if any(not np.array_equal(left.stages[n], right.stages[n]) for n in a.stage_names):
            return False
        if not (
            np.array_equal(left.answers, right.answers) and np.array_equal(left.letter_logits, right.letter_logits)
        ):
            return False
    return True


def test_a_stored_bank_reads_back_bit_exactly(tmp_path: Path) -> None:
    cache, key = FeatureCache(tmp_path), cache_key({"model": "m", "dataset": "d"})
    bank = _bank()
    cache.store(key, bank, {"model": "m"})
    loaded = cache.load(key)
    assert loaded is not None and _same(bank, loaded)


def test_a_missing_entry_reads_as_none_without_warning(tmp_path: Path) -> None:
    assert FeatureCache(tmp_path).load(cache_key({"x": 1})) is None


def test_keys_change_with_every_input() -> None:
    base = {"model": "a", "dataset": "b", "question": "q", "dtype": "auto"}
    keys = {cache_key(base)} | {cache_key({**base, name: "other"}) for name in base}
    assert len(keys) == len(base) + 1


def test_entry_folders_come_from_the_hash_only(tmp_path: Path) -> None:
    cache = FeatureCache(tmp_path)
    with pytest.raises(ValueError, match="SHA-256"):
        cache.entry_dir("../../etc")
    key = cache_key({"model": "../../evil"})
    assert cache.entry_dir(key).resolve().is_relative_to(tmp_path.resolve())


@pytest.mark.parametrize("damage", ["truncate", "flip", "manifest", "version"])
def test_a_damaged_entry_is_reported_and_not_trusted(tmp_path: Path, damage: str) -> None:
    notices: list[str] = []
    cache, key = FeatureCache(tmp_path, notify=notices.append), cache_key({"model": "m"})
    entry = cache.store(key, _bank(), {})
    features = entry / FEATURES_FILE
    if damage == "truncate":
        features.write_bytes(features.read_bytes()[:100])
    elif damage == "flip":
        data = bytearray(features.read_bytes())
        data[-1] ^= 0xFF
        features.write_bytes(bytes(data))
    elif damage == "version":
        manifest = json.loads((entry / MANIFEST_FILE).read_text())
        (entry / MANIFEST_FILE).write_text(json.dumps({**manifest, "format_version": 0}))
    else:
        (entry / MANIFEST_FILE).write_text("{not json")
    assert cache.load(key) is None
    assert len(notices) == 1 and "extracting again" in notices[0]
    cache.store(key, _bank(1), {})  # recomputed entries replace damaged ones
    assert cache.load(key) is not None


def test_no_temporary_folder_is_left_after_a_store(tmp_path: Path) -> None:
    cache, key = FeatureCache(tmp_path), cache_key({"model": "m"})
    entry = cache.store(key, _bank(), {})
    assert sorted(p.name for p in entry.parent.iterdir()) == [key]
    assert sorted(p.name for p in entry.iterdir()) == [FEATURES_FILE, MANIFEST_FILE]


def test_the_cache_holds_no_pickle(tmp_path: Path) -> None:
    cache, key = FeatureCache(tmp_path), cache_key({"model": "m"})
    entry = cache.store(key, _bank(), {})
    assert b"\x80\x04\x95" not in (entry / FEATURES_FILE).read_bytes()[:64]  # no pickle protocol header
    assert (entry / FEATURES_FILE).read_bytes()[8:9] == b"{"  # safetensors: length, then a JSON header
