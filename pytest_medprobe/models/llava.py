"""LLaVA (``LlavaForConditionalGeneration``): where its stages live in transformers 5.

vision blocks   model.vision_tower.encoder.layers   (CLIP / SigLIP towers)
vision          input of model.multi_modal_projector (the layer picked by
                ``vision_feature_layer``, CLS dropped by the "default" select strategy)
connector       output of model.multi_modal_projector
decoder layers  model.language_model.layers
image tokens    input_ids == config.image_token_id
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from pytest_medprobe.errors import ModelLoadError
from pytest_medprobe.models.base import FamilyAdapter

if TYPE_CHECKING:
    from torch import nn


def _attribute_path(model: Any, path: str) -> Any:
    """Follow a dotted attribute path, with a message naming the missing part."""
    current = model
    for part in path.split("."):
        if not hasattr(current, part):
            raise ModelLoadError(
                f"{type(model).__name__} has no '{path}' (missing '{part}'); this transformers "
                "version lays the model out differently from what the adapter expects. "
                "Use transformers 5.x, or report the version you have."
            )
        current = getattr(current, part)
    return current


class LlavaAdapter(FamilyAdapter):
    family = "llava"
    model_types = ("llava",)

    def vision_blocks(self, model: nn.Module) -> Sequence[nn.Module]:
        return list(_attribute_path(model, "model.vision_tower.encoder.layers"))

    def vision_prefix_tokens(self, model: nn.Module) -> int:
        # CLIP towers prepend a CLS token; SigLIP towers have none.
        embeddings = _attribute_path(model, "model.vision_tower").embeddings
        return 1 if hasattr(embeddings, "class_embedding") else 0

    def connector(self, model: nn.Module) -> nn.Module:
        return _attribute_path(model, "model.multi_modal_projector")  # type: ignore[no-any-return]

    def decoder_layers(self, model: nn.Module) -> Sequence[nn.Module]:
        return list(_attribute_path(model, "model.language_model.layers"))

    def final_norm(self, model: nn.Module) -> nn.Module | None:
        return getattr(_attribute_path(model, "model.language_model"), "norm", None)

    def image_token_id(self, model: nn.Module) -> int | None:
        config = model.config
        token_id = getattr(config, "image_token_id", None)
        if token_id is None:
            token_id = getattr(config, "image_token_index", None)
        return None if token_id is None else int(token_id)
