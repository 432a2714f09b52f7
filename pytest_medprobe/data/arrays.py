"""A dataset from images and labels already in memory (a notebook's arrays).

Its fingerprint is its content: every image's pixels and every label, split by split, so
the feature cache and baselines know it again whatever it is called.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numpy as np

from pytest_medprobe.data.base import ProbeDataset, compute_fingerprint, to_rgb_uint8


def _content(images: Sequence[np.ndarray], labels: np.ndarray) -> str:
    digest = hashlib.sha256()
    for image in images:
        digest.update(f"{image.shape}".encode() + np.ascontiguousarray(image).tobytes())
    digest.update(np.ascontiguousarray(labels, dtype="<i8").tobytes())
    return digest.hexdigest()


def dataset_from_arrays(
    name: str,
    class_names: Sequence[str],
    fit_images: Sequence[np.ndarray],
    fit_labels: Sequence[int] | np.ndarray,
    test_images: Sequence[np.ndarray],
    test_labels: Sequence[int] | np.ndarray,
    *,
    modality: str = "medical",
) -> ProbeDataset:
    """A ``ProbeDataset`` from ``[H, W]`` or ``[H, W, 3]`` images and labels ``0 .. K-1``.

    ``modality`` goes into the question the model is asked ("... in this {modality} image").

    Example::

        data = dataset_from_arrays("lesions", ["benign", "malignant"], fit_x, fit_y, test_x, test_y,
                                   modality="dermoscopy")
    """
    fit = [to_rgb_uint8(np.asarray(image), f"{name}: fit image {i}") for i, image in enumerate(fit_images)]
    test = [to_rgb_uint8(np.asarray(image), f"{name}: test image {i}") for i, image in enumerate(test_images)]
    fit_y, test_y = np.asarray(fit_labels, dtype=np.int64), np.asarray(test_labels, dtype=np.int64)
    identity = {
        "dataset": "arrays",
        "classes": list(class_names),
        "modality": modality,
        "fit": _content(fit, fit_y),
        "test": _content(test, test_y),
    }
    return ProbeDataset(
        name=name,
        class_names=tuple(class_names),
        modality=modality,
        fit_images=fit,
        fit_labels=fit_y,
        test_images=test,
        test_labels=test_y,
        source="in memory",
        fingerprint=compute_fingerprint(identity, np.arange(len(fit_y)), np.arange(len(test_y))),
    )
