"""The structural adapter: where the stages of a model live, read off its module tree.

Most image-text-to-text families of transformers 5 share one layout: a vision tower
holding a list of blocks, a projector (or merger) that hands the tower's output to the
language model, a language model holding a list of decoder layers and a final norm,
and an image-token id in the config. ``discover_layout`` finds each part by the names
transformers itself uses for them (the same names ``get_encoder(modality="image")`` and
``get_decoder()`` try), so a family that follows the layout needs no adapter of its own;
a family file only states what differs. A part that is not found is named in the error,
so an unmappable model is refused before any weight is loaded.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pytest_medprobe.errors import ModelLoadError

if TYPE_CHECKING:
    from torch import nn

# Where the parts live, in the order they are tried. The top class holds the base
# model under ``model`` in transformers 5; older layouts held the parts directly.
_ROOTS = ("model.", "")
VISION_TOWER_NAMES = ("vision_tower", "visual", "vision_model", "vision_encoder", "image_tower")
VISION_BLOCK_NAMES = ("encoder.layers", "encoder.layer", "blocks", "transformer.layers", "layers", "encoder.blocks")
# Projectors beside the tower, then mergers inside it (Qwen-style towers end in one).
PROJECTOR_NAMES = ("multi_modal_projector", "connector", "mm_projector", "projector", "merger", "embed_vision")
TOWER_MERGER_NAMES = ("merger",)
LANGUAGE_MODEL_NAMES = ("language_model", "text_model", "llm", "decoder", "text_decoder")
FINAL_NORM_NAMES = ("norm", "final_layernorm", "final_norm")
IMAGE_TOKEN_KEYS = ("image_token_id", "image_token_index")


class UnmappableModelError(ModelLoadError):
    """A part of the common layout was not found on a model."""


@dataclass(frozen=True)
class ModelLayout:
    """Dotted paths (on the ``*ForConditionalGeneration`` object) of a model's stages."""

    vision_tower: str
    vision_blocks: tuple[str, ...]  # ModuleLists of vision blocks, in order
    handoff: str  # the projector / merger: its input is ``vision``
    language_model: str  # holds ``.layers``
    final_norm: str | None
    image_token_id: int | None

    def describe(self, n_vision_blocks: int, n_decoder_layers: int) -> str:
        blocks = " + ".join(self.vision_blocks)
        token = "none (no image view)" if self.image_token_id is None else str(self.image_token_id)
        return (
            f"vision blocks {blocks} (×{n_vision_blocks}); connector {self.handoff}; decoder "
            f"{self.language_model}.layers (×{n_decoder_layers}); final norm {self.final_norm or 'none'}; "
            f"image token {token}"
        )


def find_attribute(model: Any, path: str) -> Any | None:
    """The object at a dotted attribute path, or None when a part is missing."""
    current = model
    for part in path.split("."):
        current = getattr(current, part, None)
        if current is None:
            return None
    return current


def _is_module(value: Any) -> bool:
    from torch import nn

    return isinstance(value, nn.Module)


def _is_block_list(value: Any) -> bool:
    from torch import nn

    return isinstance(value, nn.ModuleList) and len(value) > 0


def _first(model: Any, paths: Sequence[str], test: Any) -> str | None:
    for path in paths:
        if test(find_attribute(model, path)):
            return path
    return None


def _refuse(model: Any, family: str, part: str, looked: Sequence[str], fix: str) -> UnmappableModelError:
    return UnmappableModelError(
        f"the {family} model ({type(model).__name__}) does not follow the common layout: no {part} "
        f"found (looked for {', '.join(looked)}). {fix}"
    )


_FIX = (
    "Register a family adapter that names where it lives (see 'Auditing a real model' in the "
    "README), or report the model type."
)


def discover_layout(
    model: nn.Module,
    family: str,
    has_image_view: bool = True,
    vision_tower: str | None = None,
    vision_blocks: tuple[str, ...] | None = None,
    handoff: str | None = None,
    language_model: str | None = None,
) -> ModelLayout:
    """Find the stages of ``model``; given paths override discovery (a family file's)."""
    towers = [root + name for root in _ROOTS for name in VISION_TOWER_NAMES]
    tower = vision_tower or _first(model, towers, _is_module)
    if vision_blocks is None:
        if tower is None:
            raise _refuse(model, family, "vision tower", towers, _FIX)
        candidates = [f"{tower}.{name}" for name in VISION_BLOCK_NAMES]
        found = _first(model, candidates, _is_block_list)
        if found is None:
            raise _refuse(model, family, "list of vision blocks", candidates, _FIX)
        vision_blocks = (found,)
    if tower is None:  # the tower holding the given blocks, else the blocks' parent
        holding = [path for path in towers if vision_blocks[0].startswith(path + ".")]
        tower = holding[0] if holding else vision_blocks[0].rsplit(".", 1)[0]
    if handoff is None:
        projectors = [root + name for root in _ROOTS for name in PROJECTOR_NAMES]
        projectors += [f"{tower}.{name}" for name in TOWER_MERGER_NAMES]
        handoff = _first(model, projectors, _is_module)
        if handoff is None:
            raise _refuse(model, family, "projector or merger", projectors, _FIX)
    if language_model is None:
        decoders = [root + name for root in _ROOTS for name in LANGUAGE_MODEL_NAMES]
        language_model = _first(model, decoders, lambda value: _is_block_list(getattr(value, "layers", None)))
        if language_model is None:
            raise _refuse(model, family, "language model with a list of decoder layers", decoders, _FIX)
    norm = _first(model, [f"{language_model}.{name}" for name in FINAL_NORM_NAMES], _is_module)
    token_id = None
    if has_image_view:
        config = model.config
        values = [getattr(config, key, None) for key in IMAGE_TOKEN_KEYS]
        token_id = next((int(value) for value in values if value is not None), None)
        if token_id is None:
            raise _refuse(
                model,
                family,
                "image-token id in the config",
                IMAGE_TOKEN_KEYS,
                "Re-save the checkpoint with a config that names its image token, or register a "
                "family adapter without an image view (cross-attention models).",
            )
    return ModelLayout(tower, vision_blocks, handoff, language_model, norm, token_id)


def skeleton(config: Any, trust_remote_code: bool = False) -> nn.Module:
    """The model class of ``config``, built on the meta device: its module tree, no weights.

    Mapping a checkpoint from this costs no memory and no weight reading, so a model that
    cannot be mapped is refused before its weights load.
    """
    import warnings

    import torch
    from transformers import AutoModelForImageTextToText

    with torch.device("meta"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return AutoModelForImageTextToText.from_config(  # type: ignore[no-any-return]
            config, trust_remote_code=trust_remote_code
        )
