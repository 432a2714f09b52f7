"""Audit 2's whitened probes (metrics.md §2, "Whitened probes"): a lossless widening reads as
no loss, a rank-limited one still as a loss; flat and float-noise directions stay out."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from pytest_medprobe.curve import ProbeCurve
from pytest_medprobe.failure_modes import connector_fidelity
from pytest_medprobe.probes import ProbeSettings, balanced_accuracy, fit_probes
from pytest_medprobe.thresholds import Thresholds
from pytest_medprobe.whitening import SAMPLES_PER_DIRECTION, whiten, whitening_rank
from tests.unit.curve_factory import curve_from_levels


def _features(seed: int, n: int = 400, width: int = 16) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """4 classes separated along every dimension, with noise: fit and test splits."""
    rng = np.random.default_rng(seed)
    means = rng.standard_normal((4, width))
    y = np.repeat(np.arange(4), n // 4)
    x = means[y] + 1.5 * rng.standard_normal((n, width))
    return x[::2], y[::2], x[1::2], y[1::2]


def _ill_conditioned(width: int, wide: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    left = np.linalg.qr(rng.standard_normal((wide, width)))[0]
    right = np.linalg.qr(rng.standard_normal((width, width)))[0]
    values = np.concatenate([[100.0] * 2, np.logspace(0, -3, width - 2)])
    return left @ np.diag(values) @ right.T  # [wide, width], injective, condition 1e5


@pytest.mark.parametrize("backend", ["torch", "sklearn"])
def test_an_injective_linear_widening_leaves_the_whitened_probe_unchanged(backend: str) -> None:
    fit_x, fit_y, test_x, test_y = _features(0)
    mapping = _ill_conditioned(16, 64, 1)
    inputs = {
        "vision": whiten(fit_x, test_x),
        "connector": whiten(fit_x @ mapping.T, test_x @ mapping.T),
    }
    settings = ProbeSettings(backend=backend)
    predictions = {name: pred for name, (pred, _) in fit_probes(inputs, fit_y, settings).items()}
    scores = {name: balanced_accuracy(pred, test_y, 4) for name, pred in predictions.items()}
    assert scores["vision"] == pytest.approx(scores["connector"], abs=0.005), scores
    # The standardized probe does see a difference here: that artifact is what whitening removes.
    plain = fit_probes({"connector": (fit_x @ mapping.T, test_x @ mapping.T)}, fit_y, settings)
    assert balanced_accuracy(plain["connector"][0], test_y, 4) < scores["connector"] - 0.01


def test_a_rank_limited_map_still_loses_signal_after_whitening() -> None:
    fit_x, fit_y, test_x, test_y = _features(2)
    mapping = _ill_conditioned(16, 64, 3)
    mapping[:, 2:] = 0.0  # reads 2 of the 16 dimensions
    inputs = {"vision": whiten(fit_x, test_x), "connector": whiten(fit_x @ mapping.T, test_x @ mapping.T)}
    assert inputs["connector"][0].shape[1] == 2
    fitted = fit_probes(inputs, fit_y, ProbeSettings())
    scores = {name: balanced_accuracy(pred, test_y, 4) for name, (pred, _) in fitted.items()}
    assert scores["vision"] - scores["connector"] > 0.1, scores


def test_flat_stages_and_float_noise_are_not_whitened_into_signal() -> None:
    rng = np.random.default_rng(4)
    constant = np.tile(rng.standard_normal(32), (100, 1)).astype(np.float32)
    assert whitening_rank(constant) == 0
    fit, test = whiten(constant, constant[:10])
    assert fit.shape == (100, 1) and not fit.any() and not test.any()
    # 8 directions of signal embedded in 128 float32 dimensions: rounding noise elsewhere.
    low_rank = (rng.standard_normal((200, 8)) @ rng.standard_normal((8, 128))).astype(np.float32)
    assert whitening_rank(low_rank) == 8
    fit, _ = whiten(low_rank, low_rank)
    np.testing.assert_allclose(fit.std(axis=0), 1.0, rtol=1e-6)
    # Never more directions than a quarter of the fit images.
    assert whitening_rank(rng.standard_normal((100, 64))) == 100 // SAMPLES_PER_DIRECTION


def _with_whitened(curve: ProbeCurve, vision: float, connector: float) -> ProbeCurve:
    levels = curve_from_levels({"vision": vision, "connector": connector})
    return replace(
        curve,
        whitened_scores={name: levels.score(name) for name in ("vision", "connector")},
        whitened_bootstrap={name: levels.samples(name) for name in ("vision", "connector")},
    )


def test_audit_2_judges_the_whitened_loss_and_says_so() -> None:
    curve = curve_from_levels({"vision": 0.9, "connector": 0.8})  # standardized probes: loss 0.1
    plain = connector_fidelity(curve, Thresholds(), "point")
    assert not plain.passed and "whitened" not in plain.message
    whitened = _with_whitened(curve, 0.9, 0.9)
    verdict = connector_fidelity(whitened, Thresholds(), "point")
    assert verdict.passed and verdict.statistic == pytest.approx(0.0)
    assert "(whitened probes)" in verdict.message
    loss = whitened.whitened_loss("vision", "connector")
    assert loss is not None and loss.low <= 0.0 <= loss.high
    record = {r["stage"]: r for r in whitened.to_records()}
    assert record["connector"]["whitened"]["score"] == pytest.approx(0.9)
    assert "whitened" not in record["llm.0"]
    with pytest.raises(ValueError, match="whitened"):
        replace(curve, whitened_scores={"vision": 0.9}, whitened_bootstrap={})
