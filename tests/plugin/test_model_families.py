"""Every supported model family, audited end to end through ``pytest audits/ --model=DIR``.

Each family's tiny random-init checkpoint is built from its real transformers config and
processor classes (tests/families), saved with ``save_pretrained``, and loaded back by
directory, exactly as a user's checkpoint is. A random model may pass or fail an audit;
what is checked is that every audit reaches a verdict (never an error), that every stage
of metrics.md §1 is there (decoder layers as many as the config says), and that the
answer was read from the letter logits.
"""

from __future__ import annotations

import importlib
import json
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

FAMILY_MODULES = (
    "tiny_llava_next",
    "tiny_qwen2_vl",
    "tiny_qwen2_5_vl",
    "tiny_gemma3",
    "tiny_internvl",
    "tiny_idefics3",
    "tiny_smolvlm",
    "tiny_paligemma",
    "tiny_mllama",
    "tiny_llava_onevision",
    "tiny_mistral3",
    "tiny_lfm2_vl",
    "tiny_aya_vision",
    "tiny_gemma4",
    "tiny_gemma3n",
    "tiny_qwen3_vl",
    "tiny_qwen3_vl_moe",
    "tiny_qwen3_5",
    "tiny_glm4v",
)
N_AUDITS = 5  # four failure modes and health; the six regression audits skip without a baseline


def _builder(name: str) -> ModuleType:
    return importlib.import_module(f"tests.families.{name}")


@pytest.fixture(scope="session")
def family_checkpoints(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Checkpoint directories, built on first use and kept for the session."""
    return {}


def _checkpoint(name: str, checkpoints: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    if name not in checkpoints:
        checkpoints[name] = _builder(name).build(tmp_path_factory.mktemp("families") / name)
    return checkpoints[name]


def _mixed_size_folder(root: Path) -> Path:
    """A folder dataset whose images have different sizes and aspect ratios."""
    from PIL import Image

    rng = np.random.default_rng(0)
    sizes = [(40, 56), (64, 64), (48, 32), (56, 72)]
    for label, colour in (("round", 0), ("ring", 1)):
        folder = root / label
        folder.mkdir(parents=True)
        for index in range(10):
            height, width = sizes[index % len(sizes)]
            image = rng.integers(0, 80, size=(height, width, 3), dtype=np.uint8)
            image[..., colour] += 150  # a colour cue, so the two classes differ
            Image.fromarray(image).save(folder / f"{index}.png")
    return root


def _expected_stages(run: dict[str, object], n_layers: int, image_view: bool, side_connectors: tuple[int, ...]) -> None:
    names = [record["stage"] for record in run["stages"]]  # type: ignore[index, union-attr]
    assert "vision" in names and "connector" in names and "vision.0" in names
    assert [name for name in names if name.startswith("connector.")] == [f"connector.{i}" for i in side_connectors]
    answer_layers = [name for name in names if name.startswith("llm.") and name.endswith("@answer")]
    image_layers = [name for name in names if name.startswith("llm.") and "@" not in name]
    assert len(answer_layers) == n_layers
    assert len(image_layers) == (n_layers if image_view else 0)
    assert run["has_image_view"] is image_view


@pytest.mark.parametrize("module_name", FAMILY_MODULES)
def test_each_family_is_audited_end_to_end_from_a_checkpoint_directory(
    shipped_audits: pytest.Pytester,
    module_name: str,
    family_checkpoints: dict[str, Path],
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    builder = _builder(module_name)
    checkpoint = _checkpoint(module_name, family_checkpoints, tmp_path_factory)
    datasets = ["--dataset=synthetic-lesions"]
    if builder.MIXED_SIZES:
        datasets.append(f"--dataset=folder:{_mixed_size_folder(shipped_audits.path / 'mixed')}")
    result = shipped_audits.runpytest(
        f"--model={checkpoint}",
        *datasets,
        "--max-samples=24",
        "--batch-size=6",  # several images per batch: mixed sizes meet in one forward pass
        "--medprobe-bootstrap=100",
        f"--medprobe-cache={shipped_audits.path / 'cache'}",
        "--medprobe-json=r.json",
        "-p",
        "no:cacheprovider",
    )
    outcomes = result.parseoutcomes()
    assert outcomes.get("errors", 0) == 0, result.stdout.str()[-3000:]
    assert outcomes.get("passed", 0) + outcomes.get("failed", 0) == N_AUDITS * len(datasets)
    runs = json.loads((shipped_audits.path / "r.json").read_text())["runs"]
    assert len(runs) == len(datasets)
    image_view = builder.MODEL_TYPE != "mllama"
    for run in runs:
        assert run["model"]["source"] == str(checkpoint)
        _expected_stages(run, builder.N_DECODER_LAYERS, image_view, getattr(builder, "DEEPSTACK_BLOCKS", ()))
        assert run["answer"]["mode"] == "letter-logits"
        assert all(0.0 <= record["score"] <= 1.0 for record in run["stages"])
        assert {verdict["verdict"] for verdict in run["failure_modes"]} <= {"pass", "fail"}
    if not image_view:
        result.stdout.fnmatch_lines(["*no image view*"])


# Families whose vision rows are not one per image: tiles (llava_next, llava_onevision,
# idefics3, aya_vision, lfm2_vl), packed patches (qwen2_vl, qwen3_vl with its deepstack
# mergers, qwen3_5, glm4v, mistral3), padded patch rows and pooled soft tokens (lfm2_vl, gemma4);
# and gemma3n, whose convolution stages are pooled over feature-map positions.
ROW_MAPPED_FAMILIES = (
    "tiny_qwen2_vl",
    "tiny_qwen3_vl",
    "tiny_qwen3_5",
    "tiny_glm4v",
    "tiny_llava_next",
    "tiny_idefics3",
    "tiny_llava_onevision",
    "tiny_mistral3",
    "tiny_lfm2_vl",
    "tiny_aya_vision",
    "tiny_gemma4",
    "tiny_gemma3n",
)


@pytest.mark.parametrize("module_name", ROW_MAPPED_FAMILIES)
def test_a_tiled_family_pools_each_image_over_its_own_tiles(
    module_name: str, family_checkpoints: dict[str, Path], tmp_path_factory: pytest.TempPathFactory
) -> None:
    """Pooling by image, not by reshaping: an image's features do not depend on its batch-mates."""
    from pytest_medprobe.extract import extract_split
    from pytest_medprobe.models.loader import load_model
    from pytest_medprobe.models.registry import resolve_model_source

    rng = np.random.default_rng(1)
    images = [rng.integers(0, 255, size=size, dtype=np.uint8) for size in ((40, 56, 3), (64, 64, 3), (56, 40, 3))]
    checkpoint = _checkpoint(module_name, family_checkpoints, tmp_path_factory)
    loaded = load_model(resolve_model_source(str(checkpoint), checkpoint.parent), device="cpu")
    question = "What does this dermatoscopy image show? Options: (A) round (B) ring Answer with the letter."
    together = extract_split(loaded, images, question, 2, batch_size=3, progress=False)
    alone = [extract_split(loaded, [image], question, 2, batch_size=1, progress=False) for image in images]
    side_connectors = [stage for stage in together.stages if stage.startswith("connector.")]
    for stage in ("vision.0", "vision", "connector", *side_connectors):
        separate = np.concatenate([split.stages[stage] for split in alone])
        np.testing.assert_allclose(
            together.stages[stage], separate, rtol=1e-4, atol=1e-5, err_msg=f"{module_name} {stage}"
        )


def _real_patch_reference(loaded: object, image: np.ndarray, prompt: str) -> tuple[np.ndarray, np.ndarray, bool]:
    """For one image alone: the mean over its real patches of the last vision block, of the tower's output,
    and whether its rows had filler patches.

    Computed straight from the vision tower's own outputs and the processor's padding
    mask, independently of the adapter's row mapping and pooling.
    """
    import torch

    from pytest_medprobe.extract import prepare_inputs

    inputs = prepare_inputs(loaded, [image], prompt)  # type: ignore[arg-type]
    tower = loaded.model.model.vision_tower  # type: ignore[attr-defined]
    block_outputs: list[torch.Tensor] = []
    last_block = tower.encoder.layers[-1]
    handle = last_block.register_forward_hook(
        lambda module, args, output: block_outputs.append(output[0] if isinstance(output, tuple) else output)
    )
    try:
        with torch.inference_mode():
            if "pixel_attention_mask" in inputs:  # LFM2-VL: SigLIP2 NaFlex rows (views)
                real = inputs["pixel_attention_mask"].bool()
                output = tower(
                    pixel_values=inputs["pixel_values"],
                    spatial_shapes=inputs["spatial_shapes"],
                    pixel_attention_mask=inputs["pixel_attention_mask"],
                )
                handed_over = output.last_hidden_state[real]  # [real patches, d]
            else:  # Gemma 4: padded flat patches, pooled into soft tokens
                real = (inputs["image_position_ids"] != -1).all(dim=-1)
                output = tower(pixel_values=inputs["pixel_values"], pixel_position_ids=inputs["image_position_ids"])
                handed_over = output.last_hidden_state  # [soft tokens, d], filler already dropped
    finally:
        handle.remove()
    last_block_real = block_outputs[-1][real]  # [real patches, d]
    return last_block_real.float().mean(dim=0).numpy(), handed_over.float().mean(dim=0).numpy(), bool((~real).any())


@pytest.mark.parametrize("module_name", ["tiny_lfm2_vl", "tiny_gemma4"])
def test_padded_vision_rows_are_pooled_over_real_patches_only(
    module_name: str, family_checkpoints: dict[str, Path], tmp_path_factory: pytest.TempPathFactory
) -> None:
    """Filler patches (padding to the longest row) never enter a pooled vision feature."""
    from pytest_medprobe.extract import extract_split
    from pytest_medprobe.models.loader import load_model
    from pytest_medprobe.models.registry import resolve_model_source
    from pytest_medprobe.prompts import chat_prompt

    rng = np.random.default_rng(2)
    images = [rng.integers(0, 255, size=size, dtype=np.uint8) for size in ((40, 56, 3), (64, 64, 3), (48, 32, 3))]
    checkpoint = _checkpoint(module_name, family_checkpoints, tmp_path_factory)
    loaded = load_model(resolve_model_source(str(checkpoint), checkpoint.parent), device="cpu")
    question = "What does this dermatoscopy image show? Options: (A) round (B) ring Answer with the letter."
    split = extract_split(loaded, images, question, 2, batch_size=3, progress=False)
    last_block = f"vision.{loaded.n_vision_blocks - 1}"
    prompt = chat_prompt(loaded.processor, question)
    filler_seen = False
    for index, image in enumerate(images):
        block_mean, handed_over_mean, had_filler = _real_patch_reference(loaded, image, prompt)
        filler_seen |= had_filler
        np.testing.assert_allclose(split.stages[last_block][index], block_mean, rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(split.stages["vision"][index], handed_over_mean, rtol=1e-4, atol=1e-5)
    assert filler_seen, "some image should be padded with filler patches, or this test checks nothing"


def test_gemma3n_decoder_layers_are_read_on_the_active_altup_stream(
    family_checkpoints: dict[str, Path], tmp_path_factory: pytest.TempPathFactory
) -> None:
    """Between Gemma 3n's layers the hidden state is [streams, B, S, H]; llm.j is the stream the layer computes on."""
    import torch

    from pytest_medprobe.extract import extract_split, prepare_inputs
    from pytest_medprobe.models.loader import load_model
    from pytest_medprobe.models.registry import resolve_model_source
    from pytest_medprobe.prompts import chat_prompt

    checkpoint = _checkpoint("tiny_gemma3n", family_checkpoints, tmp_path_factory)
    loaded = load_model(resolve_model_source(str(checkpoint), checkpoint.parent), device="cpu")
    rng = np.random.default_rng(3)
    images = [rng.integers(0, 255, size=(64, 64, 3), dtype=np.uint8) for _ in range(2)]
    question = "What does this dermatoscopy image show? Options: (A) round (B) ring Answer with the letter."
    split = extract_split(loaded, images, question, 2, batch_size=2, progress=False)
    inputs = prepare_inputs(loaded, images, chat_prompt(loaded.processor, question))
    with torch.inference_mode():
        streams = loaded.model(**inputs, output_hidden_states=True).hidden_states  # [streams, B, S, H] each
    active = loaded.model.config.text_config.altup_active_idx
    assert streams[1].dim() == 4 and streams[1].shape[0] == loaded.model.config.text_config.altup_num_inputs
    for layer in range(loaded.n_decoder_layers - 1):  # the last is read after the streams merge and the norm
        np.testing.assert_allclose(
            split.stages[f"llm.{layer}@answer"], streams[layer + 1][active][:, -1].numpy(), rtol=1e-4, atol=1e-5
        )


@pytest.mark.parametrize(
    ("module_name", "blocks", "handoff"),
    [
        ("tiny_llava_onevision", "model.vision_tower.encoder.layers", "model.multi_modal_projector"),
        ("tiny_mistral3", "model.vision_tower.transformer.layers", "model.multi_modal_projector"),
        ("tiny_lfm2_vl", "model.vision_tower.encoder.layers", "model.multi_modal_projector"),
        ("tiny_aya_vision", "model.vision_tower.encoder.layers", "model.multi_modal_projector"),
        ("tiny_gemma4", "model.vision_tower.encoder.layers", "model.embed_vision"),
    ],
)
def test_these_family_files_name_no_path_the_structural_adapter_finds(
    module_name: str, blocks: str, handoff: str
) -> None:
    """Their family files only map vision rows to images; every stage is found in the module tree."""
    from pytest_medprobe.models.families import make_adapter

    builder = _builder(module_name)
    adapter = make_adapter(builder.MODEL_TYPE)
    assert (adapter.vision_block_paths, adapter.handoff_path, adapter.language_model_path) == (None, None, None)
    model, _ = builder.make()
    layout = adapter.layout(model)
    assert (layout.vision_blocks, layout.handoff, layout.language_model) == ((blocks,), handoff, "model.language_model")
    assert layout.image_token_id == model.config.image_token_id
    assert adapter.final_norm(model) is not None  # the last layer is read where the LM head reads it
