"""Bad input, end to end: every case runs through pytest and checks the exit status and the message.

A usage error stops the run with ``ExitCode.USAGE_ERROR`` and its message on stderr. A
data or model problem found while testing turns the affected audits into errors with
our message on stdout: never a pass, never a traceback of the plugin's internals.
(Unknown model and dataset names, a folder without config.json, --max-samples 0 and
--batch-size 0 are in test_help_and_usage_errors.py.)
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pytest_medprobe.config import (
    DTYPE,
    MAX_LAYER_DROP,
    MAX_LLM_LOSS,
    MIN_VISION_GAIN,
    MIN_VISION_SCORE,
    MODEL,
    TOLERANCE,
    Setting,
    setting_names,
)

AUDIT = """
def test_health(verdicts, check_verdict):
    check_verdict(verdicts.health)
"""
IMAGE_CHECK = """
import numpy as np


def test_every_image_reaches_the_model_as_rgb_uint8(probe_dataset):
    images = [*probe_dataset.fit_images, *probe_dataset.test_images]
    assert all(np.asarray(image).dtype == np.uint8 and np.asarray(image).shape[2:] == (3,) for image in images)
"""
REFERENCE = Path(__file__).resolve().parents[2] / "pytest_medprobe" / "zoo" / "medprobe-tiny"
FAST = ("--max-samples=40", "--medprobe-bootstrap=100", "-p", "no:cacheprovider")
# A frame of our own code in the output: a traceback where our message should stand alone.
OWN_FRAME = re.compile(r"pytest_medprobe[/\\][\w/\\]+\.py")


def _usage_error(pytester: pytest.Pytester, *args: str) -> str:
    """Run pytest expecting a usage error; returns its stderr after checking it is clean."""
    pytester.makepyfile(AUDIT)
    result = pytester.runpytest(*args, *FAST)
    assert result.ret == pytest.ExitCode.USAGE_ERROR, result.stdout.str()
    text = result.stderr.str()
    assert "Traceback" not in text and not OWN_FRAME.search(text), text
    return text


def _audit_errors(pytester: pytest.Pytester, cache: Path, *args: str, errors: int = 1) -> str:
    """Run the health audit expecting ``errors`` errors and nothing else; returns clean stdout."""
    pytester.makepyfile(AUDIT)
    result = pytester.runpytest(*args, f"--medprobe-cache={cache}", *FAST)
    result.assert_outcomes(errors=errors)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    text = result.stdout.str()
    assert "Traceback" not in text and not OWN_FRAME.search(text), text
    return text


def _flat(text: str) -> str:
    """Output with line breaks removed: long messages wrap in the terminal."""
    return re.sub(r"\s+", " ", text)


# -- models --------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["missing directory", "file"])
def test_a_model_path_that_is_not_a_checkpoint_directory_is_a_usage_error(pytester: pytest.Pytester, kind: str) -> None:
    path = pytester.path / "checkpoints" / "llava-med"
    if kind == "file":
        path.parent.mkdir()
        path.write_text("not a checkpoint")
    text = _flat(_usage_error(pytester, f"--model={path}"))
    assert f"{MODEL.flag} {str(path)!r}" in text
    if kind == "file":
        assert "is a file, not a checkpoint directory" in text
    else:
        assert f"no such model name and no directory at {path}" in text and "built-in names: medprobe-tiny" in text


def test_an_unsupported_model_type_is_a_usage_error_listing_the_supported_types(pytester: pytest.Pytester) -> None:
    checkpoint = pytester.mkdir("omni")
    (checkpoint / "config.json").write_text('{"model_type": "qwen3_omni"}')
    text = _flat(_usage_error(pytester, f"--model={checkpoint}"))
    assert "model_type 'qwen3_omni' (in " in text and "is not supported" in text
    assert "does not know it" in text and "pip install -U transformers" in text
    assert (
        "audited by our tests: aya_vision, gemma3, gemma3n, gemma4, glm4v, idefics3, internvl, lfm2_vl, llava, "
        "llava_next, llava_onevision, mistral3, mllama, paligemma, qwen2_5_vl, qwen2_vl, qwen3_5, qwen3_vl, "
        "qwen3_vl_moe, smolvlm (pytest --medprobe-models lists them all)" in text
    )


def test_a_checkpoint_without_weight_files_errors_every_audit_naming_the_directory(
    pytester: pytest.Pytester, shared_cache: Path
) -> None:
    checkpoint = shutil.copytree(
        REFERENCE, pytester.path / "no-weights", ignore=shutil.ignore_patterns("*.safetensors")
    )
    text = _flat(_audit_errors(pytester, shared_cache, f"--model={checkpoint}"))
    assert f"no weight files (*.safetensors, *.bin) in {checkpoint}" in text


@pytest.fixture
def nan_connector_checkpoint(pytester: pytest.Pytester) -> Path:
    """The reference model with its projector's first weight set to NaN: every feature from the connector on is NaN."""
    from safetensors.numpy import load_file, save_file

    checkpoint = shutil.copytree(REFERENCE, pytester.path / "nan-connector")
    weights = checkpoint / "model.safetensors"
    tensors = load_file(weights)
    [name] = [key for key in tensors if key.endswith("multi_modal_projector.linear_1.weight")]
    tensors[name] = np.full_like(tensors[name], np.nan)
    save_file(tensors, weights, metadata={"format": "pt"})
    return checkpoint


def test_nan_features_error_every_audit_naming_the_stage_and_suggesting_a_dtype(
    pytester: pytest.Pytester, shared_cache: Path, nan_connector_checkpoint: Path
) -> None:
    text = _flat(_audit_errors(pytester, shared_cache, f"--model={nan_connector_checkpoint}"))
    assert "stage 'connector' has" in text and "NaN" in text and "cannot be probed" in text
    assert f"{DTYPE.flag}=float32" in text


# -- datasets: usage errors ----------------------------------------------------------


def _image(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


def _class_folders(root: Path, classes: Sequence[str], per_class: int = 3) -> None:
    rng = np.random.default_rng(0)
    for name in classes:
        for index in range(per_class):
            _image(root / name / f"{index}.png", rng.integers(0, 256, (32, 32, 3), dtype=np.uint8))


def test_a_folder_dataset_that_does_not_exist_is_a_usage_error_naming_the_path(pytester: pytest.Pytester) -> None:
    missing = pytester.path / "scans"
    text = _flat(_usage_error(pytester, f"--dataset=folder:{missing}"))
    assert f"dataset 'folder:{missing}': no folder at {missing}" in text
    assert "one sub-folder of images per class" in text


def test_a_folder_dataset_with_one_class_folder_is_a_usage_error(pytester: pytest.Pytester) -> None:
    root = pytester.path / "one-class"
    _class_folders(root, ["benign"])
    text = _flat(_usage_error(pytester, f"--dataset=folder:{root}"))
    assert f"{root}: 1 class folder(s) (benign); a probe needs at least 2" in text


def test_train_and_test_folders_with_different_classes_are_a_usage_error_naming_both(
    pytester: pytest.Pytester,
) -> None:
    root = pytester.path / "mismatched"
    _class_folders(root / "train", ["benign", "malignant"])
    _class_folders(root / "test", ["benign", "melanoma"])
    text = _flat(_usage_error(pytester, f"--dataset=folder:{root}"))
    assert "train/ and test/ hold different class folders (train: benign, malignant; test: benign, melanoma)" in text


# -- datasets: problems found while testing -------------------------------------------

BREAST = "medmnist:breastmnist"  # 2 classes


def _medmnist(
    root: Path,
    test_labels: Sequence[int] = (0, 1) * 6,
    train_labels: Sequence[int] = (0, 1) * 10,
    leave_out: Sequence[str] = (),
) -> Path:
    """``root/breastmnist.npz`` in the official layout: grayscale uint8 ``(N, 28, 28)``, labels ``(N, 1)``."""
    rng = np.random.default_rng(0)
    arrays = {}
    for split, labels in (("train", train_labels), ("val", (0, 1)), ("test", test_labels)):
        arrays[f"{split}_images"] = rng.integers(0, 256, (len(labels), 28, 28), dtype=np.uint8)
        arrays[f"{split}_labels"] = np.asarray(labels, dtype=np.uint8).reshape(-1, 1)
    for key in leave_out:
        del arrays[key]
    root.mkdir(parents=True, exist_ok=True)
    path = root / "breastmnist.npz"
    np.savez_compressed(path, **arrays)  # type: ignore[arg-type]
    return path


@pytest.mark.parametrize(
    ("test_labels", "expected"),
    [
        pytest.param(
            (0, 1, 7, 0),
            "test labels range over 0..7, but there are 2 class names (labels must lie in 0..1)",
            id="label-out-of-range",
        ),
        pytest.param((), "the test split is empty", id="empty-test-split"),
        pytest.param((1,), "the test split holds only class 'normal, benign' (1 sample)", id="class-missing"),
    ],
)
def test_medmnist_labels_that_cannot_be_scored_error_every_audit(
    pytester: pytest.Pytester, shared_cache: Path, test_labels: Sequence[int], expected: str
) -> None:
    root = pytester.path / "medmnist"
    _medmnist(root, test_labels=test_labels)
    text = _flat(_audit_errors(pytester, shared_cache, f"--dataset={BREAST}", f"--data-root={root}"))
    assert f"medprobe-tiny × {BREAST}: {BREAST}: {expected}" in text


def test_a_truncated_medmnist_file_errors_every_audit_naming_the_file(
    pytester: pytest.Pytester, shared_cache: Path
) -> None:
    path = _medmnist(pytester.path / "medmnist")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    text = _flat(_audit_errors(pytester, shared_cache, f"--dataset={BREAST}", f"--data-root={path.parent}"))
    assert f"{path}: cannot read the archive" in text
    assert "the file looks truncated or corrupt. Re-download breastmnist.npz." in text


def test_a_medmnist_file_without_test_images_errors_every_audit_naming_the_key(
    pytester: pytest.Pytester, shared_cache: Path
) -> None:
    path = _medmnist(pytester.path / "medmnist", leave_out=["test_images"])
    text = _flat(_audit_errors(pytester, shared_cache, f"--dataset={BREAST}", f"--data-root={path.parent}"))
    assert f"{path}: no array 'test_images' in the file" in text and "official MedMNIST layout" in text


# -- images of other shapes, channels and dtypes ---------------------------------------


def _odd_image(kind: str, index: int, rng: np.random.Generator) -> np.ndarray:
    shape = (24, 40) if index % 2 else (64, 64)  # landscape and square, in one folder
    if kind == "16-bit grayscale":
        return rng.integers(0, 65536, shape, dtype=np.uint16)
    if kind == "RGBA":
        return rng.integers(0, 256, (*shape, 4), dtype=np.uint8)
    return rng.integers(0, 256, shape, dtype=np.uint8)


@pytest.mark.parametrize("kind", ["16-bit grayscale", "RGBA", "8-bit grayscale"])
def test_png_images_of_other_depths_and_channels_are_converted_and_audited(
    pytester: pytest.Pytester, shared_cache: Path, kind: str
) -> None:
    rng = np.random.default_rng(1)
    root = pytester.path / "odd"
    for name in ("benign", "malignant"):
        for index in range(8):
            _image(root / name / f"{index}.png", _odd_image(kind, index, rng))
    with Image.open(root / "benign" / "0.png") as written:
        assert written.mode == {"16-bit grayscale": "I;16", "RGBA": "RGBA", "8-bit grayscale": "L"}[kind]
    pytester.makepyfile(test_audit=AUDIT, test_images=IMAGE_CHECK)
    result = pytester.runpytest(f"--dataset=folder:{root}", f"--medprobe-cache={shared_cache}", "-v", *FAST)
    outcomes = result.parseoutcomes()
    assert "errors" not in outcomes and "error" not in outcomes, result.stdout.str()
    result.stdout.fnmatch_lines(["*test_every_image_reaches_the_model_as_rgb_uint8*PASSED*"])
    assert outcomes.get("passed", 0) + outcomes.get("failed", 0) == 2
    if outcomes.get("failed"):  # a verdict, with its message: random images may well be unhealthy
        result.stdout.fnmatch_lines(["*health*< min*"])


def test_a_file_with_an_image_extension_that_is_not_an_image_errors_every_audit_naming_it(
    pytester: pytest.Pytester, shared_cache: Path
) -> None:
    root = pytester.path / "scans"
    _class_folders(root, ["benign", "malignant"], per_class=4)
    broken = root / "malignant" / "scan-7.png"
    broken.write_bytes(b"\x89PNG but really not an image at all" * 8)
    text = _flat(_audit_errors(pytester, shared_cache, f"--dataset=folder:{root}"))
    assert f"{broken}: cannot read the image" in text and "Replace or remove the file." in text


# -- thresholds -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("argument", "setting", "value", "allowed"),
    [
        ("--max-layer-drop=-1", MAX_LAYER_DROP, "-1", "a number from 0 to 1"),
        ("--max-llm-loss=abc", MAX_LLM_LOSS, "abc", "a number from 0 to 1"),
        ("--min-vision-score=2", MIN_VISION_SCORE, "2", "a number from 0 to 1"),
        ("--min-vision-gain=inf", MIN_VISION_GAIN, "inf", "a number from -1 to 1"),
        ("--min-vision-gain=-1.5", MIN_VISION_GAIN, "-1.5", "a number from -1 to 1"),
        ("--medprobe-tolerance=-0.1", TOLERANCE, "-0.1", "a number from 0 to 1"),
    ],
)
def test_a_threshold_outside_0_to_1_or_not_a_number_is_a_usage_error(
    pytester: pytest.Pytester, argument: str, setting: Setting, value: str, allowed: str
) -> None:
    text = _flat(_usage_error(pytester, argument))
    assert f"{setting_names(setting)}: got {value!r}; allowed: {allowed}" in text


def test_a_layer_drop_above_the_whole_llm_loss_is_a_contradiction_naming_both_settings(
    pytester: pytest.Pytester,
) -> None:
    text = _flat(_usage_error(pytester, "--max-layer-drop=0.2", "--max-llm-loss=0.1"))
    assert "contradictory thresholds" in text
    assert f"{setting_names(MAX_LAYER_DROP)} is 0.2 but {setting_names(MAX_LLM_LOSS)} is 0.1" in text
    assert "a single decoder layer may not lose more than the whole decoder is allowed to" in text
