"""A tiny, randomly initialized LLaVA-NeXT checkpoint (anyres tiles), built for the family audit.

A real ``LlavaNextForConditionalGeneration`` (CLIP vision tower, two-layer projector plus
``image_newline``, Llama decoder) with the word-level tokenizer of the tiny LLaVA and a
``LlavaNextImageProcessor``.

What must agree between config and processor:

- ``image_grid_pinpoints`` is the same list in the config and the image processor, and
  every pinpoint is a multiple of the vision ``image_size``: the processor cuts the
  resized image into ``image_size`` tiles, the model recomputes the tile grid from
  ``image_sizes`` and the config's pinpoints.
- The image processor's ``size`` (shortest edge) and ``crop_size`` equal the vision
  ``image_size``, so the base tile and every anyres tile are ``image_size`` squares.
- The processor's ``patch_size`` and ``vision_feature_select_strategy`` equal the config's,
  and ``num_additional_image_tokens=1`` counts CLIP's CLS token, which the ``"default"``
  strategy then drops again; otherwise the placeholder count in ``input_ids`` and the
  number of packed image features disagree.

The number of ``<image>`` tokens differs per image (it depends on the original aspect
ratio), so images of different sizes batch together. Builds are deterministic.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pytest_medprobe.models.tiny_llava import IMAGE_TOKEN, build_tokenizer, save_checkpoint_atomically

MODEL_TYPE = "llava_next"
MIXED_SIZES = True
N_DECODER_LAYERS = 3

IMAGE_SIZE = 32
PATCH_SIZE = 8
# Few pinpoints keep the tile count at 3 to 5 per image (base tile included) for 32-64 px inputs.
GRID_PINPOINTS = ((32, 64), (64, 32), (64, 64))
SEED = 0

# Mimics llava-v1.6-mistral: "[INST] <image>\n<question> [/INST]".
CHAT_TEMPLATE = (
    "{% for message in messages %}{% if message['role'] == 'user' %}[INST] "
    "{% for item in message['content'] %}{% if item['type'] == 'image' %}<image>{{ '\\n' }}"
    "{% elif item['type'] == 'text' %}{{ item['text'] }}{% endif %}{% endfor %} [/INST]"
    "{% elif message['role'] == 'assistant' %}"
    "{% for item in message['content'] %}{% if item['type'] == 'text' %} {{ item['text'] }}"
    "{% endif %}{% endfor %}{{ eos_token }}{% endif %}{% endfor %}"
)


def build(directory: Path) -> Path:
    """Build the tiny LLaVA-NeXT (model, tokenizer, processor) and save it to ``directory``."""
    model, processor = make()
    return save_checkpoint_atomically(model, processor, directory)


def make() -> tuple[Any, Any]:
    """A freshly initialized tiny LLaVA-NeXT (eval mode) and its processor, in memory."""
    import torch
    from transformers import (
        CLIPVisionConfig,
        LlamaConfig,
        LlavaNextConfig,
        LlavaNextForConditionalGeneration,
        LlavaNextImageProcessor,
        LlavaNextProcessor,
    )

    tokenizer = build_tokenizer({"image_token": IMAGE_TOKEN}, extra_tokens=("[INST]", "[/INST]"))
    vision_config = CLIPVisionConfig(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=3,
        num_attention_heads=4,
        image_size=IMAGE_SIZE,
        patch_size=PATCH_SIZE,
        projection_dim=32,
    )
    text_config = LlamaConfig(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=N_DECODER_LAYERS,
        num_attention_heads=4,
        num_key_value_heads=4,
        vocab_size=len(tokenizer),
        max_position_embeddings=512,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        tie_word_embeddings=False,
    )
    config = LlavaNextConfig(
        vision_config=vision_config,
        text_config=text_config,
        image_token_index=tokenizer.convert_tokens_to_ids(IMAGE_TOKEN),
        image_grid_pinpoints=[list(pinpoint) for pinpoint in GRID_PINPOINTS],
        vision_feature_layer=-2,
        vision_feature_select_strategy="default",
        image_seq_length=(IMAGE_SIZE // PATCH_SIZE) ** 2,
    )
    # Seed inside fork_rng so building leaves the caller's random state alone.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(SEED)
        model = LlavaNextForConditionalGeneration(config).eval()
    image_processor = LlavaNextImageProcessor(
        size={"shortest_edge": IMAGE_SIZE},
        crop_size={"height": IMAGE_SIZE, "width": IMAGE_SIZE},
        image_grid_pinpoints=[list(pinpoint) for pinpoint in GRID_PINPOINTS],
    )
    processor = LlavaNextProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        patch_size=PATCH_SIZE,
        vision_feature_select_strategy="default",
        num_additional_image_tokens=1,  # CLIP's CLS token
        chat_template=CHAT_TEMPLATE,
    )
    return model, processor
