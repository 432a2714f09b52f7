"""Cross-validated C: the torch backend's batched grid against a per-stage ``LogisticRegressionCV`` loop.

``python benchmarks/bench_cv_grid.py [--stages N] [--grid 0.001,0.01,0.1,1,10] [--folds 5] [--device cpu]``

The feature bank is ``bench_probes``'s: 33 stages x 2048 dims x 2000 images x 4 classes,
seeded, each stage with its own class signal (from none at stage 0 to well separated at
stage 32), shared latent factors and per-column scales and offsets; the first 1000 images
fit the probes, the last 1000 test them. Both sides choose each stage's C among the same
grid by the same stratified folds (``cv.stratified_folds``, seed 0) and the same score
(balanced accuracy), every fit solved to the protocol's tolerance (``cv.TOLERANCE``, a
largest gradient entry of 1e-6), then refit on the whole fit split:

- torch: ``torch_probes.fit_stages(c_grid=...)``, every stage x C x fold in one batched
  L-BFGS solve (in each stage's row space: 1000 fit images < 2048 dims), then the refits,
  on ``--device``;
- scikit-learn: ``sklearn_probes.fit_one`` per stage, i.e. ``StandardScaler`` then
  ``LogisticRegressionCV(Cs=grid, cv=<the same folds>, scoring="balanced_accuracy")``,
  one BLAS thread (threaded BLAS and torch fighting over two cores made fits 20-60x slower).

One timed run of each, scikit-learn first, after a small warm-up of both; prints the
speed-up and the largest |balanced accuracy difference| on the test split over the stages,
side by side. Targets: >= 5x on a CPU, <= 0.01. ``--stages N`` runs the first N stages
(the scikit-learn loop takes minutes on a busy 2-core machine).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_probes import N_CLASSES, N_SAMPLES, N_STAGES, WIDTH, feature_bank  # noqa: E402

from pytest_medprobe.probes import balanced_accuracy  # noqa: E402

GRID = (0.001, 0.01, 0.1, 1.0, 10.0)
FOLDS = 5
SEED = 0
SPEED_TARGET = 5.0
AGREEMENT_TARGET = 0.01


def _torch_grid(
    inputs: dict[str, tuple[np.ndarray, np.ndarray]],
    fit_y: np.ndarray,
    grid: tuple[float, ...],
    folds: int,
    device: str,
) -> dict[str, tuple[np.ndarray, bool, float]]:
    from pytest_medprobe.torch_probes import fit_stages

    fits = fit_stages(inputs, fit_y, c_grid=grid, cv_folds=folds, seed=SEED, device=device)
    if device.startswith("cuda"):
        import torch

        torch.cuda.synchronize()
    return {name: (fit.predictions, fit.converged, fit.c) for name, fit in fits.items()}


def _sklearn_loop(
    inputs: dict[str, tuple[np.ndarray, np.ndarray]], fit_y: np.ndarray, grid: tuple[float, ...], folds: int
) -> dict[str, tuple[np.ndarray, bool, float]]:
    from pytest_medprobe.sklearn_probes import fit_one

    return {
        name: fit_one(fit_x, fit_y, test_x, c_grid=grid, cv_folds=folds, seed=SEED)
        for name, (fit_x, test_x) in inputs.items()
    }


def measure(
    n_stages: int = N_STAGES, grid: tuple[float, ...] = GRID, folds: int = FOLDS, device: str = "cpu"
) -> list[dict[str, Any]]:
    import torch

    load = os.getloadavg() if hasattr(os, "getloadavg") else (float("nan"),) * 3
    bank, fit_y, test_y = feature_bank()
    inputs = dict(list(bank.items())[:n_stages])
    small = {name: (fit_x[:200, :64], test_x[:50, :64]) for name, (fit_x, test_x) in list(inputs.items())[-2:]}
    _torch_grid(small, fit_y[:200], grid, folds, device)  # warm-up: imports and one-time setup
    _sklearn_loop(small, fit_y[:200], grid, folds)

    started = time.perf_counter()
    theirs = _sklearn_loop(inputs, fit_y, grid, folds)
    sklearn_s = time.perf_counter() - started
    started = time.perf_counter()
    ours = _torch_grid(inputs, fit_y, grid, folds, device)
    torch_s = time.perf_counter() - started
    load_after = os.getloadavg() if hasattr(os, "getloadavg") else (float("nan"),) * 3
    ratio = sklearn_s / torch_s

    scores = {
        name: (
            balanced_accuracy(ours[name][0], test_y, N_CLASSES),
            balanced_accuracy(theirs[name][0], test_y, N_CLASSES),
        )
        for name in inputs
    }
    worst = max(scores, key=lambda name: abs(scores[name][0] - scores[name][1]))
    difference = abs(scores[worst][0] - scores[worst][1])
    same_c = sum(ours[name][2] == theirs[name][2] for name in inputs)
    unconverged = {
        side: [name for name, (_, converged, _) in fits.items() if not converged]
        for side, fits in (("torch", ours), ("sklearn", theirs))
    }
    chosen = ", ".join(f"{c:g}: {sum(fit[2] == c for fit in ours.values())}" for c in grid)
    shape = (
        f"{n_stages} stages x {WIDTH} dims x {N_SAMPLES} images (fit/test halves) x {N_CLASSES} classes; "
        f"grid {','.join(f'{c:g}' for c in grid)} x {folds} folds"
    )
    where = f"{device} ({torch.cuda.get_device_name(0)})" if device.startswith("cuda") else device
    threads = f"{torch.get_num_threads()} product threads" if device == "cpu" else "one stream"
    return [
        {
            "name": "CV grid: torch batched solve vs per-stage LogisticRegressionCV",
            "measured": f"{ratio:.1f}× faster",
            "target": f"≥ {SPEED_TARGET:g}× (CPU)",
            "met": ratio >= SPEED_TARGET,
            "details": (
                f"{shape}; torch {torch_s:.1f} s on {where} ({threads}) vs scikit-learn {sklearn_s:.1f} s "
                f"(LogisticRegressionCV per stage, 1 BLAS thread); {os.cpu_count()} CPUs, load average "
                f"{load[0]:.2f} before, {load_after[0]:.2f} after"
            ),
        },
        {
            "name": "CV grid: balanced accuracy, torch vs scikit-learn",
            "measured": f"max |Δ| {difference:.4f}",
            "target": f"≤ {AGREEMENT_TARGET:g} on every stage",
            "met": difference <= AGREEMENT_TARGET,
            "details": (
                f"{shape}; largest difference on {worst} ({scores[worst][0]:.4f} vs {scores[worst][1]:.4f}); "
                f"same chosen C on {same_c} of {n_stages} stages; torch's choices {{{chosen}}}; unconverged: "
                f"torch {unconverged['torch'] or 'none'}, scikit-learn {unconverged['sklearn'] or 'none'}"
            ),
        },
    ]


def _grid(text: str) -> tuple[float, ...]:
    return tuple(sorted(float(value) for value in text.split(",")))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--stages", type=int, default=N_STAGES, help=f"stages to fit (1-{N_STAGES}; default all)")
    parser.add_argument("--grid", type=_grid, default=GRID, help="C values, comma-separated")
    parser.add_argument("--folds", type=int, default=FOLDS)
    parser.add_argument("--device", default="cpu", help="where the torch side fits (cpu, cuda, cuda:1)")
    arguments = parser.parse_args()
    if not 1 <= arguments.stages <= N_STAGES:
        parser.error(f"--stages must be 1-{N_STAGES}")
    for row in measure(arguments.stages, arguments.grid, arguments.folds, arguments.device):
        print(f"{row['name']}: {row['measured']} (target {row['target']}, met: {row['met']})")
        print(f"  {row['details']}")
