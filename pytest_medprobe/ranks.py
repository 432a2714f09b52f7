"""Whole models per rank: ``extract --all-pairs`` under torchrun or any launcher that sets RANK / WORLD_SIZE.

Every rank computes the same assignment from what all ranks see alike, the models'
weight sizes on disk (never the cache's state, which changes while ranks run): the
largest model goes to the least-loaded rank, ties to the lower rank (longest
processing time first). Models with the same content are one model. Each rank then
extracts its models' pending pairs, model-major, into the shared cache; the ranks share
nothing else, so any launcher works.

Claims record who is to write a pair, so that a rank that dies is noticed: before it
starts, a rank writes ``<cache>/claims/<key>.json`` for each pair it will extract, and
holds ``<cache>/claims/<host>-<pid>.lock`` until it exits (an OS lock: freed when the
process dies, even on SIGKILL). A claim whose lock is free belongs to a rank that ended
without writing the pair: the audit run fails that pair with the missing pairs and the
command that extracts them, rather than start a long extraction nobody planned for.
A claim whose lock is held is a rank still at work: the audit run waits for it.
"""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pytest_medprobe.commands import ALL_PAIRS_FLAG, all_pairs_command
from pytest_medprobe.errors import MedprobeError
from pytest_medprobe.files import atomic_write_text
from pytest_medprobe.locks import LOCK_TIMEOUT_S, acquire, held, is_held

if TYPE_CHECKING:
    from pytest_medprobe.extraction_run import ExtractionRun
    from pytest_medprobe.pairs import Pair

CLAIMS_DIR = "claims"


class OrphanedPairs(MedprobeError):
    """Pairs an ``extract --all-pairs`` rank claimed, then died without writing."""


def assign_models(sizes: Sequence[tuple[str, int]], world: int) -> list[list[str]]:
    """The models of each rank: largest first, each to the rank with the least weight so far."""
    loads = [0] * world
    ranks: list[list[str]] = [[] for _ in range(world)]
    order = sorted(range(len(sizes)), key=lambda index: (-sizes[index][1], index))
    for index in order:
        rank = min(range(world), key=lambda r: (loads[r], r))
        ranks[rank].append(sizes[index][0])
        loads[rank] += max(1, sizes[index][1])
    position = {name: index for index, (name, _) in enumerate(sizes)}
    return [sorted(models, key=position.__getitem__) for models in ranks]


def weight_bytes(session: ExtractionRun, model: str) -> int:
    """Size of the model's weight files on disk (0 when it cannot be resolved: it errors wherever it runs)."""
    from pytest_medprobe.models.identity import WEIGHT_SUFFIXES

    source = session.try_source(model)
    if source is None:
        return 0
    return sum(p.stat().st_size for p in source.directory.iterdir() if p.is_file() and p.name.endswith(WEIGHT_SUFFIXES))


def _claims_dir(session: ExtractionRun) -> Path:
    return session.settings.cache_dir / CLAIMS_DIR


def _claim_path(session: ExtractionRun, key: str) -> Path:
    return _claims_dir(session) / f"{key}.json"


def _read_claim(path: Path) -> dict[str, Any] | None:
    try:
        claim = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return claim if isinstance(claim, dict) and isinstance(claim.get("lock"), str) else None


def _ours(claim: Mapping[str, Any]) -> bool:
    return claim.get("pid") == os.getpid() and claim.get("host") == socket.gethostname()


@contextmanager
def rank_claims(session: ExtractionRun, pairs: Sequence[Pair], rank: int, world: int) -> Iterator[None]:
    """Claim ``pairs`` for this rank while it runs; claims of pairs written are removed, others stay."""
    folder = _claims_dir(session)
    lock_path = folder / f"{socket.gethostname()}-{os.getpid()}.lock"
    # Held until this rank exits; its own pid in the name, so nobody else ever waits on it.
    lock = acquire(lock_path)
    keys = {pair: session.features_key(pair) for pair in pairs}
    try:
        for pair, key in keys.items():
            claim = {"model": pair.model, "dataset": pair.dataset, "rank": rank, "world_size": world}
            claim.update({"host": socket.gethostname(), "pid": os.getpid(), "lock": str(lock_path)})
            atomic_write_text(_claim_path(session, key), json.dumps(claim, indent=2) + "\n")
        yield
    finally:
        for key in keys.values():
            if session.is_cached(key):
                settle_claim(session, key)
        lock.release()
        lock_path.unlink(missing_ok=True)


def settle_claim(session: ExtractionRun, key: str) -> None:
    """The pair of ``key`` is written: whoever wrote it, a claim on it is void."""
    try:
        _claim_path(session, key).unlink(missing_ok=True)
    except OSError:  # an unwritable or missing cache folder holds no claim to remove; the run carries on
        pass


def wait_for_live_claim(session: ExtractionRun, key: str) -> None:
    """If a live rank claimed ``key``, wait until that rank exits (its entry is then written, or orphaned)."""
    claim = _read_claim(_claim_path(session, key))
    if claim is None or _ours(claim) or not is_held(Path(claim["lock"])):
        return
    with held(Path(claim["lock"]), LOCK_TIMEOUT_S, lambda: _claim_timeout(claim)):
        pass


def _claim_timeout(claim: Mapping[str, Any]) -> MedprobeError:
    return MedprobeError(
        f"waited {LOCK_TIMEOUT_S:g} s, the limit, for rank {claim.get('rank')} of `extract {ALL_PAIRS_FLAG}` "
        f"(host {claim.get('host')}, pid {claim.get('pid')}) to write its pairs; it is still running. "
        "Wait for it to finish and rerun, or stop it."
    )


def orphaned_claim(session: ExtractionRun, key: str) -> str | None:
    """Why a pair is missing when a rank claimed it and died (None when it is not such a pair)."""
    path = _claim_path(session, key)
    claim = _read_claim(path) if path.is_file() else None
    if claim is None or _ours(claim) or is_held(Path(claim["lock"])):
        return None
    return (
        f"claimed by rank {claim.get('rank')} of {claim.get('world_size')} of `extract {ALL_PAIRS_FLAG}` "
        f"(host {claim.get('host')}, pid {claim.get('pid')}), which ended without writing it"
    )


def orphaned_pairs_error(session: ExtractionRun) -> OrphanedPairs:
    """The error of every pair of the session whose rank died: which pairs, and the command that extracts them."""
    missing = []
    for pair in session.pairs:
        try:
            key = session.features_key(pair)
        except MedprobeError:
            continue
        why = None if session.is_cached(key) else orphaned_claim(session, key)
        if why is not None:
            missing.append((pair, why))
    models = list(dict.fromkeys(pair.model for pair, _ in missing))
    datasets = list(dict.fromkeys(pair.dataset for pair, _ in missing))
    listing = "\n".join(f"  {pair.model} × {pair.dataset}: {why}" for pair, why in missing)
    plural = len(missing) != 1
    them, were = ("them", "were") if plural else ("it", "was")
    return OrphanedPairs(
        f"{len(missing)} pair{'s' if plural else ''} of this run {were} left to an `extract {ALL_PAIRS_FLAG}` rank "
        f"that died before writing {them}:\n{listing}\n"
        f"Extract {them} (one process, or under torchrun again), then rerun the audits:\n"
        f"  {all_pairs_command(session.settings, models, datasets)}\n"
        f"or delete {_claims_dir(session)} to let this run extract {them} itself."
    )
