"""Shards on disk: their layout, their verification, and their merge into one cache entry.

``python -m pytest_medprobe extract --shard i/n`` (``shards``) writes shard ``i`` of ``n``
of a pair's feature-cache entry. Layout, next to the entry ``<root>/features/<key[:2]>/<key>/``::

    <key>.shards/<i>-of-<n>/        a partial FeatureBank in the entry format (atomic rename)
    <key>.shards/<i>-of-<n>.lock    held while shard i is being extracted

Merge: when all ``n`` shards are present, the last shard writer or the first reader (the
feature store of an audit run) concatenates them, in shard order, into the ordinary cache
entry under the entry's lock, and deletes the shards. A reader that finds only some of
them fails with ``IncompleteShards``: which shards exist, which are missing, and the
commands that write them. Nothing here imports torch.
"""

from __future__ import annotations

import dataclasses
import re
import shutil
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from pytest_medprobe.cache import read_bank
from pytest_medprobe.commands import SHARD_FLAG, extract_command
from pytest_medprobe.errors import MedprobeError, MedprobeUsageError
from pytest_medprobe.launcher import launcher_rank
from pytest_medprobe.locks import LOCK_TIMEOUT_S, held, is_held
from pytest_medprobe.naming import mention

if TYPE_CHECKING:
    from pytest_medprobe.config import MedprobeSettings
    from pytest_medprobe.extract import FeatureBank, SplitFeatures
    from pytest_medprobe.pairs import Pair

SPLITS = ("fit", "test")
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
        found = launcher_rank(environ, instead=f"pass {SHARD_FLAG} I/N instead")
        return None if found is None else cls(*found)


def _lock_path(folder: Path) -> Path:
    return folder.with_name(folder.name + ".lock")


def _lock_timeout(lock_path: Path) -> Callable[[], Exception]:
    def error() -> Exception:
        return ShardLockTimeout(
            f"shard lock {lock_path} is held: waited {LOCK_TIMEOUT_S:g} s, the limit. Another live process is "
            "writing this shard (a lock left by a killed process never blocks); wait for it or stop it."
        )

    return error


def shard_held(lock_path: Path) -> AbstractContextManager[None]:
    """Hold a shard's lock (``ShardLockTimeout`` after ``LOCK_TIMEOUT_S``)."""
    return held(lock_path, LOCK_TIMEOUT_S, _lock_timeout(lock_path))


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


def merge_shards(
    folder: Path,
    pair: Pair,
    key: str,
    settings: MedprobeSettings,
    write: Callable[[FeatureBank, int, int], object],
    wait: bool = True,
) -> FeatureBank | None:
    """The entry assembled from its shards and stored; None when ``key`` has no shards at all.

    The caller holds the entry's lock. Shards still being written by a live process are
    waited for (with ``wait``); a set that stays incomplete raises ``IncompleteShards``.
    ``write(bank, forward_passes, shard_count)`` stores the entry (the feature store's); the
    shards are deleted only when it returns something true (the entry was written).
    """
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
        writing = [lock for lock in writing if is_held(lock)]
        for lock in writing:  # a rank still at work: wait for it, as for the entry's own lock
            with shard_held(lock):
                pass
        if writing:
            surveys = _survey(folder)
            complete = [survey for survey in surveys.values() if not survey.missing]
    if not complete:
        raise IncompleteShards(_incomplete_message(settings, pair, key, folder, surveys))
    survey = min(complete, key=lambda s: s.count)
    bank = _concatenate_shards(survey, folder)
    forward_passes = sum(int(m["description"].get("forward_passes", 0)) for m, _ in survey.usable.values())
    if write(bank, forward_passes, survey.count):
        shutil.rmtree(folder, ignore_errors=True)  # the entry holds it all now (else keep the shards)
    return bank


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
            f"different settings ({mention('batch_size')} decides which rows a shard holds); delete {folder} and "
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


def _incomplete_message(
    settings: MedprobeSettings, pair: Pair, key: str, folder: Path, surveys: Mapping[int, _Survey]
) -> str:
    survey = max(surveys.values(), key=lambda s: (len(s.usable), -s.count))
    present = [str(Shard(index, survey.count)) for index in sorted(survey.usable)]
    missing = [Shard(index, survey.count) for index in survey.missing]
    batch_sizes = {int(manifest["batch_size"]) for manifest, _ in survey.usable.values()}
    batch_size = batch_sizes.pop() if len(batch_sizes) == 1 else settings.batch_size
    unusable = "".join(f"; shard {Shard(i, survey.count)} is unusable ({why})" for i, why in survey.unusable.items())
    others = sorted(count for count in surveys if count != survey.count)
    other_counts = f"; shards of another count ({', '.join(map(str, others))}) are there too" if others else ""
    commands = "\n".join(
        f"  {extract_command(settings, pair.model, pair.dataset, str(shard), batch_size)}" for shard in missing
    )
    launcher = extract_command(settings, pair.model, pair.dataset, None, batch_size)
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
