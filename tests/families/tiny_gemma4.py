"""A tiny, randomly initialized Gemma 4 checkpoint, built for the family audit.

A real ``Gemma4ForConditionalGeneration`` (Gemma 4 vision encoder over each image's own
patch grid, a pooler that averages ``k×k`` patches into soft tokens, ``embed_vision``
projecting them into the decoder, Gemma 4 decoder with sliding and global layers and
per-layer inputs) with the word-level tokenizer of the tiny LLaVA and the real Gemma 4
image, video, audio and text processors.

What must agree between config and processor:

- The image processor's ``patch_size`` and ``pooling_kernel_size`` equal the vision
  config's; its ``max_soft_tokens`` (70, the smallest it accepts) times ``k²`` is the
  patch budget each image is resized to, aspect ratio kept, sides multiples of
  ``k × patch``. Each image becomes ``patches / k²`` soft tokens, as many ``<|image|>``
  tokens (the config's ``image_token_id``) between begin- and end-of-image tokens.
- The tokenizer exposes ``image_token``, ``boi_token``, ``eoi_token``, ``audio_token``,
  ``boa_token``, ``eoa_token`` (processors look them up by attribute); the config's ids are
  theirs. The processor adds ``<|video|>`` itself.
- The text config's ``head_dim`` and ``global_head_dim`` are set (defaults are sized for
  the real model), ``vocab_size_per_layer_input`` equals the vocabulary and the last layer
  is a global one (the config forces it).

``pixel_values`` are flat patches ``[images, max_patches, 3·patch²]`` padded per batch,
``image_position_ids`` marking padding with -1. Builds are deterministic.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pytest_medprobe.models.tiny_llava import build_tokenizer, save_checkpoint_atomically

MODEL_TYPE = "gemma4"
MIXED_SIZES = True
N_DECODER_LAYERS = 2

PATCH_SIZE = 4
POOLING_KERNEL_SIZE = 2
MAX_SOFT_TOKENS = 70  # 280 patches of 4 px: about 67x67 px per image
TEXT_HIDDEN = 64
TEXT_HEADS = 4
HEAD_DIM = TEXT_HIDDEN // TEXT_HEADS
LAYER_TYPES = ("sliding_attention", "full_attention")
SEED = 0

IMAGE_TOKEN = "<|image|>"
BOI_TOKEN = "<|image>"
EOI_TOKEN = "<image|>"
AUDIO_TOKEN = "<|audio|>"
BOA_TOKEN = "<|audio>"
EOA_TOKEN = "<audio|>"
START_OF_TURN = "<|turn>"
END_OF_TURN = "<turn|>"

# Mimics Gemma 4 instruction tuning: "<bos><|turn>user\n<|image>question<turn|>\n<|turn>model\n".
CHAT_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}"
    "{% set role = 'model' if message['role'] == 'assistant' else message['role'] %}"
    "<|turn>{{ role }}\n"
    "{% if message['content'] is string %}{{ message['content'] | trim }}"
    "{% else %}{% for item in message['content'] %}"
    "{% if item['type'] == 'image' %}<|image|>"
    "{% elif item['type'] == 'text' %}{{ item['text'] | trim }}{% endif %}"
    "{% endfor %}{% endif %}<turn|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|turn>model\n{% endif %}"
)


def build(directory: Path) -> Path:
    """Build the tiny Gemma 4 (model, tokenizer, processor) and save it to ``directory``."""
    model, processor = make()
    return save_checkpoint_atomically(model, processor, directory)


def make() -> tuple[Any, Any]:
    """A freshly initialized tiny Gemma 4 (eval mode) and its processor, in memory."""
    import torch
    from transformers import (
        Gemma4AudioFeatureExtractor,
        Gemma4Config,
        Gemma4ForConditionalGeneration,
        Gemma4ImageProcessor,
        Gemma4Processor,
        Gemma4TextConfig,
        Gemma4VideoProcessor,
        Gemma4VisionConfig,
    )

    tokenizer = build_tokenizer(
        {
            "image_token": IMAGE_TOKEN,
            "boi_token": BOI_TOKEN,
            "eoi_token": EOI_TOKEN,
            "audio_token": AUDIO_TOKEN,
            "boa_token": BOA_TOKEN,
            "eoa_token": EOA_TOKEN,
        },
        extra_tokens=(START_OF_TURN, END_OF_TURN, "<|video|>"),
        extra_words=("user", "model"),
    )
    vocab_size = len(tokenizer)
    vision_config = Gemma4VisionConfig(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=2,
        head_dim=16,
        patch_size=PATCH_SIZE,
        pooling_kernel_size=POOLING_KERNEL_SIZE,
        position_embedding_size=64,
    )
    text_config = Gemma4TextConfig(
        hidden_size=TEXT_HIDDEN,
        intermediate_size=TEXT_HIDDEN * 2,
        num_hidden_layers=N_DECODER_LAYERS,
        num_attention_heads=TEXT_HEADS,
        num_key_value_heads=TEXT_HEADS // 2,
        head_dim=HEAD_DIM,
        global_head_dim=HEAD_DIM,
        layer_types=list(LAYER_TYPES),
        sliding_window=512,
        vocab_size=vocab_size,
        vocab_size_per_layer_input=vocab_size,
        hidden_size_per_layer_input=16,
        max_position_embeddings=512,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    ids = tokenizer.convert_tokens_to_ids
    config = Gemma4Config(
        text_config=text_config,
        vision_config=vision_config,
        audio_config=None,
        image_token_id=ids(IMAGE_TOKEN),
        boi_token_id=ids(BOI_TOKEN),
        eoi_token_id=ids(EOI_TOKEN),
        video_token_id=ids("<|video|>"),
        audio_token_id=ids(AUDIO_TOKEN),
        boa_token_id=ids(BOA_TOKEN),
        eoa_token_index=ids(EOA_TOKEN),
    )
    # Seed inside fork_rng so building leaves the caller's random state alone.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(SEED)
        model = Gemma4ForConditionalGeneration(config).eval()
    image_processor = Gemma4ImageProcessor(
        patch_size=PATCH_SIZE, pooling_kernel_size=POOLING_KERNEL_SIZE, max_soft_tokens=MAX_SOFT_TOKENS
    )
    processor = Gemma4Processor(
        feature_extractor=Gemma4AudioFeatureExtractor(),
        image_processor=image_processor,
        tokenizer=tokenizer,
        # The processor class requires one; the audit never passes videos.
        video_processor=Gemma4VideoProcessor(
            patch_size=PATCH_SIZE, pooling_kernel_size=POOLING_KERNEL_SIZE, max_soft_tokens=MAX_SOFT_TOKENS
        ),
        image_seq_length=MAX_SOFT_TOKENS,
        chat_template=CHAT_TEMPLATE,
    )
    return model, processor
