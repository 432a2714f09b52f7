"""Whitened probes for audit 2 (docs/metrics.md §2, "Whitened probes").

A connector that widens the features (vision 1024 → text 4096) through a map that loses
nothing can still lower the standardized probe's score: standardizing each output
coordinate and penalizing the weights' L2 norm regularizes the directions the map shrinks
harder than the vision probe regularized them. Audit 2 therefore compares its two stages
through probes on **PCA-whitened** features: each stage projected on its principal
directions, each scaled to unit variance on the fit split. A probe on whitened features
reads any injective linear image of the same features identically, so a lossless
connector shows no loss, while a connector that drops directions still does.
"""

from __future__ import annotations

import numpy as np

# A direction counts when its singular value on the fit split stands above float32
# rounding: NOISE_MULTIPLE times what rounding every entry of an [n, d] matrix to float32
# gives (eps32 · RMS entry · (√n + √d)). Features are cached in float32; whitening must
# not blow their rounding noise up to unit variance, nor drop a direction a connector only
# shrinks. A stage with no such direction is constant (every image alike: a blind
# encoder) and is whitened to a single zero column.
NOISE_MULTIPLE = 10.0
FLOAT32_EPS = float(np.finfo(np.float32).eps)
# At most n_fit / SAMPLES_PER_DIRECTION directions are kept: whitening gives every kept
# direction unit variance, noise included, so a probe on as many directions as fit images
# would memorize the fit split.
SAMPLES_PER_DIRECTION = 4


def whitening_rank(fit_x: np.ndarray) -> int:
    """How many principal directions of ``fit_x: [n, d]`` are whitened (see the constants)."""
    fit = np.asarray(fit_x, dtype=np.float64)
    n, d = fit.shape
    values = np.linalg.svd(fit - fit.mean(axis=0), compute_uv=False)
    floor = NOISE_MULTIPLE * FLOAT32_EPS * float(np.sqrt(np.mean(fit**2))) * (np.sqrt(n) + np.sqrt(d))
    rank = int(np.sum(values > floor))
    return min(rank, max(1, n // SAMPLES_PER_DIRECTION))


def whiten(fit_x: np.ndarray, test_x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Both splits projected on the fit split's top ``whitening_rank`` principal directions,
    each scaled to unit variance on the fit split: ``([n_fit, r], [n_test, r])`` float64
    (``r`` = 1, all zeros, for a constant stage)."""
    fit = np.asarray(fit_x, dtype=np.float64)
    test = np.asarray(test_x, dtype=np.float64)
    rank = whitening_rank(fit)
    if rank == 0:
        return np.zeros((len(fit), 1)), np.zeros((len(test), 1))
    mean = fit.mean(axis=0)
    _, values, directions = np.linalg.svd(fit - mean, full_matrices=False)
    basis = directions[:rank].T * (np.sqrt(len(fit)) / values[:rank])  # [d, r]
    return (fit - mean) @ basis, (test - mean) @ basis
