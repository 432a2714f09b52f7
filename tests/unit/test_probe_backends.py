"""The two probe backends (metrics.md §2): torch, all stages at once, and the scikit-learn reference."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler

from pytest_medprobe import config, torch_probes
from pytest_medprobe.config import resolve_settings
from pytest_medprobe.errors import MedprobeUsageError
from pytest_medprobe.probes import ProbeSettings, balanced_accuracy, build_probe_curve, fit_probes
from pytest_medprobe.stages import stage_order
from pytest_medprobe.torch_probes import fit_stages

N_FIT, N_TEST = 240, 240


def _bank(n_classes: int, seed: int = 0) -> tuple[dict[str, tuple[np.ndarray, np.ndarray]], np.ndarray, np.ndarray]:
    """A fixed feature bank: stages of three widths, from pure noise to well separated.

    Columns have their own offsets and scales (so standardization matters), and one
    stage has a constant column. Returns ``{stage: (fit [N_FIT, d], test [N_TEST, d])}``,
    the fit labels and the test labels.
    """
    rng = np.random.default_rng(seed)
    y = np.arange(N_FIT + N_TEST) % n_classes
    rng.shuffle(y)
    bank = {}
    for name, width, strength in [
        ("noise", 24, 0.0),
        ("weak", 24, 0.25),
        ("middle", 40, 0.5),
        ("strong", 40, 1.5),
        ("narrow", 8, 1.0),
    ]:
        centres = rng.normal(size=(n_classes, width)) * strength
        x = centres[y] + rng.normal(size=(len(y), width))
        x = x * rng.uniform(0.1, 10.0, size=width) + rng.uniform(-50.0, 50.0, size=width)
        if name == "middle":
            x[:, 5] = 3.0  # a constant column: StandardScaler leaves its scale at 1
        bank[name] = (x[:N_FIT].astype(np.float32), x[N_FIT:].astype(np.float32))
    return bank, y[:N_FIT], y[N_FIT:]


def curve_arguments(
    bank: dict[str, tuple[np.ndarray, np.ndarray]],
    fit_y: np.ndarray,
    test_y: np.ndarray,
    names: list[str],
    sources: list[str],
    pixels: tuple[np.ndarray, np.ndarray],
) -> dict[str, object]:
    """``build_probe_curve``'s arguments (but the settings) for a 4-class curve whose stages
    ``names`` take the bank's stages ``sources`` in turn, with perfect answers and ``pixels``
    (fit, test) as the pixel floor."""
    features = {name: bank[sources[index % len(sources)]] for index, name in enumerate(names)}
    return dict(
        fit_features={name: fit for name, (fit, _) in features.items()},
        test_features={name: test for name, (_, test) in features.items()},
        fit_labels=fit_y,
        test_labels=test_y,
        answers=test_y,
        pixel_fit=pixels[0],
        pixel_test=pixels[1],
        n_classes=4,
        stage_names=names,
        has_image_view=True,
    )


@pytest.mark.parametrize("n_classes", [2, 4])
def test_both_backends_agree_within_a_hundredth_on_every_stage(n_classes: int) -> None:
    bank, fit_y, test_y = _bank(n_classes)
    fast = fit_probes(bank, fit_y, ProbeSettings(backend="torch"))
    reference = fit_probes(bank, fit_y, ProbeSettings(backend="sklearn"))
    assert list(fast) == list(bank)
    scores = {}
    for name in bank:
        (ours, ours_converged), (theirs, theirs_converged) = fast[name], reference[name]
        assert ours.dtype == np.int64 and ours.shape == (N_TEST,)
        assert ours_converged and theirs_converged
        scores[name] = (balanced_accuracy(ours, test_y, n_classes), balanced_accuracy(theirs, test_y, n_classes))
        assert scores[name][0] == pytest.approx(scores[name][1], abs=0.01), name
    # The bank spans the range the agreement has to hold over.
    assert scores["noise"][1] < 1 / n_classes + 0.15 and scores["strong"][1] > 0.95


@pytest.mark.parametrize("n_classes", [2, 3])
def test_the_torch_backend_minimizes_scikit_learns_objective(n_classes: int) -> None:
    """Same optimum, not just similar scores: coefficients agree once both solve tightly."""
    bank, fit_y, _ = _bank(n_classes)
    fit_x, test_x = bank["middle"]
    fit = fit_stages({"middle": (fit_x, test_x)}, fit_y, c=0.5, tol=1e-9, max_iter=10_000)["middle"]
    scaler = StandardScaler().fit(fit_x.astype(np.float64))
    model = LogisticRegression(C=0.5, tol=1e-9, max_iter=10_000).fit(scaler.transform(fit_x.astype(np.float64)), fit_y)
    assert fit.converged and fit.coef.shape == model.coef_.shape  # one row for two classes
    np.testing.assert_allclose(fit.coef, model.coef_, atol=1e-5)
    np.testing.assert_allclose(fit.intercept, model.intercept_, atol=1e-5)
    assert fit.coef[:, 5].tolist() == [0.0] * len(fit.coef)  # the constant column
    assert np.array_equal(fit.predictions, model.predict(scaler.transform(test_x.astype(np.float64))))


@pytest.mark.parametrize("threaded", [False, True], ids=["batched-products", "threaded-products"])
def test_torch_fits_are_identical_run_to_run_and_across_thread_counts(
    monkeypatch: pytest.MonkeyPatch, threaded: bool
) -> None:
    if threaded:  # the bank's stages are small; spread their products over threads all the same
        monkeypatch.setattr(torch_probes, "THREADED_PRODUCTS", 0)
    bank, fit_y, _ = _bank(4, seed=1)
    first = fit_stages(bank, fit_y, threads=1)
    for again in (fit_stages(bank, fit_y, threads=1), fit_stages(bank, fit_y, threads=2)):
        for name in bank:
            assert np.array_equal(first[name].predictions, again[name].predictions)
            assert np.array_equal(first[name].coef, again[name].coef)


def test_a_narrow_stage_batched_with_wider_ones_gets_the_fit_it_gets_alone() -> None:
    """Zero-padding to the batch's width must not change a stage's probe."""
    bank, fit_y, _ = _bank(4)
    alone = fit_stages({"narrow": bank["narrow"]}, fit_y)["narrow"]
    batched = fit_stages(bank, fit_y)["narrow"]
    assert batched.coef.shape == alone.coef.shape == (4, 8)
    np.testing.assert_allclose(batched.coef, alone.coef, atol=1e-6)
    assert np.array_equal(batched.predictions, alone.predictions)


def test_the_torch_backend_restores_torchs_thread_count() -> None:
    import torch

    before = torch.get_num_threads()
    bank, fit_y, _ = _bank(3)
    fit_stages(bank, fit_y, threads=2)
    assert torch.get_num_threads() == before


@pytest.mark.parametrize("backend", config.PROBE_BACKENDS)
def test_a_single_fit_class_predicts_that_class_on_both_backends(backend: str) -> None:
    bank, _, _ = _bank(3)
    only = np.full(N_FIT, 2, dtype=np.int64)
    for name, (predictions, converged) in fit_probes(bank, only, ProbeSettings(backend=backend)).items():
        assert converged and predictions.tolist() == [2] * N_TEST, name


@pytest.mark.parametrize("backend", config.PROBE_BACKENDS)
def test_a_probe_that_hits_max_iter_is_reported_unconverged_on_both_backends(backend: str) -> None:
    bank, fit_y, _ = _bank(4)
    fitted = fit_probes({"weak": bank["weak"]}, fit_y, ProbeSettings(max_iter=1, backend=backend))
    assert fitted["weak"][1] is False  # and no warning escaped (warnings are errors here)


def test_build_probe_curve_gives_the_same_curve_on_both_backends() -> None:
    bank, fit_y, test_y = _bank(4)
    names = stage_order(0, 2, has_image_view=True)
    narrow_pixels = (bank["narrow"][0][:, :5], bank["narrow"][1][:, :5])
    arguments = curve_arguments(
        bank, fit_y, test_y, names, ["strong", "middle", "weak", "noise", "narrow"], narrow_pixels
    )
    curves = {
        backend: build_probe_curve(**arguments, settings=ProbeSettings(n_bootstrap=50, backend=backend))  # type: ignore[arg-type]
        for backend in config.PROBE_BACKENDS
    }
    for stage in (*names, "pixels", "answer"):
        assert curves["torch"].score(stage) == pytest.approx(curves["sklearn"].score(stage), abs=0.01), stage
    assert curves["torch"].unconverged == curves["sklearn"].unconverged == ()


def test_an_unknown_backend_in_probe_settings_is_refused() -> None:
    bank, fit_y, _ = _bank(2)
    with pytest.raises(ValueError, match="unknown probe backend 'jax'; allowed: torch, sklearn"):
        fit_probes(bank, fit_y, ProbeSettings(backend="jax"))


def test_the_probe_backend_defaults_to_torch_and_the_command_line_wins_over_ini() -> None:
    assert resolve_settings({}, {}, Path(".")).probe_backend == "torch" == ProbeSettings().backend
    ini = {config.PROBE_BACKEND.ini: "sklearn"}
    assert resolve_settings({}, ini, Path(".")).probe_backend == "sklearn"
    assert resolve_settings({config.PROBE_BACKEND.dest: "torch"}, ini, Path(".")).probe_backend == "torch"
    assert config.PROBE_BACKEND in config.SETTINGS
    assert (config.PROBE_BACKEND.flag, config.PROBE_BACKEND.ini) == (
        "--medprobe-probe-backend",
        "medprobe_probe_backend",
    )


@pytest.mark.parametrize("value", ["jax", "Torch", ""])
def test_a_bad_probe_backend_names_the_setting_the_value_and_the_choices(value: str) -> None:
    with pytest.raises(MedprobeUsageError) as caught:
        resolve_settings({config.PROBE_BACKEND.dest: value or " "}, {}, Path("."))
    message = str(caught.value)
    assert config.PROBE_BACKEND.flag in message and config.PROBE_BACKEND.ini in message
    assert repr(value or " ") in message and "torch, sklearn" in message


def test_importing_the_probe_modules_does_not_import_torch_or_scikit_learn() -> None:
    code = (
        "import sys, pytest_medprobe.probes, pytest_medprobe.torch_probes, pytest_medprobe.config;"
        "heavy = sorted(m for m in ('torch', 'sklearn') if m in sys.modules);"
        "assert not heavy, heavy"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_pytest_refuses_a_bad_probe_backend_as_a_usage_error(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest(f"{config.PROBE_BACKEND.flag}=jax")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        [f"*{config.PROBE_BACKEND.flag} / ini {config.PROBE_BACKEND.ini}: got 'jax'*torch, sklearn*"]
    )
