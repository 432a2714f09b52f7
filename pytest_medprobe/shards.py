"""Sharded extraction: shard ``i`` of ``n`` extracts a fixed part of each split; all ``n`` make the entry.

``python -m pytest_medprobe extract --shard i/n`` (or one rank of ``torchrun`` /
``accelerate launch``, from ``RANK`` / ``WORLD_SIZE``) writes one shard of a pair's
feature-cache entry. The processes share nothing but the cache folder: no process group,
no collective, so any launcher works and a shard can be rerun alone. The layout on disk
and the merge are ``shard_merge``'s.

Partition: each split's batches (``batch_size`` images, from row 0, as a single process
forms them) are cut into ``n`` contiguous runs, so every forward pass of a shard sees
exactly the batch a single process would have run, and the merged arrays are the single
process's arrays. When a split has fewer batches than there are shards, the extra shards
are idle (they write an empty shard, so the set stays countable).
"""

from __future__ import annotations

import copy
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from pytest_medprobe.cache import write_bank
from pytest_medprobe.shard_merge import (
    SPLITS,
    IncompleteShards,
    Shard,
    _lock_path,
    _ranges,
    _usable_manifest,
    shard_held,
)

if TYPE_CHECKING:
    from pytest_medprobe.data.base import ProbeDataset
    from pytest_medprobe.extract import FeatureBank, SplitFeatures
    from pytest_medprobe.pairs import Pair
    from pytest_medprobe.session import AuditSession

__all__ = ["IncompleteShards", "Shard", "ShardWritten", "extract_shard", "rank_device", "run_extract", "shard_rows"]


def rank_device(device: str, environ: Mapping[str, str]) -> str:
    """``auto`` becomes ``cuda:<LOCAL_RANK>`` for a launched rank on a GPU machine, else stays as given."""
    if device != "auto" or "LOCAL_RANK" not in environ:
        return device
    import torch

    if not torch.cuda.is_available():
        return device
    return f"cuda:{int(environ['LOCAL_RANK']) % torch.cuda.device_count()}"


def shard_rows(shard: Shard, n_rows: Mapping[str, int], batch_size: int) -> dict[str, range]:
    """The rows of each split that ``shard`` extracts: whole batches, contiguous, in order.

    Shards beyond the number of batches of the smaller split are idle (empty ranges at the
    end), so that every working shard has rows of both splits.
    """
    batches = {split: -(-n // batch_size) for split, n in n_rows.items()}
    working = min(shard.count, *batches.values())
    rows = {}
    for split, n in n_rows.items():
        if shard.index >= working:
            rows[split] = range(n, n)
        else:
            first = shard.index * batches[split] // working
            last = (shard.index + 1) * batches[split] // working
            rows[split] = range(first * batch_size, min(last * batch_size, n))
    return rows


def _rows_of(dataset: ProbeDataset, rows: Mapping[str, range]) -> ProbeDataset:
    """``dataset`` restricted to ``rows`` of each split.

    A copy with the fields replaced, not a new ProbeDataset: a shard's rows need not hold
    two classes, which the constructor's validation (meant for whole splits) would refuse.
    """
    view = copy.copy(dataset)
    for split, selected in rows.items():
        for field in (f"{split}_images", f"{split}_labels"):
            object.__setattr__(view, field, getattr(dataset, field)[selected.start : selected.stop])
    return view


def _empty_bank(n_classes: int) -> FeatureBank:
    from pytest_medprobe.extract import FeatureBank, SplitFeatures

    def empty() -> SplitFeatures:
        return SplitFeatures(
            stages={}, answers=np.zeros(0, np.int64), letter_logits=np.zeros((0, n_classes), np.float32)
        )

    return FeatureBank(stage_names=(), has_image_view=False, fit=empty(), test=empty())


@dataclass(frozen=True)
class ShardWritten:
    """What one ``extract --shard`` call did for one pair, for the command's output."""

    shard: Shard
    rows: dict[str, range]
    n_rows: dict[str, int]
    forward_passes: int
    seconds: float
    folder: Path
    already_present: bool


def extract_shard(session: AuditSession, pair: Pair, shard: Shard) -> ShardWritten:
    """Extract ``pair``'s rows of ``shard`` and write them atomically (kept unless ``refresh``)."""
    key = session.features_key(pair)
    folder = session.store.shards_dir(key) / shard.folder_name
    dataset = session.dataset(pair.dataset)
    n_rows = {"fit": dataset.n_fit, "test": dataset.n_test}
    batch_size = session.settings.batch_size
    rows = shard_rows(shard, n_rows, batch_size)
    started = time.perf_counter()
    with shard_held(_lock_path(folder)):
        present = None if session.settings.refresh else _usable_manifest(folder)
        if present is not None:
            return ShardWritten(
                shard, _ranges(present), n_rows, 0, time.perf_counter() - started, folder, already_present=True
            )
        if all(len(selected) == 0 for selected in rows.values()):
            bank, forward_passes = _empty_bank(dataset.n_classes), 0
        else:
            bank, forward_passes = session.extract(pair, _rows_of(dataset, rows))
        manifest = {
            "key": key,
            "shard": {"index": shard.index, "count": shard.count},
            "batch_size": batch_size,
            "rows": {split: [rows[split].start, rows[split].stop, n_rows[split]] for split in SPLITS},
            "description": session.entry_description(pair, forward_passes, shard=str(shard)),
        }
        write_bank(folder, bank, manifest)
    return ShardWritten(shard, rows, n_rows, forward_passes, time.perf_counter() - started, folder, False)


def merge_if_complete(session: AuditSession, pair: Pair) -> tuple[FeatureBank | None, str]:
    """For a shard writer: merge the entry if every shard is there; (bank or None, what happened)."""
    key = session.features_key(pair)
    with session.store.lock(key):
        if not session.settings.refresh and session.cache.load(key) is not None:
            return None, f"cache entry {key[:12]} is complete ({session.cache.entry_dir(key)})"
        try:
            bank = session.store.merged(pair, key, session.computed_on(pair.model), wait=False)
        except IncompleteShards:
            return None, "other shards still missing; the last shard written, or the next audit run, merges them"
    if bank is None:  # not reached: this process has just written a shard
        return None, "no shards found"
    return bank, f"all shards present: merged into cache entry {key[:12]} ({session.cache.entry_dir(key)})"


def run_extract(session: AuditSession, pair: Pair, shard: Shard | None) -> str:
    """What ``python -m pytest_medprobe extract`` does for one pair; returns the line it prints."""
    key = session.features_key(pair)
    entry = session.cache.entry_dir(key)
    if shard is None:
        _, provenance = session.features(pair)
        if provenance.cache_hit:
            return f"already in the cache (entry {key[:12]}, {entry}); nothing to do"
        return f"extracted with {provenance.forward_passes} forward passes into cache entry {key[:12]} ({entry})"
    if not session.settings.refresh and session.cache.load(key) is not None:
        return f"already in the cache (entry {key[:12]}, {entry}); shard {shard} not needed"
    written = extract_shard(session, pair, shard)
    rows = ", ".join(
        f"{split} rows {written.rows[split].start}-{written.rows[split].stop} of {written.n_rows[split]}"
        for split in SPLITS
    )
    if written.already_present:
        done = f"shard {shard} was already written ({rows})"
    else:
        done = (
            f"shard {shard} written ({rows}; {written.forward_passes} forward passes in "
            f"{written.seconds:.1f} s) to {written.folder}"
        )
    return f"{done}; {merge_if_complete(session, pair)[1]}"
