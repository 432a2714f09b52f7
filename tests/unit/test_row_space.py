"""Solving in the fit rows' row space (metrics.md §2): the same probes, in fewer dimensions."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pytest_medprobe import cv, torch_probes
from pytest_medprobe.probes import ProbeSettings, balanced_accuracy, fit_stage_probes
from pytest_medprobe.row_space import factorize
from pytest_medprobe.torch_probes import fit_stages, inline

GRID = (0.001, 0.01, 0.1, 1.0, 10.0)
N_FIT, N_TEST = 60, 200


def _wide_bank(
    n_classes: int, seed: int = 0
) -> tuple[dict[str, tuple[np.ndarray, np.ndarray]], np.ndarray, np.ndarray]:
    """Stages wider than the fit split has images (150 and 130 dims share a padded batch;
    900 dims its own), each with correlated columns of their own scales and offsets."""
    rng = np.random.default_rng(seed)
    y = np.arange(N_FIT + N_TEST) % n_classes
    rng.shuffle(y)
    bank = {}
    for name, width, strength in [("wide", 150, 0.4), ("padded", 130, 0.8), ("widest", 900, 0.25)]:
        centres = rng.normal(size=(n_classes, width)) * strength
        shared = rng.normal(size=(len(y), 4)) @ rng.normal(size=(4, width))
        x = centres[y] + shared + rng.normal(size=(len(y), width))
        x = x * rng.uniform(0.1, 10.0, size=width) + rng.uniform(-50.0, 50.0, size=width)
        bank[name] = (x[:N_FIT].astype(np.float32), x[N_FIT:].astype(np.float32))
    return bank, y[:N_FIT], y[N_FIT:]


def test_the_coordinates_and_the_basis_give_back_the_features() -> None:
    rng = np.random.default_rng(1)
    x = torch.as_tensor(rng.normal(size=(2, 30, 80)), dtype=torch.float32)
    x -= x.mean(dim=1, keepdim=True)  # standardized features are centred: one rank short
    coords, basis = factorize(x, inline)
    assert coords.shape == (2, 30, 30) and basis.width == 80
    q = basis.basis
    torch.testing.assert_close(coords @ q.transpose(1, 2), x, atol=2e-5, rtol=0)
    torch.testing.assert_close(q.transpose(1, 2) @ q, torch.eye(30).expand(2, 30, 30), atol=2e-6, rtol=0)
    weights = torch.as_tensor(rng.normal(size=(3, 4, 30)))  # back to the features' coordinates: W = Q·β
    expanded = basis.expand([0, 1, 1], weights)
    assert expanded.dtype == torch.float64 and expanded.shape == (3, 4, 80)
    torch.testing.assert_close(expanded[2], weights[2] @ q[1].T.double(), atol=1e-5, rtol=0)


def test_the_stopping_test_reads_the_largest_entry_in_the_features_coordinates() -> None:
    """Whatever the bounds or the remembered witnesses decide must be what Q·g says."""
    rng = np.random.default_rng(2)
    x = torch.as_tensor(rng.normal(size=(2, 40, 200)), dtype=torch.float32)
    _, basis = factorize(x, inline)
    tol = 1e-3
    stage_of = [0, 0, 1, 1, 1]
    decided = {"converged": 0, "not": 0}
    for scale in np.geomspace(1e-5, 1e-1, 25):  # from far below the tolerance to far above it
        grad = torch.as_tensor(rng.normal(size=(5, 3, 40)) * scale / np.sqrt(120))
        grad[0] *= 0.05  # rows at different distances from convergence
        # Rows 1 and 4: one feature carries the gradient, so its largest entry is close to its norm.
        for row in (1, 4):
            spike = np.zeros((3, 200))
            spike[rng.integers(3), rng.integers(200)] = scale
            grad[row] = torch.as_tensor(spike) @ basis.basis[stage_of[row]].double()
        asked = torch.tensor([True, True, True, False, True])
        verdict = basis.within(stage_of, grad, tol, asked)
        for row, stage in enumerate(stage_of):
            largest = (grad[row] @ basis.basis[stage].T.double()).abs().max().item()
            if not asked[row]:
                assert not verdict[row]
            elif abs(largest - tol) > 1e-6 * tol:  # float32 rounding may decide an exact tie
                assert bool(verdict[row]) == (largest <= tol), (scale, row, largest)
                decided["converged" if largest <= tol else "not"] += 1
    assert decided["converged"] > 10 and decided["not"] > 10


@pytest.mark.parametrize("n_classes", [2, 4])
def test_the_row_space_solve_fits_the_probes_the_full_solve_fits(
    monkeypatch: pytest.MonkeyPatch, n_classes: int
) -> None:
    bank, fit_y, _ = _wide_bank(n_classes)
    reduced = fit_stages(bank, fit_y, c_grid=GRID)
    monkeypatch.setattr(torch_probes, "_in_row_space", lambda *_: False)
    full = fit_stages(bank, fit_y, c_grid=GRID)
    for name, width in (("wide", 150), ("padded", 130), ("widest", 900)):
        ours, theirs = reduced[name], full[name]
        assert ours.coef.shape == theirs.coef.shape == ((1 if n_classes == 2 else n_classes), width)
        assert ours.converged and theirs.converged and ours.c == theirs.c, name
        np.testing.assert_allclose(ours.cv_scores, theirs.cv_scores, atol=1e-9)
        scale = np.abs(theirs.coef).max()
        np.testing.assert_allclose(ours.coef, theirs.coef, atol=2e-3 * scale)
        np.testing.assert_allclose(ours.intercept, theirs.intercept, atol=2e-3 * max(1.0, scale))
        assert np.mean(ours.predictions == theirs.predictions) >= 0.99, name


def test_wide_stages_cross_validate_as_scikit_learn_does() -> None:
    bank, fit_y, test_y = _wide_bank(4, seed=3)
    ours = fit_stage_probes(bank, fit_y, ProbeSettings(c_grid=GRID))
    theirs = fit_stage_probes(bank, fit_y, ProbeSettings(c_grid=GRID, backend="sklearn"))
    for name in bank:
        assert ours[name].converged and theirs[name].converged, name
        assert ours[name].c == theirs[name].c, name
        assert balanced_accuracy(ours[name].predictions, test_y, 4) == pytest.approx(
            balanced_accuracy(theirs[name].predictions, test_y, 4), abs=0.01
        ), name


def test_cross_validated_fits_stop_at_the_protocol_tolerance(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[float] = []
    real_solve = torch_probes.solve

    def recording(*args: object, **kwargs: object) -> object:
        seen.append(args[4])  # type: ignore[arg-type]
        return real_solve(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(torch_probes, "solve", recording)
    bank, fit_y, _ = _wide_bank(3)
    fit_stages({"wide": bank["wide"]}, fit_y, c_grid=GRID)
    fit_stages({"wide": bank["wide"]}, fit_y, c=1.0)
    assert seen == [cv.TOLERANCE, cv.TOLERANCE, cv.FIXED_C_TOLERANCE] == [1e-6, 1e-6, 1e-4]


def test_chunking_a_row_space_solve_for_memory_changes_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    bank, fit_y, _ = _wide_bank(4)
    whole = fit_stages(bank, fit_y, c_grid=GRID)
    monkeypatch.setattr(torch_probes, "SOLVER_MEMORY", 1)  # one stage per chunk, each with its own basis
    chunked = fit_stages(bank, fit_y, c_grid=GRID)
    for name in bank:
        assert chunked[name].c == whole[name].c and chunked[name].cv_scores == whole[name].cv_scores
        np.testing.assert_allclose(chunked[name].coef, whole[name].coef, atol=1e-9)
