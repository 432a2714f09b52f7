"""InternVL (the ``-hf`` layout; Lingshu-I): what differs from the common layout (its tiles).

vision blocks   model.vision_tower.encoder.layer    (InternViT, with a CLS token)
vision          input of model.multi_modal_projector (last layer, CLS dropped, pixel-shuffled)
connector       the decoder input at the image tokens (<IMG_CONTEXT>)
decoder layers  model.language_model.layers
image tokens    input_ids == config.image_token_id

The processor may cut an image into tiles (plus a thumbnail), and every tile becomes a
row of the vision tower; each tile contributes the same number of image tokens, so the
tiles of an image are counted from its image tokens in ``input_ids``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from pytest_medprobe.errors import ExtractionError
from pytest_medprobe.models.base import FamilyAdapter

if TYPE_CHECKING:
    import torch
    from torch import nn


class InternVLAdapter(FamilyAdapter):
    family = "internvl"
    model_types = ("internvl",)

    def image_rows(self, model: nn.Module, inputs: Mapping[str, Any], n_rows: int, n_images: int) -> torch.Tensor:
        import torch

        image_tokens = (inputs["input_ids"] == self.image_token_id(model)).sum(dim=1).cpu()  # [n_images]
        total = int(image_tokens.sum())
        if n_rows == 0 or total % n_rows:
            raise ExtractionError(
                f"{total} image tokens cannot be split evenly over {n_rows} vision tiles; the "
                "processor and the model disagree on the tokens per tile."
            )
        tiles = image_tokens // (total // n_rows)
        return torch.repeat_interleave(torch.arange(n_images), tiles)
