"""Stand-ins on 127.0.0.1: a file server (Zenodo, a mirror; honours Range, can hang up) and the HF hub."""

from __future__ import annotations

import hashlib
import io
import json
import threading
import time
import urllib.parse
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np


def fake_breastmnist(n_train: int = 40, n_test: int = 20) -> bytes:
    """A small ``.npz`` in the official layout (grayscale 28x28, labels (N, 1))."""
    rng = np.random.default_rng(0)
    arrays = {}
    for split, n in (("train", n_train), ("val", 6), ("test", n_test)):
        arrays[f"{split}_images"] = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        arrays[f"{split}_labels"] = (np.arange(n) % 2).reshape(n, 1).astype(np.uint8)
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


@dataclass
class StandIn:
    """What the stand-in server serves and what it was asked."""

    files: dict[str, bytes]
    url: str = ""
    cut_first_response_at: int | None = None  # send only this many bytes of the first answer
    ranges: list[str | None] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)  # "METHOD path", in order
    delay_s: float = 0.0  # wait before answering (a slow link: transfers overlap)


@contextmanager
def serving(files: dict[str, bytes]) -> Iterator[StandIn]:
    """A local HTTP server (127.0.0.1, ephemeral port) honouring ``Range``; stopped on exit."""
    state = StandIn(files=files)

    class Handler(BaseHTTPRequestHandler):
        timeout = 10  # a stuck client cannot hold the server

        def do_GET(self) -> None:  # noqa: N802 (http.server's name)
            name = self.path.rsplit("/", 1)[-1].split("?")[0]
            data = state.files.get(name)
            if data is None:
                self.send_error(404)
                return
            requested = self.headers.get("Range")
            state.ranges.append(requested)
            time.sleep(state.delay_s)
            start = int(requested.removeprefix("bytes=").rstrip("-")) if requested else 0
            body = data[start:]
            self.send_response(206 if requested else 200)
            self.send_header("Content-Length", str(len(body)))
            if requested:
                self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
            self.end_headers()
            cut = state.cut_first_response_at
            if cut is not None and len(state.ranges) == 1:
                self.wfile.write(body[:cut])  # then hang up: the client sees a short body
                self.close_connection = True
                return
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:  # keep the test output clean
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}/records/files"
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


HUB_COMMIT = "0123456789abcdef0123456789abcdef01234567"


@contextmanager
def serving_hub(repo: str, files: dict[str, bytes]) -> Iterator[StandIn]:
    """A stand-in for the Hugging Face hub (``HF_ENDPOINT``) holding one dataset repository.

    Enough of the hub's API for ``datasets.load_dataset(repo)`` and ``huggingface_hub``: the
    repository info, the file tree, and ``resolve`` of each file (HEAD and GET, with the
    commit and ETag headers the client checks). Everything else is a 404.
    """
    state = StandIn(files=files)

    def entry(path: str) -> dict[str, object]:
        data = files[path]
        return {"type": "file", "path": path, "size": len(data), "oid": hashlib.sha1(data).hexdigest()}

    class Handler(BaseHTTPRequestHandler):
        timeout = 10

        def _send(self, code: int, body: bytes = b"", headers: dict[str, str] | None = None) -> None:
            self.send_response(code)
            for key, value in (headers or {}).items():
                self.send_header(key, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def do_GET(self) -> None:  # noqa: N802 (http.server's name)
            url = urllib.parse.urlparse(self.path)
            path, api = urllib.parse.unquote(url.path), f"/api/datasets/{repo}"
            state.requests.append(f"{self.command} {path}")
            resolve = f"/datasets/{repo}/resolve/"
            if path.startswith(resolve):
                name = path[len(resolve) :].partition("/")[2]
                if name not in files:
                    return self._send(404, headers={"X-Error-Code": "EntryNotFound"})
                etag = f'"{hashlib.sha1(files[name]).hexdigest()}"'
                return self._send(200, files[name], {"X-Repo-Commit": HUB_COMMIT, "ETag": etag})
            if path == api or path.startswith(f"{api}/revision/"):
                siblings = [{"rfilename": name} for name in files]
                return self._json({"id": repo, "sha": HUB_COMMIT, "private": False, "siblings": siblings})
            if path.startswith(f"{api}/tree/"):
                folder = path[len(f"{api}/tree/") :].partition("/")[2]
                prefix = f"{folder}/" if folder else ""
                listed = [entry(name) for name in files if name.startswith(prefix)]
                below = {name[len(prefix) :].split("/")[0] for name in files if name.startswith(prefix)}
                folders = [
                    {"type": "directory", "path": prefix + name, "oid": "0" * 40, "size": 0}
                    for name in sorted(below)
                    if prefix + name not in files
                ]
                direct = [item for item in listed if "/" not in str(item["path"])[len(prefix) :]]
                return self._json(folders + direct)
            return self._send(404)

        do_HEAD = do_GET

        def _json(self, document: object) -> None:
            self._send(200, json.dumps(document).encode(), {"Content-Type": "application/json"})

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
