"""The built-in models: those that ship with the package or are built locally on first use.

The reference model ``medprobe-tiny`` (shipped), its planted-fault variants (derived from
it once per cache) and a random-init ``tiny-llava`` (built once per cache). A built model's
folder is named by the content of its recipe (the shipped weights, the source that builds
it, the torch and transformers versions), so a cache built by an older release is never
served for a variant whose recipe has changed since.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from importlib import metadata
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent.parent
# Every file whose content decides what a built model holds: the shipped reference weights
# and the modules that derive or build the others from them.
RECIPE_SOURCES = (
    "zoo/__init__.py",
    "zoo/faults.py",
    "zoo/wide.py",
    "zoo/medprobe-tiny",
    "models/tiny_llava.py",
)


@dataclass(frozen=True)
class BuiltinModel:
    """A model that ships with the package or is built locally on first use."""

    name: str
    description: str
    # Given a folder in the cache that it may fill, return the checkpoint directory.
    locate: Callable[[Path], Path]
    writes_cache: bool = True  # False when the checkpoint ships inside the package


def _build_tiny_llava(directory: Path) -> Path:
    from pytest_medprobe.models.tiny_llava import build_tiny_llava

    return build_tiny_llava(directory)


def _shipped_reference(directory: Path) -> Path:
    from pytest_medprobe.zoo import SHIPPED_DIR

    return SHIPPED_DIR


def _fault_variant(fault: str) -> Callable[[Path], Path]:
    def materialize(directory: Path) -> Path:
        from pytest_medprobe.zoo import export

        return export(directory, fault)

    return materialize


def _wide_variant(variant: str | None) -> Callable[[Path], Path]:
    def materialize(directory: Path) -> Path:
        from pytest_medprobe.zoo.wide import export_wide

        return export_wide(directory, variant)

    return materialize


def _builtin_models() -> dict[str, BuiltinModel]:
    from pytest_medprobe.zoo import REFERENCE_NAME
    from pytest_medprobe.zoo.faults import FAULTS

    models = {
        REFERENCE_NAME: BuiltinModel(
            REFERENCE_NAME,
            "the reference model: a tiny LLaVA trained on synthetic-lesions, shipped in the package",
            _shipped_reference,
            writes_cache=False,
        ),
        "tiny-llava": BuiltinModel(
            "tiny-llava",
            "random-init tiny LLaVA (CLIP 3 blocks, Llama 4 layers, hidden 64), built locally",
            _build_tiny_llava,
        ),
    }
    for fault, (_, description, _mode) in FAULTS.items():
        name = f"{REFERENCE_NAME}:{fault}"
        models[name] = BuiltinModel(
            name, f"{REFERENCE_NAME} with a planted fault: {description}", _fault_variant(fault)
        )
    from pytest_medprobe.zoo.wide import WIDE_NAME, WIDE_VARIANTS

    models[WIDE_NAME] = BuiltinModel(
        WIDE_NAME,
        f"{REFERENCE_NAME} with its decoder widened exactly to 256 (vision 64 → text 256)",
        _wide_variant(None),
    )
    for variant, (_, description) in WIDE_VARIANTS.items():
        name = f"{WIDE_NAME}:{variant}"
        models[name] = BuiltinModel(name, f"{WIDE_NAME} with {description}", _wide_variant(variant))
    return models


BUILTIN_MODELS: dict[str, BuiltinModel] = _builtin_models()


@cache
def recipe_digest() -> str:
    """A short sha256 of everything that decides the content of a built model.

    Hashing the 1.2 MB of shipped weights and a few sources takes milliseconds, once per process.
    """
    digest = hashlib.sha256()
    for relative in RECIPE_SOURCES:
        path = PACKAGE_DIR / relative
        files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
        for file in files:
            digest.update(file.relative_to(PACKAGE_DIR).as_posix().encode() + b"\0")
            digest.update(hashlib.sha256(file.read_bytes()).digest())
    for distribution in ("torch", "transformers"):  # random init and the saved format
        digest.update(f"{distribution}=={metadata.version(distribution)}\0".encode())
    return digest.hexdigest()[:16]


def materialize_builtin(builtin: BuiltinModel, cache_dir: Path) -> Path:
    """The checkpoint directory of a built-in model, built or derived once per cache and recipe."""
    # Names may hold ':' (variants); the folder name must not.
    directory = cache_dir / "models" / f"{builtin.name.replace(':', '-')}-{recipe_digest()}"
    if not builtin.writes_cache:
        return builtin.locate(directory)
    if (directory / "config.json").is_file():
        return directory
    from pytest_medprobe.locks import held

    with held(Path(str(directory) + ".lock")):  # two processes build it once
        if not (directory / "config.json").is_file():
            builtin.locate(directory)
    return directory
