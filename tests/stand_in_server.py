"""A stand-in for a file server (Zenodo, a mirror) on 127.0.0.1: serves bytes, honours Range, can hang up."""

from __future__ import annotations

import io
import threading
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
