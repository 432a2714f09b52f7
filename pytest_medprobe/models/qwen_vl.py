"""Qwen2-VL and Qwen2.5-VL (HuatuoGPT-Vision on Qwen2.5-VL, Lingshu, MedVLM-R1).

vision blocks   model.visual.blocks
vision          input of model.visual.merger (the last block's output)
connector       the decoder input at the image tokens (the merger's 2×2-merged output)
decoder layers  model.language_model.layers
image tokens    input_ids == config.image_token_id (<|image_pad|>)

The vision tower runs at each image's own resolution and packs the patches of every
image of the batch into one flat sequence ``[Σ t·h·w, width]``; ``image_grid_thw``
says how many patches each image has, so patches are pooled per image from it, never
by reshaping. (Qwen2.5-VL's windowed blocks permute patches within an image only,
which a per-image mean does not see.)
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from pytest_medprobe.errors import ExtractionError
from pytest_medprobe.models.base import FamilyAdapter

if TYPE_CHECKING:
    import torch
    from torch import nn


class QwenVLAdapter(FamilyAdapter):
    family = "qwen_vl"
    model_types = ("qwen2_vl", "qwen2_5_vl")
    vision_block_paths = ("model.visual.blocks",)
    handoff_path = "model.visual.merger"
    language_model_path = "model.language_model"

    def image_rows(self, model: nn.Module, inputs: Mapping[str, Any], n_rows: int, n_images: int) -> torch.Tensor:
        import torch

        patches_per_image = inputs["image_grid_thw"].prod(dim=-1).cpu()  # [n_images]
        if len(patches_per_image) != n_images or int(patches_per_image.sum()) != n_rows:
            raise ExtractionError(
                f"the vision tower returned {n_rows} packed patches but image_grid_thw describes "
                f"{int(patches_per_image.sum())} patches of {len(patches_per_image)} images (expected "
                f"{n_images}); the processor and the model disagree on patch sizes."
            )
        return torch.repeat_interleave(torch.arange(n_images), patches_per_image)
