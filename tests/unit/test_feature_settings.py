"""Which settings change the features is declared once, on each setting (``Setting.scope``).

From that declaration come the extract command's flags (``EXTRACT_SETTINGS``) and the list
this test walks (``FEATURE_SETTINGS``): every setting declared to change the features must
change the feature cache key, or two runs would share an entry they should not. A
setting declared ``FEATURES`` without a case here fails the test, and so does one whose
change leaves the key as it was (it is missing from the key). Nothing loads a model: a
cache key is computed from content fingerprints only.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pytest_medprobe.config import EXTRACT_SETTINGS, FEATURE_SETTINGS, SETTINGS, resolve_settings
from pytest_medprobe.config.setting import AUDIT, EXTRACTION, FEATURES
from pytest_medprobe.preflight import check_datasets
from pytest_medprobe.session import AuditSession
from tests.manifests import digit_images, write_fake_chestmnist, write_manifest

BASE: dict[str, object] = {"device": "cpu", "dtype": "float32"}
Settings = dict[str, object]


def _key(cache: Path, rootdir: Path, cli: Settings) -> str:
    """The feature cache key of the run's first pair under ``cli`` (the plugin's preflight, then the session)."""
    settings = check_datasets(resolve_settings({"cache_dir": str(cache), **BASE, **cli}, {}, rootdir))
    session = AuditSession(settings)
    return session.features_key(session.pairs[0])


def _medmnist_root(folder: Path, seed: int) -> Path:
    """A data root with a small random ``breastmnist.npz``; another seed, other images."""
    rng = np.random.default_rng(seed)
    arrays = {}
    for split, n in (("train", 24), ("val", 4), ("test", 16)):
        arrays[f"{split}_images"] = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        arrays[f"{split}_labels"] = (np.arange(n) % 2).reshape(n, 1).astype(np.uint8)
    folder.mkdir(parents=True, exist_ok=True)
    np.savez(folder / "breastmnist.npz", **arrays)
    return folder


def _two_column_manifest(folder: Path) -> Path:
    """A CSV with two image columns (image, inverted) and two label columns (label, parity)."""
    images, labels = digit_images((0, 1, 2, 3), 8)
    (folder / "images").mkdir(parents=True, exist_ok=True)
    rows = []
    for index, (image, label) in enumerate(zip(images, labels)):
        Image.fromarray(image).save(folder / f"images/{index:03d}.png")
        Image.fromarray(255 - image).save(folder / f"images/{index:03d}-inverted.png")
        rows.append((f"images/{index:03d}.png", f"images/{index:03d}-inverted.png", f"d{label}", f"p{label % 2}"))
    return write_manifest(folder / "two.csv", ("image", "inverted", "label", "parity"), rows)


def _other_checkpoint(folder: Path) -> str:
    """``other=<dir>``: a copy of the reference checkpoint with one weight changed (other content)."""
    import shutil

    from safetensors.numpy import load_file, save_file

    from pytest_medprobe.zoo import SHIPPED_DIR

    shutil.copytree(SHIPPED_DIR, folder)
    weights = load_file(str(folder / "model.safetensors"))
    name = sorted(weights)[0]
    weights[name] = weights[name] + np.ones_like(weights[name])
    save_file(weights, str(folder / "model.safetensors"), metadata={"format": "pt"})
    return f"other={folder}"


# setting key -> (base values, changed values), each from a folder of files the case writes.
Case = Callable[[Path], tuple[Settings, Settings]]
CASES: dict[str, Case] = {
    "model": lambda tmp: ({}, {"model": [_other_checkpoint(tmp / "other")]}),
    "dataset": lambda tmp: ({}, {"dataset": ["medmnist:breastmnist"], "data_root": str(_medmnist_root(tmp, 1))}),
    "data_root": lambda tmp: (
        {"dataset": ["medmnist:breastmnist"], "data_root": str(_medmnist_root(tmp / "a", 1))},
        {"dataset": ["medmnist:breastmnist"], "data_root": str(_medmnist_root(tmp / "b", 2))},
    ),
    "image_column": lambda tmp: (
        {"dataset": [f"csv:{_two_column_manifest(tmp)}"], "image_column": "image", "label_column": "label"},
        {"dataset": [f"csv:{tmp / 'two.csv'}"], "image_column": "inverted", "label_column": "label"},
    ),
    "label_column": lambda tmp: (
        {"dataset": [f"csv:{_two_column_manifest(tmp)}"], "image_column": "image", "label_column": "label"},
        {"dataset": [f"csv:{tmp / 'two.csv'}"], "image_column": "image", "label_column": "parity"},
    ),
    "findings": lambda tmp: (
        {
            "dataset": ["medmnist:chestmnist"],
            "data_root": str(write_fake_chestmnist(tmp).parent),
            "findings": ["effusion"],
        },
        {"dataset": ["medmnist:chestmnist"], "data_root": str(tmp), "findings": ["atelectasis"]},
    ),
    "max_samples": lambda tmp: ({}, {"max_samples": "20"}),
    "seed": lambda tmp: ({}, {"seed": "1"}),
    "dtype": lambda tmp: ({}, {"dtype": "bfloat16"}),
    "device": lambda tmp: ({}, {"device": "cuda"}),  # a GPU is faked below; nothing loads
    "answer_mode": lambda tmp: ({"answer_mode": "letter-logits"}, {"answer_mode": "generate"}),
    "max_new_tokens": lambda tmp: (
        {"answer_mode": "generate", "max_new_tokens": "512"},
        {"answer_mode": "generate", "max_new_tokens": "64"},
    ),
}


def test_every_setting_declares_what_it_changes_and_the_derived_lists_follow() -> None:
    assert {setting.scope for setting in SETTINGS} == {FEATURES, EXTRACTION, AUDIT}
    assert FEATURE_SETTINGS == tuple(s for s in SETTINGS if s.scope == FEATURES)
    assert EXTRACT_SETTINGS == tuple(s for s in SETTINGS if s.scope in (FEATURES, EXTRACTION))


def test_every_feature_setting_has_a_case_here() -> None:
    assert set(CASES) == {setting.dest for setting in FEATURE_SETTINGS}


@pytest.mark.parametrize("key", sorted(CASES))
def test_changing_a_feature_setting_changes_the_cache_key(
    key: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import torch

    # As on a machine with a GPU, so that the device can differ; only keys are computed.
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *args, **kwargs: True)
    base, changed = CASES[key](tmp_path / "files")
    cache = tmp_path / "cache"
    before = _key(cache, tmp_path, base)
    assert _key(cache, tmp_path, base) == before  # the key is a function of the settings and the content
    assert _key(cache, tmp_path, changed) != before, f"{key} is declared to change the features, not in the key"


NOT_FEATURES: dict[str, object] = {  # settings declared EXTRACTION or AUDIT, each changed
    "batch_size": "4",
    "n_bootstrap": "50",
    "probe_c": "0.5",
    "probe_backend": "sklearn",
    "decision": "confident-fail",
    "tolerance": "0.05",
    "max_connector_loss": "0.2",
    "min_health": "0.1",
    "label": "release-2",
    "trust_remote_code": True,
    "offline": True,
}


def test_settings_declared_outside_the_features_leave_the_key_alone(tmp_path: Path) -> None:
    from pytest_medprobe.config import SETTINGS_BY_KEY

    assert all(SETTINGS_BY_KEY[key].scope != FEATURES for key in NOT_FEATURES)
    before = _key(tmp_path / "cache", tmp_path, {})
    assert _key(tmp_path / "cache", tmp_path, NOT_FEATURES) == before
