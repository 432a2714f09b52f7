"""Builders of CSV manifests and multi-label MedMNIST files from images nobody here drew by hand.

Images come from scikit-learn's ``load_digits`` (real handwritten digits, upscaled) or from
the embedded synthetic-lesions generator (the reference model was trained on that
distribution, so it audits healthy on it). Import as ``from tests.manifests import ...``.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

SITES = ("north", "south")


def digit_images(digits: Sequence[int], per_class: int, size: int = 32) -> tuple[list[np.ndarray], list[int]]:
    """``per_class`` real 8x8 digits of each class in ``digits``, upscaled to ``size`` px, uint8."""
    from sklearn.datasets import load_digits

    data = load_digits()
    images: list[np.ndarray] = []
    labels: list[int] = []
    for digit in digits:
        for image in data.images[data.target == digit][:per_class]:
            scaled = np.kron(image / 16.0, np.ones((size // 8, size // 8)))
            images.append(np.rint(scaled * 255).astype(np.uint8))
            labels.append(digit)
    return images, labels


def write_manifest(path: Path, header: Sequence[str], rows: Sequence[Sequence[object]], bom: bool = False) -> Path:
    """A CSV written by the ``csv`` module (quoting what needs it), optionally with a byte-order mark."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8-sig" if bom else "utf-8", newline="") as stream:
        writer = csv.writer(stream)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def write_digit_manifest(folder: Path, digits: Sequence[int] = (0, 1), per_class: int = 12) -> Path:
    """``folder/images/<n>.png`` and ``folder/labels.csv`` (columns image, label): digits as classes."""
    images, labels = digit_images(digits, per_class)
    rows = []
    for index, (image, label) in enumerate(zip(images, labels)):
        name = f"images/{index:03d}.png"
        (folder / "images").mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(folder / name)
        rows.append((name, f"digit {label}"))
    return write_manifest(folder / "labels.csv", ("image", "label"), rows)


def degrade(image: np.ndarray, seed: int) -> np.ndarray:
    """What a failing scanner might produce: the image averaged to an 8x8 blur under heavy noise."""
    rng = np.random.default_rng(seed)
    small = np.asarray(Image.fromarray(image).resize((8, 8), Image.Resampling.BOX).resize(image.shape[1::-1]))
    noisy = small.astype(np.float64) + rng.normal(0, 60, size=image.shape)
    return np.clip(noisy, 0, 255).astype(np.uint8)


def write_lesion_manifest(
    folder: Path, degraded_site: str | None = None, seed: int = 0, n_fit: int = 240, n_test: int = 240
) -> Path:
    """Synthetic-lesion PNGs from two sites with the generator's own train/test split.

    Columns: image, diagnosis, split, site, sex. Images alternate between ``SITES``; those of
    ``degraded_site`` (if any) are degraded, a planted subgroup gap.
    """
    from pytest_medprobe.data.synthetic import make_synthetic_lesions

    lesions = make_synthetic_lesions(seed, n_fit=n_fit, n_test=n_test)
    rows = []
    (folder / "images").mkdir(parents=True, exist_ok=True)
    for split, images, labels in (
        ("train", lesions.fit_images, lesions.fit_labels),
        ("test", lesions.test_images, lesions.test_labels),
    ):
        for index, (image, label) in enumerate(zip(images, labels)):
            site = SITES[index % 2]
            pixels = np.asarray(image)
            if site == degraded_site:
                pixels = degrade(pixels, seed + index)
            name = f"images/{split}-{index:03d}.png"
            Image.fromarray(pixels).save(folder / name)
            rows.append((name, lesions.class_names[int(label)], split, site, "F" if index % 4 < 2 else "M"))
    (folder / "modality.txt").write_text(lesions.modality + "\n", encoding="utf-8")
    # The generator's class order: the reference model answers in the order it was trained on.
    (folder / "classes.txt").write_text("\n".join(lesions.class_names) + "\n", encoding="utf-8")
    return write_manifest(folder / "lesions.csv", ("image", "diagnosis", "split", "site", "sex"), rows)


CHEST_FINDINGS = 14


def write_fake_chestmnist(folder: Path, n_train: int = 60, n_test: int = 40, seed: int = 0) -> Path:
    """``folder/chestmnist.npz`` in the official layout: uint8 (N, 28, 28) images, (N, 14) 0/1 labels.

    Images are real digits (``load_digits``); a finding's label says whether the digit is odd,
    so finding columns differ from each other and each has both values in both splits.
    """
    rng = np.random.default_rng(seed)
    images, digits = digit_images(range(10), 20, size=32)
    pool = np.stack([image[2:30, 2:30] for image in images])
    arrays: dict[str, np.ndarray] = {}
    for split, n in (("train", n_train), ("val", 4), ("test", n_test)):
        rows = rng.choice(len(pool), size=n, replace=False)
        odd = (np.asarray(digits)[rows] % 2).astype(np.uint8)
        labels = rng.integers(0, 2, size=(n, CHEST_FINDINGS), dtype=np.uint8)
        labels[:, 2] = odd  # effusion: the digit is odd (what a probe can learn)
        labels[:, 0] = 1 - odd  # atelectasis: the digit is even
        arrays[f"{split}_images"] = pool[rows]
        arrays[f"{split}_labels"] = labels
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "chestmnist.npz"
    np.savez_compressed(path, **arrays)
    return path
