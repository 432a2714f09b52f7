"""Sharded extraction: shard ``i`` of ``n`` extracts a fixed part of each split; all ``n`` make the entry.

``python -m pytest_medprobe extract --shard i/n`` (or one rank of ``torchrun`` /
``accelerate launch``, from ``RANK`` / ``WORLD_SIZE``) writes one shard of a pair's
feature-cache entry. The processes share nothing but the cache folder: no process group,
no collective, so any launcher works and a shard can be rerun alone.

Layout, next to the entry ``<root>/features/<key[:2]>/<key>/``::

    <key>.shards/<i>-of-<n>/        a partial FeatureBank in the entry format (atomic rename)
    <key>.shards/<i>-of-<n>.lock    held while shard i is being extracted

Partition: each split's batches (``batch_size`` images, from row 0, as a single process
forms them) are cut into ``n`` contiguous runs, so every forward pass of a shard sees
exactly the batch a single process would have run, and the merged arrays are the single
process's arrays. When a split has fewer batches than there are shards, the extra shards
are idle (they write an empty shard, so the set stays countable).

Merge: when all ``n`` shards are present, the last shard writer or the first reader
(an audit session) concatenates them, in shard order, into the ordinary cache entry under
the entry's lock, and deletes the shards. A reader that finds only some of them fails with
``IncompleteShards``: which shards exist, which are missing, and the commands that write
them. Nothing here imports torch at import time.
"""

from __future__ import annotations

import copy
import dataclasses
import re
import shlex
import shutil
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from pytest_medprobe.cache import read_bank, write_bank
from pytest_medprobe.config import (
    BASELINE,
    BASELINE_REQUIRED,
    BATCH_SIZE,
    BOOTSTRAP,
    CACHE,
    CSV,
    DATASET,
    DECISION,
    JSON,
    LABEL,
    MODEL,
    PROBE_BACKEND,
    PROBE_C,
    PROBE_C_GRID,
    PROBE_CV_FOLDS,
    PROBE_DEVICE,
    SAVE_BASELINE,
    SETTINGS,
    SUBGROUP,
    THRESHOLD_SETTINGS,
    TOLERANCE,
    MedprobeSettings,
    Setting,
)
from pytest_medprobe.errors import MedprobeError, MedprobeUsageError

if TYPE_CHECKING:
    from pytest_medprobe.data.base import ProbeDataset
    from pytest_medprobe.extract import FeatureBank, SplitFeatures
    from pytest_medprobe.session import AuditSession, Pair

SHARD_FLAG = "--shard"
SPLITS = ("fit", "test")
# Settings that only decide how features are scored, never which features are extracted:
# the extract command does not take them. Every other setting (a new one included) does,
# so the command can always reproduce the cache key of an audit run.
AUDIT_ONLY: tuple[Setting, ...] = (
    JSON,
    CSV,
    DECISION,
    BOOTSTRAP,
    PROBE_C,
    PROBE_BACKEND,
    PROBE_C_GRID,
    PROBE_CV_FOLDS,
    PROBE_DEVICE,
    BASELINE,
    SAVE_BASELINE,
    BASELINE_REQUIRED,
    LABEL,
    TOLERANCE,
    SUBGROUP,  # subgroups only split the scoring of the test split
    *THRESHOLD_SETTINGS,
)
EXTRACT_SETTINGS: tuple[Setting, ...] = tuple(setting for setting in SETTINGS if setting not in AUDIT_ONLY)
_SHARD_NAME = re.compile(r"^(\d+)-of-(\d+)$")


class IncompleteShards(MedprobeError):
    """Some shards of an entry are on disk, others are missing or unusable."""


class ShardMismatch(MedprobeError):
    """The shards of an entry do not fit together (written with other settings)."""


class ShardLockTimeout(MedprobeError, TimeoutError):
    """Another live process held a shard's lock for longer than the limit."""


@dataclass(frozen=True, order=True)
class Shard:
    """Shard ``index`` of ``count`` (``0 <= index < count``), written ``index/count``."""

    index: int
    count: int

    def __post_init__(self) -> None:
        if not 0 <= self.index < self.count:
            raise MedprobeUsageError(
                f"{SHARD_FLAG}: got {self}; allowed: I/N with 0 <= I < N (shards count from 0), e.g. 0/4 to 3/4."
            )

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"

    @property
    def folder_name(self) -> str:
        return f"{self.index}-of-{self.count}"

    @classmethod
    def parse(cls, text: str) -> Shard:
        match = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", text)
        if match is None:
            raise MedprobeUsageError(
                f"{SHARD_FLAG}: got {text!r}; allowed: I/N with 0 <= I < N (shards count from 0), e.g. 0/4."
            )
        return cls(int(match.group(1)), int(match.group(2)))

    @classmethod
    def from_environment(cls, environ: Mapping[str, str]) -> Shard | None:
        """This rank's shard under torchrun / accelerate launch (``RANK``, ``WORLD_SIZE``); None alone."""
        if "RANK" not in environ or "WORLD_SIZE" not in environ:
            return None
        try:
            rank, world = int(environ["RANK"]), int(environ["WORLD_SIZE"])
        except ValueError:
            raise MedprobeUsageError(
                f"RANK={environ['RANK']!r}, WORLD_SIZE={environ['WORLD_SIZE']!r}: not whole numbers; "
                f"pass {SHARD_FLAG} I/N instead."
            ) from None
        return None if world <= 1 else cls(rank, world)


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


def shards_dir(session: AuditSession, key: str) -> Path:
    entry = session.cache.entry_dir(key)
    return entry.with_name(f"{entry.name}.shards")


def _lock_path(folder: Path) -> Path:
    return folder.with_name(folder.name + ".lock")


@contextmanager
def _held(lock_path: Path, timeout: float) -> Iterator[None]:
    from filelock import FileLock, Timeout

    lock_path.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(lock_path), timeout=timeout)
    try:
        lock.acquire()
    except Timeout:
        raise ShardLockTimeout(
            f"shard lock {lock_path} is held: waited {timeout:g} s, the limit. Another live process is "
            "writing this shard (a lock left by a killed process never blocks); wait for it or stop it."
        ) from None
    try:
        yield
    finally:
        lock.release()


def _being_written(lock_path: Path) -> bool:
    """Whether a live process holds the shard's lock (a dead one's lock is free: flock)."""
    from filelock import FileLock, Timeout

    if not lock_path.exists():
        return False
    try:
        with FileLock(str(lock_path), timeout=0):
            return False
    except Timeout:
        return True


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
    from pytest_medprobe.cache import LOCK_TIMEOUT_S

    key = session.features_key(pair)
    folder = shards_dir(session, key) / shard.folder_name
    dataset = session.dataset(pair.dataset)
    n_rows = {"fit": dataset.n_fit, "test": dataset.n_test}
    batch_size = session.settings.batch_size
    rows = shard_rows(shard, n_rows, batch_size)
    started = time.perf_counter()
    with _held(_lock_path(folder), LOCK_TIMEOUT_S):
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


def _ranges(manifest: Mapping[str, Any]) -> dict[str, range]:
    return {split: range(*manifest["rows"][split][:2]) for split in SPLITS}


def _usable_manifest(folder: Path) -> dict[str, Any] | None:
    """The manifest of a verified shard; None when there is none or it cannot be trusted (rewrite it)."""
    try:
        return _read_shard(folder)[0]
    except (OSError, ValueError, KeyError, TypeError):  # FileNotFoundError too: not written yet
        return None


def _read_shard(folder: Path) -> tuple[dict[str, Any], FeatureBank]:
    """A verified shard; like cache entries, a linked shard or one of another key is refused."""
    if folder.is_symlink():
        raise ValueError(f"{folder} is a symbolic link; shards are never shared by links")
    found = read_bank(folder)
    if found is None:
        raise FileNotFoundError(f"no shard at {folder}")
    key = folder.parent.name.removesuffix(".shards")
    if found[0].get("key") != key:
        raise ValueError(f"shard {folder.name} was written for key {str(found[0].get('key'))[:12]}, not {key[:12]}")
    return found


@dataclass
class _Survey:
    """The shards of one count found on disk."""

    count: int
    usable: dict[int, tuple[dict[str, Any], FeatureBank]]
    unusable: dict[int, str]  # index -> why

    @property
    def missing(self) -> list[int]:
        return [index for index in range(self.count) if index not in self.usable]


def _survey(folder: Path) -> dict[int, _Survey]:
    surveys: dict[int, _Survey] = {}
    for path in sorted(folder.iterdir()) if folder.is_dir() else ():
        match = _SHARD_NAME.match(path.name)
        if match is None or not path.is_dir():
            continue
        index, count = int(match.group(1)), int(match.group(2))
        if not 0 <= index < count:
            continue
        survey = surveys.setdefault(count, _Survey(count, {}, {}))
        try:
            survey.usable[index] = _read_shard(path)
        except FileNotFoundError:
            continue  # a folder without manifest: not written (staging folders start with '.')
        except (OSError, ValueError, KeyError, TypeError) as exc:
            survey.unusable[index] = str(exc)
    return surveys


def merge_shards(session: AuditSession, pair: Pair, key: str, wait: bool = True) -> FeatureBank | None:
    """The entry assembled from its shards and stored; None when ``key`` has no shards at all.

    The caller holds the entry's lock. Shards still being written by a live process are
    waited for (with ``wait``); a set that stays incomplete raises ``IncompleteShards``.
    """
    from pytest_medprobe.cache import LOCK_TIMEOUT_S

    folder = shards_dir(session, key)
    surveys = _survey(folder)
    if not surveys:
        return None
    complete = [survey for survey in surveys.values() if not survey.missing]
    if not complete and wait:
        writing = [
            _lock_path(folder / Shard(index, survey.count).folder_name)
            for survey in surveys.values()
            for index in survey.missing
        ]
        writing = [lock for lock in writing if _being_written(lock)]
        for lock in writing:  # a rank still at work: wait for it, as for the entry's own lock
            with _held(lock, LOCK_TIMEOUT_S):
                pass
        if writing:
            surveys = _survey(folder)
            complete = [survey for survey in surveys.values() if not survey.missing]
    if not complete:
        raise IncompleteShards(_incomplete_message(session, pair, key, folder, surveys))
    survey = min(complete, key=lambda s: s.count)
    bank = _concatenate_shards(survey, folder)
    forward_passes = sum(int(m["description"].get("forward_passes", 0)) for m, _ in survey.usable.values())
    if session.cache.store(key, bank, session.entry_description(pair, forward_passes, shards=survey.count)):
        shutil.rmtree(folder, ignore_errors=True)  # the entry holds it all now (else keep the shards)
    return bank


def merge_if_complete(session: AuditSession, pair: Pair) -> tuple[FeatureBank | None, str]:
    """For a shard writer: merge the entry if every shard is there; (bank or None, what happened)."""
    key = session.features_key(pair)
    with session.cache.lock(key):
        if not session.settings.refresh and session.cache.load(key) is not None:
            return None, f"cache entry {key[:12]} is complete ({session.cache.entry_dir(key)})"
        try:
            bank = merge_shards(session, pair, key, wait=False)
        except IncompleteShards:
            return None, "other shards still missing; the last shard written, or the next audit run, merges them"
    if bank is None:  # not reached: this process has just written a shard
        return None, "no shards found"
    return bank, f"all shards present: merged into cache entry {key[:12]} ({session.cache.entry_dir(key)})"


def _concatenate_shards(survey: _Survey, folder: Path) -> FeatureBank:
    from pytest_medprobe.extract import FeatureBank

    parts = [survey.usable[index] for index in range(survey.count)]
    problem = _tiling_problem(parts)
    working = [bank for manifest, bank in parts if bank.stage_names]
    if problem is None and not working:
        problem = "every shard is empty"
    if problem is None and any(
        (bank.stage_names, bank.has_image_view) != (working[0].stage_names, working[0].has_image_view)
        for bank in working
    ):
        problem = "the shards hold different stages"
    if problem is not None:
        raise ShardMismatch(
            f"the {survey.count} shards in {folder} do not fit together: {problem}. They were written with "
            f"different settings ({BATCH_SIZE.flag} decides which rows a shard holds); delete {folder} and "
            "write them again with one command line."
        )
    splits = {split: _concatenate([getattr(bank, split) for bank in working]) for split in SPLITS}
    return FeatureBank(
        stage_names=working[0].stage_names,
        has_image_view=working[0].has_image_view,
        fit=splits["fit"],
        test=splits["test"],
    )


def _tiling_problem(parts: Sequence[tuple[Mapping[str, Any], FeatureBank]]) -> str | None:
    """Why the shards' row ranges do not cover each split exactly once, in order (None: they do)."""
    for split in SPLITS:
        totals = {manifest["rows"][split][2] for manifest, _ in parts}
        if len(totals) != 1:
            return f"they disagree on the size of the {split} split ({sorted(totals)})"
        expected_start = 0
        for index, (manifest, bank) in enumerate(parts):
            start, stop = manifest["rows"][split][:2]
            if start != expected_start:
                return f"shard {index} starts the {split} split at row {start}, not {expected_start}"
            if len(getattr(bank, split).answers) != stop - start:
                return f"shard {index} holds {len(getattr(bank, split).answers)} {split} rows, not {stop - start}"
            expected_start = stop
        if expected_start != totals.pop():
            return f"the {split} split ends at row {expected_start}, not at its last row"
    return None


def _concatenate(parts: Sequence[SplitFeatures]) -> SplitFeatures:
    """The rows of ``parts``, in order; generic over SplitFeatures' fields (arrays, dicts of arrays, tuples)."""
    from pytest_medprobe.extract import SplitFeatures

    values: dict[str, Any] = {}
    for field in dataclasses.fields(SplitFeatures):
        items = [getattr(part, field.name) for part in parts]
        first = items[0]
        if isinstance(first, dict):
            values[field.name] = {name: np.concatenate([item[name] for item in items]) for name in first}
        elif isinstance(first, np.ndarray):
            values[field.name] = np.concatenate(items)
        elif isinstance(first, tuple):
            values[field.name] = tuple(value for item in items for value in item)
        else:
            raise TypeError(f"SplitFeatures.{field.name}: cannot concatenate a {type(first).__name__}")
    return SplitFeatures(**values)


def extract_command(settings: MedprobeSettings, pair: Pair, shard: str | None, batch_size: int) -> str:
    """The ``python -m pytest_medprobe extract`` command that writes ``pair``'s features (or one shard)."""
    words = [
        "python",
        "-m",
        "pytest_medprobe",
        "extract",
        f"{MODEL.flag}={pair.model}",
        f"{DATASET.flag}={pair.dataset}",
    ]
    for setting in EXTRACT_SETTINGS:
        if setting in (MODEL, DATASET):
            continue
        value = batch_size if setting is BATCH_SIZE else getattr(settings, setting.dest, None)
        if setting.is_switch:
            if value:
                words.append(setting.flag)
        elif setting is CACHE or (value is not None and str(value) != str(setting.default)):
            words.append(f"{setting.flag}={value}")
    if shard is not None:
        words.append(f"{SHARD_FLAG}={shard}")
    return shlex.join(words)


def _incomplete_message(
    session: AuditSession, pair: Pair, key: str, folder: Path, surveys: Mapping[int, _Survey]
) -> str:
    survey = max(surveys.values(), key=lambda s: (len(s.usable), -s.count))
    present = [str(Shard(index, survey.count)) for index in sorted(survey.usable)]
    missing = [Shard(index, survey.count) for index in survey.missing]
    batch_sizes = {int(manifest["batch_size"]) for manifest, _ in survey.usable.values()}
    batch_size = batch_sizes.pop() if len(batch_sizes) == 1 else session.settings.batch_size
    unusable = "".join(f"; shard {Shard(i, survey.count)} is unusable ({why})" for i, why in survey.unusable.items())
    others = sorted(count for count in surveys if count != survey.count)
    other_counts = f"; shards of another count ({', '.join(map(str, others))}) are there too" if others else ""
    commands = "\n".join(f"  {extract_command(session.settings, pair, str(shard), batch_size)}" for shard in missing)
    launcher = extract_command(session.settings, pair, None, batch_size)
    return (
        f"feature cache entry {key[:12]} of {pair.model} × {pair.dataset} is incomplete: "
        f"{len(present)} of {survey.count} shards written ({', '.join(present) or 'none'}), "
        f"missing {', '.join(map(str, missing))}{unusable}{other_counts} (in {folder}).\n"
        f"Write the missing shard{'s' if len(missing) > 1 else ''} on any machine that sees this cache folder:\n"
        f"{commands}\n"
        f"or all {survey.count} at once: torchrun --nproc-per-node={survey.count} -m "
        f"{launcher.removeprefix('python -m ')}\n"
        f"then rerun the audits, which merge the shards; or delete {folder} to extract everything in this run."
    )


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
