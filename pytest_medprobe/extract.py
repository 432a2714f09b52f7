"""Single-pass extraction: one forward pass per batch gives every stage and the answer.

Forward hooks pool each stage on the device where its layer runs (float32 sums), so
only one small vector per image and stage leaves the device; full token sequences are
never kept beyond the batch. The model's answer is read from the option-letter logits
at the answer position of the same pass (metrics.md §4).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from pytest_medprobe import stages
from pytest_medprobe.errors import ExtractionError
from pytest_medprobe.prompts import chat_prompt, closed_question, letter_token_ids, option_letters

if TYPE_CHECKING:
    import torch

    from pytest_medprobe.data.base import ProbeDataset
    from pytest_medprobe.models.base import LoadedModel


@dataclass
class SplitFeatures:
    """Pooled features of one split."""

    stages: dict[str, np.ndarray]  # stage -> [n, d] float32
    answers: np.ndarray  # [n] int64: index of the option the model chose
    letter_logits: np.ndarray  # [n, K] float32: each option letter's logit at the answer position


@dataclass
class FeatureBank:
    """Everything extraction produces for one model × dataset pair."""

    stage_names: tuple[str, ...]
    has_image_view: bool
    fit: SplitFeatures
    test: SplitFeatures


@dataclass
class _BatchState:
    """What the hooks need about the current batch, and what they pooled from it."""

    image_mask: torch.Tensor | None = None  # [B, S] bool: image-token positions
    answer_index: torch.Tensor | None = None  # [B] long: the answer position per row
    pooled: dict[str, torch.Tensor] = field(default_factory=dict)  # stage -> [B, d] float32


def _first_tensor(output: Any) -> torch.Tensor:
    """Layer outputs are a tensor or a tuple whose first item is the hidden states."""
    return output[0] if isinstance(output, tuple) else output  # type: ignore[no-any-return]


def _mean_tokens(hidden: torch.Tensor, skip: int = 0) -> torch.Tensor:
    """[N, T, D] -> [N, D] float32 mean over tokens ``skip:``."""
    return hidden[:, skip:, :].float().mean(dim=1)


@contextmanager
def stage_hooks(loaded: LoadedModel, state: _BatchState) -> Iterator[None]:
    """Attach the pooling hooks of every stage; remove them whatever happens."""
    adapter, model = loaded.adapter, loaded.model
    prefix = adapter.vision_prefix_tokens(model)
    handles = []

    def vision_block_hook(name: str) -> Any:
        def hook(module: Any, args: Any, output: Any) -> None:
            state.pooled[name] = _mean_tokens(_first_tensor(output), prefix)

        return hook

    def connector_input_hook(module: Any, args: Any) -> None:
        state.pooled[stages.VISION] = _mean_tokens(args[0])

    def connector_output_hook(module: Any, args: Any, output: Any) -> None:
        state.pooled[stages.CONNECTOR] = _mean_tokens(_first_tensor(output))

    def decoder_hook(index: int) -> Any:
        def hook(module: Any, args: Any, output: Any) -> None:
            hidden = _first_tensor(output)  # [B, S, H]
            rows = np.arange(hidden.shape[0])
            answer_index = state.answer_index.to(hidden.device)  # type: ignore[union-attr]
            state.pooled[stages.llm_layer(index, "answer")] = hidden[rows, answer_index].float()
            if adapter.has_image_view:
                mask = state.image_mask.to(hidden.device).unsqueeze(1).float()  # type: ignore[union-attr]
                sums = mask.bmm(hidden.float()).squeeze(1)  # [B, H]
                state.pooled[stages.llm_layer(index, "image")] = sums / mask.sum(-1)

        return hook

    try:
        for index, block in enumerate(adapter.vision_blocks(model)):
            handles.append(block.register_forward_hook(vision_block_hook(stages.vision_block(index))))
        connector = adapter.connector(model)
        handles.append(connector.register_forward_pre_hook(connector_input_hook))
        handles.append(connector.register_forward_hook(connector_output_hook))
        layers = list(adapter.decoder_layers(model))
        final_norm = adapter.final_norm(model)
        if final_norm is not None:  # the last layer is read after the final norm (see FamilyAdapter)
            layers[-1] = final_norm
        for index, layer in enumerate(layers):
            handles.append(layer.register_forward_hook(decoder_hook(index)))
        yield
    finally:
        for handle in handles:
            handle.remove()


def _answer_positions(attention_mask: torch.Tensor) -> torch.Tensor:
    """Index of the last attended position per row (the last column under left padding)."""
    import torch

    positions = torch.arange(attention_mask.shape[1], device=attention_mask.device)
    return (attention_mask.long() * positions).argmax(dim=1)


def extract_split(
    loaded: LoadedModel,
    images: Sequence[np.ndarray],
    question: str,
    n_classes: int,
    batch_size: int,
    description: str = "extracting",
    progress: bool = True,
) -> SplitFeatures:
    """Run the model once over ``images`` and pool every stage."""
    import torch
    from tqdm.auto import tqdm

    stage_names = loaded.stage_names()
    prompt = chat_prompt(loaded.processor, question)
    tokenizer = loaded.processor.tokenizer
    candidates = letter_token_ids(tokenizer, option_letters(n_classes))
    image_token_id = loaded.adapter.image_token_id(loaded.model)
    state = _BatchState()
    collected: dict[str, list[np.ndarray]] = {name: [] for name in stage_names}
    letter_logits: list[np.ndarray] = []
    starts = range(0, len(images), batch_size)
    with torch.inference_mode(), stage_hooks(loaded, state):
        for start in tqdm(starts, desc=description, unit="batch", disable=not progress or None):
            # Copies: images read through PIL can be read-only arrays, which torch warns about.
            batch_images = [np.array(image, dtype=np.uint8) for image in images[start : start + batch_size]]
            inputs = loaded.processor(
                images=batch_images, text=[prompt] * len(batch_images), return_tensors="pt", padding=True
            ).to(loaded.device)
            if "pixel_values" in inputs and inputs["pixel_values"].is_floating_point():
                inputs["pixel_values"] = inputs["pixel_values"].to(loaded.dtype)
            state.pooled.clear()
            state.answer_index = _answer_positions(inputs["attention_mask"])
            if loaded.adapter.has_image_view:
                state.image_mask = inputs["input_ids"] == image_token_id
                if not bool(state.image_mask.any(dim=1).all()):
                    raise ExtractionError(
                        f"model {loaded.name!r}: no image tokens (id {image_token_id}) in the "
                        "prompt; the processor and the model config disagree on the image token."
                    )
            outputs = loaded.model(**inputs, logits_to_keep=1)
            last_logits = outputs.logits[:, -1, :].float()  # [B, vocab]: left padding
            per_letter = torch.stack([last_logits[:, ids].max(dim=1).values for ids in candidates], dim=1)  # [B, K]
            letter_logits.append(per_letter.cpu().numpy())
            for name in stage_names:
                if name not in state.pooled:
                    raise ExtractionError(
                        f"model {loaded.name!r}: stage {name} produced no output in the forward "
                        "pass; the family adapter does not match this model's layout."
                    )
                collected[name].append(state.pooled[name].cpu().numpy())
    logits = np.concatenate(letter_logits).astype(np.float32)
    return SplitFeatures(
        stages={name: np.concatenate(parts).astype(np.float32) for name, parts in collected.items()},
        answers=logits.argmax(axis=1).astype(np.int64),
        letter_logits=logits,
    )


def extract_features(loaded: LoadedModel, dataset: ProbeDataset, batch_size: int, progress: bool = True) -> FeatureBank:
    """Extract both splits of ``dataset`` (fit, then test)."""
    question = closed_question(dataset.class_names, dataset.modality)
    splits = {}
    for split, images in (("fit", dataset.fit_images), ("test", dataset.test_images)):
        splits[split] = extract_split(
            loaded,
            images,
            question,
            dataset.n_classes,
            batch_size,
            description=f"{loaded.name} × {dataset.name} [{split}]",
            progress=progress,
        )
    return FeatureBank(
        stage_names=loaded.stage_names(),
        has_image_view=loaded.adapter.has_image_view,
        fit=splits["fit"],
        test=splits["test"],
    )
