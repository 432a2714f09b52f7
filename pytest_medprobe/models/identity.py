"""A checkpoint's identity: the content of its weight files and of the small files that shape its prompts."""

from __future__ import annotations

import hashlib
from pathlib import Path

from pytest_medprobe.errors import ModelLoadError

WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth")
# Small files whose content is part of a checkpoint's identity: they decide the
# prompt (chat template), the tokens and the preprocessing.
IDENTITY_FILES = (
    "config.json",
    "generation_config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "processor_config.json",
    "preprocessor_config.json",
    "chat_template.jinja",
    "chat_template.json",
)


def checkpoint_fingerprint(directory: Path, memo_dir: Path | None = None) -> str:
    """Identity of a checkpoint: the content of its small files and of its weight files.

    The path, file times and sizes are left out on purpose: the same bytes under another
    path are the same model, and other bytes with the same name, size and time (a
    fine-tune copied with ``cp -p``) are another model. Weight files are identified by
    their SHA-256 (``files.content_sha256s``: the Hugging Face blob name where there is
    one, else read once and remembered in ``memo_dir``).
    """
    from pytest_medprobe.files import content_sha256s

    digest = hashlib.sha256()
    for name in IDENTITY_FILES:
        path = directory / name
        if path.is_file():
            digest.update(name.encode() + b"\0" + path.read_bytes() + b"\0")
    weights = [path for path in sorted(directory.iterdir()) if path.is_file() and path.name.endswith(WEIGHT_SUFFIXES)]
    try:
        hashes = content_sha256s(weights, memo_dir)
    except OSError as exc:
        raise ModelLoadError(
            f"cannot read the weights in {directory} to identify them ({exc}); check the files' "
            "permissions, or re-download the checkpoint."
        ) from None
    for path, sha256 in zip(weights, hashes):
        digest.update(f"{path.name}\0{sha256}\0".encode())
    return digest.hexdigest()
