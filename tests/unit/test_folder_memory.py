"""A folder dataset keeps files, not decoded images: a batch at a time is what the processor needs."""

from __future__ import annotations

import tracemalloc
from pathlib import Path

import numpy as np
from PIL import Image

from pytest_medprobe.data import load_dataset
from pytest_medprobe.data.base import pixel_features
from pytest_medprobe.data.images import read_image
from pytest_medprobe.extract import size_order

SIDE = 2000  # a full-resolution scan: 12 MB once decoded as RGB uint8
PER_CLASS = 6


def _scans(root: Path) -> None:
    for label, name in enumerate(("benign", "malignant")):
        (root / name).mkdir(parents=True)
        for index in range(PER_CLASS):
            side = SIDE - 100 * (index % 2)  # two sizes, for size-ordered batching
            pixels = np.full((side, side, 3), 40 * label + index, dtype=np.uint8)  # compresses to a few KB
            Image.fromarray(pixels).save(root / name / f"{index}.png")


def test_a_folder_of_large_scans_is_held_as_files_and_read_per_image(tmp_path: Path) -> None:
    _scans(tmp_path / "scans")
    tracemalloc.start()
    try:
        dataset = load_dataset(f"folder:{tmp_path / 'scans'}", data_root=None, max_samples=None, seed=0)
        held, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    decoded = 2 * PER_CLASS * SIDE * SIDE * 3
    assert held < 0.05 * decoded, f"{held / 1e6:.0f} MB held after loading {decoded / 1e6:.0f} MB of images"
    assert peak < 0.25 * decoded  # read one at a time, also while loading
    first = dataset.fit_images[0]
    assert first.shape[2] == 3 and first.dtype == np.uint8
    assert np.array_equal(first, read_image(dataset.fit_images.paths[0]))  # type: ignore[attr-defined]
    assert len(dataset.test_images[1:]) == dataset.n_test - 1  # a slice is a split too (shards)
    assert pixel_features(dataset.test_images).shape == (dataset.n_test, 16 * 16 * 3)
    sizes = [image.shape[0] for image in dataset.fit_images]
    assert [sizes[i] for i in size_order(dataset.fit_images)] == sorted(sizes)
