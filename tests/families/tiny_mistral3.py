"""A tiny, randomly initialized Mistral 3 checkpoint (Pixtral vision), built for the family audit.

A real ``Mistral3ForConditionalGeneration`` (Pixtral vision tower, projector with RMS norm
and a learned 2x2 patch merger, Mistral decoder) with the word-level tokenizer of the tiny
LLaVA, a ``PixtralImageProcessor`` and a ``PixtralProcessor`` (the processor class
transformers maps ``mistral3`` to).

What must agree between config and processor:

- The processor's ``patch_size`` and ``spatial_merge_size`` equal the vision config's
  ``patch_size`` and the config's ``spatial_merge_size``: the processor resizes each image
  to a multiple of their product and writes one ``[IMG]`` per merged patch, one
  ``[IMG_BREAK]`` per row and ``[IMG_END]`` last.
- The tokenizer holds ``[IMG]``, ``[IMG_BREAK]`` and ``[IMG_END]``; the config's
  ``image_token_index`` is the id of ``[IMG]``.
- The image processor's ``size`` (``longest_edge``) bounds the image; the vision
  ``image_size`` must be at least that (it sizes the rotary position table).

Pixtral keeps each image's own resolution and aspect ratio: the images of a batch are
padded to the largest one, their patches cut back to ``image_sizes`` and packed into one
sequence ``[1, Σ h·w, d]`` with block-diagonal attention. Builds are deterministic.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pytest_medprobe.models.tiny_llava import build_tokenizer, save_checkpoint_atomically

MODEL_TYPE = "mistral3"
MIXED_SIZES = True
N_DECODER_LAYERS = 2

PATCH_SIZE = 8
SPATIAL_MERGE_SIZE = 2
LONGEST_EDGE = 64
TEXT_HIDDEN = 64
TEXT_HEADS = 4
SEED = 0

IMAGE_TOKEN = "[IMG]"
IMAGE_BREAK_TOKEN = "[IMG_BREAK]"
IMAGE_END_TOKEN = "[IMG_END]"
INST = "[INST]"
END_INST = "[/INST]"

# Mimics Mistral-Small-3.1: "<s>[INST]question[IMG][/INST]" with the image inside the turn.
CHAT_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}{% if message['role'] == 'user' %}[INST]"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for item in message['content'] %}{% if item['type'] == 'image' %}[IMG]"
    "{% elif item['type'] == 'text' %}{{ item['text'] }}{% endif %}{% endfor %}{% endif %}[/INST]"
    "{% elif message['role'] == 'assistant' %}"
    "{% for item in message['content'] %}{% if item['type'] == 'text' %}{{ item['text'] }}"
    "{% endif %}{% endfor %}{{ eos_token }}{% endif %}{% endfor %}"
)


def build(directory: Path) -> Path:
    """Build the tiny Mistral 3 (model, tokenizer, processor) and save it to ``directory``."""
    model, processor = make()
    return save_checkpoint_atomically(model, processor, directory)


def make() -> tuple[Any, Any]:
    """A freshly initialized tiny Mistral 3 (eval mode) and its processor, in memory."""
    import torch
    from transformers import (
        Mistral3Config,
        Mistral3ForConditionalGeneration,
        MistralConfig,
        PixtralImageProcessor,
        PixtralProcessor,
        PixtralVisionConfig,
    )

    tokenizer = build_tokenizer(
        {"image_token": IMAGE_TOKEN},
        extra_tokens=(IMAGE_BREAK_TOKEN, IMAGE_END_TOKEN, INST, END_INST),
    )
    vision_config = PixtralVisionConfig(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        head_dim=16,
        image_size=LONGEST_EDGE,
        patch_size=PATCH_SIZE,
    )
    text_config = MistralConfig(
        hidden_size=TEXT_HIDDEN,
        intermediate_size=TEXT_HIDDEN * 2,
        num_hidden_layers=N_DECODER_LAYERS,
        num_attention_heads=TEXT_HEADS,
        num_key_value_heads=TEXT_HEADS // 2,
        head_dim=TEXT_HIDDEN // TEXT_HEADS,
        vocab_size=len(tokenizer),
        max_position_embeddings=512,
        sliding_window=None,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        tie_word_embeddings=False,
    )
    config = Mistral3Config(
        vision_config=vision_config,
        text_config=text_config,
        image_token_index=tokenizer.convert_tokens_to_ids(IMAGE_TOKEN),
        spatial_merge_size=SPATIAL_MERGE_SIZE,
        vision_feature_layer=-1,
        tie_word_embeddings=False,
    )
    # Seed inside fork_rng so building leaves the caller's random state alone.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(SEED)
        model = Mistral3ForConditionalGeneration(config).eval()
    image_processor = PixtralImageProcessor(
        size={"longest_edge": LONGEST_EDGE},
        patch_size={"height": PATCH_SIZE, "width": PATCH_SIZE},
    )
    processor = PixtralProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        patch_size=PATCH_SIZE,
        spatial_merge_size=SPATIAL_MERGE_SIZE,
        chat_template=CHAT_TEMPLATE,
    )
    return model, processor
