"""Planted faults: four variants of ``medprobe-tiny``, each breaking one module only.

Each fault edits the healthy weights in one place, and the variant is saved as an
ordinary checkpoint directory, so it is audited through the same loader as any model
(``--model=medprobe-tiny:<fault>`` or an exported ``--model=DIR``):

blind-vision      the patch embedding is zeroed: every image looks the same to the encoder
                  → audit 1 (visual representation) must fail
lossy-connector   the projector keeps KEPT_CONNECTOR_INPUTS of its input dimensions
                  → audit 2 (connector fidelity) must fail
forgetful-llm     attention output projections are zeroed from FORGETFUL_FROM_LAYER on, so
                  no image signal reaches the answer position
                  → audit 3 (LLM comprehension) must fail
misaligned-head   the LM-head rows of the option letters are rotated (A says B, …): the
                  model holds the diagnosis but names the wrong letter
                  → audit 4 (semantic mapping) must fail
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pytest_medprobe.prompts import letter_token_ids, option_letters

KEPT_CONNECTOR_INPUTS = 2
FORGETFUL_FROM_LAYER = 0
N_OPTIONS = 4  # synthetic-lesions has four classes


def _blind_vision(model: Any, processor: Any) -> None:
    model.model.vision_tower.embeddings.patch_embedding.weight.zero_()


def _lossy_connector(model: Any, processor: Any) -> None:
    first = model.model.multi_modal_projector.linear_1
    first.weight[:, KEPT_CONNECTOR_INPUTS:] = 0.0


def _forgetful_llm(model: Any, processor: Any) -> None:
    for layer in model.model.language_model.layers[FORGETFUL_FROM_LAYER:]:
        layer.self_attn.o_proj.weight.zero_()


def _misaligned_head(model: Any, processor: Any) -> None:
    candidates = letter_token_ids(processor.tokenizer, option_letters(N_OPTIONS))
    rows = [ids[0] for ids in candidates]
    head = model.lm_head.weight
    rotated = head[rows[1:] + rows[:1]].clone()
    head[rows] = rotated


FAULTS: dict[str, tuple[Callable[[Any, Any], None], str, str]] = {
    "blind-vision": (_blind_vision, "the vision encoder no longer sees the lesion", "visual_representation"),
    "lossy-connector": (_lossy_connector, "the projector drops most of its input", "connector_fidelity"),
    "forgetful-llm": (
        _forgetful_llm,
        "the decoder never carries the image to the answer position",
        "llm_comprehension",
    ),
    "misaligned-head": (_misaligned_head, "the option letters are mapped to the wrong classes", "semantic_mapping"),
}


def apply_fault(model: Any, processor: Any, fault: str) -> None:
    """Edit ``model`` in place to plant ``fault``."""
    import torch

    if fault not in FAULTS:
        raise ValueError(f"unknown fault {fault!r}; known: {', '.join(FAULTS)}")
    with torch.no_grad():
        FAULTS[fault][0](model, processor)
