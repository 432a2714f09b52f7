"""The structural adapter: families mapped from their module tree, and the models it refuses.

A family with no family file is mapped by finding its vision blocks, projector or merger,
decoder layers, final norm and image-token id by name (pytest_medprobe/models/structural.py);
the end-to-end audits of those families are in test_model_families.py. Here: which
families take that path, how ``--medprobe-models`` says so, and the one-line usage
errors for a model that cannot be mapped or a model type transformers does not know.
"""

from __future__ import annotations

import importlib
import json
from pathlib import Path

import pytest


def _flat(result: pytest.RunResult) -> str:
    return " ".join((result.stdout.str() + result.stderr.str()).split())


def test_at_least_five_audited_families_have_no_family_file() -> None:
    from pytest_medprobe.models.base import FamilyAdapter
    from pytest_medprobe.models.families import STRUCTURAL_TESTED, adapter_class, mapping_of
    from tests.plugin.test_model_families import FAMILY_MODULES

    # llava: the tiny LLaVA and the reference model, audited end to end by the other tests.
    audited = {"llava"} | {importlib.import_module(f"tests.families.{name}").MODEL_TYPE for name in FAMILY_MODULES}
    structural = {model_type for model_type in audited if adapter_class(model_type) is FamilyAdapter}
    assert len(structural) >= 5, structural
    assert set(STRUCTURAL_TESTED) <= structural
    assert all(mapping_of(model_type) == "structural" for model_type in structural)


def test_a_family_file_overrides_only_what_differs_from_the_common_layout() -> None:
    """Discovery finds the same paths the family files used to spell out."""
    from pytest_medprobe.models.families import make_adapter
    from tests.families import tiny_idefics3, tiny_qwen3_vl

    model, _ = tiny_idefics3.make()
    layout = make_adapter("idefics3").layout(model)
    assert (layout.vision_blocks, layout.handoff, layout.language_model) == (
        ("model.vision_model.encoder.layers",),
        "model.connector",
        "model.text_model",
    )
    assert layout.final_norm == "model.text_model.norm"
    model, _ = tiny_qwen3_vl.make()
    adapter = make_adapter("qwen3_vl")
    assert adapter.layout(model).handoff == "model.visual.merger"
    assert [index for index, _ in adapter.side_connectors(model)] == list(tiny_qwen3_vl.DEEPSTACK_BLOCKS)


def test_the_models_listing_says_how_each_family_is_mapped(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest("--medprobe-models", "-p", "no:cacheprovider")
    assert result.ret == 0
    result.stdout.fnmatch_lines(
        [
            "model families (config.json model_type; how its stages are found):",
            "  gemma3 *structural",
            "  llava *structural",
            "  llava_next *family file pytest_medprobe.models.llava_next.LlavaNextAdapter",
            "  mllama *family file pytest_medprobe.models.mllama.MllamaAdapter",
            "  qwen2_vl *structural",
            "  qwen3_vl *family file pytest_medprobe.models.qwen3_vl.Qwen3VLAdapter",
            "  and every other image-text-to-text model type of the installed transformers, tried*",
        ]
    )


def _fuyu_checkpoint(directory: Path) -> Path:
    """A real image-text-to-text model type whose image path is not a vision tower (Fuyu)."""
    from transformers import FuyuConfig

    config = FuyuConfig(
        text_config={"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1, "num_attention_heads": 2}
    )
    config.save_pretrained(directory)
    (directory / "model.safetensors").write_bytes(b"")
    return directory


def test_a_model_whose_vision_tower_cannot_be_found_is_refused_naming_the_part(
    pytester: pytest.Pytester,
) -> None:
    checkpoint = _fuyu_checkpoint(pytester.mkdir("fuyu"))
    result = pytester.runpytest(f"--model={checkpoint}", "-p", "no:cacheprovider")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    text = _flat(result)
    assert "the fuyu model (FuyuForCausalLM) does not follow the common layout: no vision tower found" in text
    assert "model.vision_tower" in text and "Register a family adapter" in text
    assert "Traceback" not in text


def test_a_model_type_transformers_does_not_know_is_refused_with_the_fix(pytester: pytest.Pytester) -> None:
    checkpoint = pytester.mkdir("checkpoint")
    (checkpoint / "config.json").write_text(json.dumps({"model_type": "radiology_vlm_9000"}))
    result = pytester.runpytest(f"--model={checkpoint}", "-p", "no:cacheprovider")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    text = _flat(result)
    assert "model_type 'radiology_vlm_9000'" in text and "is not supported" in text
    assert "the installed transformers" in text and "does not know it" in text
    assert "pip install -U transformers" in text
    assert "Traceback" not in text


def test_a_known_model_type_without_an_image_pathway_is_refused(pytester: pytest.Pytester) -> None:
    checkpoint = pytester.mkdir("checkpoint")
    (checkpoint / "config.json").write_text(json.dumps({"model_type": "bert"}))
    result = pytester.runpytest(f"--model={checkpoint}", "-p", "no:cacheprovider")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert "is not an image-text-to-text model" in _flat(result)
