"""A tiny, randomly initialized Gemma 3n checkpoint (MobileNet-V5 vision), built for the family audit.

A real ``Gemma3nForConditionalGeneration``: a timm MobileNet-V5 encoder (convolution
stages with mobile attention, then a multi-scale fusion adapter to a fixed grid of soft
tokens) wrapped by transformers' ``TimmWrapperModel``, ``embed_vision`` projecting soft
tokens into the decoder, a Gemma 3n decoder (AltUp streams, LAuReL, per-layer inputs)
and a tiny audio tower the config requires, with the word-level tokenizer of the tiny
LLaVA, a ``SiglipImageProcessor`` and a ``Gemma3nProcessor``. Needs timm.

What must agree between config and processor:

- The vision tower is the real ``mobilenetv5_300m_enc`` architecture with smaller
  ``block_args`` (the stages, as timm's ``decode_arch_def`` writes them, JSON in
  ``model_args``); each stage must end in a convolution block. Its fusion adapter always
  outputs 2048 channels (the vision ``hidden_size``) on an ``msfa_output_resolution``
  square grid, whose area is the config's ``vision_soft_tokens_per_image`` and the
  processor's ``image_seq_length``.
- The image processor's ``size`` is a square the encoder downsamples (by 16) to at least
  that grid.
- The tokenizer exposes ``image_token``, ``boi_token``, ``eoi_token``, ``audio_token``,
  ``boa_token``, ``eoa_token``; the config's ids are theirs. The vision and audio
  ``vocab_offset`` follow the text vocabulary (their own small embedding tables).
- The text ``head_dim``, ``laurel_rank``, ``hidden_size_per_layer_input`` and
  ``vocab_size_per_layer_input`` are set (defaults are sized for the real model), and
  ``num_kv_shared_layers`` is 0 for a 2-layer decoder.

Every image is resized to one square, so images of different sizes batch together.
Builds are deterministic.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pytest_medprobe.models.tiny_llava import build_tokenizer, save_checkpoint_atomically

MODEL_TYPE = "gemma3n"
MIXED_SIZES = True
N_DECODER_LAYERS = 2

IMAGE_SIZE = 64
FUSION_GRID = 4  # the fusion adapter's output grid: 16 soft tokens per image
SOFT_TOKENS = FUSION_GRID**2
# MobileNet-V5 stages as in mobilenetv5_300m_enc (edge residual, universal inverted
# residuals, mobile multi-query attention), at a few channels each.
VISION_STAGES = (
    ("er_r1_k3_s2_e2_c16",),
    ("uir_r1_a3_k5_s2_e2_c32",),
    ("uir_r1_a3_k5_s2_e2_c32", "mqa_r1_k3_h2_s1_d16_c32", "uir_r1_a0_k0_s1_e2_c32"),
)
VISION_HIDDEN = 2048  # fixed by MobileNet-V5's fusion adapter
TEXT_HIDDEN = 64
TEXT_HEADS = 4
HEAD_DIM = TEXT_HIDDEN // TEXT_HEADS
LAYER_TYPES = ("sliding_attention", "full_attention")
SEED = 0

IMAGE_TOKEN = "<image_soft_token>"
BOI_TOKEN = "<start_of_image>"
EOI_TOKEN = "<end_of_image>"
AUDIO_TOKEN = "<audio_soft_token>"
BOA_TOKEN = "<start_of_audio>"
EOA_TOKEN = "<end_of_audio>"
START_OF_TURN = "<start_of_turn>"
END_OF_TURN = "<end_of_turn>"

# Mimics Gemma 3n instruction tuning (as Gemma 3):
# "<bos><start_of_turn>user\n<image_soft_token>question<end_of_turn>\n<start_of_turn>model\n".
CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{% for message in messages %}"
    "{% set role = 'model' if message['role'] == 'assistant' else message['role'] %}"
    "<start_of_turn>{{ role }}\n"
    "{% if message['content'] is string %}{{ message['content'] | trim }}"
    "{% else %}{% for item in message['content'] %}"
    "{% if item['type'] == 'image' %}<image_soft_token>"
    "{% elif item['type'] == 'text' %}{{ item['text'] | trim }}{% endif %}"
    "{% endfor %}{% endif %}<end_of_turn>\n"
    "{% endfor %}"
    "{% if add_generation_prompt %}<start_of_turn>model\n{% endif %}"
)


def build(directory: Path) -> Path:
    """Build the tiny Gemma 3n (model, tokenizer, processor) and save it to ``directory``."""
    model, processor = make()
    return save_checkpoint_atomically(model, processor, directory)


def make() -> tuple[Any, Any]:
    """A freshly initialized tiny Gemma 3n (eval mode) and its processor, in memory."""
    import torch
    from timm.models._efficientnet_builder import decode_arch_def
    from transformers import (
        Gemma3nAudioConfig,
        Gemma3nAudioFeatureExtractor,
        Gemma3nConfig,
        Gemma3nForConditionalGeneration,
        Gemma3nProcessor,
        Gemma3nTextConfig,
        Gemma3nVisionConfig,
        SiglipImageProcessor,
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
        extra_tokens=(START_OF_TURN, END_OF_TURN),
        extra_words=("user", "model"),
    )
    vocab_size = len(tokenizer)

    def vision_model_args() -> dict[str, Any]:
        return {
            "block_args": decode_arch_def([list(stage) for stage in VISION_STAGES]),
            "stem_size": 16,
            "msfa_output_resolution": FUSION_GRID,
        }

    vision_config = Gemma3nVisionConfig(
        architecture="mobilenetv5_300m_enc",
        model_args=vision_model_args(),
        hidden_size=VISION_HIDDEN,
        vocab_offset=vocab_size,
    )
    audio_config = Gemma3nAudioConfig(
        hidden_size=32,
        input_feat_size=32,
        conf_num_attention_heads=2,
        conf_num_hidden_layers=1,
        sscp_conv_channel_size=[8, 4],
        vocab_offset=vocab_size + vision_config.vocab_size,
    )
    text_config = Gemma3nTextConfig(
        hidden_size=TEXT_HIDDEN,
        intermediate_size=TEXT_HIDDEN * 2,
        num_hidden_layers=N_DECODER_LAYERS,
        num_attention_heads=TEXT_HEADS,
        num_key_value_heads=TEXT_HEADS // 2,
        head_dim=HEAD_DIM,
        layer_types=list(LAYER_TYPES),
        sliding_window=512,
        num_kv_shared_layers=0,
        laurel_rank=8,
        hidden_size_per_layer_input=16,
        vocab_size=vocab_size,
        vocab_size_per_layer_input=vocab_size,
        activation_sparsity_pattern=[0.0] * N_DECODER_LAYERS,
        max_position_embeddings=512,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    ids = tokenizer.convert_tokens_to_ids
    config = Gemma3nConfig(
        text_config=text_config,
        vision_config=vision_config,
        audio_config=audio_config,
        vision_soft_tokens_per_image=SOFT_TOKENS,
        image_token_id=ids(IMAGE_TOKEN),
        boi_token_id=ids(BOI_TOKEN),
        eoi_token_id=ids(EOI_TOKEN),
        audio_token_id=ids(AUDIO_TOKEN),
        boa_token_id=ids(BOA_TOKEN),
        eoa_token_id=ids(EOA_TOKEN),
    )
    # Seed inside fork_rng so building leaves the caller's random state alone.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(SEED)
        model = Gemma3nForConditionalGeneration(config).eval()
    # timm writes its layer classes into the block arguments it is given; the saved config
    # keeps the plain JSON ones.
    model.config.vision_config.model_args = vision_model_args()
    image_processor = SiglipImageProcessor(
        size={"height": IMAGE_SIZE, "width": IMAGE_SIZE}, image_mean=[0.0] * 3, image_std=[1.0] * 3
    )
    processor = Gemma3nProcessor(
        feature_extractor=Gemma3nAudioFeatureExtractor(feature_size=32),
        image_processor=image_processor,
        tokenizer=tokenizer,
        image_seq_length=SOFT_TOKENS,
        chat_template=CHAT_TEMPLATE,
    )
    return model, processor
