"""Small file helpers: content hashes and content identity, and atomic text writes a reader never sees half of.

Identity is content: ``content_sha256s`` is the one way the project identifies a file
(model weights, dataset images, MedMNIST archives). It never trusts a name, a size or a
modification time: ``cp -p``, ``rsync -a``, tar and CI cache restores keep all three while
the bytes change. Two shortcuts avoid re-reading gigabytes, neither of which can be fooled
by such a copy:

- the Hugging Face cache names each large blob by the SHA-256 of its bytes (snapshot files
  are symlinks into ``blobs/<sha256>``), so that name *is* the content hash;
- elsewhere a hash is remembered in a small JSON side file (``HASH_MEMO_FILE`` in the
  cache folder) under the file's path, size, modification *and change* time, inode and
  device. The change time (``st_ctime``) cannot be set by ``touch``, ``cp -p`` or
  ``os.utime``: any write to the file moves it, so a remembered hash is never served for
  bytes it was not computed from.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import stat
import tempfile
from collections.abc import Sequence
from pathlib import Path

HASH_MEMO_FILE = "file-hashes.json"
HASH_MEMO_LIMIT = 100_000  # entries kept; the oldest go first (a memo is only a shortcut)
_SHA256_NAME = re.compile(r"[0-9a-f]{64}")


def file_sha256(path: Path) -> str:
    """SHA-256 hex digest of a file's bytes, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def hub_blob_sha256(path: Path) -> str | None:
    """The SHA-256 a Hugging Face cache records in the blob name ``path`` links to, else None.

    Small files are stored under their git SHA-1 (40 hex digits), not a SHA-256: those
    return None and are hashed.
    """
    if not Path(path).is_symlink():
        return None
    target = Path(path).resolve()
    if target.parent.name == "blobs" and _SHA256_NAME.fullmatch(target.name):
        return target.name
    return None


def _stat_signature(path: Path) -> list[int]:
    stat = os.stat(path)
    return [stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns, stat.st_ino, stat.st_dev]


def _read_memo(memo_path: Path) -> dict[str, dict[str, object]]:
    try:
        memo = json.loads(memo_path.read_text(encoding="utf-8"))
    except (OSError, ValueError):  # absent, unreadable or damaged: a memo is only a shortcut
        return {}
    return memo if isinstance(memo, dict) else {}


def content_sha256s(paths: Sequence[Path], memo_dir: Path | None = None) -> list[str]:
    """SHA-256 of each file's bytes: the identity of a file everywhere in pytest-medprobe.

    A file in the Hugging Face cache is identified by its blob name; any other file is
    read, unless ``memo_dir`` holds its hash under an unchanged (path, size, mtime, ctime,
    inode, device). The memo is written back best-effort: a read-only folder only costs
    re-reading next time. Raises ``OSError`` when a file cannot be read.
    """
    memo_path = None if memo_dir is None else Path(memo_dir) / HASH_MEMO_FILE
    memo = {} if memo_path is None else _read_memo(memo_path)
    changed = False
    hashes: list[str] = []
    for path in paths:
        from_hub = hub_blob_sha256(path)
        if from_hub is not None:
            hashes.append(from_hub)
            continue
        where = str(Path(path).resolve())
        signature = _stat_signature(Path(where))
        remembered = memo.get(where)
        if isinstance(remembered, dict) and remembered.get("stat") == signature:
            hashes.append(str(remembered["sha256"]))
            continue
        digest = file_sha256(Path(where))
        if _stat_signature(Path(where)) == signature:  # not written to while we read it
            memo.pop(where, None)
            memo[where] = {"stat": signature, "sha256": digest}
            changed = True
        hashes.append(digest)
    if memo_path is not None and changed:
        kept = dict(list(memo.items())[-HASH_MEMO_LIMIT:])
        try:
            atomic_write_text(memo_path, json.dumps(kept, indent=0, sort_keys=False))
        except OSError:
            pass  # unwritable cache folder: hashes are recomputed next time, nothing is wrong
    return hashes


def content_sha256(path: Path, memo_dir: Path | None = None) -> str:
    """SHA-256 of one file's bytes (see ``content_sha256s``)."""
    return content_sha256s([path], memo_dir)[0]


def current_umask() -> int:
    """The process's umask (reading it means setting it: set it straight back)."""
    umask = os.umask(0o022)
    os.umask(umask)
    return umask


def shared_modes(parent: Path) -> tuple[int, int]:
    """Modes of a new folder and file under ``parent``, as ``mkdir`` / ``open`` would give them.

    ``mkdtemp`` and ``mkstemp`` create 0700 / 0600 whatever the umask, which hides a shared
    cache's entries from colleagues; these modes honour the umask, and a folder keeps the
    set-group-ID bit of a group-shared parent so its group passes on.
    """
    umask = current_umask()
    setgid = os.stat(parent).st_mode & stat.S_ISGID
    return (0o777 & ~umask) | setgid, 0o666 & ~umask


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` to a temporary sibling, then rename it over ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, staging = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as stream:
            stream.write(text)
        os.chmod(staging, shared_modes(path.parent)[1])  # mkstemp's 0600 would hide the file from colleagues
        os.replace(staging, path)
    finally:
        if os.path.exists(staging):
            os.unlink(staging)
