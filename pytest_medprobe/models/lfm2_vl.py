"""LFM2-VL: what differs from the common layout (padded NaFlex rows, tiles, its final norm).

structural.py finds the tower, projector and decoder; this file names the final norm
(not among the usual names) and maps the padded, tiled and regrouped rows to images.

vision blocks   model.vision_tower.encoder.layers   (SigLIP2 NaFlex, no CLS token)
vision          input of model.multi_modal_projector: the tower's last hidden state,
                regrouped into 2x2 patch blocks (see below)
connector       the decoder input at the image tokens (pixel unshuffle, layer norm, MLP)
decoder layers  model.language_model.layers (LFM2: short-convolution and attention blocks)
final norm      model.language_model.embedding_norm (named so, but applied after the last layer)
image tokens    input_ids == config.image_token_id

The processor resizes a small image as one view and cuts a large one into tiles plus a
thumbnail; every view is a row of ``pixel_values`` padded to the longest view, with
``pixel_attention_mask`` marking its real patches and ``spatial_shapes`` its patch grid.
A row becomes ``(h / f) · (w / f)`` image tokens (``f`` the downsample factor), so rows
are mapped to images by filling each prompt's image tokens in order.

The projector does not see rows: transformers gathers every row's ``f × f`` patch blocks
side by side into one grid ``[1, f, rows · T · f, d]`` (``T`` slots per row; slots past a
row's token count are filler that read patch 0 and are dropped after the projector).
The ``vision`` stage undoes that gathering and averages the real slots only, which is the
mean over the image's real patches of the tower's output.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from pytest_medprobe.errors import ExtractionError
from pytest_medprobe.models.base import FamilyAdapter, attribute_path
from pytest_medprobe.models.padded_patches import pool_padded_rows, rows_by_token_count

if TYPE_CHECKING:
    import torch
    from torch import nn


class Lfm2VlAdapter(FamilyAdapter):
    family = "lfm2_vl"
    model_types = ("lfm2_vl",)
    nested_images = True  # the processor counts images per prompt

    def final_norm(self, model: nn.Module) -> nn.Module | None:
        return attribute_path(model, self.layout(model).language_model + ".embedding_norm")  # type: ignore[no-any-return]

    def _factor(self, model: nn.Module) -> int:
        config: Any = model.config
        return int(config.downsample_factor)

    def image_rows(self, model: nn.Module, inputs: Mapping[str, Any], n_rows: int, n_images: int) -> torch.Tensor:
        factor = self._factor(model)
        shapes = inputs["spatial_shapes"].cpu()  # [rows, 2] patch grid of each view
        if len(shapes) != n_rows:
            raise ExtractionError(
                f"the lfm2_vl vision tower returned {n_rows} rows but spatial_shapes describes {len(shapes)} views."
            )
        row_tokens = (shapes // factor).prod(dim=-1)  # [rows]
        image_tokens = (inputs["input_ids"] == self.image_token_id(model)).sum(dim=1)  # [n_images]
        return rows_by_token_count(row_tokens, image_tokens, self.family)

    def pool_vision(
        self,
        model: nn.Module,
        hidden: torch.Tensor,
        inputs: Mapping[str, Any],
        n_images: int,
        skip_prefix: int = 0,
    ) -> torch.Tensor:
        import torch

        real = inputs["pixel_attention_mask"].bool()  # [rows, P]
        n_rows, n_patches = real.shape
        if hidden.dim() == 4:  # the projector's gathered grid [1, f, rows · T · f, d]
            factor = self._factor(model)
            slots = n_patches // factor**2  # T
            if tuple(hidden.shape[:3]) != (1, factor, n_rows * slots * factor):
                raise ExtractionError(
                    f"the lfm2_vl projector input has shape {tuple(hidden.shape)}, not the gathered "
                    f"grid (1, {factor}, {n_rows * slots * factor}, d) of {n_rows} views; this transformers "
                    "version regroups patches differently from what the adapter expects."
                )
            width = hidden.shape[-1]
            # Column (row · T + slot) · f + c of grid line i holds patch (i, c) of that slot's block.
            blocks = hidden[0].reshape(factor, n_rows, slots, factor, width).permute(1, 2, 0, 3, 4)
            hidden = blocks.reshape(n_rows, slots * factor * factor, width)
            row_tokens = (inputs["spatial_shapes"] // factor).prod(dim=-1)  # [rows]
            filled = torch.arange(slots, device=hidden.device)[None, :] < row_tokens.to(hidden.device)[:, None]
            real = filled.repeat_interleave(factor * factor, dim=1)
        rows = self.image_rows(model, inputs, n_rows, n_images)
        return pool_padded_rows(hidden, real, rows, n_images, self.family)
