"""A tiny, randomly initialized Qwen3.5 checkpoint (hybrid linear attention), built for the family audit.

A real ``Qwen3_5ForConditionalGeneration``: the Qwen3-VL vision tower without deepstack
mergers, and a decoder that mixes gated-delta-net linear-attention layers with full
attention layers (``layer_types``), with M-RoPE on a part of each head
(``partial_rotary_factor``). It has no family file: the structural adapter maps it.
Processor, tokenizer and chat template are the tiny Qwen3-VL's (transformers loads
Qwen3.5 with ``Qwen3VLProcessor`` too).

What must agree (besides what the tiny Qwen2-VL and Qwen3-VL list):

- ``mrope_section`` sums to half the rotary part of a head:
  ``head_dim * partial_rotary_factor / 2`` (16 * 0.5 / 2 = 4 here).
- ``layer_types`` has one entry per decoder layer.

Images of different sizes batch together. Builds are deterministic.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pytest_medprobe.models.tiny_llava import save_checkpoint_atomically
from tests.families import tiny_qwen2_vl as qwen2_vl
from tests.families import tiny_qwen3_vl as qwen3_vl

MODEL_TYPE = "qwen3_5"
MIXED_SIZES = True
LAYER_TYPES = ("linear_attention", "full_attention")
N_DECODER_LAYERS = len(LAYER_TYPES)
HEAD_DIM = 16
PARTIAL_ROTARY = 0.5
MROPE_SECTION = (2, 1, 1)  # sums to HEAD_DIM * PARTIAL_ROTARY / 2
SEED = 0


def build(directory: Path) -> Path:
    """Build the tiny Qwen3.5 (model, tokenizer, processor) and save it to ``directory``."""
    model, processor = make()
    return save_checkpoint_atomically(model, processor, directory)


def make() -> tuple[Any, Any]:
    """A freshly initialized tiny Qwen3.5 (eval mode) and its processor, in memory."""
    import torch
    from transformers import Qwen3_5Config, Qwen3_5ForConditionalGeneration

    tokenizer = qwen2_vl.make_tokenizer()
    text = {
        **qwen2_vl.make_text_config_kwargs(tokenizer),
        "num_hidden_layers": N_DECODER_LAYERS,
        "layer_types": list(LAYER_TYPES),
        "head_dim": HEAD_DIM,
        "rope_parameters": {
            "rope_type": "default",
            "rope_theta": 10000.0,
            "partial_rotary_factor": PARTIAL_ROTARY,
            "mrope_section": list(MROPE_SECTION),
            "mrope_interleaved": True,
        },
        "linear_conv_kernel_dim": 4,
        "linear_key_head_dim": 8,
        "linear_value_head_dim": 8,
        "linear_num_key_heads": 2,
        "linear_num_value_heads": 4,
    }
    config = Qwen3_5Config(
        vision_config=qwen3_vl.make_vision_kwargs(),
        text_config=text,
        **qwen2_vl.make_token_ids(tokenizer),
    )
    # Seed inside fork_rng so building leaves the caller's random state alone.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(SEED)
        model = Qwen3_5ForConditionalGeneration(config).eval()
    return model, qwen3_vl.make_processor(tokenizer)
