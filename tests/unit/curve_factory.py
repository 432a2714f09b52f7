"""Probe curves built directly from chosen per-stage accuracies, for tests of what reads curves.

``curve_from_levels({"connector": 0.5})`` gives a curve in which every stage scores the
default 0.9 except the connector. Predictions are synthetic: in each class, a chosen share
of the test samples is predicted right and the rest wrong, so every balanced accuracy is
exactly the requested level (rounded to 1 / n_per_class). By default the right samples
are nested across stages (a stage at 0.8 is right on a subset of the samples a stage at
0.9 gets right), so stages are correlated as real probes on one test set are.

Import it as ``from tests.unit.curve_factory import curve_from_levels``.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from pytest_medprobe.curve import ProbeCurve
from pytest_medprobe.probes import balanced_accuracy, bootstrap_balanced_accuracy, bootstrap_counts
from pytest_medprobe.stages import ANSWER, PIXELS, stage_order


def predictions_at(level: float, labels: np.ndarray, n_classes: int, order: np.ndarray) -> np.ndarray:
    """Predictions ``[n]`` right on the first ``level`` share of each class (by ``order``), wrong elsewhere."""
    pred = (labels + 1) % n_classes  # wrong, and never -1
    for k in range(n_classes):
        members = np.flatnonzero(labels == k)
        members = members[np.argsort(order[members], kind="stable")]
        n_right = int(round(float(np.clip(level, 0.0, 1.0)) * len(members)))
        pred[members[:n_right]] = k
    return pred


def curve_from_levels(
    levels: Mapping[str, float] | None = None,
    *,
    default: float = 0.9,
    pixels: float = 0.5,
    n_classes: int = 4,
    n_per_class: int = 100,
    n_vision_blocks: int = 2,
    n_layers: int = 4,
    has_image_view: bool = True,
    n_bootstrap: int = 300,
    seed: int = 0,
    independent: bool = False,
    side_connectors: tuple[int, ...] = (),
) -> ProbeCurve:
    """A curve whose stages score ``levels[stage]`` (else ``default``; ``pixels`` for the baseline).

    ``independent=True`` draws each stage's right samples independently instead of nested;
    ``side_connectors`` adds ``connector.{i}`` stages reading those vision blocks (deepstack).
    """
    levels = dict(levels or {})
    names = stage_order(n_vision_blocks, n_layers, has_image_view, side_connectors)
    unknown = set(levels) - {*names, ANSWER, PIXELS}
    if unknown:
        raise KeyError(f"no such stages in this curve: {sorted(unknown)}; it has {names}")
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(n_classes), n_per_class)
    shared_order = rng.permutation(len(labels))
    counts = bootstrap_counts(len(labels), n_bootstrap, seed)
    scores: dict[str, float] = {}
    samples: dict[str, np.ndarray] = {}
    for name in (*names, ANSWER, PIXELS):
        level = levels.get(name, pixels if name == PIXELS else default)
        order = rng.permutation(len(labels)) if independent else shared_order
        pred = predictions_at(level, labels, n_classes, order)
        scores[name] = balanced_accuracy(pred, labels, n_classes)
        samples[name] = bootstrap_balanced_accuracy(pred, labels, counts, n_classes)
    return ProbeCurve(
        stage_names=names,
        scores=scores,
        bootstrap=samples,
        n_classes=n_classes,
        has_image_view=has_image_view,
        n_fit=len(labels),
        n_test=len(labels),
    )
