"""Model names a user may pass to ``--model``, and the adapters of supported families.

A spec is a built-in name (a model we build locally), or a checkpoint directory saved
with ``save_pretrained``. Resolving a spec reads files only; weights load later, and
only when the feature cache cannot answer.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from pytest_medprobe.errors import MedprobeUsageError, ModelLoadError
from pytest_medprobe.models.base import FamilyAdapter, ModelSource
from pytest_medprobe.models.llava import LlavaAdapter

ADAPTERS: dict[str, type[FamilyAdapter]] = {
    model_type: adapter for adapter in (LlavaAdapter,) for model_type in adapter.model_types
}

WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth")
# Small files whose content is part of a checkpoint's identity: they decide the
# prompt (chat template), the tokens and the preprocessing.
IDENTITY_FILES = (
    "config.json",
    "generation_config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "processor_config.json",
    "preprocessor_config.json",
    "chat_template.jinja",
    "chat_template.json",
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
    return models


BUILTIN_MODELS: dict[str, BuiltinModel] = _builtin_models()


def known_models_text() -> str:
    names = ", ".join(sorted(BUILTIN_MODELS))
    return f"known names: {names}; or a checkpoint directory saved with save_pretrained"


def check_model_spec(spec: str) -> None:
    """Cheap up-front check of a ``--model`` value; raises ``MedprobeUsageError``."""
    if spec in BUILTIN_MODELS:
        return
    path = Path(spec).expanduser()
    if path.is_dir():
        _read_model_type(path, usage=True)
        return
    if path.exists():
        raise MedprobeUsageError(
            f"--model {spec!r}: {path} is a file, not a checkpoint directory; pass the folder "
            "that holds config.json and the weights."
        )
    raise MedprobeUsageError(
        f"--model {spec!r}: no such model name and no directory at {path.resolve()}; {known_models_text()}."
    )


def _read_model_type(directory: Path, usage: bool) -> str:
    error: type[Exception] = MedprobeUsageError if usage else ModelLoadError
    config_path = directory / "config.json"
    if not config_path.is_file():
        raise error(
            f"--model {str(directory)!r}: no config.json in {directory.resolve()}; a checkpoint "
            "directory is what save_pretrained writes (config.json, weights, processor files)."
        )
    try:
        model_type = json.loads(config_path.read_text(encoding="utf-8"))["model_type"]
    except (ValueError, KeyError, TypeError) as exc:
        raise error(
            f"--model {str(directory)!r}: {config_path} is not a transformers config with a "
            f"'model_type' ({exc}); re-save the checkpoint with save_pretrained."
        ) from None
    if model_type not in ADAPTERS:
        raise error(
            f"--model {str(directory)!r}: model_type {model_type!r} is not supported; supported: "
            f"{', '.join(sorted(ADAPTERS))}."
        )
    return str(model_type)


def checkpoint_fingerprint(directory: Path) -> str:
    """Identity of a checkpoint: its small files' content, its weight files' names, sizes, times.

    The path itself is left out on purpose: the same files under another path are the
    same model. Weight files are identified by size and modification time rather than
    hashed, since hashing tens of GB on every run would cost more than it protects.
    """
    digest = hashlib.sha256()
    for name in IDENTITY_FILES:
        path = directory / name
        if path.is_file():
            digest.update(name.encode() + b"\0" + path.read_bytes() + b"\0")
    for path in sorted(directory.iterdir()):
        if path.is_file() and path.name.endswith(WEIGHT_SUFFIXES):
            stat = path.stat()
            digest.update(f"{path.name}\0{stat.st_size}\0{stat.st_mtime_ns}\0".encode())
    return digest.hexdigest()


def _materialize_builtin(builtin: BuiltinModel, cache_dir: Path) -> Path:
    """The checkpoint directory of a built-in model, built or derived once per cache."""
    # Names may hold ':' (variants); the folder name must not.
    directory = cache_dir / "models" / builtin.name.replace(":", "-")
    if not builtin.writes_cache:
        return builtin.locate(directory)
    if (directory / "config.json").is_file():
        return directory
    from filelock import FileLock

    directory.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(directory) + ".lock"):  # two processes build it once
        if not (directory / "config.json").is_file():
            builtin.locate(directory)
    return directory


def resolve_model_source(spec: str, cache_dir: Path) -> ModelSource:
    """Turn a ``--model`` value into a checkpoint directory, building a built-in one if needed."""
    if spec in BUILTIN_MODELS:
        directory = _materialize_builtin(BUILTIN_MODELS[spec], cache_dir)
    else:
        directory = Path(spec).expanduser().resolve()
    model_type = _read_model_type(directory, usage=False)
    weights = [p for p in directory.iterdir() if p.name.endswith(WEIGHT_SUFFIXES)]
    if not weights:
        raise ModelLoadError(
            f"--model {spec!r}: no weight files (*.safetensors, *.bin) in {directory}; copy the "
            "complete checkpoint, or save it again with save_pretrained."
        )
    return ModelSource(
        name=spec,
        directory=directory,
        family=ADAPTERS[model_type].family,
        model_type=model_type,
        fingerprint=checkpoint_fingerprint(directory),
    )


def model_short_name(spec: str) -> str:
    """A short name for test ids: the built-in name or the directory's base name."""
    return spec if spec in BUILTIN_MODELS else Path(spec).expanduser().name or spec
