"""A tiny, randomly initialized GLM-4.1V checkpoint (``glm4v``), built for the family audit.

A real ``Glm4vForConditionalGeneration``: a ViT with learned (interpolated) and 2-D
rotary position embeddings over packed patches, a post-norm, a 2x2 convolution
(``downsample``) and a merger, then a GLM-4 decoder with M-RoPE. Its processor is
``Glm4vProcessor`` with ``Glm4vImageProcessor`` and ``Glm4vVideoProcessor`` (both need
torchvision), around a word-level tokenizer with GLM's image and turn tokens.

What must agree between config and processor:

- The image (and video) processor's ``patch_size``, ``temporal_patch_size`` and
  ``merge_size`` equal the vision config's ``patch_size``, ``temporal_patch_size`` and
  ``spatial_merge_size``; the processor writes ``t*h*w / merge_size**2`` ``<|image|>``
  tokens per image, which the downsampling convolution produces.
- ``size={"shortest_edge": min_pixels, "longest_edge": max_pixels}`` bounds the resized
  area (multiples of 16 px here, so the 32-64 px test images give 4-16 image tokens).
- The vision ``image_size / patch_size`` sets the learned position grid (8x8 here).
- ``out_hidden_size`` equals the decoder's ``hidden_size``; the text
  ``rope_parameters["mrope_section"]`` sums to ``head_dim / 2``.
- The config's ``image_token_id``, ``image_start_token_id``, ``image_end_token_id`` (and
  the video ones) are the tokenizer's ids (M-RoPE positions are computed from them); the
  processor also looks up ``<|begin_of_video|>`` / ``<|end_of_video|>`` by name.

Images of different sizes batch together. Builds are deterministic.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pytest_medprobe.models.tiny_llava import build_tokenizer, save_checkpoint_atomically

MODEL_TYPE = "glm4v"
MIXED_SIZES = True
N_DECODER_LAYERS = 2

PATCH_SIZE = 8
MERGE_SIZE = 2
TEMPORAL_PATCH_SIZE = 2
MIN_PIXELS = 32 * 32
MAX_PIXELS = 64 * 64
VISION_WIDTH = 32
VISION_BLOCKS = 2
TEXT_HIDDEN = 64
TEXT_HEADS = 4
MROPE_SECTION = (2, 3, 3)  # head_dim 16: 8 rotary frequencies
SEED = 0

IMAGE_TOKEN = "<|image|>"
VIDEO_TOKEN = "<|video|>"
BEGIN_IMAGE = "<|begin_of_image|>"
END_IMAGE = "<|end_of_image|>"
BEGIN_VIDEO = "<|begin_of_video|>"
END_VIDEO = "<|end_of_video|>"
USER = "<|user|>"
ASSISTANT = "<|assistant|>"

# Mimics GLM-4.1V-Thinking's template, without its thinking tags:
# "<|user|>\n<|begin_of_image|><|image|><|end_of_image|>question<|assistant|>\n".
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "<|{{ message['role'] }}|>\n"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for item in message['content'] %}"
    "{% if item['type'] == 'image' %}<|begin_of_image|><|image|><|end_of_image|>"
    "{% elif item['type'] == 'text' %}{{ item['text'] }}{% endif %}"
    "{% endfor %}{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)


def build(directory: Path) -> Path:
    """Build the tiny GLM-4.1V (model, tokenizer, processor) and save it to ``directory``."""
    model, processor = make()
    return save_checkpoint_atomically(model, processor, directory)


def make() -> tuple[Any, Any]:
    """A freshly initialized tiny GLM-4.1V (eval mode) and its processor, in memory."""
    import torch
    from transformers import (
        Glm4vConfig,
        Glm4vForConditionalGeneration,
        Glm4vImageProcessor,
        Glm4vProcessor,
        Glm4vVideoProcessor,
    )

    tokenizer = build_tokenizer(
        {"image_token": IMAGE_TOKEN, "video_token": VIDEO_TOKEN},
        extra_tokens=(BEGIN_IMAGE, END_IMAGE, BEGIN_VIDEO, END_VIDEO, USER, ASSISTANT),
    )
    ids = tokenizer.convert_tokens_to_ids
    config = Glm4vConfig(
        vision_config={
            "depth": VISION_BLOCKS,
            "hidden_size": VISION_WIDTH,
            "intermediate_size": VISION_WIDTH * 2,
            "num_heads": 2,
            "image_size": 8 * PATCH_SIZE,
            "patch_size": PATCH_SIZE,
            "spatial_merge_size": MERGE_SIZE,
            "temporal_patch_size": TEMPORAL_PATCH_SIZE,
            "out_hidden_size": TEXT_HIDDEN,
        },
        text_config={
            "hidden_size": TEXT_HIDDEN,
            "intermediate_size": TEXT_HIDDEN * 2,
            "num_hidden_layers": N_DECODER_LAYERS,
            "num_attention_heads": TEXT_HEADS,
            "num_key_value_heads": TEXT_HEADS // 2,
            "vocab_size": len(tokenizer),
            "max_position_embeddings": 512,
            "rope_parameters": {"rope_type": "default", "rope_theta": 10000.0, "mrope_section": list(MROPE_SECTION)},
            "pad_token_id": tokenizer.pad_token_id,
        },
        image_token_id=ids(IMAGE_TOKEN),
        video_token_id=ids(VIDEO_TOKEN),
        image_start_token_id=ids(BEGIN_IMAGE),
        image_end_token_id=ids(END_IMAGE),
        video_start_token_id=ids(BEGIN_VIDEO),
        video_end_token_id=ids(END_VIDEO),
    )
    # Seed inside fork_rng so building leaves the caller's random state alone.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(SEED)
        model = Glm4vForConditionalGeneration(config).eval()
    patching: dict[str, Any] = {
        "patch_size": PATCH_SIZE,
        "temporal_patch_size": TEMPORAL_PATCH_SIZE,
        "merge_size": MERGE_SIZE,
        "size": {"shortest_edge": MIN_PIXELS, "longest_edge": MAX_PIXELS},
    }
    processor = Glm4vProcessor(
        image_processor=Glm4vImageProcessor(**patching),
        tokenizer=tokenizer,
        video_processor=Glm4vVideoProcessor(**patching),
        chat_template=CHAT_TEMPLATE,
    )
    return model, processor
