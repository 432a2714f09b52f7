"""A tiny, randomly initialized InternVL checkpoint (tiles, pixel shuffle), built for the family audit.

A real ``InternVLForConditionalGeneration`` (InternViT vision tower with a CLS token,
pixel-shuffle downsampling, layer-norm + two-layer MLP projector, Qwen2 decoder) with the
word-level tokenizer of the tiny LLaVA, a ``GotOcr2ImageProcessor`` and an
``InternVLVideoProcessor`` (``AutoProcessor`` loads one even for image-only use).

What must agree between config and processor:

- ``image_seq_length`` is the same in the processor and the config, and equals
  ``(image_size / patch_size)**2 * downsample_ratio**2`` (4 here): the tokens one tile
  gives after the CLS token is dropped and the patch grid is pixel-shuffled.
- The image processor's tile ``size`` equals the vision ``image_size``; the patch grid per
  side (``image_size / patch_size``) must be divisible by ``1 / downsample_ratio``.
- The tokenizer exposes ``start_image_token``, ``end_image_token``,
  ``context_image_token`` and ``video_token`` (the processor reads them as attributes);
  the config's ``image_token_id`` is the id of the context token, which the processor
  repeats ``image_seq_length`` times per tile between ``<img>`` and ``</img>``.

The processor crops each image into up to ``MAX_TILES`` tiles plus a thumbnail, chosen
by aspect ratio, so the number of image tokens differs per image and images of different
sizes batch together. Builds are deterministic.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pytest_medprobe.models.tiny_llava import build_tokenizer, save_checkpoint_atomically

MODEL_TYPE = "internvl"
MIXED_SIZES = True
N_DECODER_LAYERS = 3

IMAGE_SIZE = 32  # one tile
PATCH_SIZE = 8
DOWNSAMPLE_RATIO = 0.5
IMAGE_SEQ_LENGTH = int((IMAGE_SIZE // PATCH_SIZE) ** 2 * DOWNSAMPLE_RATIO**2)
# Few tiles keep a 64 px image at 5 tiles (2x2 and the thumbnail); the real model allows 12.
MAX_TILES = 4
SEED = 0

START_IMAGE = "<img>"
END_IMAGE = "</img>"
CONTEXT_IMAGE = "<IMG_CONTEXT>"
VIDEO_TOKEN = "<video>"
IM_START = "<|im_start|>"
IM_END = "<|im_end|>"

# Mimics InternVL3-hf (a Qwen2 chat): the image placeholder is the context token on its own
# line, "<|im_start|>user\n<IMG_CONTEXT>\nquestion<|im_end|>\n<|im_start|>assistant\n".
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for item in message['content'] %}"
    "{% if item['type'] == 'image' %}<IMG_CONTEXT>\n"
    "{% elif item['type'] == 'text' %}{{ item['text'] }}{% endif %}"
    "{% endfor %}{% endif %}<|im_end|>\n"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def build(directory: Path) -> Path:
    """Build the tiny InternVL (model, tokenizer, processor) and save it to ``directory``."""
    model, processor = make()
    return save_checkpoint_atomically(model, processor, directory)


def make() -> tuple[Any, Any]:
    """A freshly initialized tiny InternVL (eval mode) and its processor, in memory."""
    import torch
    from transformers import (
        GotOcr2ImageProcessor,
        InternVLConfig,
        InternVLForConditionalGeneration,
        InternVLProcessor,
        InternVLVideoProcessor,
        InternVLVisionConfig,
        Qwen2Config,
    )

    tokenizer = build_tokenizer(
        {
            "start_image_token": START_IMAGE,
            "end_image_token": END_IMAGE,
            "context_image_token": CONTEXT_IMAGE,
            "video_token": VIDEO_TOKEN,
        },
        extra_tokens=(IM_START, IM_END),
        extra_words=("system", "user", "assistant"),
    )
    vision_config = InternVLVisionConfig(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=3,
        num_attention_heads=2,
        image_size=IMAGE_SIZE,
        patch_size=PATCH_SIZE,
    )
    text_config = Qwen2Config(
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=N_DECODER_LAYERS,
        num_attention_heads=4,
        num_key_value_heads=2,
        vocab_size=len(tokenizer),
        max_position_embeddings=512,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    config = InternVLConfig(
        vision_config=vision_config,
        text_config=text_config,
        image_token_id=tokenizer.convert_tokens_to_ids(CONTEXT_IMAGE),
        image_seq_length=IMAGE_SEQ_LENGTH,
        downsample_ratio=DOWNSAMPLE_RATIO,
        vision_feature_layer=-1,
        vision_feature_select_strategy="default",  # drops the CLS token before pixel shuffle
    )
    # Seed inside fork_rng so building leaves the caller's random state alone.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(SEED)
        model = InternVLForConditionalGeneration(config).eval()
    tile = {"height": IMAGE_SIZE, "width": IMAGE_SIZE}
    image_processor = GotOcr2ImageProcessor(size=tile, crop_to_patches=True, min_patches=1, max_patches=MAX_TILES)
    processor = InternVLProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        video_processor=InternVLVideoProcessor(size=tile),
        image_seq_length=IMAGE_SEQ_LENGTH,
        chat_template=CHAT_TEMPLATE,
    )
    return model, processor
