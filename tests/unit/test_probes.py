"""The probe protocol (metrics.md §2): probes, balanced accuracy, the paired bootstrap."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import balanced_accuracy_score

from pytest_medprobe.config import DTYPE
from pytest_medprobe.errors import NonFiniteFeaturesError
from pytest_medprobe.probes import (
    ProbeSettings,
    balanced_accuracy,
    bootstrap_balanced_accuracy,
    bootstrap_counts,
    build_probe_curve,
    fit_probe,
)
from pytest_medprobe.stages import stage_order

FAST = ProbeSettings(n_bootstrap=200)


def _blobs(n: int, n_classes: int, d: int, separation: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Gaussian classes: ``[n, d]`` features and ``[n]`` balanced labels."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % n_classes
    centres = rng.normal(size=(n_classes, d)) * separation
    return centres[y] + rng.normal(size=(n, d)), y


def _stage_inputs(stage_names: tuple[str, ...], seed: int = 0) -> dict[str, object]:
    """Arguments of build_probe_curve: informative encoder stages, noise elsewhere."""
    fit_x, fit_y = _blobs(160, 4, 8, 3.0, seed)
    test_x, test_y = _blobs(120, 4, 8, 3.0, seed)  # same seed: same class centres
    test_x = test_x + np.random.default_rng(seed + 1).normal(size=test_x.shape)
    rng = np.random.default_rng(seed + 2)
    fit_features, test_features = {}, {}
    for name in stage_names:
        informative = not name.startswith("llm")
        fit_features[name] = fit_x if informative else rng.normal(size=fit_x.shape)
        test_features[name] = test_x if informative else rng.normal(size=test_x.shape)
    answers = test_y.copy()
    answers[:30] = -1  # no parseable answer
    return dict(
        fit_features=fit_features,
        test_features=test_features,
        fit_labels=fit_y,
        test_labels=test_y,
        answers=answers,
        pixel_fit=fit_x[:, :2],
        pixel_test=test_x[:, :2],
        n_classes=4,
        stage_names=stage_names,
        has_image_view=True,
        settings=FAST,
    )


@settings(deadline=None, max_examples=60)
@given(
    n_classes=st.integers(2, 6),
    seed=st.integers(0, 2**16),
    n=st.integers(2, 60),
)
def test_balanced_accuracy_equals_scikit_learns(n_classes: int, seed: int, n: int) -> None:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, n_classes, size=n)
    y[:2] = [0, 1]  # scikit-learn warns about a single class
    # Predictions only among the classes present in y: scikit-learn warns otherwise.
    pred = rng.choice(np.unique(y), size=n)
    assert balanced_accuracy(pred, y, n_classes) == pytest.approx(balanced_accuracy_score(y, pred))


def test_a_missing_answer_counts_as_wrong() -> None:
    y = np.array([0, 0, 1, 1])
    assert balanced_accuracy(np.array([0, -1, 1, -1]), y, 2) == pytest.approx(0.5)


def test_bootstrap_counts_resample_every_row_to_the_test_size_reproducibly() -> None:
    counts = bootstrap_counts(50, 30, seed=3)
    assert counts.shape == (30, 50) and counts.dtype == np.int32
    assert (counts.sum(axis=1) == 50).all()
    assert np.array_equal(counts, bootstrap_counts(50, 30, seed=3))
    assert not np.array_equal(counts, bootstrap_counts(50, 30, seed=4))


def test_bootstrap_balanced_accuracy_is_balanced_accuracy_of_each_resample() -> None:
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, size=40)
    pred = np.where(rng.random(40) < 0.7, y, rng.integers(-1, 3, size=40))
    counts = bootstrap_counts(40, 25, seed=1)
    vectorized = bootstrap_balanced_accuracy(pred, y, counts, 3)
    for b in range(25):
        rows = np.repeat(np.arange(40), counts[b])
        assert vectorized[b] == pytest.approx(balanced_accuracy(pred[rows], y[rows], 3))


def test_bootstrap_mean_is_close_to_the_point_estimate() -> None:
    rng = np.random.default_rng(0)
    y = np.arange(400) % 4
    pred = np.where(rng.random(400) < 0.6, y, (y + 1) % 4)
    samples = bootstrap_balanced_accuracy(pred, y, bootstrap_counts(400, 500, seed=0), 4)
    assert samples.shape == (500,)
    assert samples.mean() == pytest.approx(balanced_accuracy(pred, y, 4), abs=0.01)


def test_probe_predictions_do_not_change_when_a_stage_is_rescaled() -> None:
    fit_x, fit_y = _blobs(200, 3, 10, 1.0, seed=0)
    test_x, _ = _blobs(100, 3, 10, 1.0, seed=0)
    pred, converged = fit_probe(fit_x, fit_y, test_x, FAST)
    scaled, _ = fit_probe(fit_x * 1000.0, fit_y, test_x * 1000.0, FAST)
    assert converged and pred.dtype == np.int64 and pred.shape == (100,)
    assert np.array_equal(pred, scaled)


def test_constant_features_and_a_single_fit_class_are_probed_without_error() -> None:
    fit_x, fit_y = _blobs(90, 3, 4, 3.0, seed=0)
    fit_x[:, 0] = 7.0
    pred, converged = fit_probe(fit_x, fit_y, fit_x, FAST)
    assert converged and balanced_accuracy(pred, fit_y, 3) > 0.9
    only, _ = fit_probe(fit_x, np.zeros(90, dtype=np.int64), fit_x[:5], FAST)
    assert only.tolist() == [0] * 5


def test_a_probe_that_hits_max_iter_reports_it_instead_of_warning() -> None:
    fit_x, fit_y = _blobs(200, 4, 30, 0.3, seed=0)
    _, converged = fit_probe(fit_x, fit_y, fit_x, ProbeSettings(max_iter=1))
    assert not converged  # and no ConvergenceWarning escaped (warnings are errors here)


def test_build_probe_curve_scores_stages_answer_and_pixels_on_one_set_of_resamples() -> None:
    names = stage_order(1, 2, has_image_view=True)
    curve = build_probe_curve(**_stage_inputs(names))  # type: ignore[arg-type]
    assert curve.stages == names and curve.n_fit == 160 and curve.n_test == 120
    assert curve.score("vision") > 0.8 and curve.score("llm.1") < 0.5
    assert curve.score("answer") == pytest.approx(0.75, abs=0.02)  # 30 of 120 unanswered
    assert 0.0 <= curve.score("pixels") <= 1.0 and curve.unconverged == ()
    # Identical features give identical bootstrap samples: the resamples are shared.
    assert np.array_equal(curve.samples("vision"), curve.samples("connector"))
    loss = curve.loss("vision", "connector")
    assert (float(loss), loss.low, loss.high) == (0.0, 0.0, 0.0)


@pytest.mark.parametrize("split", ["fit", "test"])
def test_a_nan_feature_raises_an_error_naming_stage_split_count_and_dtype_advice(split: str) -> None:
    names = stage_order(0, 2, has_image_view=True)
    inputs = _stage_inputs(names)
    features = inputs[f"{split}_features"]
    assert isinstance(features, dict)
    features["llm.1"] = features["llm.1"].copy()
    features["llm.1"][3, :2] = np.nan
    features["llm.1"][4, 0] = np.inf
    with pytest.raises(NonFiniteFeaturesError) as error:
        build_probe_curve(**inputs)  # type: ignore[arg-type]
    message = str(error.value)
    assert "'llm.1'" in message and f"{split} split" in message
    assert "2 NaN and 1 infinite" in message and "float16" in message and DTYPE.flag in message


def test_mismatched_row_counts_are_refused_with_a_clear_message() -> None:
    names = stage_order(0, 2, has_image_view=True)
    inputs = _stage_inputs(names)
    features = inputs["test_features"]
    assert isinstance(features, dict)
    features["connector"] = features["connector"][:-1]
    with pytest.raises(ValueError, match=r"connector \(test split\) has 119 rows but there are 120 test labels"):
        build_probe_curve(**inputs)  # type: ignore[arg-type]
