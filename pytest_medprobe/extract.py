"""Single-pass extraction: one forward pass per batch gives every stage and the answer.

Forward hooks pool each stage on the device where its layer runs (float32 sums), so
only one small vector per image and stage leaves the device; full token sequences are
never kept beyond the batch. The model's answer is read from the option-letter logits
at the answer position of the same pass (metrics.md §4).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from pytest_medprobe import stages
from pytest_medprobe.errors import ExtractionError
from pytest_medprobe.prompts import (
    chat_prompt,
    closed_question,
    letter_token_ids,
    option_letters,
    parse_generated_answer,
)

if TYPE_CHECKING:
    import torch

    from pytest_medprobe.data.base import ProbeDataset
    from pytest_medprobe.models.base import LoadedModel


@dataclass
class SplitFeatures:
    """Pooled features of one split."""

    stages: dict[str, np.ndarray]  # stage -> [n, d] float32
    answers: np.ndarray  # [n] int64: index of the option the model chose (-1: none parseable)
    letter_logits: np.ndarray  # [n, K] float32: each option letter's logit at the answer position
    generated: tuple[str, ...] = ()  # [n] the generated answers, in the generate answer mode


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

    inputs: Mapping[str, Any] = field(default_factory=dict)  # the processor's batch, on the device
    n_images: int = 0
    image_mask: torch.Tensor | None = None  # [B, S] bool: image-token positions
    answer_index: torch.Tensor | None = None  # [B] long: the answer position per row
    pooled: dict[str, torch.Tensor] = field(default_factory=dict)  # stage -> [B, d] float32


def _first_tensor(output: Any) -> torch.Tensor:
    """Layer outputs are a tensor or a tuple whose first item is the hidden states."""
    return output[0] if isinstance(output, tuple) else output  # type: ignore[no-any-return]


# Keyword names under which transformers passes a module its main input (Gemma 4 calls
# its vision embedder with ``inputs_embeds=``).
_HIDDEN_STATES_KEYWORDS = ("hidden_states", "inputs_embeds", "image_features")


def _hidden_states_argument(args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> torch.Tensor:
    """The hidden states a module was called with, positionally or by keyword."""
    if args:
        return args[0]  # type: ignore[no-any-return]
    for name in _HIDDEN_STATES_KEYWORDS:
        if name in kwargs:
            return kwargs[name]  # type: ignore[no-any-return]
    raise ExtractionError(
        f"a hooked module was called with keywords {sorted(kwargs)} and none of "
        f"{', '.join(_HIDDEN_STATES_KEYWORDS)}; the family adapter does not match this model's layout."
    )


def _mean_at(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``hidden: [B, S, H]`` averaged over the positions of ``mask: [B, S]`` -> ``[B, H]`` float32."""
    weights = mask.to(hidden.device).unsqueeze(1).float()  # [B, 1, S]
    return weights.bmm(hidden.float()).squeeze(1) / weights.sum(-1)


@contextmanager
def stage_hooks(loaded: LoadedModel, state: _BatchState) -> Iterator[None]:
    """Attach the pooling hooks of every stage; remove them whatever happens.

    Each hook pools on the device where its layer runs, so a model spread over several
    GPUs keeps its activations where they are; only ``[B, d]`` vectors are kept.
    The hooks are closures over ``state`` and the adapter's positions, so they stay
    together here rather than split into functions that would need all of them passed.
    """
    import torch

    adapter, model = loaded.adapter, loaded.model
    prefix = adapter.vision_prefix_tokens(model)
    handles = []

    def vision_block_hook(name: str) -> Any:
        def hook(module: Any, args: Any, output: Any) -> None:
            state.pooled[name] = adapter.pool_vision(model, _first_tensor(output), state.inputs, state.n_images, prefix)

        return hook

    def handoff_input_hook(module: Any, args: Any, kwargs: Any) -> None:
        hidden = _hidden_states_argument(args, kwargs)
        state.pooled[stages.VISION] = adapter.pool_vision(model, hidden, state.inputs, state.n_images)

    def side_connector_hook(name: str) -> Any:
        def hook(module: Any, args: Any, output: Any) -> None:
            state.pooled[name] = adapter.pool_vision(model, _first_tensor(output), state.inputs, state.n_images)

        return hook

    def handoff_output_hook(module: Any, args: Any, output: Any) -> None:
        # Only without an image view: otherwise ``connector`` is read at the decoder input.
        state.pooled[stages.CONNECTOR] = adapter.pool_vision(model, _first_tensor(output), state.inputs, state.n_images)

    def decoder_input_hook(module: Any, args: Any, kwargs: Any) -> None:
        # At the image positions the decoder input is the connector output as the LLM
        # receives it (metrics.md §1), whatever the family adds after its projector.
        hidden = adapter.decoder_stream(model, _hidden_states_argument(args, kwargs))
        state.pooled[stages.CONNECTOR] = _mean_at(hidden, state.image_mask)  # type: ignore[arg-type]

    def decoder_hook(index: int) -> Any:
        def hook(module: Any, args: Any, output: Any) -> None:
            hidden = adapter.decoder_stream(model, _first_tensor(output))  # [B, S, H]
            rows = torch.arange(hidden.shape[0], device=hidden.device)
            answer_index = state.answer_index.to(hidden.device)  # type: ignore[union-attr]
            state.pooled[stages.llm_layer(index, "answer")] = hidden[rows, answer_index].float()
            if adapter.has_image_view:
                state.pooled[stages.llm_layer(index, "image")] = _mean_at(hidden, state.image_mask)  # type: ignore[arg-type]

        return hook

    try:
        for index, block in enumerate(adapter.vision_blocks(model)):
            handles.append(block.register_forward_hook(vision_block_hook(stages.vision_block(index))))
        handoff = adapter.connector(model)
        handles.append(handoff.register_forward_pre_hook(handoff_input_hook, with_kwargs=True))
        for index, side in adapter.side_connectors(model):
            handles.append(side.register_forward_hook(side_connector_hook(stages.side_connector(index))))
        layers = list(adapter.decoder_layers(model))
        if adapter.has_image_view:
            handles.append(layers[0].register_forward_pre_hook(decoder_input_hook, with_kwargs=True))
        else:
            handles.append(handoff.register_forward_hook(handoff_output_hook))
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


def size_order(images: Sequence[np.ndarray]) -> np.ndarray:
    """``[n]``: the images sorted by size (stable), so a batch holds images of similar size.

    Families with dynamic resolution or tiles (Qwen-VL, LLaVA-NeXT, Idefics3, InternVL)
    give bigger images more tokens, and a batch pads every prompt to its longest one;
    batching similar sizes together keeps that padding small. Images of one size keep
    their order, so a dataset of equal-size images is batched exactly as given.
    """
    known = getattr(images, "sizes", None)  # files decoded on access (data.file_images) measured theirs at load
    shapes = known if known is not None else [np.shape(image)[:2] for image in images]
    sizes = np.array([int(height) * int(width) for height, width in shapes], dtype=np.int64)
    return np.argsort(sizes, kind="stable")


def prepare_inputs(loaded: LoadedModel, images: Sequence[np.ndarray], prompt: str) -> Any:
    """The processor's batch for ``images`` with one ``prompt`` each, on the model's device.

    Pixel values take the model's dtype; ``labels`` (PaliGemma's processor adds them)
    are dropped, since the model would otherwise compute a training loss.
    """
    import warnings

    batch_images: list[Any] = [[image] for image in images] if loaded.adapter.nested_images else list(images)
    with warnings.catch_warnings():
        # PaliGemma's processor builds its labels with np.array() on a tensor, which NumPy 2
        # flags on every call; the labels are dropped below anyway.
        warnings.filterwarnings("ignore", message="__array__ implementation doesn't accept a copy keyword")
        inputs = loaded.processor(images=batch_images, text=[prompt] * len(images), return_tensors="pt", padding=True)
    inputs.pop("labels", None)
    inputs = inputs.to(loaded.device)
    if "pixel_values" in inputs and inputs["pixel_values"].is_floating_point():
        inputs["pixel_values"] = inputs["pixel_values"].to(loaded.dtype)
    return inputs


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
    order = size_order(images)
    starts = range(0, len(order), batch_size)
    with torch.inference_mode(), stage_hooks(loaded, state):
        for start in tqdm(starts, desc=description, unit="batch", leave=None, disable=not progress or None):
            # Read by index, one batch at a time, so images decoded from files live for one batch.
            # Copies: images read through PIL can be read-only arrays, which torch warns about.
            batch = order[start : start + batch_size]
            batch_images = [np.array(images[int(index)], dtype=np.uint8) for index in batch]
            inputs = prepare_inputs(loaded, batch_images, prompt)
            state.pooled.clear()
            state.inputs, state.n_images = inputs, len(batch_images)
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
    restore = np.argsort(order, kind="stable")  # back to the caller's order
    logits = np.concatenate(letter_logits).astype(np.float32)[restore]
    return SplitFeatures(
        stages={name: np.concatenate(parts).astype(np.float32)[restore] for name, parts in collected.items()},
        answers=logits.argmax(axis=1).astype(np.int64),
        letter_logits=logits,
    )


def generate_answers(
    loaded: LoadedModel,
    images: Sequence[np.ndarray],
    question: str,
    batch_size: int,
    max_new_tokens: int,
    description: str = "generating",
    progress: bool = True,
) -> list[str]:
    """The model's free-form answers to ``question`` for each image (greedy decoding).

    This is the second pass of the generate answer mode (metrics.md §4), for models whose
    first token is not the answer; it runs without the pooling hooks.
    """
    import torch
    from tqdm.auto import tqdm
    from transformers import GenerationConfig

    prompt = chat_prompt(loaded.processor, question)
    tokenizer = loaded.processor.tokenizer
    # Greedy and fully specified, so a checkpoint's sampling defaults cannot make the
    # answers random, and no "flag ignored" warnings fire for them.
    generation = GenerationConfig(
        max_new_tokens=max_new_tokens,
        do_sample=False,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=loaded.model.generation_config.eos_token_id or tokenizer.eos_token_id,
    )
    texts: list[str] = []
    starts = range(0, len(images), batch_size)
    with torch.inference_mode():
        for start in tqdm(starts, desc=description, unit="batch", leave=None, disable=not progress or None):
            batch_images = [np.array(image, dtype=np.uint8) for image in images[start : start + batch_size]]
            inputs = prepare_inputs(loaded, batch_images, prompt)
            output = loaded.model.generate(**inputs, generation_config=generation)
            new_tokens = output[:, inputs["input_ids"].shape[1] :]  # left padding: prompts end together
            texts.extend(tokenizer.batch_decode(new_tokens, skip_special_tokens=True))
    return texts


def extract_features(
    loaded: LoadedModel,
    dataset: ProbeDataset,
    batch_size: int,
    progress: bool = True,
    answer_mode: str = "letter-logits",
    max_new_tokens: int = 512,
) -> FeatureBank:
    """Extract both splits of ``dataset`` (fit, then test).

    In the generate answer mode the test split's answers are generated and parsed
    (unparseable: -1, counted as wrong); the fit split's answers are never scored, so
    they stay those of the letter logits.
    """
    question = closed_question(dataset.class_names, dataset.modality, dataset.finding)
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
    if answer_mode == "generate":
        texts = generate_answers(
            loaded,
            dataset.test_images,
            question,
            batch_size,
            max_new_tokens,
            description=f"{loaded.name} × {dataset.name} [generate]",
            progress=progress,
        )
        test = splits["test"]
        test.generated = tuple(texts)
        test.answers = np.array([parse_generated_answer(text, dataset.class_names) for text in texts], dtype=np.int64)
    return FeatureBank(
        stage_names=loaded.stage_names(),
        has_image_view=loaded.adapter.has_image_view,
        fit=splits["fit"],
        test=splits["test"],
    )
