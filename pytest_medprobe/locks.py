"""The one way pytest-medprobe holds an inter-process lock on a file of the cache.

Cache entries, shards and ``extract --all-pairs`` claims are guarded by OS file locks
(``filelock``, flock on POSIX): the OS frees a lock when its holder dies, even on SIGKILL,
so a lock left by a killed process never blocks, and "is it held?" tells a live writer
from a dead one. ``filelock`` is imported on first use (it is light, but ``pytest --help``
needs none of this).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

LOCK_TIMEOUT_S = 3600.0  # a 7B extraction of a few thousand images can take this long


def acquire(lock_path: Path, timeout: float = -1, on_timeout: Callable[[], Exception] | None = None) -> Any:
    """The held lock of ``lock_path`` (its folder made); ``on_timeout()`` is raised after ``timeout`` s.

    ``OSError`` (a read-only folder, another user's lock file) reaches the caller, which
    decides whether the run can carry on without the lock. ``timeout`` < 0 waits forever.
    """
    from filelock import FileLock, Timeout

    lock_path.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(lock_path), timeout=timeout)
    try:
        lock.acquire()
    except Timeout:
        if on_timeout is None:
            raise
        raise on_timeout() from None
    return lock


@contextmanager
def held(lock_path: Path, timeout: float = -1, on_timeout: Callable[[], Exception] | None = None) -> Iterator[None]:
    """Hold ``lock_path`` for the block (see ``acquire``)."""
    lock = acquire(lock_path, timeout, on_timeout)
    try:
        yield
    finally:
        lock.release()


def is_held(lock_path: Path) -> bool:
    """Whether a live process holds ``lock_path`` now (a dead one's lock is free); False when absent.

    ``OSError`` while probing (a lock file this user cannot open) counts as held: the
    cautious answer, since nothing proves its writer is gone.
    """
    from filelock import FileLock, Timeout

    if not lock_path.exists():
        return False
    lock = FileLock(str(lock_path), timeout=0)
    try:
        lock.acquire()
    except (Timeout, OSError):
        return True
    lock.release()
    return False
