"""A tiny, randomly initialized PaliGemma checkpoint, built for the family audit.

A real ``PaliGemmaForConditionalGeneration`` (SigLIP vision tower, one linear projector,
Gemma decoder with bidirectional attention over the image and prompt prefix) with the
word-level tokenizer of the tiny LLaVA, a ``SiglipImageProcessor`` and a
``PaliGemmaProcessor``.

What must agree between config and processor:

- The image processor carries ``image_seq_length`` (the processor refuses one without
  it), equal to ``(image_size / patch_size)**2``, which the config derives as the text
  config's ``num_image_tokens`` (16 here); its ``size`` equals the vision ``image_size``.
- Building the processor adds 1,152 ``<loc....>`` / ``<seg...>`` tokens to the tokenizer,
  so the model's vocabulary is sized from ``len(processor.tokenizer)`` afterwards.
- The config's ``image_token_index`` is the id of ``<image>``; ``projection_dim`` (the
  projector's output width) equals the decoder's ``hidden_size``.

The processor itself writes the layout around the chat template's text: the image tokens,
then ``<bos>``, the prompt and a closing newline (the answer position). It also returns
``token_type_ids`` and ``labels``. Every image is resized to one square, so images of
different sizes batch together. Builds are deterministic.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pytest_medprobe.models.tiny_llava import IMAGE_TOKEN, build_tokenizer, save_checkpoint_atomically

MODEL_TYPE = "paligemma"
MIXED_SIZES = True
N_DECODER_LAYERS = 3

IMAGE_SIZE = 32
PATCH_SIZE = 8
IMAGE_SEQ_LENGTH = (IMAGE_SIZE // PATCH_SIZE) ** 2
TEXT_HIDDEN = 64
TEXT_HEADS = 4
SEED = 0

# PaliGemma has no chat turns: the prompt is "<image>" per image and the question, as the
# mix checkpoints' "answer en <question>" prompts are; the processor adds "<bos>" after the
# image tokens and the final "\n".
CHAT_TEMPLATE = (
    "{% for message in messages %}{% if message['role'] == 'user' %}"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for item in message['content'] %}"
    "{% if item['type'] == 'image' %}<image>"
    "{% elif item['type'] == 'text' %}{{ item['text'] }}{% endif %}"
    "{% endfor %}{% endif %}{% endif %}{% endfor %}"
)


def build(directory: Path) -> Path:
    """Build the tiny PaliGemma (model, tokenizer, processor) and save it to ``directory``."""
    model, processor = make()
    return save_checkpoint_atomically(model, processor, directory)


def make() -> tuple[Any, Any]:
    """A freshly initialized tiny PaliGemma (eval mode) and its processor, in memory."""
    import torch
    from transformers import (
        GemmaConfig,
        PaliGemmaConfig,
        PaliGemmaForConditionalGeneration,
        PaliGemmaProcessor,
        SiglipImageProcessor,
        SiglipVisionConfig,
    )

    tokenizer = build_tokenizer({"image_token": IMAGE_TOKEN})
    image_processor = SiglipImageProcessor(
        size={"height": IMAGE_SIZE, "width": IMAGE_SIZE}, image_mean=[0.5] * 3, image_std=[0.5] * 3
    )
    # Not a declared image-processor field, but PaliGemmaProcessor reads it from there and it
    # is saved with the image processor's settings.
    image_processor.image_seq_length = IMAGE_SEQ_LENGTH  # type: ignore[attr-defined]
    # The processor grows the tokenizer (<loc>/<seg> tokens), so it is built before the model.
    processor = PaliGemmaProcessor(image_processor=image_processor, tokenizer=tokenizer, chat_template=CHAT_TEMPLATE)
    vocab_size = len(processor.tokenizer)
    vision_config = SiglipVisionConfig(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=3,
        num_attention_heads=2,
        image_size=IMAGE_SIZE,
        patch_size=PATCH_SIZE,
        vision_use_head=False,  # PaliGemma takes the patch sequence, not SigLIP's pooled head
    )
    text_config = GemmaConfig(
        hidden_size=TEXT_HIDDEN,
        intermediate_size=TEXT_HIDDEN * 2,
        num_hidden_layers=N_DECODER_LAYERS,
        num_attention_heads=TEXT_HEADS,
        num_key_value_heads=1,  # multi-query attention, as in the real model
        head_dim=TEXT_HIDDEN // TEXT_HEADS,
        vocab_size=vocab_size,
        max_position_embeddings=512,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    config = PaliGemmaConfig(
        vision_config=vision_config,
        text_config=text_config,
        image_token_index=tokenizer.convert_tokens_to_ids(IMAGE_TOKEN),
        vocab_size=vocab_size,
        projection_dim=TEXT_HIDDEN,
        hidden_size=TEXT_HIDDEN,
    )
    # Seed inside fork_rng so building leaves the caller's random state alone.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(SEED)
        model = PaliGemmaForConditionalGeneration(config).eval()
    return model, processor
