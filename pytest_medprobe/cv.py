"""Choosing a probe's C by cross-validation on the fit split (metrics.md §2).

This module owns the parts both probe backends share, so that they choose alike: the
folds (stratified, fixed by the seed), the score of a fold (balanced accuracy on its
held-out samples, computed exactly as scikit-learn's ``balanced_accuracy_score``) and the
pick (the best mean score over the folds; a tie goes to the smaller C, the stronger
regularization), and the solver tolerances (under cross-validation and for one fixed C), so
that both backends stop alike. numpy only.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from pytest_medprobe.errors import DatasetError

# Mean fold scores closer than this are a tie: floating-point noise must not decide
# between two C that classify the held-out samples equally well.
TIE = 1e-12
# Every fit under cross-validation (each fold at each C, and the refit) stops when its
# largest gradient entry is at most this, not at scikit-learn's default of 1e-4: the grid
# reaches weakly regularized C (10 on 1000 images of 2048 dims is nearly separable), where
# at 1e-4 the solver's stopping point, not the objective, decided the held-out score and
# with it the chosen C (benchmarks/bench_cv_grid.py: the two backends chose different C on
# 13 of 33 stages and differed by up to 0.016 on the test split; at 1e-6 they agree to
# within 0.01 on every stage, and on 3 near-chance stages checked one by one exactly).
TOLERANCE = 1e-6
FIXED_C_TOLERANCE = 1e-4  # a probe with one fixed C: scikit-learn's default


def tolerance(cross_validated: bool) -> float:
    """The largest gradient entry at which a probe's solver stops, in both backends."""
    return TOLERANCE if cross_validated else FIXED_C_TOLERANCE


def fold_count(labels: np.ndarray, requested: int) -> int:
    """The folds a fit split supports: ``requested``, or as many as its rarest class has
    samples, so that every fold holds out at least one sample of every class (a fold
    without a class would score a different task)."""
    counts = np.bincount(np.asarray(labels, dtype=np.int64))
    smallest = int(counts[counts > 0].min())
    if smallest < 2:
        rare = [int(k) for k in np.flatnonzero(counts == 1)]
        raise DatasetError(
            f"cannot cross-validate the probes' C: class(es) {rare} have a single image in the fit "
            f"split, and every fold must keep at least one image of each class to train on. Add fit "
            f"images of those classes, or fit every probe with one fixed C (no C grid)."
        )
    return min(requested, smallest)


def stratified_folds(labels: np.ndarray, n_folds: int, seed: int) -> np.ndarray:
    """``[n]`` int64: the fold (0 .. n_folds - 1) that holds out each fit sample.

    Each class's samples are shuffled (a generator seeded with ``seed``) and dealt over
    the folds in turn, each class starting where the previous one stopped, so every fold
    holds out a near-equal share of every class and the folds differ in size by at most one.
    """
    labels = np.asarray(labels, dtype=np.int64)
    if n_folds < 2:
        raise ValueError(f"cross-validation needs at least 2 folds, got {n_folds}")
    rng = np.random.default_rng(seed)
    folds = np.empty(len(labels), dtype=np.int64)
    dealt = 0
    for label in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == label))
        folds[members] = (dealt + np.arange(len(members))) % n_folds
        dealt += len(members)
    return folds


def fold_splits(folds: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
    """``(train indices, held-out indices)`` of each fold, as scikit-learn's ``cv=`` takes them."""
    return [(np.flatnonzero(folds != fold), np.flatnonzero(folds == fold)) for fold in range(int(folds.max()) + 1)]


def fold_scores(predictions: np.ndarray, labels: np.ndarray, folds: np.ndarray) -> np.ndarray:
    """Balanced accuracy of ``predictions: [..., F, n]`` on each fold's held-out samples: ``[..., F]``.

    ``predictions[..., f, :]`` are the predictions of the probe trained without fold f,
    for every fit sample; only fold f's are scored. Recall per class present in the
    fold, then their mean, in scikit-learn's order of operations (so that both backends
    get bit-identical scores from identical predictions).
    """
    labels = np.asarray(labels, dtype=np.int64)
    n_folds = predictions.shape[-2]
    scores = np.empty(predictions.shape[:-1], dtype=np.float64)
    for fold in range(n_folds):
        held_out = folds == fold
        y, predicted = labels[held_out], predictions[..., fold, :][..., held_out]
        recalls = [
            np.count_nonzero(predicted[..., y == label] == label, axis=-1) / np.count_nonzero(y == label)
            for label in np.unique(y)
        ]
        scores[..., fold] = np.mean(np.stack(recalls, axis=-1), axis=-1)
    return scores


def pick_c(scores: np.ndarray, grid: Sequence[float]) -> int:
    """Index into ``grid`` (ascending) of the C with the best mean of ``scores: [G, F]``;
    among C tied within ``TIE``, the smallest (the strongest regularization)."""
    if list(grid) != sorted(grid):
        raise ValueError(f"the C grid must be ascending, got {list(grid)}")
    means = np.asarray(scores, dtype=np.float64).mean(axis=-1)
    return int(np.flatnonzero(means >= means.max() - TIE)[0])
