"""The machine's resources as a run uses them: memory given back, CPU threads shared.

A matrix of many models must give each released model's memory back whole
(``free_memory``, ``map_large_blocks_directly``) and tell running out of memory from other
errors (``is_out_of_memory``); pytest-xdist workers must share the cores
(``share_cpu_threads``). Nothing here imports torch: it is used only when already loaded.
"""

from __future__ import annotations

import gc
import os
import sys
from collections.abc import MutableMapping
from typing import Any


def free_memory() -> None:
    """Return what released tensors held: collect cycles, empty the CUDA allocator's cache, trim the C heap."""
    gc.collect()
    torch = sys.modules.get("torch")  # never import torch just to free memory
    if torch is not None and torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.empty_cache()
    _trim_c_heap()


def _glibc() -> Any:
    """The C library when it is glibc (it has ``malloc_trim`` and ``mallopt``), else None."""
    if not sys.platform.startswith("linux"):
        return None
    import ctypes
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.malloc_trim, libc.mallopt  # noqa: B018 - musl and other C libraries lack them
    except (OSError, AttributeError):
        return None
    return libc


def _trim_c_heap() -> None:
    """Give the free pages of glibc's arenas (small blocks: Python objects, metadata) back to the
    system; large blocks are mapped directly (``map_large_blocks_directly``). Off glibc: nothing."""
    libc = _glibc()
    if libc is not None:
        libc.malloc_trim(0)


# glibc's mallopt parameter, and the environment variable through which a user sets it instead.
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD_ENV = "MALLOC_MMAP_THRESHOLD_"
MMAP_THRESHOLD_BYTES = 128 * 1024  # glibc's own starting value, kept fixed


def map_large_blocks_directly() -> None:
    """Make every CPU block of 128 KiB or more its own mapping, returned to the system when freed.

    glibc starts by mapping such blocks directly, but raises the threshold each time one is
    freed (up to 32 MiB), so a released model's weight tensors leave holes in its arenas
    that the next model's tensors fill only in part: a matrix's peak then grows by 50-90
    MiB after the first model (``malloc_trim`` does not undo it). A fixed threshold keeps
    weights and activations out of the arenas (benchmarks/bench_matrix.py: 4 models / 1
    went from 1.08 to 1.003, and the one-model peak dropped by 6%). Called before a model
    loads; does nothing off glibc, or when the user set ``MALLOC_MMAP_THRESHOLD_`` themselves.
    """
    libc = None if MMAP_THRESHOLD_ENV in os.environ else _glibc()
    if libc is not None:
        libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES)


def is_out_of_memory(error: BaseException) -> bool:
    """Whether ``error`` is an allocation failure (CUDA's OutOfMemoryError, or the CPU allocator's)."""
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(error, torch.OutOfMemoryError):
        return True
    return isinstance(error, (RuntimeError, MemoryError)) and (
        isinstance(error, MemoryError) or "can't allocate memory" in str(error) or "out of memory" in str(error)
    )


def share_cpu_threads(processes: int, environ: MutableMapping[str, str] = os.environ) -> int | None:
    """Give torch in this process an equal share of the machine's cores, one of ``processes`` sharing them.

    For pytest-xdist workers: each would otherwise start one thread per core, and on a busy
    CPU every operation waits for threads the other workers hold (measured: a two-pair
    ``-n 2`` run on 2 cores took 44-129 s instead of 18-23 s). Works through
    ``OMP_NUM_THREADS``, read when torch is imported; an ``OMP_NUM_THREADS`` the user set
    wins. Returns the share, or None when the user's setting stays.
    """
    if "OMP_NUM_THREADS" in environ:
        return None
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    threads = max(1, cores // max(1, processes))
    environ["OMP_NUM_THREADS"] = str(threads)
    if "torch" in sys.modules:  # imported already (a conftest): too late for the variable
        sys.modules["torch"].set_num_threads(threads)
    return threads
