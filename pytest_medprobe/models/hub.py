"""The local Hugging Face cache: finding a catalogue model in it, and downloading one into it.

``--model NAME`` for a catalogue model that is not cached downloads it when the machine is
online: the size is read from the hub and printed first, free disk space is checked
before a byte is written, and ``huggingface_hub.snapshot_download`` does the transfer
(its progress bar; a dropped connection resumes where it stopped, with a Range request).
Only what transformers reads is fetched: the top-level config, tokenizer, processor and
chat-template files and one weight format (safetensors when the repository has it).

A failed download leaves no snapshot that looks usable: the snapshot folder it was
filling is removed, while files that finished stay in the cache's content-addressed blob
store, so the next run fetches only the rest. With ``HF_HUB_OFFLINE=1`` (or
``--medprobe-offline``) nothing is fetched, and the caller reports the model as missing.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from pytest_medprobe.errors import MedprobeUsageError
from pytest_medprobe.naming import mention

if TYPE_CHECKING:
    from pytest_medprobe.models.catalogue import CatalogueEntry

# What transformers reads from a checkpoint folder, besides the weights: config,
# tokenizer (json, merges.txt, sentencepiece .model, tiktoken), processor and chat
# template files. Top-level .py files matter only with trust_remote_code, and are small.
SUPPORT_SUFFIXES = (".json", ".jinja", ".txt", ".model", ".tiktoken", ".py")
# One weight format, in order of preference; the others (and GGUF, ONNX, optimizer
# states) are left on the hub.
WEIGHT_FORMATS = (".safetensors", ".bin")
# Room left on the disk besides the files themselves (the hub client's lock and
# metadata files, and what the feature cache writes next).
DISK_HEADROOM_BYTES = 256 * 1024**2
WEIGHT_FILE_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth")  # what the loader accepts


@dataclass(frozen=True)
class RemoteFile:
    """One file of a hub repository, as its tree listing describes it."""

    path: str
    size: int
    blob_id: str  # the name of its blob in the cache: the LFS sha256, else the git blob id


@dataclass(frozen=True)
class DownloadPlan:
    """What fetching one repository at one commit means: which files, how many bytes."""

    hub_id: str
    revision: str  # the commit the listing was read at, so the files match the sizes shown
    files: tuple[RemoteFile, ...]

    @property
    def total_bytes(self) -> int:
        return sum(remote.size for remote in self.files)


def hf_cache_dir() -> Path:
    from huggingface_hub import constants

    return Path(constants.HF_HUB_CACHE)


def cached_snapshot(entry: CatalogueEntry) -> Path | None:
    """The entry's complete checkpoint in the local Hugging Face cache, or None; never downloads."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:
        directory = Path(snapshot_download(entry.hub_id, local_files_only=True))
    except LocalEntryNotFoundError as exc:
        # The hub client calls a snapshot incomplete when any file of the repository is
        # missing, README and GGUF files included, which a download of ours leaves out on
        # purpose; whether what transformers needs is there is decided below.
        partial = getattr(exc, "snapshot_path", None)
        if partial is None:
            return None
        directory = Path(partial)
    except (OSError, ValueError):
        return None
    return directory if _looks_complete(directory) else None


def _looks_complete(directory: Path) -> bool:
    """config.json and the weights are there (every shard an index names), so loading can work.

    A download killed part-way may leave a snapshot folder with some files; treating it as
    cached would fail late, at load time, or worse, load a model with shards missing.
    """
    if not (directory / "config.json").is_file():
        return False
    for index in directory.glob("*.index.json"):
        try:
            weight_map = json.loads(index.read_text(encoding="utf-8")).get("weight_map", {})
        except (OSError, ValueError, AttributeError):
            return False
        if not all((directory / shard).is_file() for shard in set(weight_map.values())):
            return False
    return any(path.name.endswith(WEIGHT_FILE_SUFFIXES) and path.is_file() for path in directory.iterdir())


def hub_offline() -> bool:
    """Whether the Hugging Face client is in offline mode (HF_HUB_OFFLINE / TRANSFORMERS_OFFLINE)."""
    from huggingface_hub import constants

    return bool(constants.is_offline_mode())


def human_size(n_bytes: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n_bytes < 1000 or unit == "GB":
            return f"{n_bytes:.1f} {unit}" if unit != "B" else f"{int(n_bytes)} B"
        n_bytes /= 1000
    raise AssertionError("unreachable")


def select_files(files: list[RemoteFile]) -> tuple[RemoteFile, ...]:
    """The top-level files transformers needs: support files plus one weight format."""
    top_level = [remote for remote in files if "/" not in remote.path]
    chosen = [remote for remote in top_level if remote.path.endswith(SUPPORT_SUFFIXES)]
    for suffix in WEIGHT_FORMATS:
        weights = [remote for remote in top_level if remote.path.endswith(suffix)]
        if weights:
            chosen += weights
            break
    index_suffix = {".safetensors": ".safetensors.index.json", ".bin": ".bin.index.json"}
    weight_suffixes = {suffix for suffix in WEIGHT_FORMATS if any(r.path.endswith(suffix) for r in chosen)}
    # Only the index of the format that is fetched: another format's index would name
    # shards that are not there.
    chosen = [
        remote
        for remote in chosen
        if not any(remote.path.endswith(index_suffix[suffix]) for suffix in WEIGHT_FORMATS)
        or any(remote.path.endswith(index_suffix[suffix]) for suffix in weight_suffixes)
    ]
    return tuple(sorted(chosen, key=lambda remote: remote.path))


def plan_download(entry: CatalogueEntry) -> DownloadPlan:
    """Read the repository's current commit and file sizes from the hub (no file is fetched)."""
    from huggingface_hub import HfApi
    from huggingface_hub.hf_api import RepoFile

    api = HfApi()
    revision = api.repo_info(entry.hub_id).sha
    if revision is None:
        raise MedprobeUsageError(
            f"{mention('model')} {entry.name!r}: the hub at {_endpoint()} gave no commit for {entry.hub_id}; "
            f"check HF_ENDPOINT, or download the checkpoint elsewhere and pass {mention('model')} NAME=DIR."
        )
    listing = [
        RemoteFile(item.path, int(item.size), item.lfs.sha256 if item.lfs is not None else item.blob_id)
        for item in api.list_repo_tree(entry.hub_id, recursive=True, revision=revision)
        if isinstance(item, RepoFile)
    ]
    files = select_files(listing)
    if not any(remote.path.endswith(WEIGHT_FORMATS) for remote in files):
        raise MedprobeUsageError(
            f"{mention('model')} {entry.name!r}: {entry.hub_id} (commit {revision[:12]}) has no *.safetensors or *.bin "
            f"weights at its top level; download the checkpoint yourself and pass {mention('model')} NAME=DIR."
        )
    return DownloadPlan(entry.hub_id, revision, files)


def _endpoint() -> str:
    from huggingface_hub import constants

    return str(constants.ENDPOINT)


def _storage_folder(cache: Path, hub_id: str) -> Path:
    from huggingface_hub.file_download import repo_folder_name

    return cache / repo_folder_name(repo_id=hub_id, repo_type="model")


def _free_bytes(path: Path) -> int:
    """Free space on the disk that holds ``path`` (or its nearest existing parent)."""
    for candidate in (path, *path.parents):
        if candidate.exists():
            return shutil.disk_usage(candidate).free
    return shutil.disk_usage(Path.cwd()).free


def _missing_bytes(plan: DownloadPlan, storage: Path) -> int:
    """Bytes still to fetch: files whose blob is not in the cache yet."""
    blobs = storage / "blobs"
    return sum(remote.size for remote in plan.files if not (blobs / remote.blob_id).is_file())


MAX_CAUSE_CHARS = 240  # a hub error may carry a whole HTML page


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    if len(text) > MAX_CAUSE_CHARS:
        text = text[: MAX_CAUSE_CHARS - 1] + "…"
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _out_of_disk(entry: CatalogueEntry, cache: Path, needed: int, free: int) -> MedprobeUsageError:
    return MedprobeUsageError(
        f"{mention('model')} {entry.name!r}: not enough disk space to download {entry.hub_id}: it needs "
        f"{human_size(needed)} but {cache} has {human_size(free)} free; free some space, point "
        "HF_HUB_CACHE (or HF_HOME) at a larger disk, or pass the checkpoint folder as "
        f"{mention('model')} {entry.name}=/path/to/checkpoint. Nothing was left half-written in the cache."
    )


def download_snapshot(entry: CatalogueEntry, cache: Path, announce: Callable[[str], None]) -> Path:
    """Fetch ``entry`` into the Hugging Face cache ``cache``; the snapshot folder on success.

    Raises ``MedprobeUsageError`` (one line: the cause and the fix) when the hub cannot be
    reached or refuses, the disk is too small, or the transfer fails part-way.
    """
    from pytest_medprobe.locks import held

    storage = _storage_folder(cache, entry.hub_id)
    locks = cache / ".locks"  # where the hub client keeps its own locks
    try:
        locks.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise MedprobeUsageError(
            f"{mention('model')} {entry.name!r}: cannot write to the Hugging Face cache {cache} ({_one_line(exc)}); "
            f"point HF_HUB_CACHE (or HF_HOME) at a writable folder, or pass {mention('model')} NAME=DIR."
        ) from None
    # Two runs on one machine (or two users of one cache) download a model once.
    with held(locks / f"{storage.name}.medprobe-download.lock"):
        plan = _plan_or_explain(entry)
        snapshot = storage / "snapshots" / plan.revision
        existed = snapshot.exists()
        needed = _missing_bytes(plan, storage)
        free = _free_bytes(cache)
        if needed + DISK_HEADROOM_BYTES > free:
            raise _out_of_disk(entry, cache, needed, free)
        announce(
            f"pytest-medprobe: {entry.name} is not in the local Hugging Face cache; downloading "
            f"{entry.hub_id} (commit {plan.revision[:12]}, {len(plan.files)} files, "
            f"{human_size(plan.total_bytes)}, {human_size(needed)} of it not cached yet) into {cache}. "
            f"In bfloat16 its weights take about {entry.bfloat16_gb:.1f} GB of device memory."
        )
        try:
            _fetch(plan, cache)
            _point_main_at(storage, plan.revision)
        except BaseException as exc:  # KeyboardInterrupt too: never leave a half-filled snapshot
            if not existed:
                shutil.rmtree(snapshot, ignore_errors=True)
            if isinstance(exc, Exception):
                raise _failure(entry, plan, storage, exc, cache) from None
            raise
    return snapshot


def _plan_or_explain(entry: CatalogueEntry) -> DownloadPlan:
    from huggingface_hub.errors import GatedRepoError, HfHubHTTPError, RepositoryNotFoundError

    try:
        return plan_download(entry)
    except MedprobeUsageError:
        raise
    except (GatedRepoError, RepositoryNotFoundError) as exc:
        raise MedprobeUsageError(
            f"{mention('model')} {entry.name!r}: the hub at {_endpoint()} refused {entry.hub_id} "
            f"({type(exc).__name__}); "
            "for a gated model accept its licence on the model page, then log in (`hf auth login`) or set "
            f"HF_TOKEN; or download it elsewhere and pass {mention('model')} NAME=DIR."
        ) from None
    except (HfHubHTTPError, OSError, ValueError) as exc:
        raise MedprobeUsageError(
            f"{mention('model')} {entry.name!r}: could not read {entry.hub_id} from the hub at {_endpoint()} "
            f"({_one_line(exc)}); check the connection (or HF_ENDPOINT), or pass {mention('offline')} "
            f"and a checkpoint folder as {mention('model')} NAME=DIR."
        ) from None


def _fetch(plan: DownloadPlan, cache: Path) -> None:
    from huggingface_hub import snapshot_download

    snapshot_download(
        plan.hub_id,
        revision=plan.revision,
        cache_dir=cache,
        allow_patterns=[remote.path for remote in plan.files],
    )


def _point_main_at(storage: Path, revision: str) -> None:
    """Record the commit as the cached ``main``, as the hub client does for a branch download.

    The files were fetched by commit, so that they match the sizes announced; without
    ``refs/main`` (the cache layout huggingface_hub documents) a later offline look-up by
    name would not find them.
    """
    refs = storage / "refs"
    refs.mkdir(parents=True, exist_ok=True)
    partial = refs / f".main.{os.getpid()}.tmp"
    partial.write_text(revision, encoding="utf-8")
    os.replace(partial, refs / "main")


def _failure(
    entry: CatalogueEntry, plan: DownloadPlan, storage: Path, exc: Exception, cache: Path
) -> MedprobeUsageError:
    if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
        return _out_of_disk(entry, cache, _missing_bytes(plan, storage), _free_bytes(cache))
    finished = plan.total_bytes - _missing_bytes(plan, storage)
    return MedprobeUsageError(
        f"{mention('model')} {entry.name!r}: the download of {entry.hub_id} from {_endpoint()} failed part-way "
        f"({_one_line(exc)}); {human_size(finished)} of {human_size(plan.total_bytes)} finished and stay "
        "in the cache, nothing half-written was kept, and running again fetches only the rest. "
        f"Or pass {mention('offline')} and a checkpoint folder as {mention('model')} NAME=DIR."
    )
