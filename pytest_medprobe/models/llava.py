"""LLaVA and LLaVA-NeXT: where their stages live in transformers 5.

vision blocks   model.vision_tower.encoder.layers   (CLIP / SigLIP towers)
vision          input of model.multi_modal_projector (the layer(s) picked by
                ``vision_feature_layer``, CLS dropped by the "default" select strategy)
connector       the decoder input at the image tokens (LLaVA-NeXT adds newline tokens)
decoder layers  model.language_model.layers
image tokens    input_ids == config.image_token_id (alias image_token_index)

LLaVA-NeXT ("anyres") cuts each image into a base view plus tiles on the best-fitting
grid pinpoint; the vision tower sees all tiles of the batch as rows, so rows are mapped
back to images with the same tile count transformers computes from ``image_sizes``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from pytest_medprobe.models.base import FamilyAdapter, attribute_path

if TYPE_CHECKING:
    import torch
    from torch import nn


class LlavaAdapter(FamilyAdapter):
    family = "llava"
    model_types = ("llava",)
    vision_block_paths = ("model.vision_tower.encoder.layers",)
    handoff_path = "model.multi_modal_projector"
    language_model_path = "model.language_model"

    def vision_prefix_tokens(self, model: nn.Module) -> int:
        # CLIP towers prepend a CLS token; SigLIP towers have none.
        embeddings = attribute_path(model, "model.vision_tower").embeddings
        return 1 if hasattr(embeddings, "class_embedding") else 0


class LlavaNextAdapter(LlavaAdapter):
    family = "llava_next"
    model_types = ("llava_next",)

    def image_rows(self, model: nn.Module, inputs: Mapping[str, Any], n_rows: int, n_images: int) -> torch.Tensor:
        import torch
        from transformers.models.llava_next.modeling_llava_next import image_size_to_num_patches

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
