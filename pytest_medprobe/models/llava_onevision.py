"""LLaVA-OneVision: what differs from the common layout (its anyres tiles).

vision blocks   model.vision_tower.encoder.layers   (SigLIP, no CLS token)
vision          input of model.multi_modal_projector (all tiles of the batch, one row each)
connector       the decoder input at the image tokens (after unpadding, the
                ``anyres_max`` down-sampling of large grids and the newline tokens)
decoder layers  model.language_model.layers (Qwen2)
image tokens    input_ids == config.image_token_id (alias image_token_index)

Like LLaVA-NeXT, a single image is cut into a base view plus tiles on the best-fitting
grid pinpoint; the vision tower sees every tile of the batch as a row, so rows are mapped
back to images with the tile count transformers computes from ``image_sizes``. (Prompts
with several images are not tiled by the model; the audit sends one image per prompt.)
"""

from __future__ import annotations

from collections.abc import Callable

from pytest_medprobe.models.llava_next import LlavaNextAdapter


class LlavaOnevisionAdapter(LlavaNextAdapter):
    family = "llava_onevision"
    model_types = ("llava_onevision",)

    def tile_counter(self) -> Callable[..., int]:
        # OneVision counts its anyres tiles with its own function (its grid and limits differ).
        from transformers.models.llava_onevision.modeling_llava_onevision import image_size_to_num_patches

        return image_size_to_num_patches
