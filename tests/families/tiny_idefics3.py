"""A tiny, randomly initialized Idefics3 checkpoint (image splitting on), built for the family audit.

A real ``Idefics3ForConditionalGeneration`` (SigLIP-like vision transformer, pixel-shuffle
connector, Llama decoder) with the word-level tokenizer of the tiny LLaVA and an
``Idefics3ImageProcessor``. Splitting is kept on, as in the real family, but bounded:
images are resized to a longest edge of 64 px and cut into 32 px tiles, so an image
becomes at most 2 x 2 tiles plus the global (whole-image) tile.

What must agree between config and processor:

- ``image_seq_len`` of the processor is ``(image_size / patch_size)² / scale_factor²``
  of the config: it is the number of ``<image>`` tokens written per tile, and the
  connector emits that many vectors per tile.
- The image processor's ``max_image_size["longest_edge"]`` equals the vision
  ``image_size``: every tile is that square, and the vision position embeddings only
  cover ``(image_size / patch_size)²`` patches.
- The vocabulary holds ``<image>``, ``<fake_token_around_image>``, ``<global-img>``,
  ``<end_of_utterance>`` and the ``<row_i_col_j>`` tokens before the processor is built
  (it adds what is missing, which would grow the vocabulary past the model's), and the
  tokenizer is a fast one with offsets: the processor maps its text replacements back to
  token positions with ``char_to_token``.

Builds are deterministic.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pytest_medprobe.models.tiny_llava import IMAGE_TOKEN, build_tokenizer, save_checkpoint_atomically

MODEL_TYPE = "idefics3"
MIXED_SIZES = True
N_DECODER_LAYERS = 3

IMAGE_SIZE = 32  # one tile, and the vision encoder's input size
PATCH_SIZE = 8
SCALE_FACTOR = 2
IMAGE_SEQ_LEN = (IMAGE_SIZE // PATCH_SIZE) ** 2 // SCALE_FACTOR**2
LONGEST_EDGE = 64  # images are resized to this before splitting: at most 2 x 2 tiles
SEED = 0

FAKE_IMAGE_TOKEN = "<fake_token_around_image>"
GLOBAL_IMAGE_TOKEN = "<global-img>"
END_OF_UTTERANCE_TOKEN = "<end_of_utterance>"
# The processor looks up a 6 x 6 grid of tile markers whatever the splitting allows.
ROW_COL_TOKENS = tuple(f"<row_{row}_col_{col}>" for row in range(1, 7) for col in range(1, 7))
ROLE_WORDS = ("User", "Assistant")


def chat_template(begin_token: str) -> str:
    """The Idefics3 / SmolVLM chat layout: ``<begin>User:<image>question<end_of_utterance>\\nAssistant:``."""
    return (
        begin_token + "{% for message in messages %}{{ message['role'] | capitalize }}"
        "{% if message['content'][0]['type'] == 'image' %}{{ ':' }}{% else %}{{ ': ' }}{% endif %}"
        "{% for line in message['content'] %}{% if line['type'] == 'text' %}{{ line['text'] }}"
        "{% elif line['type'] == 'image' %}{{ '<image>' }}{% endif %}{% endfor %}"
        "<end_of_utterance>{{ '\\n' }}{% endfor %}{% if add_generation_prompt %}{{ 'Assistant:' }}{% endif %}"
    )


BEGIN_TOKEN = "<|begin_of_text|>"  # Idefics3-8B-Llama3 opens every prompt with it
CHAT_TEMPLATE = chat_template(BEGIN_TOKEN)


def build(directory: Path) -> Path:
    """Build the tiny Idefics3 (model, tokenizer, processor) and save it to ``directory``."""
    model, processor = make()
    return save_checkpoint_atomically(model, processor, directory)


def make() -> tuple[Any, Any]:
    """A freshly initialized tiny Idefics3 (eval mode) and its processor, in memory."""
    import torch
    from transformers import (
        Idefics3Config,
        Idefics3ForConditionalGeneration,
        Idefics3ImageProcessor,
        Idefics3Processor,
        Idefics3VisionConfig,
        LlamaConfig,
    )

    tokenizer = build_tokenizer(
        {"image_token": IMAGE_TOKEN},
        extra_tokens=(BEGIN_TOKEN, FAKE_IMAGE_TOKEN, GLOBAL_IMAGE_TOKEN, END_OF_UTTERANCE_TOKEN, *ROW_COL_TOKENS),
        extra_words=ROLE_WORDS,
    )
    image_processor = Idefics3ImageProcessor(
        size={"longest_edge": LONGEST_EDGE},
        max_image_size={"longest_edge": IMAGE_SIZE},
        do_image_splitting=True,
    )
    processor = Idefics3Processor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        image_seq_len=IMAGE_SEQ_LEN,
        chat_template=CHAT_TEMPLATE,
    )
    vision_config = Idefics3VisionConfig(
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
        # Sized after the processor is built, which may add tokens of its own.
        vocab_size=len(processor.tokenizer),
        max_position_embeddings=512,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        tie_word_embeddings=False,
    )
    config = Idefics3Config(
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
        model = Idefics3ForConditionalGeneration(config).eval()
    return model, processor
