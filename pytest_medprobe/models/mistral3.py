"""Mistral 3 (Pixtral vision): what differs from the common layout (its packed patches).

structural.py finds every part; this file only maps the packed patches to images.

vision blocks   model.vision_tower.transformer.layers (Pixtral, no CLS token)
vision          input of model.multi_modal_projector (the selected layer, ``[Σ h·w, d]``)
connector       the decoder input at the ``[IMG]`` tokens (RMS norm, learned 2x2 patch
                merger, MLP; ``[IMG_BREAK]`` / ``[IMG_END]`` positions are not image tokens)
decoder layers  model.language_model.layers
image tokens    input_ids == config.image_token_id (alias image_token_index)

Pixtral keeps each image at its own resolution: images are padded to the largest of the
batch, cut back to ``image_sizes``, and the patches of every image are packed into one
sequence ``[1, Σ h·w, d]`` with block-diagonal attention; ``image_sizes // patch_size``
says how many patches each image has, so patches are pooled per image from it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from pytest_medprobe.errors import ExtractionError
from pytest_medprobe.models.base import FamilyAdapter

if TYPE_CHECKING:
    import torch
    from torch import nn


class Mistral3Adapter(FamilyAdapter):
    family = "mistral3"
    model_types = ("mistral3",)

    def image_rows(self, model: nn.Module, inputs: Mapping[str, Any], n_rows: int, n_images: int) -> torch.Tensor:
        import torch

        config: Any = model.config
        patch_size = int(config.vision_config.patch_size)
        grid = torch.as_tensor(inputs["image_sizes"]).cpu() // patch_size  # [n_images, 2]
        patches = grid.prod(dim=-1)  # [n_images]
        if len(patches) != n_images or int(patches.sum()) != n_rows:
            raise ExtractionError(
                f"the mistral3 vision tower returned {n_rows} packed patches but image_sizes describe "
                f"{int(patches.sum())} patches of {len(patches)} images (expected {n_images}); the "
                "processor and the model disagree on the patch size."
            )
        return torch.repeat_interleave(torch.arange(n_images), patches)

    def pool_vision(
        self,
        model: nn.Module,
        hidden: torch.Tensor,
        inputs: Mapping[str, Any],
        n_images: int,
        skip_prefix: int = 0,
    ) -> torch.Tensor:
        # Block outputs carry a batch dimension of one over the packed sequence.
        if hidden.dim() == 3 and hidden.shape[0] == 1:
            hidden = hidden[0]
        return super().pool_vision(model, hidden, inputs, n_images, skip_prefix)
