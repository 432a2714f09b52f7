"""A fault planted in a Qwen3-VL deepstack merger lands where docs/metrics.md says it does.

The tiny Qwen3-VL (tests/families/tiny_qwen3_vl.py) has deepstack mergers reading vision
blocks 0 and 1; the second one's output is added to the image positions after decoder
layer 1. Zeroing that merger's first projection makes its output the same for every
image (biases only): it forgets what vision block 1 saw. Then:

- every stage upstream of it and beside it is unchanged: the vision blocks, ``vision``,
  ``connector``, ``connector.0``, and the decoder up to layer 1 (``llm.1`` is read before
  deepstack feature 1 is added);
- ``connector.1`` carries nothing, and the decoder first changes at ``llm.2``;
- through ``pytest audits/`` (on colour-cued images, which a random tiny model does see):
  connector fidelity fails at ``connector.1`` (read against ``vision.1``) and is the root
  cause; the visual audit upstream of it passes, and the healthy model's connector
  fidelity passes.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tests.families import tiny_qwen3_vl

FAULTY_BLOCK = tiny_qwen3_vl.DEEPSTACK_BLOCKS[1]


@pytest.fixture(scope="module")
def healthy_and_faulty(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    import torch

    from pytest_medprobe.models.tiny_llava import save_checkpoint_atomically

    root = tmp_path_factory.mktemp("qwen3-vl-deepstack")
    healthy = tiny_qwen3_vl.build(root / "healthy")
    model, processor = tiny_qwen3_vl.make()
    merger = model.model.visual.deepstack_merger_list[tiny_qwen3_vl.DEEPSTACK_BLOCKS.index(FAULTY_BLOCK)]
    with torch.no_grad():
        merger.linear_fc1.weight.zero_()
    return healthy, save_checkpoint_atomically(model, processor, root / "faulty")


def _features(checkpoint: Path) -> dict[str, np.ndarray]:
    from pytest_medprobe.extract import extract_split
    from pytest_medprobe.models.loader import load_model
    from pytest_medprobe.models.registry import resolve_model_source

    rng = np.random.default_rng(3)
    images = [rng.integers(0, 255, size=size, dtype=np.uint8) for size in ((40, 56, 3), (64, 64, 3), (56, 40, 3))]
    loaded = load_model(resolve_model_source(str(checkpoint), checkpoint.parent), device="cpu")
    question = "What does this dermatoscopy image show? Options: (A) round (B) ring Answer with the letter."
    return extract_split(loaded, images, question, 2, batch_size=3, progress=False).stages


def test_the_fault_changes_its_own_side_connector_and_the_decoder_from_the_next_layer_on(
    healthy_and_faulty: tuple[Path, Path],
) -> None:
    healthy, faulty = (_features(checkpoint) for checkpoint in healthy_and_faulty)
    unchanged = [
        *(f"vision.{i}" for i in range(tiny_qwen3_vl.VISION_BLOCKS)),
        "vision",
        "connector",
        f"connector.{tiny_qwen3_vl.DEEPSTACK_BLOCKS[0]}",
        "llm.0",
        "llm.1",
        "llm.0@answer",
        "llm.1@answer",
    ]
    for stage in unchanged:
        np.testing.assert_allclose(faulty[stage], healthy[stage], rtol=1e-5, atol=1e-6, err_msg=stage)
    side = f"connector.{FAULTY_BLOCK}"
    assert np.ptp(faulty[side], axis=0).max() < 1e-6  # the same vector for every image
    assert np.ptp(healthy[side], axis=0).max() > 1e-3
    assert not np.allclose(faulty["llm.2"], healthy["llm.2"], atol=1e-4)


def _audit(pytester: pytest.Pytester, checkpoint: Path, name: str) -> dict[str, object]:
    """The results-file run of the shipped audits on the colour-cued folder dataset."""
    from tests.plugin.test_model_families import _mixed_size_folder

    dataset = pytester.path / "colour-cued"
    if not dataset.exists():  # random tiny models see colour, not synthetic lesions
        _mixed_size_folder(dataset)
    result = pytester.runpytest(
        f"--model={checkpoint}",
        f"--dataset=folder:{dataset}",
        "--medprobe-bootstrap=100",
        f"--medprobe-cache={pytester.path / 'cache'}",
        f"--medprobe-json={name}.json",
        "-p",
        "no:cacheprovider",
    )
    assert result.parseoutcomes().get("errors", 0) == 0, result.stdout.str()[-3000:]
    run: dict[str, object] = json.loads((pytester.path / f"{name}.json").read_text())["runs"][0]
    return run


def _verdicts(run: dict[str, object]) -> dict[str, dict[str, object]]:
    return {verdict["mode"]: verdict for verdict in run["failure_modes"]}  # type: ignore[attr-defined]


def test_the_audits_name_the_deepstack_merger_as_the_root_cause(
    shipped_audits: pytest.Pytester, healthy_and_faulty: tuple[Path, Path]
) -> None:
    healthy, faulty = (
        _audit(shipped_audits, checkpoint, name) for checkpoint, name in zip(healthy_and_faulty, ("healthy", "faulty"))
    )
    assert _verdicts(healthy)["connector_fidelity"]["verdict"] == "pass"
    verdicts = _verdicts(faulty)
    assert verdicts["visual_representation"]["verdict"] == "pass"
    assert verdicts["llm_comprehension"]["verdict"] == _verdicts(healthy)["llm_comprehension"]["verdict"]
    fidelity = verdicts["connector_fidelity"]
    assert fidelity["verdict"] == "fail", fidelity
    assert fidelity["stage"] == f"connector.{FAULTY_BLOCK}"
    assert fidelity["segment"] == [f"vision.{FAULTY_BLOCK}", f"connector.{FAULTY_BLOCK}"]
    # Audit 2 reads whitened probes (metrics.md §2).
    expected = f"vision.{FAULTY_BLOCK} 1.000 → connector.{FAULTY_BLOCK} 0.500 (whitened probes), loss 0.500"
    assert expected in str(fidelity["message"])
    assert faulty["root_cause"] == "connector_fidelity"
