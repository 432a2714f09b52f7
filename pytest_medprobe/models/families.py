"""The family registry: which adapter reads a checkpoint of a given ``model_type``.

One lookup, ``ADAPTERS`` (config.json ``model_type`` → adapter class), holds the family
files: the families that differ from the common layout somewhere (tiles, padding images,
cross-attention, deepstack). Every other image-text-to-text model type of the installed
transformers falls back to the structural adapter (``FamilyAdapter`` itself), which
finds the stages in the module tree; a model that does not follow the common layout is
refused with the part that was not found, before its weights load.
"""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

from pytest_medprobe.models.aya_vision import AyaVisionAdapter
from pytest_medprobe.models.base import FamilyAdapter
from pytest_medprobe.models.gemma3n import Gemma3nAdapter
from pytest_medprobe.models.gemma4 import Gemma4Adapter
from pytest_medprobe.models.glm4v import Glm4vAdapter
from pytest_medprobe.models.idefics3 import Idefics3Adapter
from pytest_medprobe.models.internvl import InternVLAdapter
from pytest_medprobe.models.lfm2_vl import Lfm2VlAdapter
from pytest_medprobe.models.llava_next import LlavaNextAdapter
from pytest_medprobe.models.llava_onevision import LlavaOnevisionAdapter
from pytest_medprobe.models.mistral3 import Mistral3Adapter
from pytest_medprobe.models.mllama import MllamaAdapter
from pytest_medprobe.models.qwen3_vl import Qwen3VLAdapter

FAMILY_FILES: tuple[type[FamilyAdapter], ...] = (
    LlavaNextAdapter,
    InternVLAdapter,
    Idefics3Adapter,
    MllamaAdapter,
    Qwen3VLAdapter,
    LlavaOnevisionAdapter,
    Mistral3Adapter,
    Lfm2VlAdapter,
    AyaVisionAdapter,
    Gemma4Adapter,
    Gemma3nAdapter,
    Glm4vAdapter,
)
# config.json model_type -> the adapter class of its family file
ADAPTERS: dict[str, type[FamilyAdapter]] = {
    model_type: adapter for adapter in FAMILY_FILES for model_type in adapter.model_types
}
# Model types audited end to end by our tests with no family file (tests/families).
STRUCTURAL_TESTED: tuple[str, ...] = ("llava", "paligemma", "gemma3", "qwen2_vl", "qwen2_5_vl", "qwen3_5")


def image_text_to_text_model_types() -> frozenset[str]:
    """Model types the installed transformers loads with ``AutoModelForImageTextToText``."""
    from transformers.models.auto.modeling_auto import MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES

    return frozenset(MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES)


def known_model_types() -> frozenset[str]:
    """Every model type the installed transformers has a config class for."""
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING_NAMES

    return frozenset(CONFIG_MAPPING_NAMES)


def adapter_class(model_type: str, remote_code: bool = False) -> type[FamilyAdapter] | None:
    """The adapter class of ``model_type``: its family file, else structural, else None.

    ``remote_code``: the checkpoint ships its own model class (auto_map) and the user
    trusts it; such a model is tried structurally whatever its model type.
    """
    if model_type in ADAPTERS:
        return ADAPTERS[model_type]
    if remote_code or model_type in image_text_to_text_model_types():
        return FamilyAdapter
    return None


def make_adapter(model_type: str, remote_code: bool = False) -> FamilyAdapter:
    """A fresh adapter for a model of ``model_type`` (a ``KeyError`` when none reads it)."""
    adapter = adapter_class(model_type, remote_code)
    if adapter is None:
        raise KeyError(model_type)
    return adapter(model_type)


def family_of(model_type: str) -> str:
    """The family name reports give a model type: its family file's, else the type itself."""
    adapter = ADAPTERS.get(model_type)
    return adapter.family if adapter is not None else model_type


def mapping_of(model_type: str) -> str:
    """How a model type is mapped, as ``pytest --medprobe-models`` lists it."""
    adapter = ADAPTERS.get(model_type)
    if adapter is None:
        return "structural"
    return f"family file {adapter.__module__}.{adapter.__qualname__}"


def map_checkpoint(directory: Path, config: dict[str, Any], model_type: str, remote_code: bool) -> str | None:
    """Map a checkpoint's module tree without its weights; return the layout, or None if it cannot be built.

    The model class is built on the meta device from ``config.json`` (no memory, no
    weights read). ``structural.UnmappableModelError`` names a part that is not there.
    When the skeleton itself cannot be built here (a package the family needs is not
    installed, remote code not trusted), the check is left to loading, which says why.
    """
    from pytest_medprobe.models.structural import skeleton

    try:
        from transformers import AutoConfig

        hf_config = AutoConfig.from_pretrained(directory, local_files_only=True, trust_remote_code=remote_code)
        model = skeleton(hf_config, remote_code)
    except Exception:  # noqa: BLE001 - loading reports the real cause with its own message
        return None
    adapter = make_adapter(model_type, remote_code)
    layout = adapter.layout(model)
    return layout.describe(len(adapter.vision_blocks(model)), len(adapter.decoder_layers(model)))


def tested_model_types() -> list[str]:
    """The model types our tests audit end to end: the family files' and the structural ones."""
    return sorted(set(ADAPTERS) | set(STRUCTURAL_TESTED))


def families_listing() -> list[str]:
    """The lines of ``pytest --medprobe-models`` that list the supported families."""
    lines = ["model families (config.json model_type; how its stages are found):"]
    for model_type in tested_model_types():
        lines.append(f"  {model_type:<20} {mapping_of(model_type)}")
    others = sorted(image_text_to_text_model_types() - set(ADAPTERS) - set(STRUCTURAL_TESTED))
    text = (
        "and every other image-text-to-text model type of the installed transformers, tried "
        "structurally (untested here; refused, naming the part not found, where the layout "
        f"differs): {', '.join(others)}"
    )
    return lines + textwrap.wrap(text, width=100, initial_indent="  ", subsequent_indent="    ")
