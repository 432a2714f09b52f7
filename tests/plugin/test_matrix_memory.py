"""One model in memory at a time: model-major extraction, and every model released.

pytest asks for features pair by pair; here they are asked in an order that interleaves
the models, and still each model loads once, after the one before it is gone (weak
references to the loaded ``nn.Module``s tell), and none is left at the end.
"""

from __future__ import annotations

import gc
import weakref
from pathlib import Path
from typing import Any

import pytest

from pytest_medprobe.config import resolve_settings
from pytest_medprobe.models import loader
from pytest_medprobe.session import AuditSession, Pair


class LoadWatcher:
    """Wraps the real loader: records each load, and which earlier models were still alive then."""

    def __init__(self) -> None:
        self.loads: list[str] = []
        self.alive_at_load: list[list[str]] = []
        self.refs: dict[str, weakref.ref[Any]] = {}
        self._real = loader.load_model

    def __call__(self, source: Any, **kwargs: Any) -> Any:
        gc.collect()
        self.alive_at_load.append([name for name, ref in self.refs.items() if ref() is not None])
        loaded = self._real(source, **kwargs)
        self.loads.append(source.name)
        self.refs[source.name] = weakref.ref(loaded.model)
        return loaded

    def alive(self) -> list[str]:
        gc.collect()
        return [name for name, ref in self.refs.items() if ref() is not None]


@pytest.fixture
def watcher(monkeypatch: pytest.MonkeyPatch) -> LoadWatcher:
    watching = LoadWatcher()
    monkeypatch.setattr(loader, "load_model", watching)
    return watching


def _session(models: list[str], datasets: list[str], cache: Path, **extra: str) -> AuditSession:
    cli = {"model": models, "dataset": datasets, "max_samples": "12", "batch_size": "8", "cache_dir": str(cache)}
    return AuditSession(resolve_settings({**cli, **extra}, {}, cache.parent))


def test_each_model_loads_once_for_all_its_pairs_and_is_released_before_the_next_loads(
    watcher: LoadWatcher, tiny_matrix_models: list[str], tmp_path: Path, medmnist_root: Path
) -> None:
    models = tiny_matrix_models[:2]
    datasets = ["synthetic-lesions", "medmnist:breastmnist"]
    session = _session(models, datasets, tmp_path / "cache", data_root=str(medmnist_root))
    first, second = (model.partition("=")[0] for model in models)
    # Interleaved, as tests of several pairs may come: the first pair of a model extracts all of its pairs.
    order = [Pair(models[1], datasets[0]), Pair(models[0], datasets[1]), Pair(models[1], datasets[1])]
    order.append(Pair(models[0], datasets[0]))

    provenance = {pair: session.features(pair)[1] for pair in order}

    assert [name.partition("=")[0] for name in watcher.loads] == [second, first]  # once each
    assert watcher.alive_at_load == [[], []]  # the first model was gone when the second loaded
    assert watcher.alive() == []  # and none is left
    assert session.loaded_model_name is None
    assert all(p.forward_passes == 4 and not p.cache_hit for p in provenance.values())  # 12 + 12 images, batches of 8
    assert session.forward_passes_total == 16


def test_the_mllm_model_is_released_when_another_model_loads(
    watcher: LoadWatcher, tiny_matrix_models: list[str], tmp_path: Path
) -> None:
    session = _session(tiny_matrix_models[:2], ["synthetic-lesions"], tmp_path / "cache")
    held = session.model(tiny_matrix_models[0])  # what the mllm fixture hands a test
    assert session.loaded_model_name == tiny_matrix_models[0]
    del held

    session.features(Pair(tiny_matrix_models[1], "synthetic-lesions"))

    assert watcher.alive() == []
