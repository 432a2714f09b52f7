"""Gemma 3n: what differs from the common layout (a convolutional tower, AltUp streams).

structural.py finds the decoder and its norm; this file names the tower's stages (an
``nn.Sequential`` inside timm's model, not a list of transformer blocks) and the soft-token
norm (the vision embedder is also called on hard tokens), pools feature maps over their
positions, and reads the active AltUp stream.

vision blocks   model.vision_tower.timm_model.blocks (MobileNet-V5 stages: convolution
                blocks and mobile attention; no transformer blocks, no CLS); each stage's
                output is a feature map ``[B, C, H, W]``, pooled over its positions
vision          input of model.embed_vision's soft-token norm: the multi-scale fusion
                adapter's ``[B, soft tokens, 2048]`` grid, scaled (the embedder's other
                call, for hard vision-vocabulary tokens, is not an image feature)
connector       the decoder input at the image tokens (norm, projection, norm)
decoder layers  model.language_model.layers; between layers the hidden state is
                ``[AltUp streams, B, S, H]``: every ``llm.j`` reads the active stream
                (``altup_active_idx``), the one the layer's attention and MLP compute on
final norm      model.language_model.norm, after the streams are merged back
image tokens    input_ids == config.image_token_id

Every image is resized to one square and becomes the same number of soft tokens.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from pytest_medprobe.models.base import FamilyAdapter

if TYPE_CHECKING:
    import torch
    from torch import nn


class Gemma3nAdapter(FamilyAdapter):
    family = "gemma3n"
    model_types = ("gemma3n",)
    vision_block_paths = ("model.vision_tower.timm_model.blocks",)
    handoff_path = "model.embed_vision.soft_embedding_norm"
    nested_images = True  # the processor counts images per prompt

    def pool_vision(
        self,
        model: nn.Module,
        hidden: torch.Tensor,
        inputs: Mapping[str, Any],
        n_images: int,
        skip_prefix: int = 0,
    ) -> torch.Tensor:
        if hidden.dim() == 4:  # a convolution stage's feature map [B, C, H, W]: its positions are the tokens
            hidden = hidden.flatten(2).transpose(1, 2)  # [B, H·W, C]
        return super().pool_vision(model, hidden, inputs, n_images, skip_prefix)

    def decoder_stream(self, model: nn.Module, hidden: torch.Tensor) -> torch.Tensor:
        if hidden.dim() == 4:  # [streams, B, S, H]
            config: Any = model.config
            return hidden[int(config.text_config.altup_active_idx)]
        return hidden
