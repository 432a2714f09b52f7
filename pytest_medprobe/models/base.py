"""What an architecture family must tell the extractor, and the loaded-model record.

An adapter knows where the stages of metrics.md §1 live on one transformers class:
the vision blocks, the feature handed to the connector, the connector, the decoder
layers, and how image tokens are marked in the sequence. The extractor does the rest
the same way for every family.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:
    import torch
    from torch import nn

    from pytest_medprobe.models.structural import ModelLayout


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


class FamilyAdapter:
    """Locates the stages of one transformers model family.

    By default every part is found structurally (``structural.discover_layout``): the
    vision tower's blocks, the projector or merger, the decoder layers, the final norm and
    the image-token id. A family file subclasses this and overrides only what differs:
    a path discovery would not find, how the rows a vision module sees map to images
    (tiles, padding images: ``image_rows`` / ``pool_vision``), or extra stages. With no
    family file, the adapter of a model type is this class itself (``family`` is then
    the model type).
    """

    family: str = ""  # a family file's name for the models it reads; "" = the model type
    model_types: ClassVar[tuple[str, ...]] = ()  # config.json model_type values a family file reads
    has_image_view: ClassVar[bool] = True  # False for cross-attention models (no image tokens)
    # Dotted paths on the ``*ForConditionalGeneration`` object; None: discovered.
    vision_block_paths: ClassVar[tuple[str, ...] | None] = None  # ModuleLists of vision blocks, in order
    handoff_path: ClassVar[str | None] = None  # module whose input is ``vision`` (projector / merger)
    language_model_path: ClassVar[str | None] = None  # decoder stack: ``.layers`` and ``.norm``
    # Processors get one list of images per prompt, the form every transformers 5 processor
    # takes for a batch (Gemma 3's and Mllama's take no other); False: a flat list.
    nested_images: ClassVar[bool] = True

    def __init__(self, model_type: str = "") -> None:
        self.model_type = model_type or (self.model_types[0] if self.model_types else "")
        if not self.family:
            self.family = self.model_type
        self._layouts: dict[int, ModelLayout] = {}

    @classmethod
    def is_structural(cls) -> bool:
        """True when nothing is overridden: the model type is mapped from its module tree alone."""
        return cls is FamilyAdapter

    def layout(self, model: nn.Module) -> ModelLayout:
        """Where this model's stages live (discovered once per model)."""
        from pytest_medprobe.models.structural import discover_layout

        key = id(model)
        if key not in self._layouts:
            self._layouts[key] = discover_layout(
                model,
                self.family,
                has_image_view=self.has_image_view,
                vision_blocks=self.vision_block_paths,
                handoff=self.handoff_path,
                language_model=self.language_model_path,
            )
        return self._layouts[key]

    def vision_blocks(self, model: nn.Module) -> Sequence[nn.Module]:
        """The vision-encoder blocks, in order; their outputs are ``vision.{i}``."""
        return [block for path in self.layout(model).vision_blocks for block in attribute_path(model, path)]

    def vision_prefix_tokens(self, model: nn.Module) -> int:
        """How many leading tokens of a vision block output are not patches (CLS).

        CLIP towers keep a ``class_embedding``, InternViT a ``cls_token``; SigLIP and the
        packed (Qwen-style) towers have none.
        """
        embeddings = getattr(attribute_path(model, self.layout(model).vision_tower), "embeddings", None)
        return 1 if any(hasattr(embeddings, name) for name in ("class_embedding", "cls_token")) else 0

    def connector(self, model: nn.Module) -> nn.Module:
        """The projector / merger: its input is ``vision``.

        For token families ``connector`` is read where the LLM receives it (the decoder
        input at the image positions), which also covers what a family adds after the
        projector (LLaVA-NeXT's newline tokens, scaling); without an image view it is this
        module's output.
        """
        return attribute_path(model, self.layout(model).handoff)  # type: ignore[no-any-return]

    def side_connectors(self, model: nn.Module) -> Sequence[tuple[int, nn.Module]]:
        """Connectors besides the main one: ``(vision block read, module)``; their outputs are ``connector.{i}``.

        Families that feed intermediate vision features into the decoder elsewhere
        (Qwen3-VL's deepstack mergers) override this; most have none.
        """
        return ()

    def decoder_layers(self, model: nn.Module) -> Sequence[nn.Module]:
        """The decoder layers, in order; their outputs are ``llm.{j}``."""
        return list(attribute_path(model, self.layout(model).language_model + ".layers"))

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
        path = self.layout(model).final_norm
        return None if path is None else attribute_path(model, path)

    def image_token_id(self, model: nn.Module) -> int | None:
        """The token id marking image positions in ``input_ids`` (None without an image view)."""
        return self.layout(model).image_token_id

    def image_rows(self, model: nn.Module, inputs: Mapping[str, Any], n_rows: int, n_images: int) -> torch.Tensor:
        """``[n_rows]`` long: the image each row of a vision tensor belongs to (-1: padding).

        A row is the leading dimension of a vision block's output: one image, one tile
        of an image, or (for packed families) one patch token. Two layouts are known
        without a family file: one row per image, and the packed patch sequences of the
        Qwen-style towers, whose ``image_grid_thw`` says how many patches each image has
        (after a merger, each image has as many rows fewer as the merge factor says).
        Families that tile override this.
        """
        import torch

        from pytest_medprobe.errors import ExtractionError

        grid = inputs.get("image_grid_thw")
        if grid is not None:
            patches = grid.prod(dim=-1).cpu()  # [n_images] patches per image
            total = int(patches.sum())
            merge = total // n_rows if n_rows and total % n_rows == 0 else 0
            if len(patches) != n_images or merge == 0 or bool((patches % merge != 0).any()):
                raise ExtractionError(
                    f"the {self.family} vision tower returned {n_rows} packed rows but image_grid_thw "
                    f"describes {total} patches of {len(patches)} images (expected {n_images}); the "
                    "processor and the model disagree on patch sizes."
                )
            return torch.repeat_interleave(torch.arange(n_images), patches // merge)
        if n_rows != n_images:
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

        sides = tuple(index for index, _ in self.adapter.side_connectors(self.model))
        return stage_order(self.n_vision_blocks, self.n_decoder_layers, self.adapter.has_image_view, sides)
