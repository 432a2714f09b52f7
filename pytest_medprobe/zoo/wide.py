"""``medprobe-tiny-wide``: the reference model with a decoder wider than its vision encoder.

Real connectors widen the features (1024 → 4096 in LLaVA, 1152 → 2560 in Gemma 3); the
reference model's vision and text widths are equal (64), so it cannot show what a
widening does to the probes. ``medprobe-tiny-wide`` is ``medprobe-tiny`` with its decoder
widened *exactly* to ``WIDE_HIDDEN`` = 256: the residual stream is embedded by a fixed
isometry ``U`` (the first 64 columns of a seeded random rotation), every weight that reads
the stream reads through ``Uᵀ`` (RMSNorm gains folded in), every weight that writes it
writes through ``U``, and the RMSNorm gains become √(64/256) with ε scaled by 64/256 so
that the norm of the wider stream normalizes as the narrow one did. Its answers are those
of ``medprobe-tiny`` up to float rounding; no weights ship for it.

Its planted connectors (``medprobe-tiny-wide:<variant>``):

injective-connector     the projector is an exactly injective linear map 64 → 256,
                        ill-conditioned: a few directions carry almost all of its output
                        variance (``injective_map``). It loses
                        nothing, so audit 2 (connector fidelity) must pass. The decoder
                        was trained for another encoding of the image: the probes still read
                        the diagnosis at the answer position, the answer does not say it,
                        so audit 4 (semantic mapping) and health fail.
rank-limited-connector  the same map reading only ``KEPT_CONNECTOR_INPUTS`` of the 64
                        vision dimensions → audit 2 must fail (and, downstream, audit 4).
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from pytest_medprobe.zoo.faults import KEPT_CONNECTOR_INPUTS

WIDE_NAME = "medprobe-tiny-wide"
WIDE_HIDDEN = 256
ROTATION_SEED = 1  # the isometry U: fixed, so the wide model is the same everywhere
# The injective map's singular vectors. Audit 2 does not depend on them (whitened probes
# read every injective map alike), but what the decoder makes of a foreign encoding does:
# among seeds 2-5, seed 4's decoder still answered 0.7 and seed 2's 0.33-0.39 (health then
# sat at its bound, 0.589), while under seed 5 it answers far below chance on every image
# seed tried (0.00-0.04), so the variant's downstream verdicts are stable across seeds.
CONNECTOR_SEED = 5
# Singular values of the injective map: four at DOMINANT_SCALE, then 1 decaying over
# DECADES decades (condition 10^5). The vision features already hold 94% of their variance
# in four directions, as real ViT features hold theirs in a few; the connector's output
# holds > 99.9% in four (synthetic-lesions seed 0, 300 images).
N_DOMINANT = 4
DOMINANT_SCALE = 100.0
DECADES = 3.0


def _rotation(width: int, seed: int) -> Any:
    import torch

    generator = torch.Generator().manual_seed(seed)
    q, r = torch.linalg.qr(torch.randn(width, width, generator=generator, dtype=torch.float64))
    return q * torch.sign(torch.diagonal(r))[None, :]  # unique: the sign convention of QR fixed


def widen(model: Any, width: int = WIDE_HIDDEN) -> Any:
    """A new LLaVA whose decoder computes exactly what ``model``'s does, in ``width`` dimensions."""
    import torch
    from transformers import LlavaForConditionalGeneration

    narrow = model.config.text_config.hidden_size
    config = copy.deepcopy(model.config)
    config.text_config.hidden_size = width
    config.text_config.head_dim = model.config.text_config.head_dim  # heads keep their size
    config.text_config.rms_norm_eps = model.config.text_config.rms_norm_eps * narrow / width
    wide = LlavaForConditionalGeneration(config).eval()
    embed = _rotation(width, ROTATION_SEED)[:, :narrow]  # U: [width, narrow], orthonormal columns
    gain = (narrow / width) ** 0.5  # RMS over `width` of U h is √(narrow/width) times RMS over `narrow` of h

    def reads(weight: Any, norm_gain: Any) -> Any:
        return (weight.double() * norm_gain.double()[None, :]) @ embed.T

    def writes(weight: Any) -> Any:
        return embed @ weight.double()

    source, target = model.model.language_model, wide.model.language_model
    with torch.no_grad():
        wide.model.vision_tower.load_state_dict(model.model.vision_tower.state_dict())
        target.embed_tokens.weight.copy_(source.embed_tokens.weight.double() @ embed.T)
        for old, new in zip(source.layers, target.layers):
            for name in ("q_proj", "k_proj", "v_proj"):
                getattr(new.self_attn, name).weight.copy_(
                    reads(getattr(old.self_attn, name).weight, old.input_layernorm.weight)
                )
            new.self_attn.o_proj.weight.copy_(writes(old.self_attn.o_proj.weight))
            for name in ("gate_proj", "up_proj"):
                getattr(new.mlp, name).weight.copy_(
                    reads(getattr(old.mlp, name).weight, old.post_attention_layernorm.weight)
                )
            new.mlp.down_proj.weight.copy_(writes(old.mlp.down_proj.weight))
            new.input_layernorm.weight.fill_(gain)
            new.post_attention_layernorm.weight.fill_(gain)
        target.norm.weight.fill_(gain)
        wide.lm_head.weight.copy_(reads(model.lm_head.weight, source.norm.weight))
        # The projector: its hidden layer padded with zeros (GELU(0) = 0), its output through U.
        old_projector, new_projector = model.model.multi_modal_projector, wide.model.multi_modal_projector
        new_projector.linear_1.weight.zero_()
        new_projector.linear_1.bias.zero_()
        new_projector.linear_1.weight[:narrow].copy_(old_projector.linear_1.weight)
        new_projector.linear_1.bias[:narrow].copy_(old_projector.linear_1.bias)
        new_projector.linear_2.weight.zero_()
        new_projector.linear_2.weight[:, :narrow].copy_(writes(old_projector.linear_2.weight))
        new_projector.linear_2.bias.copy_(embed @ old_projector.linear_2.bias.double())
    return wide


def injective_map(vision_width: int, width: int) -> Any:
    """``[width, vision_width]``: U_A · diag(s) · V_Aᵀ with seeded orthonormal U_A, V_A and
    s = ``N_DOMINANT`` × ``DOMINANT_SCALE``, then 1 decaying to 10^-``DECADES``: injective,
    condition number ``DOMINANT_SCALE`` · 10^``DECADES``."""
    import torch

    left = _rotation(width, CONNECTOR_SEED)[:, :vision_width]
    right = _rotation(vision_width, CONNECTOR_SEED + 1)
    values = torch.cat(
        [
            torch.full((N_DOMINANT,), DOMINANT_SCALE, dtype=torch.float64),
            torch.logspace(0.0, -DECADES, vision_width - N_DOMINANT, dtype=torch.float64),
        ]
    )
    return left @ torch.diag(values) @ right.T


def _linear_connector(model: Any, kept_inputs: int | None) -> Any:
    """``model`` with its projector replaced by ``injective_map`` (reading only the first
    ``kept_inputs`` vision dimensions when given): linear_1 is the map, the activation the
    identity, linear_2 the identity."""
    import torch
    from transformers import LlavaForConditionalGeneration

    config = copy.deepcopy(model.config)
    config.projector_hidden_act = "linear"
    linear = LlavaForConditionalGeneration(config).eval()
    linear.load_state_dict(model.state_dict())
    projector = linear.model.multi_modal_projector
    mapping = injective_map(projector.linear_1.in_features, projector.linear_1.out_features)
    if kept_inputs is not None:
        mapping[:, kept_inputs:] = 0.0
    with torch.no_grad():
        projector.linear_1.weight.copy_(mapping)
        projector.linear_1.bias.zero_()
        projector.linear_2.weight.copy_(torch.eye(projector.linear_2.out_features))
        projector.linear_2.bias.zero_()
    return linear


WIDE_VARIANTS: dict[str, tuple[Callable[[Any], Any], str]] = {
    "injective-connector": (
        lambda model: _linear_connector(model, None),
        "its projector an exactly injective, ill-conditioned linear map 64 → 256 (loses nothing)",
    ),
    "rank-limited-connector": (
        lambda model: _linear_connector(model, KEPT_CONNECTOR_INPUTS),
        f"its projector the same linear map reading only {KEPT_CONNECTOR_INPUTS} of the 64 vision dimensions",
    ),
}


def build_wide(variant: str | None = None) -> tuple[Any, Any]:
    """``medprobe-tiny-wide`` (or a variant) and the reference processor, in memory."""
    from transformers import AutoModelForImageTextToText, AutoProcessor
    from transformers.utils import logging as hf_logging

    from pytest_medprobe.zoo import SHIPPED_DIR

    if variant is not None and variant not in WIDE_VARIANTS:
        raise ValueError(f"unknown variant {variant!r} of {WIDE_NAME}; known: {', '.join(WIDE_VARIANTS)}")
    hf_logging.disable_progress_bar()
    processor = AutoProcessor.from_pretrained(SHIPPED_DIR, local_files_only=True)
    narrow = AutoModelForImageTextToText.from_pretrained(SHIPPED_DIR, local_files_only=True).eval()
    model = widen(narrow)
    if variant is not None:
        model = WIDE_VARIANTS[variant][0](model)
    return model, processor


def connector_features(models: Mapping[str, Any], processor: Any, images: Any) -> dict[str, Any]:
    """``{"vision": [n, 64], name: [n, 256] for each model}`` float64: the pooled features
    the plugin's extractor reads at ``vision`` and ``connector`` for these LLaVA models (the
    projector's input, CLS dropped, and its output, each averaged over the image tokens;
    metrics.md §1), without running the decoder. The models share one vision tower, so it
    runs once. For seed sweeps of audit 2 (benchmarks/connector_protocols.py, tests/zoo)."""
    import torch

    first = next(iter(models.values()))
    pixels = processor.image_processor(list(images), return_tensors="pt")["pixel_values"]
    with torch.inference_mode():
        states = first.model.vision_tower(pixels, output_hidden_states=True).hidden_states
        tokens = states[first.config.vision_feature_layer][:, 1:]  # LLaVA's "default": CLS dropped
        features = {"vision": tokens.mean(dim=1).double().numpy()}
        for name, model in models.items():
            features[name] = model.model.multi_modal_projector(tokens).mean(dim=1).double().numpy()
    return features


def export_wide(directory: Path, variant: str | None = None) -> Path:
    """Write ``medprobe-tiny-wide`` (or one of its planted connectors) as a checkpoint directory."""
    from pytest_medprobe.models.tiny_llava import save_checkpoint_atomically

    model, processor = build_wide(variant)
    return save_checkpoint_atomically(model, processor, Path(directory))
