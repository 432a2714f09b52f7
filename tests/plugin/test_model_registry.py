"""Named models: the catalogue, the local Hugging Face cache, NAME=DIR, and their errors."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from pytest_medprobe.config import MODEL

FAKE_COMMIT = "0123456789abcdef0123456789abcdef01234567"


def _into_hf_cache(cache: Path, hub_id: str, checkpoint: Path) -> Path:
    """Lay ``checkpoint`` out as huggingface_hub's cache holds a downloaded repository."""
    repo = cache / ("models--" + hub_id.replace("/", "--"))
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(FAKE_COMMIT)
    snapshot = repo / "snapshots" / FAKE_COMMIT
    shutil.copytree(checkpoint, snapshot)
    return snapshot


@pytest.fixture
def hf_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty Hugging Face hub cache that the in-process pytest runs look into."""
    from huggingface_hub import constants

    cache = tmp_path / "hf-hub-cache"
    cache.mkdir()
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    return cache


def _flat(result: pytest.RunResult) -> str:
    return " ".join((result.stdout.str() + result.stderr.str()).split())


def test_the_listing_names_every_medical_model_with_hub_id_family_and_local_availability(
    pytester: pytest.Pytester, hf_cache: Path, tiny_llava_dir: Path
) -> None:
    _into_hf_cache(hf_cache, "chaoyinshe/llava-med-v1.5-mistral-7b-hf", tiny_llava_dir)
    result = pytester.runpytest("--medprobe-models", "-p", "no:cacheprovider")
    assert result.ret == 0
    result.stdout.fnmatch_lines(
        [
            "built-in models*",
            "*medprobe-tiny *reference model*",
            f"medical MLLMs (looked up in the Hugging Face cache {hf_cache}; downloaded on first use when online)*",
            "*huatuogpt-vision *qwen2_5_vl*no*FreedomIntelligence/HuatuoGPT-Vision-7B-Qwen2.5VL*",
            "*lingshu-7b *qwen2_5_vl*no*lingshu-medical-mllm/Lingshu-7B*",
            "*medgemma-4b-it *gemma3*no*google/medgemma-4b-it*",
            "*llava-med *llava*yes*chaoyinshe/llava-med-v1.5-mistral-7b-hf*",
            "*medvlm-r1 *qwen2_vl*generate*",
            "*medmo-4b *qwen3_vl* 8.9 *no*letter-logits*MBZUAI/MedMO-4B*",
            "*medmo-8b-next *qwen3_vl*17.5*MBZUAI/MedMO-8B-Next*",
            "*healthgpt-pro-4b *qwen3_vl* 8.9 *lintw/HealthGPT-Pro-4B*",
            "*healthgpt-pro-8b *qwen3_vl*17.5*lintw/HealthGPT-Pro-8B*",
            "*medix-r1-2b *qwen3_vl*generate*MBZUAI/MediX-R1-2B*",
            "*medix-r1-8b *qwen3_vl*generate*MBZUAI/MediX-R1-8B*",
            "general baselines*",
            "*qwen3-vl-8b-instruct *qwen3_vl*17.5*Qwen/Qwen3-VL-8B-Instruct*",
            "*llama-3.2-11b-vision-instruct *mllama*",
        ]
    )


def test_a_named_model_loads_offline_from_the_local_hugging_face_cache(
    shipped_audits: pytest.Pytester, hf_cache: Path, tiny_llava_dir: Path, fast_options: list[str]
) -> None:
    snapshot = _into_hf_cache(hf_cache, "chaoyinshe/llava-med-v1.5-mistral-7b-hf", tiny_llava_dir)
    result = shipped_audits.runpytest("--model=llava-med", "--medprobe-json=r.json", "-v", *fast_options)
    outcomes = result.parseoutcomes()
    assert outcomes.get("errors", 0) == 0 and outcomes.get("passed", 0) + outcomes.get("failed", 0) == 5
    result.stdout.fnmatch_lines(["*test_health?llava-med-synthetic-lesions?*"])
    run = json.loads((shipped_audits.path / "r.json").read_text())["runs"][0]
    assert run["model"]["name"] == "llava-med"
    assert run["model"]["family"] == "llava"
    assert run["model"]["source"] == str(snapshot)


def test_a_named_model_missing_from_the_cache_says_where_it_looked_and_how_to_get_it(
    pytester: pytest.Pytester, hf_cache: Path
) -> None:
    result = pytester.runpytest("--model=medgemma-4b-it", "-p", "no:cacheprovider")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    text = _flat(result)
    assert f"{MODEL.flag} 'medgemma-4b-it': the weights of google/medgemma-4b-it are not in the local" in text
    assert f"looked in {hf_cache}" in text
    assert "downloading is off (HF_HUB_OFFLINE or TRANSFORMERS_OFFLINE is set)" in text
    assert "`hf download google/medgemma-4b-it`" in text
    assert f"{MODEL.flag} medgemma-4b-it=/path/to/checkpoint" in text
    assert "Traceback" not in text


def test_name_equals_dir_takes_the_weights_from_the_directory_and_names_the_run(
    shipped_audits: pytest.Pytester, tiny_llava_dir: Path, fast_options: list[str]
) -> None:
    result = shipped_audits.runpytest(f"--model=huatuogpt-vision-7b={tiny_llava_dir}", "-v", *fast_options)
    outcomes = result.parseoutcomes()
    assert outcomes.get("errors", 0) == 0 and outcomes.get("passed", 0) + outcomes.get("failed", 0) == 5
    result.stdout.fnmatch_lines(["*test_health?huatuogpt-vision-7b-synthetic-lesions?*"])


def test_name_equals_dir_with_a_checkpoint_of_another_family_is_refused(
    pytester: pytest.Pytester, tiny_llava_dir: Path
) -> None:
    result = pytester.runpytest(f"--model=lingshu-7b={tiny_llava_dir}", "-p", "no:cacheprovider")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    text = _flat(result)
    assert "lingshu-7b is a qwen2_5_vl model (lingshu-medical-mllm/Lingshu-7B)" in text
    assert "holds a llava checkpoint" in text


@pytest.mark.parametrize(
    ("model_type", "advice"),
    [
        ("llava_qwen2", "the original HuatuoGPT-Vision format; use the -hf conversion"),
        ("llava_mistral", "the original LLaVA-Med format; use an HF-format conversion (llava-med=DIR)"),
        ("gemma3_text", "a text-only model"),
    ],
)
def test_a_custom_code_or_text_only_checkpoint_is_refused_with_advice(
    pytester: pytest.Pytester, model_type: str, advice: str
) -> None:
    checkpoint = pytester.mkdir("checkpoint")
    (checkpoint / "config.json").write_text(json.dumps({"model_type": model_type}))
    result = pytester.runpytest(f"--model={checkpoint}", "-p", "no:cacheprovider")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    text = _flat(result)
    assert f"model_type {model_type!r}" in text and advice in text and "Supported model types:" in text


def test_every_catalogue_entry_resolves_to_an_adapter_whose_family_the_tests_audit() -> None:
    import importlib

    from pytest_medprobe.models.catalogue import CATALOGUE
    from pytest_medprobe.models.families import ADAPTERS, STRUCTURAL_TESTED, adapter_class
    from tests.plugin.test_model_families import FAMILY_MODULES

    covered = {"llava"} | {importlib.import_module(f"tests.families.{name}").MODEL_TYPE for name in FAMILY_MODULES}
    # Every family file and every family said to be mapped structurally is audited by a test.
    assert set(ADAPTERS) | set(STRUCTURAL_TESTED) <= covered
    assert all(adapter_class(entry.model_type) is not None for entry in CATALOGUE)
    names = {entry.name for entry in CATALOGUE}
    assert {
        "huatuogpt-vision",
        "lingshu-7b",
        "lingshu-32b",
        "medgemma-4b-it",
        "medgemma-27b-it",
        "llava-med",
        "medvlm-r1",
    } <= names
