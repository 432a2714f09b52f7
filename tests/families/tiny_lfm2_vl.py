"""A tiny, randomly initialized LFM2-VL checkpoint (SigLIP2 NaFlex vision), built for the family audit.

A real ``Lfm2VlForConditionalGeneration`` (SigLIP2 vision tower at each image's own
resolution, projector that pixel-unshuffles 2x2 patches, LFM2 decoder of convolution and
attention layers) with the word-level tokenizer of the tiny LLaVA, an ``Lfm2VlImageProcessor``
and an ``Lfm2VlProcessor``.

What must agree between config and processor:

- The image processor's ``encoder_patch_size`` equals the vision ``patch_size`` and its
  ``downsample_factor`` the config's; its ``max_num_patches`` (derived from the tile size
  and ``max_image_tokens``) must not exceed the vision ``num_patches``, the side of whose
  square is the position-embedding grid that NaFlex resizes per image.
- The tokenizer holds ``<image>`` (the config's ``image_token_id``), the begin/end and
  thumbnail tokens and one ``<|img_row_R_col_C|>`` per tile of the largest grid.

Sizes are picked so that the processor both resizes and tiles: an image whose rounded
area exceeds ``max_image_tokens × (patch × factor)² × 2`` pixels is cut into
``tile_size`` tiles plus a thumbnail; a smaller one is resized as one view. Either way
each view's patches sit in one row of ``pixel_values``, padded to the longest view with
``pixel_attention_mask`` marking the real patches. Builds are deterministic.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pytest_medprobe.models.tiny_llava import IMAGE_TOKEN, build_tokenizer, save_checkpoint_atomically

MODEL_TYPE = "lfm2_vl"
MIXED_SIZES = True
N_DECODER_LAYERS = 2

PATCH_SIZE = 8
DOWNSAMPLE_FACTOR = 2
TILE_SIZE = 32
MIN_IMAGE_TOKENS = 1
MAX_IMAGE_TOKENS = 4  # images over 2 × 4 × 16² px (e.g. 64x64, 56x40) are tiled
MAX_TILES = 4
VISION_NUM_PATCHES = 64  # an 8x8 position grid
TEXT_HIDDEN = 64
# LFM2 mixes short-convolution blocks and attention blocks; keep one of each.
LAYER_TYPES = ("conv", "full_attention")
SEED = 0

IMAGE_START = "<|image_start|>"
IMAGE_END = "<|image_end|>"
IMAGE_THUMBNAIL = "<|img_thumbnail|>"
IM_START = "<|im_start|>"
IM_END = "<|im_end|>"
TILE_TOKENS = tuple(f"<|img_row_{row}_col_{col}|>" for row in range(1, 5) for col in range(1, 5))

# Mimics LFM2-VL (ChatML): "<|im_start|>user\n<image>question<|im_end|>\n<|im_start|>assistant\n".
CHAT_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}<|im_start|>{{ message['role'] }}{{ '\\n' }}"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for item in message['content'] %}{% if item['type'] == 'image' %}<image>"
    "{% elif item['type'] == 'text' %}{{ item['text'] }}{% endif %}{% endfor %}{% endif %}<|im_end|>{{ '\\n' }}"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant{{ '\\n' }}{% endif %}"
)


def build(directory: Path) -> Path:
    """Build the tiny LFM2-VL (model, tokenizer, processor) and save it to ``directory``."""
    model, processor = make()
    return save_checkpoint_atomically(model, processor, directory)


def make() -> tuple[Any, Any]:
    """A freshly initialized tiny LFM2-VL (eval mode) and its processor, in memory."""
    import torch
    from transformers import (
        Lfm2Config,
        Lfm2VlConfig,
        Lfm2VlForConditionalGeneration,
        Lfm2VlImageProcessor,
        Lfm2VlProcessor,
        Siglip2VisionConfig,
    )

    tokenizer = build_tokenizer(
        {
            "image_token": IMAGE_TOKEN,
            "image_start_token": IMAGE_START,
            "image_end_token": IMAGE_END,
            "image_thumbnail_token": IMAGE_THUMBNAIL,
        },
        extra_tokens=(IM_START, IM_END, *TILE_TOKENS),
        extra_words=("user", "assistant"),
    )
    vision_config = Siglip2VisionConfig(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        patch_size=PATCH_SIZE,
        num_patches=VISION_NUM_PATCHES,
        vision_use_head=False,
    )
    text_config = Lfm2Config(
        hidden_size=TEXT_HIDDEN,
        intermediate_size=TEXT_HIDDEN * 2,
        block_auto_adjust_ff_dim=False,
        num_hidden_layers=N_DECODER_LAYERS,
        num_attention_heads=4,
        num_key_value_heads=2,
        layer_types=list(LAYER_TYPES),
        vocab_size=len(tokenizer),
        max_position_embeddings=512,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        tie_word_embeddings=False,
    )
    config = Lfm2VlConfig(
        vision_config=vision_config,
        text_config=text_config,
        image_token_id=tokenizer.convert_tokens_to_ids(IMAGE_TOKEN),
        projector_hidden_size=64,
        downsample_factor=DOWNSAMPLE_FACTOR,
        tie_word_embeddings=False,
    )
    # Seed inside fork_rng so building leaves the caller's random state alone.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(SEED)
        model = Lfm2VlForConditionalGeneration(config).eval()
    image_processor = Lfm2VlImageProcessor(
        encoder_patch_size=PATCH_SIZE,
        downsample_factor=DOWNSAMPLE_FACTOR,
        tile_size=TILE_SIZE,
        min_tiles=2,
        max_tiles=MAX_TILES,
        min_image_tokens=MIN_IMAGE_TOKENS,
        max_image_tokens=MAX_IMAGE_TOKENS,
        size={"height": TILE_SIZE, "width": TILE_SIZE},
    )
    processor = Lfm2VlProcessor(image_processor=image_processor, tokenizer=tokenizer, chat_template=CHAT_TEMPLATE)
    return model, processor
