"""Qwen3-VL (MedMO, HealthGPT-Pro, MediX-R1) and Qwen3-VL-MoE: the common layout plus deepstack.

vision blocks     model.visual.blocks                (packed patches, as Qwen2-VL)
vision            input of model.visual.merger       (the last block's output)
connector         the decoder input at the image tokens (the merger's 2×2-merged output)
connector.{i}     output of a deepstack merger, which reads vision block i
                  (``vision_config.deepstack_visual_indexes``); the k-th one is added to
                  the hidden states at the image positions after decoder layer k
decoder layers    model.language_model.layers
image tokens      input_ids == config.image_token_id (<|image_pad|>)

What the image view of the first layers means: ``llm.{k}`` is layer k's output as the
layer returns it, *before* deepstack feature k is added (the addition happens outside
the layer, on a copy; Hugging Face's ``hidden_states`` are taken there too). So
``connector → llm.0`` is layer 0's own change, and a deepstack injection shows first in
``llm.{k+1}``. A deepstack merger that loses what its vision block had fails connector
fidelity at its own stage ``connector.{i}`` (vision.{i} → connector.{i}), not the LLM
audit; see docs/metrics.md.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from pytest_medprobe.errors import ModelLoadError
from pytest_medprobe.models.base import FamilyAdapter, attribute_path

if TYPE_CHECKING:
    from torch import nn


class Qwen3VLAdapter(FamilyAdapter):
    family = "qwen3_vl"
    model_types = ("qwen3_vl", "qwen3_vl_moe")

    def side_connectors(self, model: nn.Module) -> Sequence[tuple[int, nn.Module]]:
        visual = attribute_path(model, self.layout(model).vision_tower)
        indexes = list(getattr(visual, "deepstack_visual_indexes", None) or [])
        mergers = list(getattr(visual, "deepstack_merger_list", None) or [])
        if len(indexes) != len(mergers):
            raise ModelLoadError(
                f"{type(model).__name__}: {len(indexes)} deepstack_visual_indexes but {len(mergers)} "
                "deepstack mergers; the checkpoint's vision config does not match its weights."
            )
        return [(int(index), merger) for index, merger in zip(indexes, mergers)]
