"""A tiny, randomly initialized Gemma 3 checkpoint (the MedGemma architecture), built for the family audit.

A real ``Gemma3ForConditionalGeneration`` (SigLIP vision tower, projector that
average-pools the patch grid then projects, Gemma 3 decoder with sliding and global
layers) with the word-level tokenizer of the tiny LLaVA and a ``Gemma3ImageProcessor``.

What must agree between config and processor:

- The processor's ``image_seq_length`` equals the config's ``mm_tokens_per_image``, a
  square whose side divides the patch grid side ``image_size / patch_size`` (8 patches
  pooled 2x2 into a 4x4 grid: 16 tokens here).
- The image processor's ``size`` equals the vision ``image_size``.
- The tokenizer exposes ``image_token``, ``boi_token`` and ``eoi_token``; the config's
  ``image_token_index``, ``boi_token_index`` and ``eoi_token_index`` are their ids. The
  prompt's placeholder is the begin-of-image token, which the processor expands to
  ``\\n\\n<start_of_image>`` + 16 image tokens + ``<end_of_image>\\n\\n``.
- The text ``head_dim`` and ``query_pre_attn_scalar`` are set: their defaults are sized
  for the 256-wide heads of the real model.

Every image is resized to one square, so images of different sizes batch together.
Builds are deterministic.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pytest_medprobe.models.tiny_llava import build_tokenizer, save_checkpoint_atomically

MODEL_TYPE = "gemma3"
MIXED_SIZES = True
N_DECODER_LAYERS = 3

IMAGE_SIZE = 64
PATCH_SIZE = 8
MM_TOKENS_PER_IMAGE = 16  # 8x8 patches average-pooled to 4x4
TEXT_HIDDEN = 64
TEXT_HEADS = 4
HEAD_DIM = TEXT_HIDDEN // TEXT_HEADS
# As in the real model, local layers come before a global one; the window exceeds any
# prompt here, so it changes nothing numerically but keeps both layer kinds in the graph.
LAYER_TYPES = ("sliding_attention", "sliding_attention", "full_attention")
SLIDING_WINDOW = 512
PROJECTION_INIT_STD = 0.02  # transformers' initializer_range
SEED = 0

IMAGE_TOKEN = "<image_soft_token>"
BOI_TOKEN = "<start_of_image>"
EOI_TOKEN = "<end_of_image>"
START_OF_TURN = "<start_of_turn>"
END_OF_TURN = "<end_of_turn>"

# Mimics Gemma 3 / MedGemma instruction tuning:
# "<bos><start_of_turn>user\n<start_of_image>question<end_of_turn>\n<start_of_turn>model\n".
CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{% for message in messages %}"
    "{% set role = 'model' if message['role'] == 'assistant' else message['role'] %}"
    "<start_of_turn>{{ role }}\n"
    "{% if message['content'] is string %}{{ message['content'] | trim }}"
    "{% else %}{% for item in message['content'] %}"
    "{% if item['type'] == 'image' %}<start_of_image>"
    "{% elif item['type'] == 'text' %}{{ item['text'] | trim }}{% endif %}"
    "{% endfor %}{% endif %}<end_of_turn>\n"
    "{% endfor %}"
    "{% if add_generation_prompt %}<start_of_turn>model\n{% endif %}"
)


def build(directory: Path) -> Path:
    """Build the tiny Gemma 3 (model, tokenizer, processor) and save it to ``directory``."""
    model, processor = make()
    return save_checkpoint_atomically(model, processor, directory)


def make() -> tuple[Any, Any]:
    """A freshly initialized tiny Gemma 3 (eval mode) and its processor, in memory."""
    import torch
    from transformers import (
        Gemma3Config,
        Gemma3ForConditionalGeneration,
        Gemma3ImageProcessor,
        Gemma3Processor,
        Gemma3TextConfig,
        SiglipVisionConfig,
    )

    tokenizer = build_tokenizer(
        {"image_token": IMAGE_TOKEN, "boi_token": BOI_TOKEN, "eoi_token": EOI_TOKEN},
        extra_tokens=(START_OF_TURN, END_OF_TURN),
        extra_words=("user", "model"),
    )
    vision_config = SiglipVisionConfig(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=3,
        num_attention_heads=2,
        image_size=IMAGE_SIZE,
        patch_size=PATCH_SIZE,
        vision_use_head=False,  # Gemma 3 takes the patch sequence, not SigLIP's pooled head
    )
    text_config = Gemma3TextConfig(
        hidden_size=TEXT_HIDDEN,
        intermediate_size=TEXT_HIDDEN * 2,
        num_hidden_layers=N_DECODER_LAYERS,
        num_attention_heads=TEXT_HEADS,
        num_key_value_heads=TEXT_HEADS // 2,
        head_dim=HEAD_DIM,
        query_pre_attn_scalar=HEAD_DIM,
        layer_types=list(LAYER_TYPES),
        sliding_window=SLIDING_WINDOW,
        vocab_size=len(tokenizer),
        max_position_embeddings=512,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    config = Gemma3Config(
        vision_config=vision_config,
        text_config=text_config,
        mm_tokens_per_image=MM_TOKENS_PER_IMAGE,
        image_token_index=tokenizer.convert_tokens_to_ids(IMAGE_TOKEN),
        boi_token_index=tokenizer.convert_tokens_to_ids(BOI_TOKEN),
        eoi_token_index=tokenizer.convert_tokens_to_ids(EOI_TOKEN),
    )
    # Seed inside fork_rng so building leaves the caller's random state alone.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(SEED)
        model = Gemma3ForConditionalGeneration(config).eval()
        # transformers initializes the projection matrix to zeros, which would make every
        # image token the same vector and the connector stage constant; a trained model's
        # is not, so draw it like the other weights.
        projection = model.model.multi_modal_projector.mm_input_projection_weight
        torch.nn.init.normal_(projection, std=PROJECTION_INIT_STD)
    image_processor = Gemma3ImageProcessor(
        size={"height": IMAGE_SIZE, "width": IMAGE_SIZE}, image_mean=[0.5] * 3, image_std=[0.5] * 3
    )
    processor = Gemma3Processor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        image_seq_length=MM_TOKENS_PER_IMAGE,
        chat_template=CHAT_TEMPLATE,
    )
    return model, processor
