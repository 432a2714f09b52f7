"""Model names a user may pass to ``--model``, and the adapters of supported families.

A spec is a built-in name (a model we build or ship), a catalogue name (a medical
MLLM looked up in the local Hugging Face cache, and downloaded into it when missing and
the machine is online), ``NAME=DIR`` (a name with
its weights in a directory), or a checkpoint directory saved with ``save_pretrained``,
whose family is read from its ``config.json``. Resolving a spec reads files only
(checking one may download a catalogue model); weights load later, and only when the
feature cache cannot answer.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from pytest_medprobe.errors import MedprobeUsageError, ModelLoadError
from pytest_medprobe.models.base import ModelSource
from pytest_medprobe.models.builtin import BUILTIN_MODELS, materialize_builtin
from pytest_medprobe.models.catalogue import (
    CATALOGUE,
    CATALOGUE_BY_NAME,
    CUSTOM_CODE_MODEL_TYPES,
    LETTER_LOGITS,
    CatalogueEntry,
)
from pytest_medprobe.models.families import (
    adapter_class,
    families_listing,
    family_of,
    known_model_types,
    map_checkpoint,
    tested_model_types,
)
from pytest_medprobe.models.hub import cached_snapshot, download_snapshot, hf_cache_dir, hub_offline
from pytest_medprobe.models.identity import WEIGHT_SUFFIXES, checkpoint_fingerprint
from pytest_medprobe.naming import mention, mention_full


def known_models_text() -> str:
    builtin = ", ".join(sorted(BUILTIN_MODELS))
    named = ", ".join(entry.name for entry in CATALOGUE if entry.medical)
    return (
        f"built-in names: {builtin}; medical models (from the local Hugging Face cache): {named}, "
        "and general baselines; "
        "or NAME=DIR, or a checkpoint directory saved with save_pretrained "
        "(pytest --medprobe-models lists them all)"
    )


def models_listing() -> str:
    """What ``pytest --medprobe-models`` prints: every name ``--model`` accepts."""
    lines = ["built-in models (no download needed):"]
    for name in sorted(BUILTIN_MODELS):
        lines.append(f"  {name:<34} {BUILTIN_MODELS[name].description}")
    cache = hf_cache_dir()
    for medical, title in ((True, "medical MLLMs"), (False, "general baselines")):
        lines.append("")
        lines.append(f"{title} (looked up in the Hugging Face cache {cache}; downloaded on first use when online):")
        lines.append(f"  {'name':<34} {'family':<12} {'bf16 GB':>7}  {'local?':<7} {'answer':<13} hub id; notes")
        for entry in CATALOGUE:
            if entry.medical != medical:
                continue
            available = "yes" if cached_snapshot(entry) is not None else "no"
            lines.append(
                f"  {entry.name:<34} {entry.model_type:<12} {entry.bfloat16_gb:>7.1f}  {available:<7} "
                f"{entry.answer_mode:<13} {entry.hub_id}; {entry.notes}"
            )
    lines += [
        "",
        "Also accepted: NAME=DIR (a name with its weights in a directory) and DIR (a checkpoint",
        "directory; its family is read from config.json).",
        "bf16 GB is the weights alone in bfloat16; a batch's activations come on top.",
        f"answer is how the model's own answer is read unless {mention('answer_mode')} says otherwise.",
        "",
        *families_listing(),
    ]
    return "\n".join(lines)


@dataclass(frozen=True)
class ModelSpec:
    """A ``--model`` value taken apart: a name, a directory, or a name with a directory."""

    spec: str
    name: str | None  # built-in or catalogue name, or the label of NAME=DIR
    directory: Path | None  # given by the user (DIR or NAME=DIR)


def parse_model_spec(spec: str) -> ModelSpec:
    if spec in BUILTIN_MODELS or spec in CATALOGUE_BY_NAME:
        return ModelSpec(spec, spec, None)
    name, separator, directory = spec.partition("=")
    # A directory whose own name holds '=' is still a directory.
    if separator and name and directory and not Path(spec).expanduser().is_dir():
        return ModelSpec(spec, name, Path(directory).expanduser())
    return ModelSpec(spec, None, Path(spec).expanduser())


def preferred_answer_mode(spec: str) -> str:
    """The answer mode that suits the model: its catalogue entry's, else the letter logits."""
    entry = CATALOGUE_BY_NAME.get(parse_model_spec(spec).name or "")
    return entry.answer_mode if entry is not None else LETTER_LOGITS


def _not_cached_message(entry: CatalogueEntry) -> str:
    why = "HF_HUB_OFFLINE or TRANSFORMERS_OFFLINE is set" if hub_offline() else f"{mention('offline')} was given"
    return (
        f"{mention('model')} {entry.name!r}: the weights of {entry.hub_id} are not in the local Hugging Face "
        f"cache (looked in {hf_cache_dir()}; set HF_HOME or HF_HUB_CACHE if yours lives elsewhere), "
        f"and downloading is off ({why}). Go online, or on a machine with internet run "
        f"`hf download {entry.hub_id}` (older huggingface_hub: `huggingface-cli download "
        f"{entry.hub_id}`) and copy the cache here, or pass the checkpoint folder as "
        f"{mention('model')} {entry.name}=/path/to/checkpoint."
    )


def _announce(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def check_model_spec(
    spec: str,
    trust_remote_code: bool = False,
    offline: bool = True,
    announce: Callable[[str], None] = _announce,
) -> None:
    """Up-front check of a ``--model`` value; raises ``MedprobeUsageError``.

    A catalogue model missing from the local Hugging Face cache is downloaded into it
    unless ``offline`` (or the hub client's own offline mode) says not to; ``announce``
    prints what is about to be fetched and how large it is.
    """
    parsed = parse_model_spec(spec)
    if parsed.name in BUILTIN_MODELS and parsed.directory is None:
        return
    if parsed.directory is None:  # a catalogue name
        named = CATALOGUE_BY_NAME[spec]
        _check_family_supported(named)
        directory = cached_snapshot(named)
        if directory is None:
            if offline or hub_offline():
                raise MedprobeUsageError(_not_cached_message(named))
            directory = download_snapshot(named, hf_cache_dir(), announce)
        _check_checkpoint(directory, spec, trust_remote_code, usage=True, entry=named)
        return
    path = parsed.directory
    if path.is_dir():
        entry = CATALOGUE_BY_NAME.get(parsed.name or "")
        _check_checkpoint(path, spec, trust_remote_code, usage=True, entry=entry)
        return
    if path.exists():
        raise MedprobeUsageError(
            f"{mention('model')} {spec!r}: {path} is a file, not a checkpoint directory; pass the folder "
            "that holds config.json and the weights."
        )
    raise MedprobeUsageError(
        f"{mention('model')} {spec!r}: no such model name and no directory at {path.resolve()}; {known_models_text()}."
    )


def _check_family_supported(entry: CatalogueEntry) -> None:
    """Refuse a catalogue model whose family no adapter reads, before anything is downloaded."""
    if adapter_class(entry.model_type) is not None:
        return
    advice = CUSTOM_CODE_MODEL_TYPES.get(entry.model_type)
    raise MedprobeUsageError(
        f"{mention('model')} {entry.name!r}: {entry.hub_id} is a {entry.model_type} model, a family this version "
        f"of pytest-medprobe cannot audit{': ' + advice if advice else ''}. Supported model types: "
        f"{', '.join(tested_model_types())} and the other image-text-to-text families of transformers."
    )


def check_distinct_names(specs: tuple[str, ...]) -> None:
    """Refuse two ``--model`` values of one run with one name (``MedprobeUsageError``).

    The name is the model's release line in baselines: two models under one name would
    write one baseline entry, the second silently replacing the first.
    """
    seen: dict[str, str] = {}
    for spec in specs:
        name = parse_model_spec(spec).name
        if name is None:
            continue
        if name in seen:
            raise MedprobeUsageError(
                f"{mention('model')} {seen[name]!r} and {mention('model')} {spec!r} share the name "
                f"{name!r}, which is one "
                "release line in baselines (one entry, the second would replace the first); give each model "
                "its own name: NAME=DIR."
            )
        seen[name] = spec


def _check_checkpoint(
    directory: Path, spec: str, trust_remote_code: bool, usage: bool, entry: CatalogueEntry | None = None
) -> str:
    """The checkpoint's model_type, once it is known that an adapter can read it."""
    error: type[Exception] = MedprobeUsageError if usage else ModelLoadError
    config = _read_config(directory, spec, error)
    model_type = config.get("model_type")
    if not isinstance(model_type, str):
        raise error(
            f"{mention('model')} {spec!r}: {directory / 'config.json'} has no 'model_type'; re-save the "
            "checkpoint with save_pretrained."
        )
    if "auto_map" in config and not trust_remote_code:
        raise error(
            f"{mention('model')} {spec!r}: the checkpoint in {directory} ships its own Python code (an auto_map "
            "in config.json), which pytest-medprobe never runs on its own, since it would execute "
            f"with your permissions. If you trust it, pass "
            f"{mention_full('trust_remote_code')}; the report will say so."
        )
    remote_code = "auto_map" in config and trust_remote_code
    if adapter_class(model_type, remote_code) is None:
        raise error(f"{mention('model')} {spec!r}: {_unsupported(model_type, directory)}")
    if entry is not None and family_of(model_type) != family_of(entry.model_type):
        raise error(
            f"{mention('model')} {spec!r}: {entry.name} is a {entry.model_type} model ({entry.hub_id}), but "
            f"{directory} holds a {model_type} checkpoint; pass the right folder, or name it "
            f"differently (another-name={directory}) if it is a different model."
        )
    if usage:  # map the module tree now, so an unmappable model is refused before it loads
        try:
            map_checkpoint(directory, config, model_type, remote_code)
        except ModelLoadError as exc:  # unmappable, or a registered adapter naming a path the model lacks
            raise error(f"{mention('model')} {spec!r}: {exc}") from None
    from pytest_medprobe.models.weights import damaged_weights_message, weight_file_problem

    problems = {
        path.name: problem
        for path in sorted(directory.iterdir())
        if path.name.endswith(WEIGHT_SUFFIXES) and (problem := weight_file_problem(path)) is not None
    }
    if problems:
        raise error(damaged_weights_message(spec, directory, problems))
    return model_type


def _unsupported(model_type: str, directory: Path) -> str:
    """Why a model type cannot be audited, and what to do."""
    import transformers

    where = f"model_type {model_type!r} (in {directory / 'config.json'}) is not supported"
    supported = (
        "Supported model types: every image-text-to-text family of the installed transformers that "
        f"follows the common layout; audited by our tests: {', '.join(tested_model_types())} "
        "(pytest --medprobe-models lists them all)."
    )
    advice = CUSTOM_CODE_MODEL_TYPES.get(model_type)
    if advice is not None:
        return f"{where}: {advice}. {supported}"
    if model_type not in known_model_types():
        return (
            f"{where}: the installed transformers {transformers.__version__} does not know it. Upgrade "
            "transformers (pip install -U transformers) if the model is newer than it, or check that "
            f"config.json is the model's own. {supported}"
        )
    return (
        f"{where}: it is not an image-text-to-text model in transformers {transformers.__version__} "
        f"(no AutoModelForImageTextToText class), so it has no image pathway to audit. {supported}"
    )


def _read_config(directory: Path, spec: str, error: type[Exception]) -> dict[str, object]:
    config_path = directory / "config.json"
    if not config_path.is_file():
        raise error(
            f"{mention('model')} {spec!r}: no config.json in {directory.resolve()}; a checkpoint directory is "
            "what save_pretrained writes (config.json, weights, processor files)."
        )
    try:
        config = json.loads(config_path.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise error(
            f"{mention('model')} {spec!r}: {config_path} is not valid JSON ({exc}); re-save the checkpoint."
        ) from None
    if not isinstance(config, dict):
        raise error(f"{mention('model')} {spec!r}: {config_path} is not a transformers config; re-save the checkpoint.")
    return config


def resolve_model_source(spec: str, cache_dir: Path, trust_remote_code: bool = False) -> ModelSource:
    """Turn a ``--model`` value into a checkpoint directory, building a built-in one if needed."""
    parsed = parse_model_spec(spec)
    entry = CATALOGUE_BY_NAME.get(parsed.name or "")
    if parsed.name in BUILTIN_MODELS and parsed.directory is None:
        directory = materialize_builtin(BUILTIN_MODELS[spec], cache_dir)
    elif parsed.directory is None and entry is not None:
        _check_family_supported(entry)
        snapshot = cached_snapshot(entry)
        if snapshot is None:
            raise ModelLoadError(_not_cached_message(entry))
        directory = snapshot
    else:
        directory = parsed.directory.resolve()  # type: ignore[union-attr]
    model_type = _check_checkpoint(directory, spec, trust_remote_code, usage=False, entry=entry)
    weights = [p for p in directory.iterdir() if p.name.endswith(WEIGHT_SUFFIXES)]
    if not weights:
        raise ModelLoadError(
            f"{mention('model')} {spec!r}: no weight files (*.safetensors, *.bin) in {directory}; copy the "
            "complete checkpoint, or save it again with save_pretrained."
        )
    return ModelSource(
        name=spec,
        directory=directory,
        family=family_of(model_type),
        model_type=model_type,
        fingerprint=checkpoint_fingerprint(directory, memo_dir=cache_dir),
    )


def model_short_name(spec: str) -> str:
    """A short name for test ids: the model's name, or the directory's base name."""
    parsed = parse_model_spec(spec)
    if parsed.name is not None:
        return parsed.name
    return parsed.directory.name or spec  # type: ignore[union-attr]
