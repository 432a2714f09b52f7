"""A tiny, randomly initialized Qwen3-VL checkpoint (deepstack), built for the family audit.

A real ``Qwen3VLForConditionalGeneration`` (ViT with learned, interpolated position
embeddings and 2-D rotary embeddings, a 2x2 patch merger, one deepstack merger per
``deepstack_visual_indexes`` entry, Qwen3 decoder with interleaved M-RoPE) with the
tokenizer and chat template of the tiny Qwen2-VL, a ``Qwen2VLImageProcessor`` (what
Qwen3-VL checkpoints name too) and a ``Qwen3VLVideoProcessor``.

What must agree between config and processor (besides what the tiny Qwen2-VL lists:
patching, token ids):

- ``num_position_embeddings`` is a square: the learned position grid, resampled to each
  image's patch grid (8x8 here, for images of up to 64 px at 8 px patches).
- ``deepstack_visual_indexes`` names the vision blocks whose outputs feed a deepstack
  merger; the k-th merger's output is added after decoder layer k, so there must be no
  more of them than decoder layers (2 of 3 here, reading blocks 0 and 1).
- ``out_hidden_size`` (every merger's output width) equals the decoder's ``hidden_size``.
- The text ``rope_parameters["mrope_section"]`` sums to ``head_dim / 2``.

Images of different sizes batch together. Builds are deterministic.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pytest_medprobe.models.tiny_llava import save_checkpoint_atomically
from tests.families import tiny_qwen2_vl as qwen2_vl

MODEL_TYPE = "qwen3_vl"
MIXED_SIZES = True
N_DECODER_LAYERS = qwen2_vl.N_DECODER_LAYERS

VISION_BLOCKS = 3
DEEPSTACK_BLOCKS = (0, 1)  # the vision blocks the deepstack mergers read
POSITION_GRID = 8  # learned position embeddings per side
SEED = 0


def build(directory: Path) -> Path:
    """Build the tiny Qwen3-VL (model, tokenizer, processor) and save it to ``directory``."""
    model, processor = make()
    return save_checkpoint_atomically(model, processor, directory)


def make_vision_kwargs() -> dict[str, Any]:
    """The tiny vision config's keyword arguments (shared with Qwen3-VL-MoE and Qwen3.5)."""
    return {
        "depth": VISION_BLOCKS,
        "hidden_size": qwen2_vl.VISION_WIDTH,
        "intermediate_size": qwen2_vl.VISION_WIDTH * 2,
        "num_heads": 2,
        "out_hidden_size": qwen2_vl.TEXT_HIDDEN,
        "patch_size": qwen2_vl.PATCH_SIZE,
        "spatial_merge_size": qwen2_vl.MERGE_SIZE,
        "temporal_patch_size": qwen2_vl.TEMPORAL_PATCH_SIZE,
        "num_position_embeddings": POSITION_GRID**2,
    }


def make_text_kwargs(tokenizer: Any) -> dict[str, Any]:
    """The tiny decoder config's keyword arguments: Qwen2-VL's, with interleaved M-RoPE and a head_dim."""
    text = qwen2_vl.make_text_config_kwargs(tokenizer)
    text["head_dim"] = qwen2_vl.TEXT_HIDDEN // qwen2_vl.TEXT_HEADS
    text["rope_parameters"] = {**text["rope_parameters"], "mrope_interleaved": True}
    return text


def make_processor(tokenizer: Any) -> Any:
    """The Qwen3-VL processor around the tiny Qwen2-VL image processor and a Qwen3-VL video processor."""
    from transformers import Qwen3VLProcessor, Qwen3VLVideoProcessor

    image_processor, _ = qwen2_vl.make_image_and_video_processors()
    video_processor = Qwen3VLVideoProcessor(
        patch_size=qwen2_vl.PATCH_SIZE,
        temporal_patch_size=qwen2_vl.TEMPORAL_PATCH_SIZE,
        merge_size=qwen2_vl.MERGE_SIZE,
        size={"shortest_edge": qwen2_vl.MIN_PIXELS, "longest_edge": qwen2_vl.MAX_PIXELS},
    )
    return Qwen3VLProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        video_processor=video_processor,
        chat_template=qwen2_vl.CHAT_TEMPLATE,
    )


def make() -> tuple[Any, Any]:
    """A freshly initialized tiny Qwen3-VL (eval mode) and its processor, in memory."""
    import torch
    from transformers import Qwen3VLConfig, Qwen3VLForConditionalGeneration

    tokenizer = qwen2_vl.make_tokenizer()
    config = Qwen3VLConfig(
        vision_config={**make_vision_kwargs(), "deepstack_visual_indexes": list(DEEPSTACK_BLOCKS)},
        text_config=make_text_kwargs(tokenizer),
        **qwen2_vl.make_token_ids(tokenizer),
    )
    # Seed inside fork_rng so building leaves the caller's random state alone.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(SEED)
        model = Qwen3VLForConditionalGeneration(config).eval()
    return model, make_processor(tokenizer)
