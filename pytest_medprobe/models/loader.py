"""Loading a resolved checkpoint directory: model, processor, device and dtype.

Everything loads with ``local_files_only=True``: the tool never reaches the network,
and ``trust_remote_code`` stays off.
"""

from __future__ import annotations

import pickle
import warnings
from typing import TYPE_CHECKING

from pytest_medprobe.errors import ModelLoadError
from pytest_medprobe.models.base import LoadedModel, ModelSource
from pytest_medprobe.models.families import make_adapter
from pytest_medprobe.naming import mention, mention_full

if TYPE_CHECKING:
    import torch


def resolve_device(device: str) -> torch.device:
    """The device inputs go to; with a device map, the first GPU (where the embeddings live)."""
    import torch

    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") or device == "balanced":
        if not torch.cuda.is_available():
            raise ModelLoadError(
                f"{mention('device')} {device}: CUDA is not available on this machine; use "
                f"{mention('device')} cpu or auto."
            )
        if device == "balanced":
            return torch.device("cuda")
    return torch.device(device)


def device_map_for(device: str) -> str | None:
    """accelerate's placement when the model is spread over several GPUs, else None.

    ``balanced`` asks for it; ``auto`` takes it whenever more than one GPU is visible,
    since a 32B model does not fit one 48 GB card. Hooks pool on whichever GPU a layer
    lands on, so extraction does not care where each layer lives.
    """
    import torch

    if device == "balanced" or (device == "auto" and torch.cuda.is_available() and torch.cuda.device_count() > 1):
        try:
            import accelerate  # noqa: F401
        except ImportError:
            raise ModelLoadError(
                f"{mention('device')} {device}: spreading a model over several GPUs needs accelerate; "
                f"pip install accelerate, or pick one GPU with {mention('device')} cuda:<index>."
            ) from None
        return "balanced"
    return None


def resolve_dtype(dtype: str, device: torch.device) -> torch.dtype:
    import torch

    if dtype == "auto":
        # bfloat16 halves memory on GPUs without float16's overflow risk; CPUs are
        # fastest and exact in float32.
        if device.type == "cuda" and torch.cuda.is_bf16_supported():
            return torch.bfloat16
        return torch.float32
    return {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[dtype]


def _unloadable_weights_message(source: ModelSource, exc: BaseException) -> str:
    first_line = (str(exc).strip().splitlines() or [type(exc).__name__])[-1][:300]
    if "mismatch" in str(exc):
        return (
            f"{mention('model')} {source.name!r}: {source.directory / 'config.json'} disagrees with the "
            "weights' shapes "
            f"({first_line}); the config was edited or belongs to another checkpoint. Re-download the "
            "checkpoint, or save config and weights together with save_pretrained."
        )
    from pytest_medprobe.models.identity import WEIGHT_SUFFIXES

    weights = ", ".join(sorted(p.name for p in source.directory.iterdir() if p.name.endswith(WEIGHT_SUFFIXES)))
    return (
        f"{mention('model')} {source.name!r}: the weight files in {source.directory} ({weights}) cannot be read "
        f"({type(exc).__name__}: {first_line}); they are damaged or incomplete. Re-download the checkpoint "
        "(never load a file of unknown origin with weights_only=False)."
    )


def load_model(
    source: ModelSource, device: str = "auto", dtype: str = "auto", trust_remote_code: bool = False
) -> LoadedModel:
    """Load model and processor of ``source`` offline, in eval mode, on the chosen device.

    ``trust_remote_code`` lets transformers import Python files shipped in the checkpoint;
    it is off unless the user asks for it, and the reports say when it was on.
    Long because each way loading fails (a truncated file, mismatched shapes, remote code
    not allowed, no tokenizer) gets its own message, in the order transformers meets them.
    """
    from safetensors import SafetensorError
    from transformers import AutoModelForImageTextToText, AutoProcessor
    from transformers.utils import logging as hf_logging

    torch_device = resolve_device(device)
    torch_dtype = resolve_dtype(dtype, torch_device)
    device_map = device_map_for(device)
    placement = {} if device_map is None else {"device_map": device_map}
    progress_was_enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()  # our own progress bar covers the long part
    try:
        with warnings.catch_warnings():
            # Processors of some families announce slow/fast image-processor fallbacks.
            warnings.filterwarnings("ignore", category=UserWarning, module="transformers")
            processor = AutoProcessor.from_pretrained(
                source.directory, local_files_only=True, trust_remote_code=trust_remote_code
            )
            model = AutoModelForImageTextToText.from_pretrained(
                source.directory,
                local_files_only=True,
                dtype=torch_dtype,
                trust_remote_code=trust_remote_code,
                **placement,
            )
    except (RuntimeError, pickle.UnpicklingError, EOFError, SafetensorError) as exc:
        # What damaged weights or a config that disagrees with them raise inside transformers,
        # torch and safetensors; the up-front check (models.weights) catches most before this.
        if "out of memory" in str(exc).lower():  # torch.OutOfMemoryError is a RuntimeError: not damage
            raise
        raise ModelLoadError(_unloadable_weights_message(source, exc)) from None
    except ImportError as exc:
        raise ModelLoadError(
            f"{mention('model')} {source.name!r}: loading the {source.model_type} checkpoint in {source.directory} "
            f"needs a package that is not installed: {exc}. Install it (pip install "
            "'pytest-medprobe[models]' brings what the supported families need)."
        ) from exc
    except (OSError, ValueError, KeyError) as exc:
        if "trust_remote_code" in str(exc):
            raise ModelLoadError(
                f"{mention('model')} {source.name!r}: the checkpoint in {source.directory} ships its own Python code "
                f"(an auto_map in its config files), which pytest-medprobe never runs on its own. If you "
                f"trust it, pass {mention_full('trust_remote_code')}; the report will say so."
            ) from exc
        raise ModelLoadError(
            f"{mention('model')} {source.name!r}: could not load the checkpoint in {source.directory}: {exc}. "
            "Check that the directory holds the complete checkpoint (weights and processor files)."
        ) from exc
    finally:
        if progress_was_enabled:
            hf_logging.enable_progress_bar()
    if device_map is None:
        model = model.to(torch_device)  # type: ignore[arg-type]
    else:  # inputs go where the embeddings are
        torch_device = model.get_input_embeddings().weight.device  # type: ignore[union-attr,operator,assignment]
    model = model.eval()
    tokenizer = getattr(processor, "tokenizer", None)
    if tokenizer is None:
        raise ModelLoadError(
            f"{mention('model')} {source.name!r}: the processor in {source.directory} has no tokenizer; "
            "save the processor together with the model (processor.save_pretrained(DIR))."
        )
    # Left padding puts every prompt's last token in the last column, which is where
    # the answer is read.
    tokenizer.padding_side = "left"
    return LoadedModel(
        source=source,
        model=model,
        processor=processor,
        adapter=make_adapter(source.model_type, remote_code=trust_remote_code),
        device=torch_device,
        dtype=torch_dtype,
    )
