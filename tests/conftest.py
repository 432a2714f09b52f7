"""Shared fixtures of the plugin's own tests: the tiny LLaVA, built once per session."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.stand_in_server import StandIn, fake_breastmnist, serving

# Nothing may reach the hub: every model is built locally.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
# Nor anything else: a missing MedMNIST file is not downloaded unless a test serves it itself.
os.environ.setdefault("MEDPROBE_MEDMNIST_URL", "off")


def _import_heavy_modules_once() -> None:
    """Import what an audit run imports, before any in-process pytester run.

    pytester restores ``sys.modules`` after each in-process run; a C extension first
    imported inside a run (numpy.fft through scikit-learn, say) would then be imported a
    second time by the next run, which such extensions refuse.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.figure  # noqa: F401
    import numpy.fft  # noqa: F401
    import pytest_html  # noqa: F401
    import safetensors.numpy  # noqa: F401
    import sklearn.linear_model  # noqa: F401
    import sklearn.preprocessing  # noqa: F401
    import torch  # noqa: F401
    from transformers import AutoModelForImageTextToText, AutoProcessor, LlavaForConditionalGeneration  # noqa: F401
    from transformers.models.clip import image_processing_clip  # noqa: F401

    from pytest_medprobe import curve, extract, failure_modes, health, probes  # noqa: F401
    from pytest_medprobe.report import json_results, plots, terminal  # noqa: F401


_import_heavy_modules_once()


@pytest.fixture(scope="session")
def shared_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A feature cache shared by the tests that do not test the cache itself (read-only use)."""
    return tmp_path_factory.mktemp("medprobe-cache")


@pytest.fixture(scope="session")
def tiny_llava_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny LLaVA checkpoint directory, as save_pretrained writes it (model and processor)."""
    from pytest_medprobe.models.tiny_llava import build_tiny_llava

    return build_tiny_llava(tmp_path_factory.mktemp("checkpoints") / "tiny-llava")


@pytest.fixture(scope="session")
def tiny_llava(tiny_llava_dir: Path):  # type: ignore[no-untyped-def]
    """The tiny LLaVA loaded through the ordinary loader (read-only)."""
    from pytest_medprobe.models.loader import load_model
    from pytest_medprobe.models.registry import resolve_model_source

    return load_model(resolve_model_source(str(tiny_llava_dir), tiny_llava_dir.parent))


@pytest.fixture
def stand_in() -> Iterator[StandIn]:
    """A file server on 127.0.0.1 serving a small fake ``breastmnist.npz``; stopped after the test."""
    with serving({"breastmnist.npz": fake_breastmnist()}) as state:
        yield state


@pytest.fixture(scope="session")
def tiny_matrix_models(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    """Four different tiny LLaVA checkpoints (seeds 1-4), as ``--model`` values ``tiny-<i>=DIR`` (read-only)."""
    from pytest_medprobe.models.tiny_llava import TinyLlavaSpec, build_tiny_llava

    folder = tmp_path_factory.mktemp("matrix-checkpoints")
    return [
        f"tiny-{seed}={build_tiny_llava(folder / f'tiny-{seed}', TinyLlavaSpec(seed=seed))}" for seed in range(1, 5)
    ]


@pytest.fixture(scope="session")
def medmnist_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data root holding a small random ``breastmnist.npz`` (2 classes, 28 px) in the MedMNIST format."""
    import numpy as np

    root = tmp_path_factory.mktemp("medmnist")
    rng = np.random.default_rng(1)
    arrays = {}
    for split, n in (("train", 40), ("val", 8), ("test", 24)):
        arrays[f"{split}_images"] = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        arrays[f"{split}_labels"] = (np.arange(n) % 2).reshape(n, 1).astype(np.uint8)
    np.savez(root / "breastmnist.npz", **arrays)
    return root
