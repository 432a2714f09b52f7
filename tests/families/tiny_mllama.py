"""A tiny, randomly initialized Mllama checkpoint (images enter by cross-attention), built for the family audit.

A real ``MllamaForConditionalGeneration`` (tiled vision encoder with a local and a gated
global transformer, linear projector, Llama decoder with one cross-attention layer) with
the word-level tokenizer of the tiny LLaVA and an ``MllamaImageProcessor``. The prompt
holds a single ``<|image|>`` marker per image; the text attends to the projected vision
states through the cross-attention layer, masked by the processor's
``cross_attention_mask``.

What must agree between config and processor:

- The image processor's tile ``size`` equals the vision ``image_size``, and its
  ``max_image_tiles`` equals the vision ``max_num_tiles``.
- The vision ``supported_aspect_ratios`` are those the image processor enumerates for
  ``max_image_tiles``, in its order: ``aspect_ratio_ids`` index them (offset by one, 0 is
  padding), so they are taken from the processor's own function here.
- ``vision_output_dim`` is ``hidden_size × (1 + len(intermediate_layers_indices))``: the
  projector reads the last global state concatenated with the chosen local layers.
- ``text_config.num_hidden_layers`` counts the cross-attention layers too, and
  ``cross_attention_layers`` lists their indices.
- The tokenizer's ``image_token`` is ``<|image|>`` and its BOS is the one the chat
  template writes: the processor prepends BOS to any prompt that lacks it.

The cross-attention gates are zero at initialization, which would make the decoder blind
to the image; they are set to a fixed non-zero value, as in a trained checkpoint.
Builds are deterministic.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pytest_medprobe.models.tiny_llava import build_tokenizer, save_checkpoint_atomically

MODEL_TYPE = "mllama"
MIXED_SIZES = True
N_DECODER_LAYERS = 4  # three self-attention layers and the cross-attention layer below
CROSS_ATTENTION_LAYERS = (1,)

IMAGE_SIZE = 32  # one tile
PATCH_SIZE = 8
MAX_IMAGE_TILES = 2
VISION_HIDDEN = 32
INTERMEDIATE_LAYERS = (0,)  # local-transformer layer outputs concatenated to the global output
# tanh(1.0) ≈ 0.76: the image then moves the decoder states as much as a residual branch would.
CROSS_ATTENTION_GATE = 1.0
SEED = 0

IMAGE_TOKEN = "<|image|>"
HEADER_TOKENS = ("<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>", "<|python_tag|>")
ROLE_WORDS = ("user", "assistant")

# Mimics Llama 3.2 Vision: "<bos><|start_header_id|>user<|end_header_id|>\n\n<|image|>question<|eot_id|>...".
CHAT_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}<|start_header_id|>{{ message['role'] }}<|end_header_id|>"
    "{{ '\\n\\n' }}{% for item in message['content'] %}{% if item['type'] == 'image' %}<|image|>"
    "{% elif item['type'] == 'text' %}{{ item['text'] }}{% endif %}{% endfor %}<|eot_id|>{% endfor %}"
    "{% if add_generation_prompt %}<|start_header_id|>assistant<|end_header_id|>{{ '\\n\\n' }}{% endif %}"
)


def build(directory: Path) -> Path:
    """Build the tiny Mllama (model, tokenizer, processor) and save it to ``directory``."""
    model, processor = make()
    return save_checkpoint_atomically(model, processor, directory)


def make() -> tuple[Any, Any]:
    """A freshly initialized tiny Mllama (eval mode) and its processor, in memory."""
    import torch
    from transformers import (
        MllamaConfig,
        MllamaForConditionalGeneration,
        MllamaImageProcessor,
        MllamaProcessor,
        MllamaTextConfig,
        MllamaVisionConfig,
    )
    from transformers.models.mllama.image_processing_mllama import get_all_supported_aspect_ratios

    tokenizer = build_tokenizer({"image_token": IMAGE_TOKEN}, extra_tokens=HEADER_TOKENS, extra_words=ROLE_WORDS)
    image_processor = MllamaImageProcessor(
        size={"height": IMAGE_SIZE, "width": IMAGE_SIZE},
        max_image_tiles=MAX_IMAGE_TILES,
    )
    processor = MllamaProcessor(image_processor=image_processor, tokenizer=tokenizer, chat_template=CHAT_TEMPLATE)
    vision_config = MllamaVisionConfig(
        hidden_size=VISION_HIDDEN,
        intermediate_size=VISION_HIDDEN * 2,
        num_hidden_layers=2,
        num_global_layers=1,
        attention_heads=4,
        image_size=IMAGE_SIZE,
        patch_size=PATCH_SIZE,
        max_num_tiles=MAX_IMAGE_TILES,
        intermediate_layers_indices=list(INTERMEDIATE_LAYERS),
        vision_output_dim=VISION_HIDDEN * (1 + len(INTERMEDIATE_LAYERS)),
        supported_aspect_ratios=[list(ratio) for ratio in get_all_supported_aspect_ratios(MAX_IMAGE_TILES)],
    )
    text_config = MllamaTextConfig(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=N_DECODER_LAYERS,
        num_attention_heads=4,
        num_key_value_heads=4,
        cross_attention_layers=list(CROSS_ATTENTION_LAYERS),
        vocab_size=len(processor.tokenizer),
        max_position_embeddings=512,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        tie_word_embeddings=False,
    )
    config = MllamaConfig(
        vision_config=vision_config,
        text_config=text_config,
        image_token_index=processor.image_token_id,
    )
    # Seed inside fork_rng so building leaves the caller's random state alone.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(SEED)
        model = MllamaForConditionalGeneration(config).eval()
    with torch.no_grad():
        for index in CROSS_ATTENTION_LAYERS:
            layer = model.model.language_model.layers[index]
            layer.cross_attn_attn_gate.fill_(CROSS_ATTENTION_GATE)
            layer.cross_attn_mlp_gate.fill_(CROSS_ATTENTION_GATE)
    return model, processor
