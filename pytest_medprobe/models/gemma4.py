"""Gemma 4: what differs from the common layout (padded patches, pooled soft tokens).

structural.py finds every part (``embed_vision`` is among the projector names); this file
only pools the padded patch rows and maps the packed soft tokens to images.

vision blocks   model.vision_tower.encoder.layers   (no CLS token)
vision          input of model.embed_vision: the tower's soft tokens (real patches pooled
                ``k × k`` and scaled), packed over the batch ``[Σ tokens, d]``
connector       the decoder input at the ``<|image|>`` tokens (norm + projection); every
                decoder layer also receives a per-layer projection of the input embeddings,
                image positions included, which the layer's output already reflects
decoder layers  model.language_model.layers
image tokens    input_ids == config.image_token_id

The image processor keeps each image's aspect ratio and turns it into flat patches,
``pixel_values: [images, max_patches, 3·p²]`` padded to the batch's longest with
``image_position_ids`` of -1 marking filler; vision blocks are averaged over real
patches only. After the pooler each image has ``real patches / k²`` soft tokens.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from pytest_medprobe.errors import ExtractionError
from pytest_medprobe.models.base import FamilyAdapter
from pytest_medprobe.models.padded_patches import pool_padded_rows

if TYPE_CHECKING:
    import torch
    from torch import nn


class Gemma4Adapter(FamilyAdapter):
    family = "gemma4"
    model_types = ("gemma4",)
    nested_images = True  # the processor counts images per prompt

    def image_rows(self, model: nn.Module, inputs: Mapping[str, Any], n_rows: int, n_images: int) -> torch.Tensor:
        """One row per image in the blocks; one row per soft token at the handoff."""
        import torch

        if n_rows == n_images:
            return torch.arange(n_images)
        positions = inputs["image_position_ids"]  # [images, P, 2]
        real = (positions != -1).all(dim=-1).sum(dim=-1).cpu()  # [images] real patches
        config: Any = model.config
        kernel = int(config.vision_config.pooling_kernel_size)
        tokens = real // kernel**2
        if len(tokens) != n_images or int(tokens.sum()) != n_rows:
            raise ExtractionError(
                f"the gemma4 vision tower returned {n_rows} soft tokens but image_position_ids describe "
                f"{int(tokens.sum())} for {len(tokens)} images (expected {n_images}); the processor and "
                "the model disagree on the pooling kernel."
            )
        return torch.repeat_interleave(torch.arange(n_images), tokens)

    def pool_vision(
        self,
        model: nn.Module,
        hidden: torch.Tensor,
        inputs: Mapping[str, Any],
        n_images: int,
        skip_prefix: int = 0,
    ) -> torch.Tensor:
        if hidden.dim() == 3:  # a block's output, padded rows [images, P, d]
            real = (inputs["image_position_ids"] != -1).all(dim=-1)  # [images, P]
            rows = self.image_rows(model, inputs, hidden.shape[0], n_images)
            return pool_padded_rows(hidden, real, rows, n_images, self.family)
        return super().pool_vision(model, hidden, inputs, n_images, skip_prefix)
