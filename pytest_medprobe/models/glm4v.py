"""GLM-4.1V (``glm4v``): the common layout, but the connector starts inside the tower.

vision blocks   model.visual.blocks                  (packed patches, as Qwen2-VL)
vision          input of model.visual.post_layernorm (the last block's output)
connector       the decoder input at the image tokens: post-norm, the 2×2 convolution
                (``downsample``) and the merger together
decoder layers  model.language_model.layers
image tokens    input_ids == config.image_token_id (<|image|>)

Structurally the merger would be the connector, but its input is already the
downsampling convolution's output, a projection of merged patches; the feature the tower
hands on is the last block's output, which is what ``vision`` must be (metrics.md §1).
"""

from __future__ import annotations

from pytest_medprobe.models.base import FamilyAdapter


class Glm4vAdapter(FamilyAdapter):
    family = "glm4v"
    model_types = ("glm4v",)
    handoff_path = "model.visual.post_layernorm"
