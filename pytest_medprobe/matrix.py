"""Model-major extraction: load a model once, extract every pair that needs it, release it.

A matrix of many models × many datasets must never hold two models at once: a 7B model
in bfloat16 is about 16 GB, and a 14-model study on one GPU would need 220 GB if every
loaded model stayed. ``extract_model_pairs`` is the one place a model is loaded for
extraction: it serves the pairs it can from the cache (or from merged shards), loads
the model only when some pair is left, extracts those pairs one after the other (each
stored under its entry's lock as soon as it is done, so a killed run loses at most the
pair in progress), and releases the model in ``finally``: the session's reference is
dropped, the garbage collector runs and the CUDA allocator's cache is emptied.

pytest asks for features pair by pair, in test order; the session turns the first miss
of a model into this call for all of that model's pending pairs, so the order of the
tests never makes a model load twice.

Failures stay with their pairs: a model that cannot load fails each of its pending
pairs with the reason; running out of memory fails the pair with a message naming the
model and the batch size; the next model runs either way.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

from pytest_medprobe.errors import ExtractionError, MedprobeError
from pytest_medprobe.naming import mention
from pytest_medprobe.pairs import Pair
from pytest_medprobe.resources import free_memory, is_out_of_memory

if TYPE_CHECKING:
    from pytest_medprobe.extraction_run import ExtractionRun

# Test-only failure injection, documented in the README (Development): a model named
# here raises torch.OutOfMemoryError at its first forward pass, as a GPU that is too
# small would. Running out of memory cannot be provoked reliably on a shared CPU
# machine, and the handling below must still be tested through a real model.
INJECT_OOM_ENV = "MEDPROBE_TEST_INJECT_OOM"


def out_of_memory_message(session: ExtractionRun, pair: Pair, error: BaseException) -> str:
    batch_size = session.settings.batch_size
    smaller = max(1, batch_size // 2)
    return (
        f"out of memory while extracting {pair.model} × {pair.dataset} at {mention('batch_size')}={batch_size} "
        f"on device {session.settings.device} ({type(error).__name__}: {str(error).splitlines()[0][:200]}). "
        f"Lower {mention('batch_size')} (e.g. {mention('batch_size')}={smaller}), use "
        f"{mention('dtype')}=bfloat16, or spread the "
        f"model over several GPUs with {mention('device')}=balanced. The other models of the run were not affected."
    )


def _inject_oom(session: ExtractionRun, model: str) -> object | None:
    """The handle of the injected failure (see ``INJECT_OOM_ENV``), or None when not asked for."""
    if os.environ.get(INJECT_OOM_ENV) != model:
        return None
    import torch

    def fail(module: object, args: object) -> None:
        raise torch.OutOfMemoryError(f"injected by {INJECT_OOM_ENV}={model}: CUDA out of memory.")

    return session.model(model).model.register_forward_pre_hook(fail)


def extract_model_pairs(session: ExtractionRun, model: str, pairs: Sequence[Pair]) -> None:
    """Give every pair of ``model`` in ``pairs`` its features, or its error, with one load of the model.

    Results go to the session (``session.features`` then returns them without work).
    """
    progress = session.matrix_progress
    pending: list[tuple[Pair, str]] = []
    for pair in pairs:
        try:
            key = session.features_key(pair)
            bank = session.cached_bank(key)
        except MedprobeError as exc:
            session.failed(pair, exc)
            progress.pair_done(pair, f"error: {exc}")
            continue
        if bank is not None:
            session.features_of(pair, key)
            progress.pair_done(pair, "cached")
        else:
            pending.append((Pair(pair.model, pair.dataset), key))
    pending = _without_orphans(session, pending)
    if not pending:
        return
    started = time.perf_counter()
    try:
        progress.model_loading(model, len(pending))
        try:
            session.model(model)
            hook = _inject_oom(session, model)
        except MedprobeError as exc:
            for pair, _ in pending:
                session.failed(pair, exc)
                progress.pair_done(pair, f"error: {exc}")
            return
        try:
            for pair, key in pending:
                _extract_one(session, pair, key)
        finally:
            if hook is not None:
                hook.remove()  # type: ignore[attr-defined]
    finally:
        session.release_model()
        progress.model_released(model, time.perf_counter() - started)


def _without_orphans(session: ExtractionRun, pending: list[tuple[Pair, str]]) -> list[tuple[Pair, str]]:
    """The pending pairs this process should extract: not those an ``extract --all-pairs`` rank left behind.

    A pair a live rank claimed is waited for (its entry is then usually there); a pair
    whose rank died fails with the missing pairs and the command that extracts them,
    unless this process is that command (``session.adopt_orphans``).
    """
    from pytest_medprobe.ranks import orphaned_claim, orphaned_pairs_error, wait_for_live_claim

    kept = []
    for pair, key in pending:
        wait_for_live_claim(session, key)
        if session.is_cached(key) and session.features_of(pair, key) is not None:
            session.matrix_progress.pair_done(pair, "cached (written by an extract rank)")
        elif not session.adopt_orphans and orphaned_claim(session, key) is not None:
            error = orphaned_pairs_error(session)
            session.failed(pair, error)
            session.matrix_progress.pair_done(pair, f"error: {error}")
        else:
            kept.append((pair, key))
    return kept


def _extract_one(session: ExtractionRun, pair: Pair, key: str) -> None:
    from pytest_medprobe.ranks import settle_claim

    progress = session.matrix_progress
    try:
        with session.store.lock(key):
            if session.features_of(pair, key) is not None:  # another process wrote it meanwhile
                progress.pair_done(pair, "cached (written by another process)")
                return
            started = time.perf_counter()
            bank, forward_passes = session.extract(pair)
            session.extracted(pair, key, bank, forward_passes)
            settle_claim(session, key)
        progress.pair_done(pair, f"extracted ({forward_passes} forward passes, {time.perf_counter() - started:.1f} s)")
        return
    except MedprobeError as exc:
        session.failed(pair, exc)
        progress.pair_done(pair, f"error: {exc}")
        return
    except (RuntimeError, MemoryError) as exc:
        if not is_out_of_memory(exc):
            raise
        error = ExtractionError(out_of_memory_message(session, pair, exc))
    # Out of the except block: the exception's traceback (and the batch's tensors its frames hold) is gone.
    free_memory()
    session.failed(pair, error)
    progress.pair_done(pair, f"error: {error}")
