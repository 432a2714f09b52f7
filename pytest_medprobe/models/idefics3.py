"""Idefics3 and SmolVLM: what differs from the common layout (structural.py finds the paths).

vision blocks   model.vision_model.encoder.layers   (SigLIP, no CLS token)
vision          input of model.connector (the tower's last hidden state)
connector       the decoder input at the image tokens (pixel shuffle + linear)
decoder layers  model.text_model.layers
image tokens    input_ids == config.image_token_id

The processor may split an image into sub-images plus a global view and pads every
prompt to the same number of sub-images with all-zero images; the model drops those
before the vision tower, and so does the mapping from vision rows to images here.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from pytest_medprobe.models.base import FamilyAdapter

if TYPE_CHECKING:
    import torch
    from torch import nn


class Idefics3Adapter(FamilyAdapter):
    family = "idefics3"
    model_types = ("idefics3", "smolvlm")

    def image_rows(self, model: nn.Module, inputs: Mapping[str, Any], n_rows: int, n_images: int) -> torch.Tensor:
        import torch

        pixel_values = inputs["pixel_values"]  # [prompts, sub-images, C, H, W]
        prompts, slots = pixel_values.shape[:2]
        # The model's own test for a padding image: every value is exactly zero.
        real = (pixel_values.flatten(2) != 0).any(dim=2).flatten().cpu()  # [prompts * slots]
        owner = torch.arange(prompts).repeat_interleave(slots)
        return owner[real]
