"""A built model's folder is named by the content of its recipe, so a stale build is never served."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from pytest_medprobe.models import builtin


@pytest.fixture
def package_copy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """The recipe's files copied aside, so that one can be edited."""
    for relative in builtin.RECIPE_SOURCES:
        source = builtin.PACKAGE_DIR / relative
        target = tmp_path / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        if source.is_dir():
            shutil.copytree(source, target)
        else:
            shutil.copy2(source, target)
    monkeypatch.setattr(builtin, "PACKAGE_DIR", tmp_path)
    builtin.recipe_digest.cache_clear()
    yield tmp_path
    builtin.recipe_digest.cache_clear()


def test_a_changed_recipe_builds_into_a_new_folder(package_copy: Path) -> None:
    before = builtin.recipe_digest()
    builtin.recipe_digest.cache_clear()
    assert builtin.recipe_digest() == before  # content, not when it was read

    faults = package_copy / "zoo" / "faults.py"
    faults.write_text(faults.read_text() + "\n# a changed planted fault\n")
    builtin.recipe_digest.cache_clear()
    assert builtin.recipe_digest() != before


def test_a_changed_shipped_weight_builds_into_a_new_folder(package_copy: Path) -> None:
    before = builtin.recipe_digest()
    weights = package_copy / "zoo" / "medprobe-tiny" / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 1  # same size, same name: only the content differs
    weights.write_bytes(bytes(data))
    builtin.recipe_digest.cache_clear()
    assert builtin.recipe_digest() != before


def test_the_folder_of_a_built_model_carries_the_recipe(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    built: list[Path] = []

    def locate(directory: Path) -> Path:
        directory.mkdir(parents=True)
        (directory / "config.json").write_text("{}")
        built.append(directory)
        return directory

    model = builtin.BuiltinModel("toy:variant", "a toy", locate)
    first = builtin.materialize_builtin(model, tmp_path)
    assert first.name == f"toy-variant-{builtin.recipe_digest()}"
    assert builtin.materialize_builtin(model, tmp_path) == first and len(built) == 1  # built once

    monkeypatch.setattr(builtin, "recipe_digest", lambda: "0" * 16)  # as after an upgrade
    second = builtin.materialize_builtin(model, tmp_path)
    assert second != first and len(built) == 2
