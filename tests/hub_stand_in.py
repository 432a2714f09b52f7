"""A stand-in for the Hugging Face hub on 127.0.0.1, for the download tests.

It implements the routes ``huggingface_hub.snapshot_download`` (2.x) uses, with the
headers the client checks (read from ``huggingface_hub/_snapshot_download.py``,
``hf_api.py`` and ``file_download.py``):

- ``GET /api/models/{repo}`` and ``/api/models/{repo}/revision/{rev}``: the commit
  (``sha``) and the ``siblings``;
- ``GET /api/models/{repo}/tree/{rev}?recursive=...``: one page of ``RepoFile`` records
  (``type``, ``path``, ``size``, ``oid``, and ``lfs`` for weights), no ``Link`` header;
- ``HEAD /{repo}/resolve/{rev}/{file}``: ``ETag``, ``X-Repo-Commit``, ``Content-Length``;
- ``GET`` of the same: the bytes, honouring ``Range: bytes=N-`` with 206 and
  ``Content-Range``.

Faults are injected per file name: ``drop_first_get`` sends the headers and part of the
body on the first GET, then closes the connection; ``fail_get`` answers every GET with
500; ``advertised_sizes`` makes the listing claim other sizes. Every request is logged.
The server runs in a daemon thread, stops when its context ends, and stops itself after
``lifetime_s`` in any case.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit

WEIGHT_SUFFIXES = (".safetensors", ".bin")


@dataclass
class StandInRepo:
    """One model repository at one commit."""

    commit: str
    files: dict[str, bytes]
    advertised_sizes: dict[str, int] = field(default_factory=dict)

    @classmethod
    def from_folder(cls, folder: Path, commit: str) -> StandInRepo:
        return cls(commit, {path.name: path.read_bytes() for path in sorted(folder.iterdir()) if path.is_file()})

    def etag(self, name: str) -> str:
        """What the hub sends: the sha256 of an LFS file (weights), else the git blob id."""
        content = self.files[name]
        if name.endswith(WEIGHT_SUFFIXES):
            return hashlib.sha256(content).hexdigest()
        return hashlib.sha1(b"blob %d\0" % len(content) + content).hexdigest()

    def tree(self) -> list[dict[str, object]]:
        records: list[dict[str, object]] = []
        for name, content in self.files.items():
            size = self.advertised_sizes.get(name, len(content))
            record: dict[str, object] = {"type": "file", "path": name, "size": size, "oid": self.etag(name)}
            if name.endswith(WEIGHT_SUFFIXES):
                record["lfs"] = {"oid": self.etag(name), "size": size, "pointerSize": 134}
            records.append(record)
        return records


@dataclass
class StandInHub:
    """The served repositories, the faults to inject, and the request log."""

    repos: dict[str, StandInRepo]
    drop_first_get: set[str] = field(default_factory=set)
    fail_get: set[str] = field(default_factory=set)
    requests: list[tuple[str, str, str | None]] = field(default_factory=list)  # method, path, Range
    endpoint: str = ""
    _gets: dict[str, int] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def resolve_gets(self, name: str) -> list[str | None]:
        """The Range header of every GET of file ``name`` (None: the whole file)."""
        return [rng for method, path, rng in self.requests if method == "GET" and path.endswith("/" + name)]


def _handler(hub: StandInHub) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:  # keep test output clean
            pass

        def _send_json(self, payload: object, status: int = 200) -> None:
            body = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _not_found(self, code: str) -> None:
            body = b'{"error": "not found"}'
            self.send_response(404)
            self.send_header("X-Error-Code", code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _log(self) -> str:
            path = unquote(urlsplit(self.path).path)
            with hub._lock:
                hub.requests.append((self.command, path, self.headers.get("Range")))
            return path

        def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
            path = self._log()
            if path.startswith("/api/models/"):
                self._api(path.removeprefix("/api/models/"))
            else:
                self._resolve(path, head=False)

        def do_HEAD(self) -> None:  # noqa: N802
            self._resolve(self._log(), head=True)

        def _api(self, rest: str) -> None:
            for repo_id, repo in hub.repos.items():
                if rest == repo_id or rest.startswith(repo_id + "/revision/"):
                    siblings = [{"rfilename": name, "size": len(data)} for name, data in repo.files.items()]
                    self._send_json({"id": repo_id, "modelId": repo_id, "sha": repo.commit, "siblings": siblings})
                    return
                if rest.startswith(repo_id + "/tree/"):
                    self._send_json(repo.tree())
                    return
            self._not_found("RepoNotFound")

        def _resolve(self, path: str, head: bool) -> None:
            for repo_id, repo in hub.repos.items():
                prefix = f"/{repo_id}/resolve/"
                if not path.startswith(prefix):
                    continue
                _revision, _, name = path.removeprefix(prefix).partition("/")
                if name not in repo.files:
                    self._not_found("EntryNotFound")
                    return
                self._serve_file(repo, name, head)
                return
            self._not_found("RepoNotFound")

        def _serve_file(self, repo: StandInRepo, name: str, head: bool) -> None:
            content = repo.files[name]
            if not head and name in hub.fail_get:
                body = b"internal error"
                self.send_response(500)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
                return
            start = 0
            range_header = self.headers.get("Range")
            if not head and range_header and range_header.startswith("bytes="):
                start = int(range_header.removeprefix("bytes=").split("-")[0])
            self.send_response(206 if start else 200)
            self.send_header("ETag", f'"{repo.etag(name)}"')
            self.send_header("X-Repo-Commit", repo.commit)
            self.send_header("Accept-Ranges", "bytes")
            self.send_header("Content-Length", str(len(content) - start))
            if start:
                self.send_header("Content-Range", f"bytes {start}-{len(content) - 1}/{len(content)}")
            self.end_headers()
            if head:
                return
            with hub._lock:
                hub._gets[name] = hub._gets.get(name, 0) + 1
                drop = name in hub.drop_first_get and hub._gets[name] == 1
            if drop:  # part of the body, then the connection goes away
                self.wfile.write(content[start : start + (len(content) - start) * 3 // 4])
                self.wfile.flush()
                self.close_connection = True
                return
            self.wfile.write(content[start:])

    return Handler


@contextmanager
def stand_in_hub(hub: StandInHub, lifetime_s: float = 120.0) -> Iterator[StandInHub]:
    """Serve ``hub`` on 127.0.0.1 (a free port) while the context lasts, ``lifetime_s`` at most."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(hub))
    server.daemon_threads = True
    hub.endpoint = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
    watchdog = threading.Timer(lifetime_s, server.shutdown)
    watchdog.daemon = True
    thread.start()
    watchdog.start()
    try:
        yield hub
    finally:
        watchdog.cancel()
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
