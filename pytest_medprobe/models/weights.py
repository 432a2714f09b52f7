"""Cheap checks that a checkpoint's weight files are whole, made before any model loads.

A truncated download, random bytes or an HTML error page saved as ``model.safetensors``
would otherwise end the run in ``SafetensorError`` or, for ``pytorch_model.bin``, in
``UnpicklingError`` with torch's advice to disable ``weights_only`` (advice that must not be
followed for a file of unknown origin). Only headers and sizes are read: a safetensors
file states the byte range of every tensor, so a short file is found without reading it.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

from pytest_medprobe.naming import mention

SAFETENSORS_HEADER_LIMIT = 100 * 1024 * 1024  # the format's own limit on the JSON header
ZIP_MAGIC = b"PK\x03\x04"  # torch.save's format since torch 1.6
PICKLE_PROTOCOL_2_OR_MORE = b"\x80"  # the legacy torch.save format starts with a pickle


def weight_file_problem(path: Path) -> str | None:
    """Why ``path`` cannot be a whole weight file, or None when it looks whole."""
    try:
        with path.open("rb") as stream:
            head = stream.read(8)
            size = path.stat().st_size
            if path.suffix == ".safetensors":
                return _safetensors_problem(stream, head, size)
    except OSError as exc:
        return f"cannot be read ({exc})"
    if path.suffix in (".bin", ".pt", ".pth") and not (
        head.startswith(ZIP_MAGIC) or head.startswith(PICKLE_PROTOCOL_2_OR_MORE)
    ):
        return "is neither a torch.save archive (zip) nor a pickle"
    if size == 0:
        return "is empty"
    return None


def _safetensors_problem(stream: object, head: bytes, size: int) -> str | None:
    if len(head) < 8:
        return f"is {size} bytes long, shorter than a safetensors header"
    (header_size,) = struct.unpack("<Q", head)
    if header_size > min(SAFETENSORS_HEADER_LIMIT, size - 8):
        return f"states a {header_size}-byte header in a {size}-byte file: not a safetensors file, or truncated"
    try:
        header = json.loads(stream.read(header_size))  # type: ignore[attr-defined]
    except ValueError:
        return "has a header that is not JSON: not a safetensors file, or damaged"
    if not isinstance(header, dict):
        return "has a header that is not a JSON object: damaged"
    end = 0
    for name, tensor in header.items():
        if name == "__metadata__":
            continue
        offsets = tensor.get("data_offsets") if isinstance(tensor, dict) else None
        if not (isinstance(offsets, list) and len(offsets) == 2 and all(isinstance(o, int) for o in offsets)):
            return f"has no valid byte range for tensor {name!r}: damaged"
        end = max(end, offsets[1])
    if 8 + header_size + end > size:
        return f"is {size} bytes long but its tensors need {8 + header_size + end}: truncated"
    return None


def damaged_weights_message(spec: str, directory: Path, problems: dict[str, str]) -> str:
    listed = "; ".join(f"{directory / name} {problem}" for name, problem in problems.items())
    return (
        f"{mention('model')} {spec!r}: damaged weight file: {listed}. Re-download the checkpoint (or copy it again "
        "completely); pytest-medprobe never loads weights it cannot verify are whole."
    )
