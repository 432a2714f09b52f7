"""A tiny, randomly initialized LLaVA-OneVision checkpoint (anyres tiles), built for the family audit.

A real ``LlavaOnevisionForConditionalGeneration`` (SigLIP vision tower, two-layer projector
plus ``image_newline``, Qwen2 decoder) with the word-level tokenizer of the tiny LLaVA and a
``LlavaOnevisionImageProcessor``.

What must agree between config and processor:

- ``image_grid_pinpoints`` is the same list in the config and the image processor, and
  every pinpoint is a multiple of the vision ``image_size``: the processor cuts the
  resized image into ``image_size`` tiles (a base view plus the grid), the model
  recomputes the tile count from ``image_sizes`` and the config's pinpoints.
- The image processor's ``size`` is the vision ``image_size`` square.
- The processor's ``num_image_tokens`` is the patch count of one tile,
  ``(image_size / patch_size)²`` (SigLIP has no CLS token; the ``"full"`` strategy keeps
  every patch), and its ``vision_aspect_ratio`` the config's.

The number of ``<image>`` tokens differs per image (it depends on the original aspect
ratio), so images of different sizes batch together. Builds are deterministic.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pytest_medprobe.models.tiny_llava import IMAGE_TOKEN, build_tokenizer, save_checkpoint_atomically

MODEL_TYPE = "llava_onevision"
MIXED_SIZES = True
N_DECODER_LAYERS = 2

IMAGE_SIZE = 32
PATCH_SIZE = 8
TOKENS_PER_TILE = (IMAGE_SIZE // PATCH_SIZE) ** 2
# Few pinpoints keep the tile count at 2 to 5 per image (base view included) for 32-72 px inputs.
GRID_PINPOINTS = ((32, 32), (32, 64), (64, 32), (64, 64))
VISION_ASPECT_RATIO = "anyres_max_9"
SEED = 0

VIDEO_TOKEN = "<video>"
IM_START = "<|im_start|>"
IM_END = "<|im_end|>"

# Mimics llava-onevision-qwen2 (ChatML): "<|im_start|>user <image>\nquestion<|im_end|><|im_start|>assistant\n".
CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }} "
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for item in message['content'] %}{% if item['type'] == 'image' %}<image>{{ '\\n' }}"
    "{% elif item['type'] == 'text' %}{{ item['text'] }}{% endif %}{% endfor %}{% endif %}<|im_end|>"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant{{ '\\n' }}{% endif %}"
)


def build(directory: Path) -> Path:
    """Build the tiny LLaVA-OneVision (model, tokenizer, processor) and save it to ``directory``."""
    model, processor = make()
    return save_checkpoint_atomically(model, processor, directory)


def make() -> tuple[Any, Any]:
    """A freshly initialized tiny LLaVA-OneVision (eval mode) and its processor, in memory."""
    import torch
    from transformers import (
        LlavaOnevisionConfig,
        LlavaOnevisionForConditionalGeneration,
        LlavaOnevisionImageProcessor,
        LlavaOnevisionProcessor,
        LlavaOnevisionVideoProcessor,
        Qwen2Config,
        SiglipVisionConfig,
    )

    tokenizer = build_tokenizer(
        {"image_token": IMAGE_TOKEN, "video_token": VIDEO_TOKEN},
        extra_tokens=(IM_START, IM_END),
        extra_words=("user", "assistant"),
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
        tie_word_embeddings=False,
    )
    config = LlavaOnevisionConfig(
        vision_config=vision_config,
        text_config=text_config,
        image_token_index=tokenizer.convert_tokens_to_ids(IMAGE_TOKEN),
        video_token_index=tokenizer.convert_tokens_to_ids(VIDEO_TOKEN),
        image_grid_pinpoints=[list(pinpoint) for pinpoint in GRID_PINPOINTS],
        vision_feature_layer=-1,
        vision_feature_select_strategy="full",
        vision_aspect_ratio=VISION_ASPECT_RATIO,
    )
    # Seed inside fork_rng so building leaves the caller's random state alone.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(SEED)
        model = LlavaOnevisionForConditionalGeneration(config).eval()
    image_processor = LlavaOnevisionImageProcessor(
        size={"height": IMAGE_SIZE, "width": IMAGE_SIZE},
        image_grid_pinpoints=[list(pinpoint) for pinpoint in GRID_PINPOINTS],
    )
    processor = LlavaOnevisionProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        # The processor class requires one; the audit never passes videos.
        video_processor=LlavaOnevisionVideoProcessor(size={"height": IMAGE_SIZE, "width": IMAGE_SIZE}),
        num_image_tokens=TOKENS_PER_TILE,
        vision_feature_select_strategy="full",
        vision_aspect_ratio=VISION_ASPECT_RATIO,
        chat_template=CHAT_TEMPLATE,
    )
    return model, processor
