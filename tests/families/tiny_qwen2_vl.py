"""A tiny, randomly initialized Qwen2-VL checkpoint (dynamic resolution), built for the family audit.

A real ``Qwen2VLForConditionalGeneration`` (ViT with 2-D rotary embeddings, 2x2 patch
merger, Qwen2 decoder with M-RoPE) with the word-level tokenizer of the tiny LLaVA, a
``Qwen2VLImageProcessor`` and a ``Qwen2VLVideoProcessor`` (``AutoProcessor`` loads one
even for image-only use, and it needs torchvision).

What must agree between config and processor:

- The image (and video) processor's ``patch_size``, ``temporal_patch_size`` and
  ``merge_size`` equal the vision config's ``patch_size``, ``temporal_patch_size`` and
  ``spatial_merge_size``: the processor cuts images into flattened
  ``channels x temporal x patch x patch`` rows, and the number of ``<|image_pad|>``
  tokens it writes is ``t*h*w / merge_size**2`` from ``image_grid_thw``, which the merger
  must produce.
- ``size={"shortest_edge": min_pixels, "longest_edge": max_pixels}`` bounds the resized
  area; images are resized to multiples of ``patch_size * merge_size`` (16 px here), so
  the 32-64 px test images give 4 to 16 image tokens each.
- The config's ``image_token_id``, ``video_token_id``, ``vision_start_token_id`` and
  ``vision_end_token_id`` are the tokenizer's ids of those tokens (M-RoPE positions are
  computed from them).
- The text ``rope_parameters["mrope_section"]`` sums to ``head_dim / 2``.

Images of different sizes batch together: each gives its own number of image tokens.
Builds are deterministic.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pytest_medprobe.models.tiny_llava import build_tokenizer, save_checkpoint_atomically

MODEL_TYPE = "qwen2_vl"
MIXED_SIZES = True
N_DECODER_LAYERS = 3

PATCH_SIZE = 8
MERGE_SIZE = 2
TEMPORAL_PATCH_SIZE = 2  # as in the real model: a still image is repeated to two frames
MIN_PIXELS = 32 * 32
MAX_PIXELS = 64 * 64
VISION_WIDTH = 32
VISION_BLOCKS = 3
TEXT_HIDDEN = 64
TEXT_HEADS = 4
# head_dim 16: temporal, height and width rotary sections over its 8 frequencies.
MROPE_SECTION = (2, 3, 3)
SEED = 0

IMAGE_TOKEN = "<|image_pad|>"
VIDEO_TOKEN = "<|video_pad|>"
VISION_START = "<|vision_start|>"
VISION_END = "<|vision_end|>"
IM_START = "<|im_start|>"
IM_END = "<|im_end|>"
SYSTEM_WORDS = ("system", "user", "assistant", "You", "are", "a", "helpful")

# Mimics Qwen2-VL-Instruct: a default system turn, then
# "<|im_start|>user\n<|vision_start|><|image_pad|><|vision_end|>question<|im_end|>\n<|im_start|>assistant\n".
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{% if loop.first and message['role'] != 'system' %}"
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}"
    "<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for item in message['content'] %}"
    "{% if item['type'] == 'image' %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif item['type'] == 'text' %}{{ item['text'] }}{% endif %}"
    "{% endfor %}{% endif %}<|im_end|>\n"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def build(directory: Path) -> Path:
    """Build the tiny Qwen2-VL (model, tokenizer, processor) and save it to ``directory``."""
    model, processor = make()
    return save_checkpoint_atomically(model, processor, directory)


def make_tokenizer() -> Any:
    """The word-level tokenizer with Qwen's vision and chat-turn tokens (shared with Qwen2.5-VL)."""
    return build_tokenizer(
        {"image_token": IMAGE_TOKEN, "video_token": VIDEO_TOKEN},
        extra_tokens=(VISION_START, VISION_END, IM_START, IM_END),
        extra_words=SYSTEM_WORDS,
    )


def make_text_config_kwargs(tokenizer: Any) -> dict[str, Any]:
    """Keyword arguments of the tiny decoder config (shared with Qwen2.5-VL)."""
    return {
        "hidden_size": TEXT_HIDDEN,
        "intermediate_size": TEXT_HIDDEN * 2,
        "num_hidden_layers": N_DECODER_LAYERS,
        "num_attention_heads": TEXT_HEADS,
        "num_key_value_heads": TEXT_HEADS // 2,
        "vocab_size": len(tokenizer),
        "max_position_embeddings": 512,
        "rope_parameters": {"rope_type": "default", "rope_theta": 10000.0, "mrope_section": list(MROPE_SECTION)},
        "pad_token_id": tokenizer.pad_token_id,
        "bos_token_id": tokenizer.bos_token_id,
        "eos_token_id": tokenizer.eos_token_id,
    }


def make_token_ids(tokenizer: Any) -> dict[str, Any]:
    """The config's vision token ids, read from the tokenizer (shared with Qwen2.5-VL)."""
    return {
        "image_token_id": tokenizer.convert_tokens_to_ids(IMAGE_TOKEN),
        "video_token_id": tokenizer.convert_tokens_to_ids(VIDEO_TOKEN),
        "vision_start_token_id": tokenizer.convert_tokens_to_ids(VISION_START),
        "vision_end_token_id": tokenizer.convert_tokens_to_ids(VISION_END),
    }


def make_image_and_video_processors() -> tuple[Any, Any]:
    """Image and video processors whose patching matches the vision config (shared with Qwen2.5-VL)."""
    from transformers import Qwen2VLImageProcessor, Qwen2VLVideoProcessor

    patching: dict[str, Any] = {
        "patch_size": PATCH_SIZE,
        "temporal_patch_size": TEMPORAL_PATCH_SIZE,
        "merge_size": MERGE_SIZE,
        "size": {"shortest_edge": MIN_PIXELS, "longest_edge": MAX_PIXELS},
    }
    return Qwen2VLImageProcessor(**patching), Qwen2VLVideoProcessor(**patching)


def make() -> tuple[Any, Any]:
    """A freshly initialized tiny Qwen2-VL (eval mode) and its processor, in memory."""
    import torch
    from transformers import (
        Qwen2VLConfig,
        Qwen2VLForConditionalGeneration,
        Qwen2VLProcessor,
        Qwen2VLTextConfig,
        Qwen2VLVisionConfig,
    )

    tokenizer = make_tokenizer()
    vision_config = Qwen2VLVisionConfig(
        depth=VISION_BLOCKS,
        embed_dim=VISION_WIDTH,
        hidden_size=TEXT_HIDDEN,  # the merger's output width: the decoder's hidden size
        mlp_ratio=2,
        num_heads=2,
        patch_size=PATCH_SIZE,
        spatial_merge_size=MERGE_SIZE,
        temporal_patch_size=TEMPORAL_PATCH_SIZE,
    )
    config = Qwen2VLConfig(
        vision_config=vision_config,
        text_config=Qwen2VLTextConfig(**make_text_config_kwargs(tokenizer)),
        **make_token_ids(tokenizer),
    )
    # Seed inside fork_rng so building leaves the caller's random state alone.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(SEED)
        model = Qwen2VLForConditionalGeneration(config).eval()
    image_processor, video_processor = make_image_and_video_processors()
    processor = Qwen2VLProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        video_processor=video_processor,
        chat_template=CHAT_TEMPLATE,
    )
    return model, processor
