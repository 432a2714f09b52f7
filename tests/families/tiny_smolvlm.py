"""A tiny, randomly initialized SmolVLM checkpoint (image splitting off), built for the family audit.

A real ``SmolVLMForConditionalGeneration`` (SigLIP-like vision transformer, pixel-shuffle
connector with SmolVLM's scale factor 4, Llama decoder) with the word-level tokenizer of
the tiny LLaVA, a ``SmolVLMImageProcessor`` and a ``SmolVLMVideoProcessor`` (the processor
requires one, and ``num2words``, even for images). Splitting is off, unlike the real
family, so that one image is exactly one vision sequence: the Idefics3 builder covers the
split layout.

What must agree between config and processor:

- ``image_seq_len`` of the processor is ``(image_size / patch_size)² / scale_factor²``
  of the config: the number of ``<image>`` tokens per image, and of connector vectors.
- The image processor's ``max_image_size["longest_edge"]`` equals the vision
  ``image_size``: with splitting off every image is resized to that square.
- The tokenizer exposes ``image_token``, ``fake_image_token``, ``global_image_token``
  and ``end_of_utterance_token`` as attributes (the processor reads them there), holds
  the ``<row_i_col_j>`` tokens, and is a fast tokenizer with offsets.

The processor nests images per sample by itself only when given a list of lists: pass
``[[image], [image], ...]``, one inner list per prompt. Builds are deterministic.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pytest_medprobe.models.tiny_llava import IMAGE_TOKEN, build_tokenizer, save_checkpoint_atomically
from tests.families.tiny_idefics3 import (
    END_OF_UTTERANCE_TOKEN,
    FAKE_IMAGE_TOKEN,
    GLOBAL_IMAGE_TOKEN,
    ROLE_WORDS,
    ROW_COL_TOKENS,
    chat_template,
)

MODEL_TYPE = "smolvlm"
MIXED_SIZES = True
N_DECODER_LAYERS = 3

IMAGE_SIZE = 64
PATCH_SIZE = 8
SCALE_FACTOR = 4  # as in SmolVLM-256M/500M: 64 patches shuffle into 4 tokens
IMAGE_SEQ_LEN = (IMAGE_SIZE // PATCH_SIZE) ** 2 // SCALE_FACTOR**2
SEED = 0

BEGIN_TOKEN = "<|im_start|>"  # SmolVLM opens every prompt with it
VIDEO_TOKEN = "<video>"
CHAT_TEMPLATE = chat_template(BEGIN_TOKEN)


def build(directory: Path) -> Path:
    """Build the tiny SmolVLM (model, tokenizer, processor) and save it to ``directory``."""
    model, processor = make()
    return save_checkpoint_atomically(model, processor, directory)


def make() -> tuple[Any, Any]:
    """A freshly initialized tiny SmolVLM (eval mode) and its processor, in memory."""
    import torch
    from transformers import (
        LlamaConfig,
        SmolVLMConfig,
        SmolVLMForConditionalGeneration,
        SmolVLMImageProcessor,
        SmolVLMProcessor,
        SmolVLMVideoProcessor,
        SmolVLMVisionConfig,
    )

    tokenizer = build_tokenizer(
        {
            "image_token": IMAGE_TOKEN,
            "fake_image_token": FAKE_IMAGE_TOKEN,
            "global_image_token": GLOBAL_IMAGE_TOKEN,
            "end_of_utterance_token": END_OF_UTTERANCE_TOKEN,
        },
        extra_tokens=(BEGIN_TOKEN, VIDEO_TOKEN, *ROW_COL_TOKENS),
        extra_words=ROLE_WORDS,
    )
    size = {"longest_edge": IMAGE_SIZE}
    image_processor = SmolVLMImageProcessor(size=size, max_image_size=size, do_image_splitting=False)
    video_processor = SmolVLMVideoProcessor(size=size, max_image_size=size)
    processor = SmolVLMProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        video_processor=video_processor,
        image_seq_len=IMAGE_SEQ_LEN,
        chat_template=CHAT_TEMPLATE,
    )
    vision_config = SmolVLMVisionConfig(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=3,
        num_attention_heads=4,
        image_size=IMAGE_SIZE,
        patch_size=PATCH_SIZE,
    )
    text_config = LlamaConfig(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=N_DECODER_LAYERS,
        num_attention_heads=4,
        num_key_value_heads=4,
        vocab_size=len(processor.tokenizer),
        max_position_embeddings=512,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        tie_word_embeddings=False,
    )
    config = SmolVLMConfig(
        vision_config=vision_config,
        text_config=text_config,
        image_token_id=processor.image_token_id,
        scale_factor=SCALE_FACTOR,
        # Taken by __post_init__ (untyped); left out, config.json keeps a stale 128002.
        pad_token_id=tokenizer.pad_token_id,  # type: ignore[call-arg]
        tie_word_embeddings=False,
    )
    # Seed inside fork_rng so building leaves the caller's random state alone.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(SEED)
        model = SmolVLMForConditionalGeneration(config).eval()
    return model, processor
