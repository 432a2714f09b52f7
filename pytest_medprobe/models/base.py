"""What an architecture family must tell the extractor, and the loaded-model record.

An adapter knows where the stages of metrics.md §1 live on one transformers class:
the vision blocks, the feature handed to the connector, the connector, the decoder
layers, and how image tokens are marked in the sequence. The extractor does the rest
the same way for every family.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:
    import torch
    from torch import nn


class FamilyAdapter(ABC):
    """Locates the stages of one transformers model family."""

    family: ClassVar[str]
    model_types: ClassVar[tuple[str, ...]]  # config.json model_type values this adapter reads
    has_image_view: ClassVar[bool] = True  # False for cross-attention models (no image tokens)

    @abstractmethod
    def vision_blocks(self, model: nn.Module) -> Sequence[nn.Module]:
        """The vision-encoder blocks, in order; their outputs are ``vision.{i}``."""

    @abstractmethod
    def vision_prefix_tokens(self, model: nn.Module) -> int:
        """How many leading tokens of a vision block output are not patches (CLS)."""

    @abstractmethod
    def connector(self, model: nn.Module) -> nn.Module:
        """The projector: its input is ``vision``, its output ``connector``."""

    @abstractmethod
    def decoder_layers(self, model: nn.Module) -> Sequence[nn.Module]:
        """The decoder layers, in order; their outputs are ``llm.{j}``."""

    def final_norm(self, model: nn.Module) -> nn.Module | None:
        """The decoder's final norm, when it has one.

        Hugging Face's ``hidden_states[L]`` is the last layer's output *after* this norm,
        and the LM head reads exactly that; so ``llm.{L-1}`` is taken there, which makes
        the semantic gap (probe vs. the model's own answer) compare like with like.
        """
        return None

    @abstractmethod
    def image_token_id(self, model: nn.Module) -> int | None:
        """The token id marking image positions in ``input_ids`` (None without an image view)."""


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
