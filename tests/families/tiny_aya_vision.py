"""A tiny, randomly initialized Aya Vision checkpoint, built for the family audit.

A real ``AyaVisionForConditionalGeneration`` (SigLIP vision tower, projector that
pixel-shuffles 2x2 patches then applies a SwiGLU MLP, Cohere2 decoder with sliding and
global layers) with the word-level tokenizer of the tiny LLaVA, a ``GotOcr2ImageProcessor``
(the image processor transformers maps ``aya_vision`` to) and an ``AyaVisionProcessor``.

What must agree between config and processor:

- The processor's ``img_size`` equals the vision ``image_size`` and the image processor's
  ``size``; its ``patch_size × downsample_factor`` equals the vision ``patch_size`` times
  the config's ``downsample_factor``, so each tile is ``(img_size / (patch × factor))²``
  ``<|IMG_PATCH|>`` tokens (4 here), the config's ``image_token_index``.
- The tokenizer holds the begin/end-of-image, tile, global-tile and patch tokens, and the
  words ``TILE_1`` … the processor writes before each tile.
- The text ``head_dim`` is set (its default is sized for the real model's heads).

With ``crop_to_patches`` the image processor cuts an image into up to ``MAX_TILES``
``img_size`` tiles by aspect ratio, plus a global view, so the tile count (and the number
of image tokens) differs per image; every tile is one row of the vision tower.
Builds are deterministic.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pytest_medprobe.models.tiny_llava import IMAGE_TOKEN, build_tokenizer, save_checkpoint_atomically

MODEL_TYPE = "aya_vision"
MIXED_SIZES = True
N_DECODER_LAYERS = 2

IMAGE_SIZE = 32
PATCH_SIZE = 8
DOWNSAMPLE_FACTOR = 2
MAX_TILES = 4
TEXT_HIDDEN = 64
TEXT_HEADS = 4
LAYER_TYPES = ("sliding_attention", "full_attention")
SEED = 0

START_OF_IMAGE = "<|START_OF_IMG|>"
END_OF_IMAGE = "<|END_OF_IMG|>"
IMAGE_PATCH = "<|IMG_PATCH|>"
IMAGE_LINE_BREAK = "<|IMG_LINE_BREAK|>"
TILE = "TILE"
TILE_GLOBAL = "TILE_GLOBAL"
TURN_USER = "<|USER_TOKEN|>"
TURN_CHATBOT = "<|CHATBOT_TOKEN|>"
TURN_START = "<|START_OF_TURN_TOKEN|>"
TURN_END = "<|END_OF_TURN_TOKEN|>"

# Mimics aya-vision (Cohere turns): "<BOS><|START_OF_TURN_TOKEN|><|USER_TOKEN|><image>question
# <|END_OF_TURN_TOKEN|><|START_OF_TURN_TOKEN|><|CHATBOT_TOKEN|>" (one line).
CHAT_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}<|START_OF_TURN_TOKEN|>"
    "{% if message['role'] == 'user' %}<|USER_TOKEN|>{% else %}<|CHATBOT_TOKEN|>{% endif %}"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for item in message['content'] %}{% if item['type'] == 'image' %}<image>"
    "{% elif item['type'] == 'text' %}{{ item['text'] }}{% endif %}{% endfor %}{% endif %}<|END_OF_TURN_TOKEN|>"
    "{% endfor %}{% if add_generation_prompt %}<|START_OF_TURN_TOKEN|><|CHATBOT_TOKEN|>{% endif %}"
)


def build(directory: Path) -> Path:
    """Build the tiny Aya Vision (model, tokenizer, processor) and save it to ``directory``."""
    model, processor = make()
    return save_checkpoint_atomically(model, processor, directory)


def make() -> tuple[Any, Any]:
    """A freshly initialized tiny Aya Vision (eval mode) and its processor, in memory."""
    import torch
    from transformers import (
        AyaVisionConfig,
        AyaVisionForConditionalGeneration,
        AyaVisionProcessor,
        Cohere2Config,
        GotOcr2ImageProcessor,
        SiglipVisionConfig,
    )

    tokenizer = build_tokenizer(
        {"image_token": IMAGE_TOKEN},
        extra_tokens=(
            START_OF_IMAGE,
            END_OF_IMAGE,
            IMAGE_PATCH,
            IMAGE_LINE_BREAK,
            TILE_GLOBAL,
            *(f"{TILE}_{index}" for index in range(1, MAX_TILES + 1)),
            TURN_USER,
            TURN_CHATBOT,
            TURN_START,
            TURN_END,
        ),
    )
    vision_config = SiglipVisionConfig(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        image_size=IMAGE_SIZE,
        patch_size=PATCH_SIZE,
        vision_use_head=False,
    )
    text_config = Cohere2Config(
        hidden_size=TEXT_HIDDEN,
        intermediate_size=TEXT_HIDDEN * 2,
        num_hidden_layers=N_DECODER_LAYERS,
        num_attention_heads=TEXT_HEADS,
        num_key_value_heads=TEXT_HEADS // 2,
        head_dim=TEXT_HIDDEN // TEXT_HEADS,
        layer_types=list(LAYER_TYPES),
        sliding_window=512,
        vocab_size=len(tokenizer),
        max_position_embeddings=512,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    config = AyaVisionConfig(
        vision_config=vision_config,
        text_config=text_config,
        image_token_index=tokenizer.convert_tokens_to_ids(IMAGE_PATCH),
        downsample_factor=DOWNSAMPLE_FACTOR,
        vision_feature_select_strategy="full",
        vision_feature_layer=-1,
        alignment_intermediate_size=TEXT_HIDDEN * 2,
    )
    # Seed inside fork_rng so building leaves the caller's random state alone.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(SEED)
        model = AyaVisionForConditionalGeneration(config).eval()
    image_processor = GotOcr2ImageProcessor(
        size={"height": IMAGE_SIZE, "width": IMAGE_SIZE},
        crop_to_patches=True,
        min_patches=1,
        max_patches=MAX_TILES,
    )
    processor = AyaVisionProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        patch_size=PATCH_SIZE,
        downsample_factor=DOWNSAMPLE_FACTOR,
        img_size=IMAGE_SIZE,
        chat_template=CHAT_TEMPLATE,
    )
    return model, processor
