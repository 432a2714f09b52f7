"""The family registry: which adapter reads a checkpoint of a given ``model_type``.

One lookup, ``ADAPTERS`` (config.json ``model_type`` → adapter class), holds the family
files: the families that differ from the common layout somewhere (tiles, padding images,
cross-attention, deepstack). Every other image-text-to-text model type of the installed
transformers falls back to the structural adapter (``FamilyAdapter`` itself), which
finds the stages in the module tree; a model that does not follow the common layout is
refused with the part that was not found, before its weights load.

In-house architectures join through ``register_family`` (public API) or, from an
installed package, the ``pytest_medprobe.families`` entry-point group, whose entries
name adapter classes; they are loaded the first time a model type has no family file.
"""

from __future__ import annotations

import functools
import textwrap
from pathlib import Path
from typing import Any

from pytest_medprobe.errors import MedprobeUsageError
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


ENTRY_POINT_GROUP = "pytest_medprobe.families"


def _qualified(adapter: object) -> str:
    return f"{getattr(adapter, '__module__', '?')}.{getattr(adapter, '__qualname__', repr(adapter))}"


def register_family(adapter: type[FamilyAdapter]) -> type[FamilyAdapter]:
    """Make ``adapter`` read the checkpoints whose config.json ``model_type`` it names.

    For an architecture of your own: subclass ``FamilyAdapter``, give it a ``family``
    name and its ``model_types``, name where its stages live where discovery would not
    find them, and register it, by calling this (it works as a class decorator too) or
    through the ``pytest_medprobe.families`` entry point of an installed package. A
    model type or family name pytest-medprobe already reads is refused
    (``MedprobeUsageError``, nothing registered); the same class again changes nothing.

    Example::

        @register_family
        class AcmeAdapter(FamilyAdapter):
            family = "acme"
            model_types = ("acme_vlm",)
            vision_block_paths = ("eye.encoder.layers",)
            handoff_path = "bridge"
            language_model_path = "brain"
    """
    _check_registrable(adapter)
    for model_type in adapter.model_types:
        ADAPTERS[model_type] = adapter
    return adapter


def _check_registrable(adapter: object) -> None:
    where = f"register_family({_qualified(adapter)})"
    if not (isinstance(adapter, type) and issubclass(adapter, FamilyAdapter)):
        raise MedprobeUsageError(
            f"{where}: not a subclass of pytest_medprobe.FamilyAdapter; register the adapter class itself."
        )
    if not adapter.family:
        raise MedprobeUsageError(f"{where}: names no family; set family = '<name>' (the reports show it).")
    if not adapter.model_types or not all(isinstance(name, str) and name for name in adapter.model_types):
        raise MedprobeUsageError(
            f"{where}: names no model_types; set model_types = ('<model_type of its config.json>',)."
        )
    for model_type in adapter.model_types:
        owner = ADAPTERS.get(model_type)
        if owner is not None and owner is not adapter:
            raise MedprobeUsageError(
                f"{where}: model_type {model_type!r}, which {_qualified(owner)} already reads, is taken; "
                "give your architecture a model_type of its own (in its config class and config.json), "
                "or drop the registration."
            )
        if owner is None and model_type in STRUCTURAL_TESTED:
            raise MedprobeUsageError(
                f"{where}: model_type {model_type!r}, which pytest-medprobe already maps structurally (and "
                "audits in its tests), is taken; give your architecture a model_type of its own."
            )
    taken = {other.family: other for other in ADAPTERS.values() if other is not adapter}
    if adapter.family in taken or adapter.family in STRUCTURAL_TESTED:
        owner_name = _qualified(taken[adapter.family]) if adapter.family in taken else "a structural family"
        raise MedprobeUsageError(
            f"{where}: the family name {adapter.family!r} is taken (by {owner_name}); choose another, "
            "so that reports tell the two apart."
        )


@functools.cache
def load_entry_point_families() -> tuple[str, ...]:
    """Register the adapters installed packages announce; the entry points loaded, once per process.

    An entry point that does not import, does not name an adapter class, or claims a name
    already taken is a ``MedprobeUsageError`` naming the entry point and its package.
    """
    from importlib.metadata import entry_points

    found = sorted(entry_points(group=ENTRY_POINT_GROUP), key=lambda entry: (entry.value, entry.name))
    for entry in found:
        dist = getattr(entry, "dist", None)
        package = f"{dist.name} {dist.version}" if dist is not None else "an installed package"
        where = f"the {ENTRY_POINT_GROUP} entry point {entry.name!r} of {package} ({entry.value})"
        try:
            adapter = entry.load()
        except Exception as exc:  # noqa: BLE001 - whatever the package raises, name it and the package
            cause = " ".join(f"{type(exc).__name__}: {exc}".split())
            raise MedprobeUsageError(
                f"{where} could not be loaded ({cause}); fix or reinstall that package, or uninstall it."
            ) from None
        try:
            register_family(adapter)
        except MedprobeUsageError as exc:
            raise MedprobeUsageError(f"{where}: {exc}") from None
    return tuple(entry.name for entry in found)


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
    if model_type not in ADAPTERS:  # perhaps an installed package's family
        load_entry_point_families()
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
    adapter.connector(model)  # a registered adapter's paths are taken as given: check they exist
    return layout.describe(len(adapter.vision_blocks(model)), len(adapter.decoder_layers(model)))


def tested_model_types() -> list[str]:
    """The model types our tests audit end to end: the family files' and the structural ones."""
    return sorted(set(ADAPTERS) | set(STRUCTURAL_TESTED))


def families_listing() -> list[str]:
    """The lines of ``pytest --medprobe-models`` that list the supported families."""
    load_entry_point_families()
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
