"""What an architecture family must tell the extractor, and the loaded-model record.

An adapter knows where the stages of metrics.md §1 live on one transformers class:
the vision blocks, the feature handed to the connector, the connector, the decoder
layers, and how image tokens are marked in the sequence. The extractor does the rest
the same way for every family.
"""

from __future__ import annotations

from abc import ABC
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:
    import torch
    from torch import nn


def attribute_path(model: Any, path: str) -> Any:
    """Follow a dotted attribute path, with a message naming the missing part."""
    from pytest_medprobe.errors import ModelLoadError

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


class FamilyAdapter(ABC):
    """Locates the stages of one transformers model family.

    Most families differ only in where their parts live, so an adapter mostly names
    attribute paths; what differs in substance is how the rows a vision module sees map
    to images (tiles, packed patch sequences, padding images), which ``image_rows`` and
    ``pool_vision`` answer.
    """

    family: ClassVar[str]
    model_types: ClassVar[tuple[str, ...]]  # config.json model_type values this adapter reads
    has_image_view: ClassVar[bool] = True  # False for cross-attention models (no image tokens)
    # Dotted paths on the ``*ForConditionalGeneration`` object.
    vision_block_paths: ClassVar[tuple[str, ...]]  # ModuleLists of vision blocks, in order
    handoff_path: ClassVar[str]  # module whose input is ``vision`` (projector / merger)
    language_model_path: ClassVar[str]  # decoder stack: ``.layers`` and ``.norm``
    # Processors of some families take a list of images per prompt.
    nested_images: ClassVar[bool] = False

    def vision_blocks(self, model: nn.Module) -> Sequence[nn.Module]:
        """The vision-encoder blocks, in order; their outputs are ``vision.{i}``."""
        return [block for path in self.vision_block_paths for block in attribute_path(model, path)]

    def vision_prefix_tokens(self, model: nn.Module) -> int:
        """How many leading tokens of a vision block output are not patches (CLS)."""
        return 0

    def connector(self, model: nn.Module) -> nn.Module:
        """The projector / merger: its input is ``vision``.

        For token families ``connector`` is read where the LLM receives it (the decoder
        input at the image positions), which also covers what a family adds after the
        projector (LLaVA-NeXT's newline tokens, scaling); without an image view it is this
        module's output.
        """
        return attribute_path(model, self.handoff_path)  # type: ignore[no-any-return]

    def decoder_layers(self, model: nn.Module) -> Sequence[nn.Module]:
        """The decoder layers, in order; their outputs are ``llm.{j}``."""
        return list(attribute_path(model, self.language_model_path + ".layers"))

    def decoder_stream(self, model: nn.Module, hidden: torch.Tensor) -> torch.Tensor:
        """A decoder layer's hidden states as ``[B, S, H]``; most families pass them as that.

        Families that carry several parallel streams between layers (Gemma 3n's AltUp:
        ``[streams, B, S, H]``) override this to pick the stream the layer computes on.
        """
        return hidden

    def final_norm(self, model: nn.Module) -> nn.Module | None:
        """The decoder's final norm, when it has one.

        Hugging Face's ``hidden_states[L]`` is the last layer's output *after* this norm,
        and the LM head reads exactly that; so ``llm.{L-1}`` is taken there, which makes
        the semantic gap (probe vs. the model's own answer) compare like with like.
        """
        return getattr(attribute_path(model, self.language_model_path), "norm", None)

    def image_token_id(self, model: nn.Module) -> int | None:
        """The token id marking image positions in ``input_ids`` (None without an image view)."""
        if not self.has_image_view:
            return None
        config = model.config
        for name in ("image_token_id", "image_token_index"):
            token_id = getattr(config, name, None)
            if token_id is not None:
                return int(token_id)
        return None

    def image_rows(self, model: nn.Module, inputs: Mapping[str, Any], n_rows: int, n_images: int) -> torch.Tensor:
        """``[n_rows]`` long: the image each row of a vision tensor belongs to (-1: padding).

        A row is the leading dimension of a vision block's output: one image, one tile
        of an image, or (for packed families) one patch token. The default is one row
        per image; families that tile or pack override it.
        """
        import torch

        if n_rows != n_images:
            from pytest_medprobe.errors import ExtractionError

            raise ExtractionError(
                f"the {self.family} adapter expects one vision row per image but saw {n_rows} rows "
                f"for {n_images} images; this checkpoint tiles its images in a way the adapter "
                "does not know."
            )
        return torch.arange(n_images)

    def pool_vision(
        self,
        model: nn.Module,
        hidden: torch.Tensor,
        inputs: Mapping[str, Any],
        n_images: int,
        skip_prefix: int = 0,
    ) -> torch.Tensor:
        """A vision tensor ``[rows, tokens, d]`` or packed ``[tokens, d]`` -> ``[n_images, d]`` float32.

        The mean is over every patch token of an image, across its tiles; ``skip_prefix``
        leading tokens of each row (CLS) are left out.
        """
        if hidden.dim() == 3:
            row_means = hidden[:, skip_prefix:, :].float().mean(dim=1)  # [rows, d]
        elif hidden.dim() == 2:  # packed: every row is one patch token
            row_means = hidden.float()
        else:
            from pytest_medprobe.errors import ExtractionError

            raise ExtractionError(
                f"the {self.family} adapter cannot pool a vision tensor of shape {tuple(hidden.shape)}."
            )
        rows = self.image_rows(model, inputs, row_means.shape[0], n_images).to(row_means.device)
        return segment_mean(row_means, rows, n_images)


def segment_mean(
    values: torch.Tensor, segment: torch.Tensor, n_segments: int, weights: torch.Tensor | None = None
) -> torch.Tensor:
    """Mean of ``values: [rows, d]`` per segment id in ``segment: [rows]`` (-1 ignored) -> ``[n, d]``."""
    import torch

    keep = segment >= 0
    values, segment = values[keep], segment[keep]
    row_weights = torch.ones(len(segment), device=values.device) if weights is None else weights[keep].float()
    sums = torch.zeros(n_segments, values.shape[1], device=values.device).index_add_(
        0, segment, values * row_weights[:, None]
    )
    totals = torch.zeros(n_segments, device=values.device).index_add_(0, segment, row_weights)
    if bool((totals == 0).any()):
        from pytest_medprobe.errors import ExtractionError

        raise ExtractionError(
            f"{int((totals == 0).sum())} of {n_segments} images got no vision rows; the adapter's "
            "mapping from vision rows to images does not fit this checkpoint."
        )
    return sums / totals[:, None]


@dataclass(frozen=True)
class ModelSource:
    """A model spec resolved to a checkpoint directory, before any weight is loaded."""

    name: str  # as the user named it, e.g. "tiny-llava" or "/models/llava-med"
    directory: Path
    family: str
    model_type: str
    fingerprint: str  # identity of config, tokenizer/processor files and weight files


@dataclass
class LoadedModel:
    """A model and its processor, on their device, with the adapter of their family."""

    source: ModelSource
    model: Any  # a transformers PreTrainedModel, in eval mode
    processor: Any  # the checkpoint's ProcessorMixin
    adapter: FamilyAdapter
    device: torch.device
    dtype: torch.dtype

    @property
    def name(self) -> str:
        return self.source.name

    @property
    def family(self) -> str:
        return self.source.family

    @property
    def n_vision_blocks(self) -> int:
        return len(self.adapter.vision_blocks(self.model))

    @property
    def n_decoder_layers(self) -> int:
        return len(self.adapter.decoder_layers(self.model))

    def stage_names(self) -> tuple[str, ...]:
        from pytest_medprobe.stages import stage_order

        return stage_order(self.n_vision_blocks, self.n_decoder_layers, self.adapter.has_image_view)
