"""The on-disk feature cache: fingerprinted keys, atomic writes, verified reads.

An entry is a folder ``<root>/features/<key[:2]>/<key>/`` holding ``features.safetensors``
(arrays, no pickle) and ``manifest.json`` (format version, stage order, the arrays'
SHA-256). Entries are written to a temporary folder and renamed into place, so a
reader sees a whole entry or none. An entry that fails verification is reported and
recomputed, never trusted. Folder names come from hashes only, never from user strings, so
the cache cannot write outside its root.

Nothing here is fatal to a run that has its features: an unreadable entry (a colleague's,
in a shared cache) is extracted again, and a cache that cannot be written (read-only, full,
a file) is reported once while the run carries on from memory. Such conditions go to a
``notify`` callback (the plugin prints them in the terminal summary), never through
Python's ``warnings``, which ``-W error`` would turn into a failure of every audit. Entries
honour the umask, so a shared folder stays shared. A writer stopped by SIGTERM removes its
temporary folder; one killed outright leaves it for the next run to sweep.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import signal
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from pytest_medprobe.errors import CacheLockTimeout
from pytest_medprobe.extract import FeatureBank, SplitFeatures
from pytest_medprobe.files import file_sha256, shared_modes
from pytest_medprobe.locks import LOCK_TIMEOUT_S, acquire, is_held
from pytest_medprobe.naming import mention

# Part of every cache key and of every manifest. 2: models and datasets identified by
# content (SHA-256 of weights and images), dtype and device type as used; entries
# verified against the key they are found under.
FORMAT_VERSION = 2
FEATURES_FILE = "features.safetensors"
MANIFEST_FILE = "manifest.json"


STALE_STAGING_S = 60.0  # a temporary folder older than this, whose lock nobody holds, was abandoned

Notify = Callable[[str], None]


def log_notice(message: str) -> None:
    """The default ``notify``: a log record (logging never raises under a warnings filter)."""
    logging.getLogger("pytest_medprobe").warning(message)


def cache_key(parts: Mapping[str, object]) -> str:
    """SHA-256 of the canonical JSON of everything the features depend on."""
    canonical = json.dumps({**parts, "format_version": FORMAT_VERSION}, sort_keys=True)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def _bank_arrays(bank: FeatureBank) -> dict[str, np.ndarray]:
    arrays: dict[str, np.ndarray] = {}
    for split_name, split in (("fit", bank.fit), ("test", bank.test)):
        for stage, values in split.stages.items():
            arrays[f"{split_name}/stage/{stage}"] = np.ascontiguousarray(values)
        arrays[f"{split_name}/answers"] = np.ascontiguousarray(split.answers)
        arrays[f"{split_name}/letter_logits"] = np.ascontiguousarray(split.letter_logits)
        if split.generated:
            # safetensors holds numbers only: the texts go in as the UTF-8 bytes of a JSON list.
            encoded = json.dumps(list(split.generated), ensure_ascii=False).encode("utf-8")
            arrays[f"{split_name}/generated_json"] = np.frombuffer(encoded, dtype=np.uint8).copy()
    return arrays


def _split_from(arrays: Mapping[str, np.ndarray], split: str, stage_names: tuple[str, ...]) -> SplitFeatures:
    return SplitFeatures(
        stages={name: arrays[f"{split}/stage/{name}"] for name in stage_names},
        answers=arrays[f"{split}/answers"],
        letter_logits=arrays[f"{split}/letter_logits"],
        generated=_generated_from(arrays, split),
    )


def _generated_from(arrays: Mapping[str, np.ndarray], split: str) -> tuple[str, ...]:
    encoded = arrays.get(f"{split}/generated_json")
    if encoded is None:
        return ()
    return tuple(json.loads(np.asarray(encoded, dtype=np.uint8).tobytes().decode("utf-8")))


class FeatureCache:
    """Feature banks on disk under ``root``, one entry per cache key."""

    def __init__(self, root: Path, notify: Notify = log_notice) -> None:
        self.root = Path(root)
        self.notify = notify
        self._unwritable = False  # reported once; later writes are not even tried
        self._swept = False

    def _cannot_write(self, exc: BaseException) -> None:
        if not self._unwritable:
            self._unwritable = True
            self.notify(
                f"the feature cache {self.root} cannot be written ({exc}); carrying on with the features "
                f"in memory: this run's results are complete, the next run extracts again. Free space, fix "
                f"the folder's permissions, or point {mention('cache_dir')} at a writable folder."
            )

    @property
    def unwritable(self) -> bool:
        """Whether a write failed (it was said once; nothing later is tried)."""
        return self._unwritable

    def check_writable(self) -> None:
        """Raise ``OSError`` unless a file can be made where entries go (``root/features``):
        for the ``extract`` command, whose only output is the cache."""
        folder = self.root / "features"
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".writable."):
            pass

    def entry_dir(self, key: str) -> Path:
        if len(key) != 64 or any(c not in "0123456789abcdef" for c in key):
            raise ValueError(f"cache keys are SHA-256 hex digests, got {key!r}")
        return self.root / "features" / key[:2] / key

    @contextmanager
    def lock(self, key: str) -> Iterator[None]:
        """Hold the inter-process lock of one entry, so one process extracts it."""
        if self._unwritable:  # nothing will be written, so nothing needs guarding
            yield
            return
        self._sweep_once()
        lock_path = self.entry_dir(key).with_suffix(".lock")

        def timeout() -> CacheLockTimeout:
            # No advice to delete the lock file: flock locks belong to live processes (the OS
            # frees them when the holder exits, even on SIGKILL), so deleting a held one only
            # lets a third run extract beside the holder.
            return CacheLockTimeout(
                f"feature cache entry {key[:12]} is locked: waited {LOCK_TIMEOUT_S:g} s, the limit, for "
                f"{lock_path}. Another pytest-medprobe run, still alive, is extracting these features "
                "(a lock left by a run that crashed or was killed never blocks). Wait for that run to "
                f"finish and rerun, stop it, or give this run its own cache with {mention('cache_dir')}."
            )

        try:
            lock = acquire(lock_path, LOCK_TIMEOUT_S, timeout)
        except CacheLockTimeout:  # a TimeoutError, hence an OSError: not an unwritable cache
            raise
        except OSError as exc:  # a read-only cache, or a lock file of another user
            self._cannot_write(exc)
            yield
            return
        try:
            _remove_staging(lock_path.parent, key)  # under the lock: a temporary of this entry is abandoned
            yield
        finally:
            lock.release()

    def _sweep_once(self) -> None:
        """Remove temporary folders that writers killed outright left anywhere in the cache, once."""
        if self._swept:
            return
        self._swept = True
        features = self.root / "features"
        for staging in [*features.glob("*/.*"), *features.glob("*/*.shards/.*")]:
            if staging.is_dir() and not staging.is_symlink() and _abandoned(staging):
                shutil.rmtree(staging, ignore_errors=True)

    def load(self, key: str) -> FeatureBank | None:
        """The cached bank, or None when absent or not trustworthy (with a warning).

        An entry counts only if it is a real folder (no symbolic link on the way from the
        cache root) and its manifest names ``key``: a copied or linked entry of other
        weights or images is never served.
        """
        entry = self.entry_dir(key)
        try:
            _refuse_links(entry, self.root)
            found = read_bank(entry)
            if found is None:
                return None
            manifest, bank = found
            if manifest.get("key") != key:
                raise ValueError(
                    f"it was stored under key {str(manifest.get('key'))[:12]}, not {key[:12]}: "
                    "copied or linked from another entry"
                )
            return bank
        except (OSError, ValueError, KeyError, TypeError) as exc:
            self.notify(f"feature cache entry {entry} is unusable ({exc}); extracting again")
            return None

    def description(self, key: str) -> dict[str, object]:
        """The ``description`` an entry was stored with ({} when absent or unreadable); not verified."""
        try:
            manifest = json.loads((self.entry_dir(key) / MANIFEST_FILE).read_text(encoding="utf-8"))
            description = manifest.get("description", {})
        except (OSError, ValueError, AttributeError):
            return {}
        return description if isinstance(description, dict) else {}

    def store(self, key: str, bank: FeatureBank, description: Mapping[str, object]) -> Path | None:
        """Write ``bank`` atomically; ``description`` goes into the manifest for people.

        Returns None, having said why once, when the cache cannot be written: the caller
        carries on with ``bank`` in memory, and nothing half-written is left behind.
        """
        if self._unwritable:
            return None
        try:
            return write_bank(self.entry_dir(key), bank, {"key": key, "description": dict(description)})
        except OSError as exc:
            self._cannot_write(exc)
            return None


def _refuse_links(entry: Path, root: Path) -> None:
    """Raise ``ValueError`` when the entry, its shard folder or a file in it is a symbolic link."""
    for path in (entry.parent, entry, entry / MANIFEST_FILE, entry / FEATURES_FILE):
        if path.is_symlink():
            raise ValueError(f"{path.relative_to(root)} is a symbolic link; entries are never shared by links")


def _abandoned(staging: Path) -> bool:
    """Whether no live writer owns ``staging``: old enough, and no lock of its entry is held.

    A staging folder is named ``.<entry name[:12]>.<random>`` beside its entry, whose writer
    holds ``<entry name>.lock`` in the same folder while writing.
    """
    try:
        if time.time() - staging.stat().st_mtime < STALE_STAGING_S:
            return False
    except OSError:
        return False
    prefix = staging.name[1:].split(".", 1)[0]
    return not any(is_held(lock_path) for lock_path in staging.parent.glob(f"{prefix}*.lock"))


def _remove_staging(folder: Path, entry_name: str) -> None:
    for staging in folder.glob(f".{entry_name[:12]}.*"):
        if staging.is_dir() and not staging.is_symlink():
            shutil.rmtree(staging, ignore_errors=True)


@contextmanager
def _removed_on_sigterm() -> Iterator[None]:
    """Turn SIGTERM (CI cancellations, ``timeout``) into ``SystemExit`` while a folder is written.

    Python's default SIGTERM ends the process without running ``finally`` blocks, which
    would leave a temporary folder as large as the entry behind. Only the main thread can
    install handlers, and a handler someone else installed is left alone.
    """
    if threading.current_thread() is not threading.main_thread() or signal.getsignal(signal.SIGTERM) != signal.SIG_DFL:
        yield
        return

    def stop(signum: int, frame: object) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


def write_bank(folder: Path, bank: FeatureBank, manifest: Mapping[str, object]) -> Path:
    """Write ``bank`` as ``folder`` atomically (an entry, or a shard of one), with ``manifest``'s items."""
    full = {**manifest, "stage_names": list(bank.stage_names), "has_image_view": bank.has_image_view}
    return write_folder(folder, _bank_arrays(bank), full)


def read_bank(folder: Path) -> tuple[dict[str, Any], FeatureBank] | None:
    """Manifest and bank of a folder ``write_bank`` wrote; None when there is none; raises as ``read_folder``."""
    found = read_folder(folder)
    if found is None:
        return None
    manifest, arrays = found
    stage_names = tuple(manifest["stage_names"])
    bank = FeatureBank(
        stage_names=stage_names,
        has_image_view=bool(manifest["has_image_view"]),
        fit=_split_from(arrays, "fit", stage_names),
        test=_split_from(arrays, "test", stage_names),
    )
    return manifest, bank


def write_folder(folder: Path, arrays: Mapping[str, np.ndarray], manifest: Mapping[str, object]) -> Path:
    """Write ``arrays`` and ``manifest`` (plus format version and checksum) as ``folder``, atomically.

    Everything goes to a temporary sibling that is renamed into place, so a reader sees the
    whole folder or none; an existing folder (one that failed verification) is replaced.
    The folder and its files honour the umask. Raises ``OSError`` when it cannot be written
    (the temporary folder is removed then, also on SIGTERM).
    """
    from safetensors import SafetensorError
    from safetensors.numpy import save_file

    folder.parent.mkdir(parents=True, exist_ok=True)
    folder_mode, file_mode = shared_modes(folder.parent)
    with _removed_on_sigterm():
        staging = Path(tempfile.mkdtemp(prefix=f".{folder.name[:12]}.", dir=folder.parent))
        try:
            os.chmod(staging, folder_mode)
            features_path = staging / FEATURES_FILE
            try:
                save_file({name: np.ascontiguousarray(values) for name, values in arrays.items()}, str(features_path))
            except SafetensorError as exc:  # a full disk comes back as this, not as OSError
                raise OSError(f"cannot write {features_path}: {exc}") from None
            full = {**manifest, "format_version": FORMAT_VERSION, "sha256": file_sha256(features_path)}
            (staging / MANIFEST_FILE).write_text(json.dumps(full, indent=2, sort_keys=True))
            for path in (features_path, staging / MANIFEST_FILE):
                os.chmod(path, file_mode)
            if folder.is_symlink() or folder.is_file():
                folder.unlink()
            elif folder.exists():
                shutil.rmtree(folder)
            os.replace(staging, folder)
        finally:
            if staging.exists():
                shutil.rmtree(staging, ignore_errors=True)
    return folder


def read_folder(folder: Path) -> tuple[dict[str, Any], dict[str, np.ndarray]] | None:
    """Manifest and arrays of a folder ``write_folder`` wrote; None when there is none.

    Raises ``ValueError`` (or ``OSError``, ``KeyError``) when the folder cannot be trusted:
    another format version, or arrays whose checksum is not the manifest's.
    """
    manifest_path = folder / MANIFEST_FILE
    if not manifest_path.is_file():
        return None
    manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    if not isinstance(manifest, dict):
        raise ValueError("the manifest is not a JSON object")
    if manifest.get("format_version") != FORMAT_VERSION:
        raise ValueError(f"format version {manifest.get('format_version')} != {FORMAT_VERSION}")
    features_path = folder / FEATURES_FILE
    if file_sha256(features_path) != manifest["sha256"]:
        raise ValueError("checksum mismatch")
    from safetensors.numpy import load_file

    return manifest, load_file(str(features_path))
