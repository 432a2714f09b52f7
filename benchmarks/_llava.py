"""The benchmarks' model: a randomly initialized LLaVA of realistic shape, built from real config classes.

CLIP vision tower at 224 px with 16-px patches (196 image tokens; 6 blocks of width 256),
a two-layer projector, and a Llama decoder of 8 layers of width 512 (8 heads), 24.9 M
parameters in all. It is saved as a checkpoint directory (model, tokenizer, processor) and
loaded back through the plugin's own loader, the path a user's checkpoint takes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

SPEC_KWARGS = {
    "image_size": 224,
    "patch_size": 16,
    "vision_hidden": 256,
    "vision_layers": 6,
    "text_hidden": 512,
    "text_layers": 8,
    "heads": 8,
    "seed": 0,
}
DESCRIPTION = (
    "random-init LLaVA: CLIP vision 224 px / patch 16 (196 image tokens, 6 blocks x 256), "
    "Llama decoder 8 layers x 512 (8 heads), 24.9 M parameters"
)


def build_checkpoint(directory: Path) -> Path:
    """Write the LLaVA checkpoint (model, tokenizer, processor) to ``directory``."""
    from pytest_medprobe.models.tiny_llava import TinyLlavaSpec, make_tiny_llava, save_checkpoint_atomically

    model, processor = make_tiny_llava(TinyLlavaSpec(**SPEC_KWARGS))
    return save_checkpoint_atomically(model, processor, directory)


def load_checkpoint(directory: Path, device: str = "auto") -> Any:
    """The checkpoint loaded as a user's would be: registry resolution, then the loader."""
    from pytest_medprobe.models.loader import load_model
    from pytest_medprobe.models.registry import resolve_model_source

    return load_model(resolve_model_source(str(directory), directory.parent), device=device)
