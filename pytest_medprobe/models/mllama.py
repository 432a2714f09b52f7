"""Mllama (Llama 3.2 Vision): a cross-attention family, where images are not tokens.

vision blocks   model.vision_model.transformer.layers, then .global_transformer.layers
vision          input of model.multi_modal_projector (last state + intermediate layers)
connector       output of model.multi_modal_projector (what cross-attention layers read)
decoder layers  model.language_model.layers (self- and cross-attention layers together,
                as ``text_config.num_hidden_layers`` counts them)
image tokens    none: the single <|image|> marker is not one token per patch, so the
                image view does not exist (metrics.md §1) and the report says so.

Vision tensors hold ``max_image_tiles`` tiles per image, padded; tiles beyond an
image's aspect ratio are masked out by ``aspect_ratio_mask`` and left out of its mean,
and so are the padding patches the encoder appends to each tile.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from pytest_medprobe.errors import ExtractionError
from pytest_medprobe.models.base import FamilyAdapter, attribute_path

if TYPE_CHECKING:
    import torch
    from torch import nn


class MllamaAdapter(FamilyAdapter):
    family = "mllama"
    model_types = ("mllama",)
    has_image_view = False
    vision_block_paths = ("model.vision_model.transformer.layers", "model.vision_model.global_transformer.layers")

    def vision_prefix_tokens(self, model: nn.Module) -> int:
        return 1  # the class embedding leads every tile

    def pool_vision(
        self,
        model: nn.Module,
        hidden: torch.Tensor,
        inputs: Mapping[str, Any],
        n_images: int,
        skip_prefix: int = 0,
    ) -> torch.Tensor:
        tile_mask = inputs["aspect_ratio_mask"]  # [prompts, images per prompt, tiles]
        if tile_mask.shape[1] != 1 or tile_mask.shape[0] != n_images:
            raise ExtractionError(
                f"mllama: expected one image per prompt, got aspect_ratio_mask of shape {tuple(tile_mask.shape)}."
            )
        tiles = tile_mask.shape[2]
        patches = int(attribute_path(model, "model.vision_model").num_patches)  # per tile, CLS included
        # Block outputs are [images, tiles * padded patches, d]; the projector's input and
        # output are [images, 1, tiles, patches, d].
        per_tile = hidden.reshape(n_images, tiles, -1, hidden.shape[-1])[:, :, skip_prefix:patches, :]
        tile_means = per_tile.float().mean(dim=2)  # [images, tiles, d]
        weights = tile_mask[:, 0, :].to(tile_means.device).float()  # [images, tiles]
        return (tile_means * weights[..., None]).sum(dim=1) / weights.sum(dim=1, keepdim=True)
