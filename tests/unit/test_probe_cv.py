"""Cross-validated C (metrics.md §2): folds, scores, the pick, one batched solve, both backends."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import balanced_accuracy_score
from sklearn.preprocessing import StandardScaler

from pytest_medprobe import config, cv, lbfgs, stage_features, torch_probes
from pytest_medprobe.config import resolve_settings
from pytest_medprobe.errors import DatasetError, MedprobeUsageError
from pytest_medprobe.probes import ProbeSettings, balanced_accuracy, build_probe_curve, fit_stage_probes
from pytest_medprobe.stages import stage_order
from pytest_medprobe.torch_probes import fit_stages
from tests.unit.test_probe_backends import _bank, curve_arguments

GRID = (0.001, 0.01, 0.1, 1.0, 10.0)


def test_the_defaults_keep_one_fixed_c_and_no_cross_validation() -> None:
    resolved = resolve_settings({}, {}, Path("."))
    assert resolved.probe_c_grid == () and resolved.probe_cv_folds == 5 and resolved.probe_device == "auto"
    assert ProbeSettings().c_grid == () and not ProbeSettings().cross_validated
    bank, fit_y, _ = _bank(3)
    default = fit_stage_probes(bank, fit_y, ProbeSettings())
    assert {fit.c for fit in default.values()} == {1.0}
    one_value = fit_stage_probes(bank, fit_y, ProbeSettings(c_grid=(0.1,)))  # a grid of one is that C
    fixed = fit_stage_probes(bank, fit_y, ProbeSettings(c=0.1))
    for name in bank:
        assert np.array_equal(one_value[name].predictions, fixed[name].predictions) and one_value[name].c == 0.1


def test_folds_are_stratified_balanced_and_fixed_by_the_seed() -> None:
    labels = np.repeat([0, 1, 2], [50, 23, 7])
    folds = cv.stratified_folds(labels, 5, seed=3)
    assert np.array_equal(folds, cv.stratified_folds(labels, 5, seed=3))
    assert not np.array_equal(folds, cv.stratified_folds(labels, 5, seed=4))
    sizes = np.bincount(folds)
    assert sizes.max() - sizes.min() <= 1
    for label in range(3):  # every class spread evenly over the folds
        per_fold = np.bincount(folds[labels == label], minlength=5)
        assert per_fold.max() - per_fold.min() <= 1, label
    assert cv.fold_count(labels, 5) == 5 and cv.fold_count(labels, 10) == 7  # the rarest class has 7
    with pytest.raises(DatasetError, match=r"class\(es\) \[2\] have a single image"):
        cv.fold_count(np.array([0, 0, 1, 1, 2]), 5)


def test_fold_scores_are_scikit_learns_balanced_accuracy_on_each_held_out_fold() -> None:
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 4, size=90)
    folds = cv.stratified_folds(labels, 3, seed=0)
    predictions = rng.integers(0, 4, size=(2, 3, 90))  # [grid, fold, n]
    scores = cv.fold_scores(predictions, labels, folds)
    for g in range(2):
        for fold in range(3):
            held_out = folds == fold
            expected = balanced_accuracy_score(labels[held_out], predictions[g, fold, held_out])
            assert scores[g, fold] == expected  # bit-identical: both backends pick alike


def test_a_tie_goes_to_the_smaller_c() -> None:
    assert cv.pick_c(np.array([[0.5, 0.6], [0.6, 0.6], [0.6, 0.6]]), [0.1, 1.0, 10.0]) == 1
    assert cv.pick_c(np.array([[0.8], [0.8 + 1e-15], [0.7]]), [0.1, 1.0, 10.0]) == 0
    with pytest.raises(ValueError, match="ascending"):
        cv.pick_c(np.zeros((2, 3)), [1.0, 0.1])


def test_batched_cross_validation_picks_what_a_loop_of_single_fits_picks() -> None:
    """The known answer: each C fit on each fold's training samples, one scikit-learn fit at a
    time, on features standardized with the whole fit split (as LogisticRegressionCV sees them)."""
    bank, fit_y, _ = _bank(3)
    stage = {"middle": bank["middle"]}
    standardized = StandardScaler().fit_transform(bank["middle"][0].astype(np.float64))
    folds = cv.stratified_folds(fit_y, 5, seed=0)
    looped = np.empty((len(GRID), 5))
    for g, c in enumerate(GRID):
        for fold in range(5):
            train = folds != fold
            alone = LogisticRegression(C=c, tol=1e-10, max_iter=10_000).fit(standardized[train], fit_y[train])
            looped[g, fold] = balanced_accuracy(alone.predict(standardized[~train]), fit_y[~train], 3)
    batched = fit_stages(stage, fit_y, c_grid=GRID, tol=1e-8)["middle"]
    np.testing.assert_allclose(batched.cv_scores, looped.mean(axis=1), atol=1e-9)
    assert batched.c == GRID[cv.pick_c(looped, GRID)]
    refit = fit_stages(stage, fit_y, c=batched.c, tol=1e-8)["middle"]  # then refit on the whole split
    np.testing.assert_allclose(batched.coef, refit.coef, atol=1e-5)


@pytest.mark.parametrize("n_classes", [2, 4])
def test_both_backends_cross_validate_alike(n_classes: int) -> None:
    bank, fit_y, test_y = _bank(n_classes)
    ours = fit_stage_probes(bank, fit_y, ProbeSettings(c_grid=GRID))
    theirs = fit_stage_probes(bank, fit_y, ProbeSettings(c_grid=GRID, backend="sklearn"))
    detail = fit_stages(bank, fit_y, c_grid=GRID)
    for name in bank:
        assert ours[name].converged and theirs[name].converged, name
        ours_score = balanced_accuracy(ours[name].predictions, test_y, n_classes)
        theirs_score = balanced_accuracy(theirs[name].predictions, test_y, n_classes)
        assert ours_score == pytest.approx(theirs_score, abs=0.01), name
        if ours[name].c != theirs[name].c:  # only a near tie of the cross-validation scores may differ
            scores = dict(zip(GRID, detail[name].cv_scores))
            assert abs(scores[ours[name].c] - scores[theirs[name].c]) < 0.01, name


def test_the_grid_is_one_batched_solve_of_every_stage_c_and_fold(monkeypatch: pytest.MonkeyPatch) -> None:
    """A row per stage x fold, each walking the whole grid; then one solve of the refits."""
    solves: list[tuple[int, tuple[int, ...]]] = []
    real_solve = lbfgs.solve

    def counting(
        features: stage_features.Features, problems: lbfgs.Problems, *args: object, **kwargs: object
    ) -> object:
        solves.append((features.x.shape[0], tuple(problems.l2.shape)))
        solution = real_solve(features, problems, *args, **kwargs)  # type: ignore[arg-type]
        assert solution.n_iter.shape == problems.l2.shape and bool(solution.converged.all())
        return solution

    monkeypatch.setattr(torch_probes, "solve", counting)
    bank, fit_y, _ = _bank(4)
    same_width = {name: bank[name] for name in ("noise", "weak")}  # one batch of two stages
    fit_stages(same_width, fit_y, c_grid=GRID, cv_folds=4)
    assert solves == [(2, (2 * 4, len(GRID))), (2, (2, 1))]


def test_chunking_the_solve_for_memory_changes_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    bank, fit_y, _ = _bank(4)
    whole = fit_stages(bank, fit_y, c_grid=GRID)
    monkeypatch.setattr(torch_probes, "SOLVER_MEMORY", 1)  # one stage per chunk
    chunked = fit_stages(bank, fit_y, c_grid=GRID)
    for name in bank:
        assert chunked[name].c == whole[name].c and chunked[name].cv_scores == whole[name].cv_scores
        np.testing.assert_allclose(chunked[name].coef, whole[name].coef, atol=1e-12)


@pytest.mark.parametrize("backend", config.PROBE_BACKENDS)
def test_a_single_fit_class_under_a_grid_predicts_it_with_the_strongest_c(backend: str) -> None:
    bank, _, _ = _bank(3)
    only = np.full(len(bank["weak"][0]), 1, dtype=np.int64)
    fits = fit_stage_probes({"weak": bank["weak"]}, only, ProbeSettings(c_grid=GRID, backend=backend))
    assert fits["weak"].c == 0.001 and set(fits["weak"].predictions.tolist()) == {1}


def test_the_curve_and_its_records_report_each_chosen_c() -> None:
    bank, fit_y, test_y = _bank(4)
    names = stage_order(0, 1, has_image_view=True)
    arguments = curve_arguments(bank, fit_y, test_y, names, ["strong", "middle", "weak", "noise"], bank["narrow"])
    features = {name: (arguments["fit_features"][name], arguments["test_features"][name]) for name in names}
    curve = build_probe_curve(**arguments, settings=ProbeSettings(n_bootstrap=20, c_grid=GRID))  # type: ignore[arg-type]
    expected = fit_stages({"pixels": bank["narrow"], **features}, fit_y, c_grid=GRID)
    assert curve.chosen_c == {name: fit.c for name, fit in expected.items()}
    assert [record["c"] for record in curve.to_records()] == [expected[name].c for name in names]
    assert f"C={expected['vision'].c:g}" in repr(curve)
    fixed = build_probe_curve(**arguments, settings=ProbeSettings(n_bootstrap=20))  # type: ignore[arg-type]
    assert fixed.chosen_c == {} and all("c" not in record for record in fixed.to_records())


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("1, 0.1,0.01", (0.01, 0.1, 1.0)), ("none", ()), ("", ()), ("10 1 1", (1.0, 10.0)), ((0.5, 2.0), (0.5, 2.0))],
)
def test_the_c_grid_setting_reads_commas_spaces_and_tuples(raw: object, expected: tuple[float, ...]) -> None:
    assert resolve_settings({}, {config.PROBE_C_GRID.ini: raw}, Path(".")).probe_c_grid == expected


def test_the_sklearn_backend_refuses_a_gpu_probe_device() -> None:
    cli = {config.PROBE_BACKEND.dest: "sklearn", config.PROBE_DEVICE.dest: "cuda"}
    with pytest.raises(MedprobeUsageError, match="fits on the CPU only"):
        resolve_settings(cli, {}, Path("."))
    with pytest.raises(ValueError, match="CPU only"):
        fit_stage_probes(*_bank(2)[:2], ProbeSettings(backend="sklearn", device="cuda"))
