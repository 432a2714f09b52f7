"""LLaVA-NeXT: what differs from the common layout (structural.py finds the rest).

vision blocks   model.vision_tower.encoder.layers   (CLIP / SigLIP towers)
vision          input of model.multi_modal_projector (the layer(s) picked by
                ``vision_feature_layer``, CLS dropped by the "default" select strategy)
connector       the decoder input at the image tokens (with LLaVA-NeXT's newline tokens)
decoder layers  model.language_model.layers
image tokens    input_ids == config.image_token_id (alias image_token_index)

Plain LLaVA follows the common layout and has no family file.

LLaVA-NeXT ("anyres") cuts each image into a base view plus tiles on the best-fitting
grid pinpoint; the vision tower sees all tiles of the batch as rows, so rows are mapped
back to images with the same tile count transformers computes from ``image_sizes``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from pytest_medprobe.models.base import FamilyAdapter

if TYPE_CHECKING:
    import torch
    from torch import nn


class LlavaNextAdapter(FamilyAdapter):
    """Structural, but for the rows: every image is a base view plus its own number of tiles."""

    family = "llava_next"
    model_types = ("llava_next",)

    def tile_counter(self) -> Callable[..., int]:
        """transformers' own count of an image's tiles (base view included) for this family."""
        from transformers.models.llava_next.modeling_llava_next import image_size_to_num_patches

        return image_size_to_num_patches

    def image_rows(self, model: nn.Module, inputs: Mapping[str, Any], n_rows: int, n_images: int) -> torch.Tensor:
        import torch

        image_size_to_num_patches = self.tile_counter()
        config: Any = model.config
        tiles = [
            image_size_to_num_patches(
                image_size=size,
                grid_pinpoints=config.image_grid_pinpoints,
                patch_size=config.vision_config.image_size,
            )
            for size in inputs["image_sizes"]
        ]
        return torch.repeat_interleave(torch.arange(n_images), torch.tensor(tiles))
