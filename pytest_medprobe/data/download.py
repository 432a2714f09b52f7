"""Fetching a published data file over HTTP: resumable, atomic, checked against its MD5.

The bytes go to ``<file>.part`` next to the target; a transfer cut short is resumed from
where it stopped with an HTTP ``Range`` request (within this call, and by the next run if
every retry fails); the complete file is checked against the published MD5 and only then
renamed onto its name (``os.replace``: readers see no file or the whole file). A wrong
checksum deletes the partial file, so nothing of a bad download stays behind. A file lock
next to the target lets two processes (two users, xdist workers) share one data folder:
the second waits, then finds the file. Only the standard library speaks HTTP here
(proxies from the environment are honoured, as urllib does).
"""

from __future__ import annotations

import hashlib
import http.client
import os
import urllib.error
import urllib.request
from pathlib import Path

from pytest_medprobe.errors import DatasetError

CHUNK = 1 << 20
ATTEMPTS = 4  # one transfer and up to three resumptions
TIMEOUT_S = 60.0  # per blocking socket operation, not for the whole file
_TRANSFER_ERRORS = (OSError, http.client.HTTPException, TimeoutError)


class Unreachable(DatasetError):
    """The server could not be reached at all (offline, DNS, refused): nothing was received."""


def part_path(target: Path) -> Path:
    return target.with_name(target.name + ".part")


def lock_path(target: Path) -> Path:
    return target.with_name(f".{target.name}.lock")


def file_md5(path: Path) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with path.open("rb") as stream:
        for block in iter(lambda: stream.read(CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def _open(url: str, offset: int) -> http.client.HTTPResponse:
    request = urllib.request.Request(url, headers={"User-Agent": "pytest-medprobe"})
    if offset:
        request.add_header("Range", f"bytes={offset}-")
    return urllib.request.urlopen(request, timeout=TIMEOUT_S)  # type: ignore[no-any-return]


def _transfer(url: str, part: Path, progress: bool, description: str) -> None:
    """Append the rest of ``url`` to ``part``; raises on a cut connection (the caller resumes)."""
    from tqdm.auto import tqdm

    offset = part.stat().st_size if part.exists() else 0
    try:
        response = _open(url, offset)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and offset:  # nothing left to send: the part file is complete
            return
        raise
    with response:
        if offset and response.status != 206:  # the server ignored the range: start again
            offset = 0
        length = response.headers.get("Content-Length")
        total = offset + int(length) if length and length.isdigit() else None
        with (
            part.open("ab" if offset else "wb") as sink,
            tqdm(
                total=total, initial=offset, desc=description, unit="B", unit_scale=True,
                disable=not progress or None,
            ) as bar,
        ):  # fmt: skip
            received = 0
            for block in iter(lambda: response.read(CHUNK), b""):
                sink.write(block)
                received += len(block)
                bar.update(len(block))
            sink.flush()
            os.fsync(sink.fileno())
        if length and length.isdigit() and received < int(length):
            raise http.client.IncompleteRead(b"", int(length) - received)


def download(url: str, target: Path, md5: str, *, progress: bool = True, description: str = "") -> None:
    """Download ``url`` to ``target`` unless it is there; ``Unreachable`` when nothing could be fetched."""
    from pytest_medprobe.locks import held

    target.parent.mkdir(parents=True, exist_ok=True)
    part = part_path(target)
    with held(lock_path(target)):
        if target.is_file():  # another process finished it while we waited
            return
        last: BaseException | None = None
        progressed = False
        for _ in range(ATTEMPTS):
            before = part.stat().st_size if part.exists() else 0
            try:
                _transfer(url, part, progress, description or target.name)
                last = None
                break
            except urllib.error.HTTPError as exc:  # kept: a partial file from before still resumes
                raise DatasetError(f"{url}: the server answered HTTP {exc.code} ({exc.reason}).") from None
            except _TRANSFER_ERRORS as exc:
                last = exc
                got = part.stat().st_size if part.exists() else 0
                if got == before:  # no progress at all: retrying would not help
                    break
                progressed = True
        if last is not None:
            got = part.stat().st_size if part.exists() else 0
            if not progressed:
                if not got:
                    part.unlink(missing_ok=True)
                raise Unreachable(f"cannot reach {url} ({_reason(last)})")
            raise DatasetError(
                f"{url}: the transfer broke off after {got} bytes ({_reason(last)}); the partial file {part} "
                "is kept and the next run resumes from it."
            )
        observed = file_md5(part)
        if observed != md5:
            part.unlink(missing_ok=True)
            raise DatasetError(
                f"{url}: the downloaded file has MD5 {observed}, but the published checksum is {md5}; "
                "it was deleted, nothing is kept. Run again; if it repeats, the server (or mirror) does not "
                "serve the official file."
            )
        os.replace(part, target)


def _reason(exc: BaseException) -> str:
    if isinstance(exc, urllib.error.URLError):
        return str(exc.reason)
    return f"{type(exc).__name__}: {exc}"
