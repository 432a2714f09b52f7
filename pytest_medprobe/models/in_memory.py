"""A model already in memory (a notebook's ``model, processor``), made a ``LoadedModel``.

Its identity is its content, like a checkpoint directory's: the bytes of every tensor of
the state dict (name, dtype, shape, values), the config, and the processor's settings and
vocabulary, never the Python object or a name. Hashing reads every weight once (about a
second per GB on a CPU), the price of a cache key that cannot confuse two fine-tunes.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from pytest_medprobe.models.base import LoadedModel, ModelSource
from pytest_medprobe.models.families import family_of, make_adapter

IN_MEMORY = Path("<in memory>")  # the ModelSource directory of a model that has none


def _processor_identity(processor: Any) -> bytes:
    """What of the processor changes the model's inputs: its settings and its vocabulary."""
    parts: list[str] = [type(processor).__name__]
    image_processor = getattr(processor, "image_processor", None)
    if image_processor is not None and hasattr(image_processor, "to_json_string"):
        parts.append(image_processor.to_json_string())
    tokenizer = getattr(processor, "tokenizer", processor)
    if hasattr(tokenizer, "get_vocab"):
        parts.append(json.dumps(sorted(tokenizer.get_vocab().items())))
    chat_template = getattr(processor, "chat_template", None) or getattr(tokenizer, "chat_template", None)
    parts.append(str(chat_template))
    return "\0".join(parts).encode()


def state_fingerprint(model: Any, processor: Any) -> str:
    """SHA-256 of the model's state dict content, its config and its processor."""
    import torch

    digest = hashlib.sha256()
    config = getattr(model, "config", None)
    if config is not None and hasattr(config, "to_json_string"):
        digest.update(config.to_json_string(use_diff=False).encode() + b"\0")
    with torch.no_grad():
        for name, tensor in sorted(model.state_dict().items()):
            digest.update(f"{name}\0{tensor.dtype}\0{tuple(tensor.shape)}\0".encode())
            flat = tensor.detach().reshape(-1).contiguous()
            digest.update(flat.view(torch.uint8).cpu().numpy().tobytes() if flat.numel() else b"")
    digest.update(_processor_identity(processor))
    return digest.hexdigest()


def adopt_model(model: Any, processor: Any, name: str, trust_remote_code: bool = False) -> LoadedModel:
    """``model`` and ``processor`` as the extractor takes them (the model must be a
    transformers image-text-to-text model of a family pytest-medprobe reads)."""
    config = getattr(model, "config", None)
    model_type = getattr(config, "model_type", None)
    if not model_type:
        raise TypeError(f"{type(model).__name__} has no config.model_type: pass a transformers model")
    if getattr(processor, "tokenizer", None) is None:
        raise TypeError(f"{type(processor).__name__} has no tokenizer: pass the model's AutoProcessor")
    parameter = next(model.parameters())
    embeddings = model.get_input_embeddings() if hasattr(model, "get_input_embeddings") else None
    device = embeddings.weight.device if embeddings is not None else parameter.device  # inputs go there
    floating = next((p.dtype for p in model.parameters() if p.is_floating_point()), parameter.dtype)
    source = ModelSource(
        name=name,
        directory=IN_MEMORY,
        family=family_of(model_type),
        model_type=model_type,
        fingerprint=state_fingerprint(model, processor),
    )
    adapter = make_adapter(model_type, remote_code=trust_remote_code)
    return LoadedModel(source=source, model=model, processor=processor, adapter=adapter, device=device, dtype=floating)
