"""The probe protocol (metrics.md §2): linear probes, balanced accuracy, paired bootstrap.

This module owns the numbers of the probe curve: it fits one standardized logistic
regression per stage on the fit split (its C fixed, or chosen per stage by
cross-validation on the fit split, ``cv``), scores it on the test split with balanced
accuracy, and resamples the test split once for every stage (a paired bootstrap), so
that differences between stages get honest, tight intervals. Two backends fit the same
objective: ``torch`` (default) fits all stages at once in ``torch_probes``;
``sklearn``, the reference, fits one scikit-learn ``LogisticRegression`` (or
``LogisticRegressionCV``) per stage in ``sklearn_probes``. torch and scikit-learn are
imported inside the fitting functions, so importing this module stays cheap.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from pytest_medprobe import stages
from pytest_medprobe.config import DTYPE, PROBE_BACKENDS, REFRESH
from pytest_medprobe.curve import ProbeCurve
from pytest_medprobe.errors import NonFiniteFeaturesError
from pytest_medprobe.naming import mention, mention_full
from pytest_medprobe.whitening import whiten


@dataclass(frozen=True)
class ProbeSettings:
    """How probes are fit and how the test split is resampled."""

    c: float = 1.0  # inverse L2 strength of the logistic regression (when there is no C grid)
    n_bootstrap: int = 1000
    seed: int = 0  # also fixes the cross-validation folds
    max_iter: int = 1000
    backend: str = "torch"  # one of config.PROBE_BACKENDS: "torch" (all stages at once) or "sklearn"
    # Two or more values: each stage's C is chosen among them by stratified k-fold
    # cross-validation on the fit split (metrics.md §2), and ``c`` is not used; one value:
    # that C; empty: ``c``.
    c_grid: tuple[float, ...] = ()
    cv_folds: int = 5
    controls: bool = True  # also fit every stage on permuted labels (metrics.md §2, "Selectivity")
    device: str = "cpu"  # where the torch backend fits ("cpu", "cuda", "cuda:1"); sklearn: CPU only

    def __post_init__(self) -> None:
        bad = [value for value in (self.c, *self.c_grid) if not (np.isfinite(value) and value > 0)]
        if bad:
            raise ValueError(f"every C must be a positive number, got {bad}")
        if self.cv_folds < 2:
            raise ValueError(f"cross-validation needs at least 2 folds, got cv_folds={self.cv_folds}")
        object.__setattr__(self, "c_grid", tuple(sorted(float(value) for value in dict.fromkeys(self.c_grid))))

    @property
    def cross_validated(self) -> bool:
        """Whether each stage's C is chosen by cross-validation."""
        return len(self.c_grid) > 1

    def protocol(self) -> dict[str, Any]:
        """What a probe score depends on besides the features and the labels: the backend,
        the C (or the grid and its folds) and the solver's tolerance. A baseline entry keeps
        it, so that a gate never compares scores of two protocols as two models (JSON-plain)."""
        from pytest_medprobe import cv

        if self.cross_validated:
            return {
                "backend": self.backend,
                "c_grid": list(self.c_grid),
                "cv_folds": self.cv_folds,
                "tolerance": cv.tolerance(cross_validated=True),
            }
        return {
            "backend": self.backend,
            "c": self.c_grid[0] if self.c_grid else self.c,
            "tolerance": cv.tolerance(cross_validated=False),
        }


@dataclass(frozen=True)
class ProbeFit:
    """One stage's probe, as the curve needs it."""

    predictions: np.ndarray  # [n_test] int64
    converged: bool
    c: float  # the C the probe was fit with (chosen by cross-validation when there is a grid)


def fit_probe(
    fit_x: np.ndarray, fit_y: np.ndarray, test_x: np.ndarray, settings: ProbeSettings
) -> tuple[np.ndarray, bool]:
    """Fit one probe with scikit-learn on ``fit_x: [n_fit, d]`` and predict ``test_x: [n_test, d]``.

    Returns the test predictions ``[n_test]`` int64 and whether the solver converged.
    """
    predictions, converged, _ = _fit_one_with_sklearn(fit_x, fit_y, test_x, settings)
    return predictions, converged


def _fit_one_with_sklearn(
    fit_x: np.ndarray, fit_y: np.ndarray, test_x: np.ndarray, settings: ProbeSettings
) -> tuple[np.ndarray, bool, float]:
    from pytest_medprobe.sklearn_probes import fit_one

    return fit_one(
        fit_x, fit_y, test_x,
        c=settings.c, c_grid=settings.c_grid, cv_folds=settings.cv_folds, seed=settings.seed,
        max_iter=settings.max_iter,
    )  # fmt: skip


def fit_stage_probes(
    inputs: Mapping[str, tuple[np.ndarray, np.ndarray]], fit_y: np.ndarray, settings: ProbeSettings
) -> dict[str, ProbeFit]:
    """Fit one probe per stage with ``settings.backend`` and predict each test split.

    ``inputs[stage]`` is ``(fit_x: [n_fit, d], test_x: [n_test, d])``; returns each
    stage's ``ProbeFit``, in the order of ``inputs``.
    """
    if settings.backend == "sklearn":
        if settings.device != "cpu":
            raise ValueError(f"the sklearn probe backend fits on the CPU only, not on {settings.device!r}")
        fits = {name: _fit_one_with_sklearn(fit_x, fit_y, test_x, settings) for name, (fit_x, test_x) in inputs.items()}
        return {name: ProbeFit(predictions, converged, c) for name, (predictions, converged, c) in fits.items()}
    if settings.backend == "torch":
        from pytest_medprobe.torch_probes import fit_stages

        stage_fits = fit_stages(
            inputs, fit_y,
            c=settings.c, c_grid=settings.c_grid, cv_folds=settings.cv_folds, seed=settings.seed,
            max_iter=settings.max_iter, device=settings.device,
        )  # fmt: skip
        return {name: ProbeFit(fit.predictions, fit.converged, fit.c) for name, fit in stage_fits.items()}
    raise ValueError(f"unknown probe backend {settings.backend!r}; allowed: {', '.join(PROBE_BACKENDS)}")


def fit_probes(
    inputs: Mapping[str, tuple[np.ndarray, np.ndarray]], fit_y: np.ndarray, settings: ProbeSettings
) -> dict[str, tuple[np.ndarray, bool]]:
    """``fit_stage_probes`` as ``{stage: (predictions [n_test] int64, converged)}``."""
    return {name: (fit.predictions, fit.converged) for name, fit in fit_stage_probes(inputs, fit_y, settings).items()}


def bootstrap_counts(n_test: int, n_bootstrap: int, seed: int) -> np.ndarray:
    """``[n_bootstrap, n_test]`` int32: how often each test sample appears in each resample.

    One matrix serves every stage, the answer and the pixel baseline: that pairing is
    what makes the interval of a difference between two stages tight.
    """
    if n_test < 1 or n_bootstrap < 1:
        raise ValueError(f"need n_test >= 1 and n_bootstrap >= 1, got {n_test} and {n_bootstrap}")
    rng = np.random.default_rng(seed)
    counts = rng.multinomial(n_test, np.full(n_test, 1.0 / n_test), size=n_bootstrap)
    return counts.astype(np.int32)


def balanced_accuracy(pred: np.ndarray, y: np.ndarray, n_classes: int) -> float:
    """Mean recall over the classes present in ``y`` (scikit-learn's definition).

    A prediction of -1 (the model gave no parseable answer) is simply wrong.
    """
    pred, y = np.asarray(pred), np.asarray(y)
    correct = pred == y
    recalls = [correct[y == k].mean() for k in range(n_classes) if np.any(y == k)]
    return float(np.mean(recalls))


def recall_by_class(pred: np.ndarray, y: np.ndarray, n_classes: int) -> np.ndarray:
    """``[K]`` recall of each class (the share of its test samples predicted as it); NaN for a
    class absent from ``y``. Their mean over the present classes is ``balanced_accuracy``."""
    pred, y = np.asarray(pred), np.asarray(y)
    recall = np.full(n_classes, np.nan)
    for k in range(n_classes):
        members = y == k
        if members.any():
            recall[k] = float((pred[members] == k).mean())
    return recall


def permuted_labels(fit_y: np.ndarray, seed: int) -> np.ndarray:
    """The control task's labels: ``fit_y`` shuffled across the fit split (class counts kept),
    by a generator of its own so that it never shares draws with the bootstrap."""
    return np.random.default_rng([seed, 0xC0]).permutation(np.asarray(fit_y, dtype=np.int64))


def bootstrap_balanced_accuracy(pred: np.ndarray, y: np.ndarray, counts: np.ndarray, n_classes: int) -> np.ndarray:
    """Balanced accuracy on every resample of ``counts: [B, n]``; returns ``[B]``.

    Classes absent from a resample are left out of that resample's mean, as
    ``balanced_accuracy`` leaves out classes absent from ``y``.
    """
    pred, y = np.asarray(pred), np.asarray(y)
    members = (y[:, None] == np.arange(n_classes)[None, :]).astype(np.float32)  # [n, K]
    hits_by_class = members * (pred == y)[:, None]
    # float32 counts are exact (integers far below 2**24) and make the products BLAS calls.
    weights = counts.astype(np.float32, copy=False)
    totals = weights @ members  # [B, K]
    hits = weights @ hits_by_class
    present = totals > 0
    recall = np.divide(hits, totals, out=np.zeros_like(hits), where=present)
    return np.asarray(recall.sum(axis=1) / present.sum(axis=1), dtype=np.float64)


def _check_finite(array: np.ndarray, stage: str, split: str) -> None:
    values = np.asarray(array)
    if np.all(np.isfinite(values)):
        return
    n_nan = int(np.isnan(values).sum())
    n_inf = int(np.isinf(values).sum())
    raise NonFiniteFeaturesError(
        f"stage {stage!r} has {n_nan} NaN and {n_inf} infinite values in the {split} split "
        f"({values.size} values), so it cannot be probed. This usually means an overflow in "
        f"float16: try {mention(DTYPE.dest)}=float32 or {mention(DTYPE.dest)}=bfloat16 "
        f"(the setting in full: {mention_full(DTYPE.dest)})."
    )


def _check_rows(array: np.ndarray, expected: int, what: str, source: str) -> None:
    if np.ndim(array) != 2:
        raise ValueError(f"{what} must be a [n, d] array, got shape {np.shape(array)}")
    if len(array) != expected:
        raise ValueError(
            f"{what} has {len(array)} rows but there are {expected} {source}; features, labels "
            f"and answers must describe the same images (a stale feature cache? try {mention(REFRESH.dest)})"
        )


def build_probe_curve(
    fit_features: Mapping[str, np.ndarray],
    test_features: Mapping[str, np.ndarray],
    fit_labels: np.ndarray,
    test_labels: np.ndarray,
    answers: np.ndarray,
    pixel_fit: np.ndarray,
    pixel_test: np.ndarray,
    n_classes: int,
    stage_names: Sequence[str],
    has_image_view: bool,
    settings: ProbeSettings,
) -> ProbeCurve:
    """Probe every stage and the pixel baseline, score the model's answers, bootstrap all.

    ``fit_features[stage]`` is ``[n_fit, d]``, ``test_features[stage]`` ``[n_test, d]``;
    ``answers`` is ``[n_test]``, the option index the model chose (-1 for none).
    """
    curve, _ = build_probe_curve_with_predictions(
        fit_features, test_features, fit_labels, test_labels, answers, pixel_fit, pixel_test,
        n_classes, stage_names, has_image_view, settings,
    )  # fmt: skip
    return curve


def curve_from_predictions(
    predictions: Mapping[str, np.ndarray],
    test_labels: np.ndarray,
    counts: np.ndarray,
    n_classes: int,
    stage_names: Sequence[str],
    has_image_view: bool,
    unconverged: Sequence[str] = (),
    n_fit: int = 0,
    control_scores: Mapping[str, float] | None = None,
    chosen_c: Mapping[str, float] | None = None,
) -> ProbeCurve:
    """The curve of test predictions ``predictions[stage]: [n]`` (every stage, answer and pixels),
    bootstrapped on ``counts: [B, n]``; the scoring half of ``build_probe_curve``.

    Subgroups reuse it: the probes fit on the whole fit split, their predictions on one
    subgroup's test images scored alone (subgroups.py). ``chosen_c``: each probe's C when
    cross-validation chose it (the pixel baseline's included).
    """
    test_y = np.asarray(test_labels, dtype=np.int64)
    scores = {name: balanced_accuracy(pred, test_y, n_classes) for name, pred in predictions.items()}
    samples = {name: bootstrap_balanced_accuracy(pred, test_y, counts, n_classes) for name, pred in predictions.items()}
    return ProbeCurve(
        stage_names=tuple(stage_names),
        scores=scores,
        bootstrap=samples,
        n_classes=n_classes,
        has_image_view=has_image_view,
        unconverged=tuple(unconverged),
        n_fit=n_fit,
        n_test=len(test_y),
        recall_by_class={name: recall_by_class(pred, test_y, n_classes) for name, pred in predictions.items()},
        control_scores=dict(control_scores or {}),
        chosen_c=dict(chosen_c or {}),
    )


def build_probe_curve_with_predictions(
    fit_features: Mapping[str, np.ndarray],
    test_features: Mapping[str, np.ndarray],
    fit_labels: np.ndarray,
    test_labels: np.ndarray,
    answers: np.ndarray,
    pixel_fit: np.ndarray,
    pixel_test: np.ndarray,
    n_classes: int,
    stage_names: Sequence[str],
    has_image_view: bool,
    settings: ProbeSettings,
) -> tuple[ProbeCurve, dict[str, np.ndarray]]:
    """``build_probe_curve``, also returning the test predictions of every stage, the answer
    and the pixel baseline (``[n_test]`` each), which subgroups are scored from."""
    fit_y = np.asarray(fit_labels, dtype=np.int64)
    test_y = np.asarray(test_labels, dtype=np.int64)
    answers = np.asarray(answers, dtype=np.int64)
    if n_classes < 2:
        raise ValueError(f"a probe needs at least 2 classes, got n_classes={n_classes}")
    for labels, split in ((fit_y, "fit"), (test_y, "test")):
        if labels.ndim != 1 or labels.size == 0:
            raise ValueError(f"{split} labels must be a non-empty [n] array, got shape {labels.shape}")
        if labels.min() < 0 or labels.max() >= n_classes:
            raise ValueError(f"{split} labels must lie in 0..{n_classes - 1}, got {labels.min()}..{labels.max()}")
    if answers.shape != test_y.shape:
        raise ValueError(f"answers has shape {answers.shape} but the test labels have {test_y.shape}")
    names = tuple(stages.parse_stage(name).name for name in stage_names)
    missing = [n for n in names if n not in fit_features or n not in test_features]
    if missing:
        raise ValueError(f"no features for stages {', '.join(missing)}; have {', '.join(fit_features)}")
    inputs = {name: (fit_features[name], test_features[name]) for name in names}
    inputs[stages.PIXELS] = (pixel_fit, pixel_test)
    for name, (fit_x, test_x) in inputs.items():
        _check_rows(fit_x, len(fit_y), f"{name} (fit split)", "fit labels")
        _check_rows(test_x, len(test_y), f"{name} (test split)", "test labels")
        _check_finite(fit_x, name, "fit")
        _check_finite(test_x, name, "test")

    fitted = fit_stage_probes(inputs, fit_y, settings)
    predictions = {name: fit.predictions for name, fit in fitted.items()}
    unconverged = [name for name, fit in fitted.items() if not fit.converged]
    controls = None
    if settings.controls:
        # The same protocol on labels without meaning, scored on the split it was fit to: what
        # memorization alone reaches. With the torch backend, one more batched solve over
        # every stage (metrics.md §2, "Selectivity").
        shuffled = permuted_labels(fit_y, settings.seed)
        control_fits = fit_probes({name: (inputs[name][0], inputs[name][0]) for name in names}, shuffled, settings)
        controls = {name: balanced_accuracy(pred, shuffled, n_classes) for name, (pred, _) in control_fits.items()}
    predictions[stages.ANSWER] = answers
    counts = bootstrap_counts(len(test_y), settings.n_bootstrap, settings.seed)
    curve = curve_from_predictions(
        predictions, test_y, counts, n_classes, names, has_image_view, unconverged, n_fit=len(fit_y),
        control_scores=controls,
        chosen_c={name: fit.c for name, fit in fitted.items()} if settings.cross_validated else None,
    )  # fmt: skip
    # Audit 2's stages again, on whitened features (metrics.md §2, "Whitened probes"): one
    # more solve over a few stages, scored on the same resamples.
    compared = list(dict.fromkeys(stage for pair in curve.connector_pairs for stage in pair))
    whitened = fit_probes({name: whiten(*inputs[name]) for name in compared}, fit_y, settings)
    curve = replace(
        curve,
        whitened_scores={name: balanced_accuracy(pred, test_y, n_classes) for name, (pred, _) in whitened.items()},
        whitened_bootstrap={
            name: bootstrap_balanced_accuracy(pred, test_y, counts, n_classes) for name, (pred, _) in whitened.items()
        },
    )
    return curve, predictions
