"""A tiny, randomly initialized Qwen2.5-VL checkpoint (windowed vision attention), built for the family audit.

A real ``Qwen2_5_VLForConditionalGeneration`` (ViT with windowed and full-attention
blocks, 2x2 patch merger, Qwen2 decoder with M-RoPE) with the tokenizer, chat template,
image processor and video processor of the tiny Qwen2-VL (the real Qwen2.5-VL reuses
Qwen2-VL's processors too).

What must agree between config and processor (besides what the tiny Qwen2-VL lists:
patching, token ids, ``mrope_section``):

- ``window_size`` is in pixels: a window holds
  ``window_size / patch_size / spatial_merge_size`` merged units per side (2 here, so a
  64 px image is attended in 4 windows by the windowed blocks).
- ``fullatt_block_indexes`` names the blocks that attend over the whole image; the others
  attend within windows. Block outputs (and the merger's own output) are in
  window-permuted order within each image; the model restores the order after the merger.
- ``out_hidden_size`` (the merger's output width) equals the decoder's ``hidden_size``.

Images of different sizes batch together. Builds are deterministic.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pytest_medprobe.models.tiny_llava import save_checkpoint_atomically
from tests.families import tiny_qwen2_vl as qwen2_vl

MODEL_TYPE = "qwen2_5_vl"
MIXED_SIZES = True
N_DECODER_LAYERS = qwen2_vl.N_DECODER_LAYERS  # the decoder config is the tiny Qwen2-VL's

VISION_BLOCKS = 3
# The last block attends over the whole image, the first two within windows, as in the
# real model (full attention every eighth block, windows elsewhere).
FULL_ATTENTION_BLOCKS = (2,)
WINDOW_SIZE = 2 * qwen2_vl.PATCH_SIZE * qwen2_vl.MERGE_SIZE  # pixels: 2x2 merged units per window
SEED = 0


def build(directory: Path) -> Path:
    """Build the tiny Qwen2.5-VL (model, tokenizer, processor) and save it to ``directory``."""
    model, processor = make()
    return save_checkpoint_atomically(model, processor, directory)


def make() -> tuple[Any, Any]:
    """A freshly initialized tiny Qwen2.5-VL (eval mode) and its processor, in memory."""
    import torch
    from transformers import (
        Qwen2_5_VLConfig,
        Qwen2_5_VLForConditionalGeneration,
        Qwen2_5_VLProcessor,
        Qwen2_5_VLTextConfig,
        Qwen2_5_VLVisionConfig,
    )

    tokenizer = qwen2_vl.make_tokenizer()
    vision_config = Qwen2_5_VLVisionConfig(
        depth=VISION_BLOCKS,
        hidden_size=qwen2_vl.VISION_WIDTH,
        intermediate_size=qwen2_vl.VISION_WIDTH * 2,
        num_heads=2,
        out_hidden_size=qwen2_vl.TEXT_HIDDEN,
        patch_size=qwen2_vl.PATCH_SIZE,
        spatial_merge_size=qwen2_vl.MERGE_SIZE,
        temporal_patch_size=qwen2_vl.TEMPORAL_PATCH_SIZE,
        window_size=WINDOW_SIZE,
        fullatt_block_indexes=list(FULL_ATTENTION_BLOCKS),
    )
    config = Qwen2_5_VLConfig(
        vision_config=vision_config,
        text_config=Qwen2_5_VLTextConfig(**qwen2_vl.make_text_config_kwargs(tokenizer)),
        **qwen2_vl.make_token_ids(tokenizer),
    )
    # Seed inside fork_rng so building leaves the caller's random state alone.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(SEED)
        model = Qwen2_5_VLForConditionalGeneration(config).eval()
    image_processor, video_processor = qwen2_vl.make_image_and_video_processors()
    processor = Qwen2_5_VLProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        video_processor=video_processor,
        chat_template=qwen2_vl.CHAT_TEMPLATE,
    )
    return model, processor
