"""A hospital's in-house vision-language model, packaged the way a user would (test-only).

Nothing in transformers knows ``acme_vlm``: this module defines its config and model
classes, registers them with transformers' Auto classes when imported, and declares the
pytest-medprobe family adapter that says where its stages live. Installed, the package
announces the adapter through the ``pytest_medprobe.families`` entry-point group, so
``pytest audits/ --model=DIR`` audits an ``acme_vlm`` checkpoint without any change to
pytest-medprobe and without ``trust_remote_code`` (the classes come from this installed
package, not from the checkpoint).

Its module names are its own (``eye``, ``bridge``, ``brain``), so the structural adapter
cannot find them; the adapter names them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn
from transformers import (
    AutoConfig,
    AutoModelForImageTextToText,
    CLIPVisionConfig,
    CLIPVisionModel,
    LlamaConfig,
    LlamaModel,
    PretrainedConfig,
    PreTrainedModel,
)
from transformers.modeling_outputs import CausalLMOutputWithPast

from pytest_medprobe import FamilyAdapter

MODEL_TYPE = "acme_vlm"


class AcmeVlmConfig(PretrainedConfig):
    model_type = MODEL_TYPE
    sub_configs = {"vision_config": CLIPVisionConfig, "text_config": LlamaConfig}

    def __init__(
        self,
        vision_config: dict[str, Any] | CLIPVisionConfig | None = None,
        text_config: dict[str, Any] | LlamaConfig | None = None,
        image_token_id: int = 0,
        **kwargs: Any,
    ) -> None:
        if not isinstance(vision_config, CLIPVisionConfig):
            vision_config = CLIPVisionConfig(**(vision_config or {}))
        if not isinstance(text_config, LlamaConfig):
            text_config = LlamaConfig(**(text_config or {}))
        self.vision_config = vision_config
        self.text_config = text_config
        self.image_token_id = image_token_id
        super().__init__(**kwargs)


class AcmeVlmForConditionalGeneration(PreTrainedModel):
    """A CLIP eye, a two-layer bridge, a Llama brain: image patches replace the image tokens."""

    config_class = AcmeVlmConfig
    main_input_name = "input_ids"
    _no_split_modules: list[str] = []

    def __init__(self, config: AcmeVlmConfig) -> None:
        super().__init__(config)
        width = config.text_config.hidden_size
        self.eye = CLIPVisionModel(config.vision_config)
        self.bridge = nn.Sequential(
            nn.Linear(config.vision_config.hidden_size, width), nn.GELU(), nn.Linear(width, width)
        )
        self.brain = LlamaModel(config.text_config)
        self.lm_head = nn.Linear(width, config.text_config.vocab_size, bias=False)
        self.post_init()

    def get_input_embeddings(self) -> nn.Module:
        return self.brain.embed_tokens

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        pixel_values: torch.Tensor | None = None,
        logits_to_keep: int = 0,
        **kwargs: Any,
    ) -> CausalLMOutputWithPast:
        embeds = self.brain.embed_tokens(input_ids)
        if pixel_values is not None:
            patches = self.eye(pixel_values=pixel_values).last_hidden_state[:, 1:]  # CLS dropped
            features = self.bridge(patches).to(embeds.dtype)
            image_positions = (input_ids == self.config.image_token_id).unsqueeze(-1).expand_as(embeds)
            embeds = embeds.masked_scatter(image_positions, features.reshape(-1, features.shape[-1]))
        hidden = self.brain(inputs_embeds=embeds, attention_mask=attention_mask).last_hidden_state
        return CausalLMOutputWithPast(logits=self.lm_head(hidden[:, -logits_to_keep:]))


AutoConfig.register(MODEL_TYPE, AcmeVlmConfig)
AutoModelForImageTextToText.register(AcmeVlmConfig, AcmeVlmForConditionalGeneration)


class AcmeAdapter(FamilyAdapter):
    """Where the stages of an ``acme_vlm`` model live."""

    family = "acme"
    model_types = (MODEL_TYPE,)
    vision_block_paths = ("eye.encoder.layers",)
    handoff_path = "bridge"  # its input is the eye's patch features: the ``vision`` stage
    language_model_path = "brain"

    def vision_prefix_tokens(self, model: nn.Module) -> int:
        return 1  # the eye is a CLIP tower: a CLS token leads every row


class MisplacedAdapter(AcmeAdapter):
    """A mistaken adapter naming a module the model does not have."""

    family = "acme-misplaced"
    handoff_path = "adapter_bridge"


class ClashingAdapter(FamilyAdapter):
    """A mistaken adapter that claims a model type pytest-medprobe already reads."""

    family = "acme-clash"
    model_types = ("llava_next",)


def build_checkpoint(directory: Path, processor_source: Path, seed: int = 0) -> Path:
    """A tiny random ``acme_vlm`` checkpoint, with the LLaVA processor of ``processor_source``.

    The processor (tokenizer with an ``<image>`` token, CLIP image processor, chat
    template) is a stock transformers one: an in-house model often reuses one.
    """
    from transformers import AutoProcessor

    reference = AutoConfig.from_pretrained(processor_source, local_files_only=True)
    config = AcmeVlmConfig(
        vision_config=reference.vision_config.to_dict(),
        text_config=reference.text_config.to_dict(),
        image_token_id=reference.image_token_id,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = AcmeVlmForConditionalGeneration(config).eval()
    model.save_pretrained(directory)
    AutoProcessor.from_pretrained(processor_source, local_files_only=True).save_pretrained(directory)
    return directory
