"""A tiny, randomly initialized Qwen3-VL-MoE checkpoint, built for the family audit.

A real ``Qwen3VLMoeForConditionalGeneration``: the vision tower, mergers and deepstack
mergers of the tiny Qwen3-VL, and a decoder whose MLPs are sparse mixtures of experts
(4 experts, 2 routed per token). Same processor, tokenizer and chat template as the tiny
Qwen3-VL, and the same agreements between config and processor; the family file is
Qwen3-VL's (pytest_medprobe/models/qwen3_vl.py), which the layout shares.

Images of different sizes batch together. Builds are deterministic.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pytest_medprobe.models.tiny_llava import save_checkpoint_atomically
from tests.families import tiny_qwen2_vl as qwen2_vl
from tests.families import tiny_qwen3_vl as qwen3_vl

MODEL_TYPE = "qwen3_vl_moe"
MIXED_SIZES = True
N_DECODER_LAYERS = qwen3_vl.N_DECODER_LAYERS
DEEPSTACK_BLOCKS = qwen3_vl.DEEPSTACK_BLOCKS
EXPERTS = 4
EXPERTS_PER_TOKEN = 2
SEED = 0


def build(directory: Path) -> Path:
    """Build the tiny Qwen3-VL-MoE (model, tokenizer, processor) and save it to ``directory``."""
    model, processor = make()
    return save_checkpoint_atomically(model, processor, directory)


def make() -> tuple[Any, Any]:
    """A freshly initialized tiny Qwen3-VL-MoE (eval mode) and its processor, in memory."""
    import torch
    from transformers import Qwen3VLMoeConfig, Qwen3VLMoeForConditionalGeneration

    tokenizer = qwen2_vl.make_tokenizer()
    text = {
        **qwen3_vl.make_text_kwargs(tokenizer),
        "num_experts": EXPERTS,
        "num_experts_per_tok": EXPERTS_PER_TOKEN,
        "moe_intermediate_size": qwen2_vl.TEXT_HIDDEN,
        "decoder_sparse_step": 1,
    }
    config = Qwen3VLMoeConfig(
        vision_config={**qwen3_vl.make_vision_kwargs(), "deepstack_visual_indexes": list(DEEPSTACK_BLOCKS)},
        text_config=text,
        **qwen2_vl.make_token_ids(tokenizer),
    )
    # Seed inside fork_rng so building leaves the caller's random state alone.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(SEED)
        model = Qwen3VLMoeForConditionalGeneration(config).eval()
    return model, qwen3_vl.make_processor(tokenizer)
