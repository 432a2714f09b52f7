"""Probe backends: the torch backend (all stages at once) against a per-stage scikit-learn loop.

The synthetic feature bank is 33 stages x 2048 dims x 2000 samples x 4 classes, seeded:
each stage has its own class centres, scaled from nothing (stage 0, chance) to well
separated (stage 32), plus 32 shared latent factors and noise, then its own per-column
scales and offsets, so that standardization matters and features are correlated, as
hidden states are. The first 1000 samples are the fit split and the last 1000 the test
split, each balanced over the classes.

Both sides fit the same probes in one process: ``probes.fit_probes`` with the torch
backend (every stage together) and a loop of ``probes.fit_probe`` (the scikit-learn path,
one stage at a time). Rounds alternate the two, after a warm-up of each; the medians are
compared. Targets: torch >= 5x faster, and balanced accuracy within 0.01 of
scikit-learn's on every stage.
"""

from __future__ import annotations

import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pytest_medprobe.probes import ProbeSettings, balanced_accuracy, fit_probe, fit_probes  # noqa: E402

N_STAGES, WIDTH, N_SAMPLES, N_CLASSES = 33, 2048, 2000, 4
N_FACTORS = 32
MAX_STRENGTH = 0.09  # class-centre scale of the last stage: balanced accuracy about 0.95
SEED = 0
ROUNDS = 3
SPEED_TARGET = 5.0
AGREEMENT_TARGET = 0.01

Bank = tuple[dict[str, tuple[np.ndarray, np.ndarray]], np.ndarray, np.ndarray]


def feature_bank(seed: int = SEED) -> Bank:
    """``{stage: (fit [1000, 2048], test [1000, 2048])}`` float32, fit labels, test labels."""
    rng = np.random.default_rng(seed)
    half = N_SAMPLES // 2
    fit_y = rng.permutation(np.arange(half) % N_CLASSES)
    test_y = rng.permutation(np.arange(half) % N_CLASSES)
    y = np.concatenate([fit_y, test_y])
    bank = {}
    for stage in range(N_STAGES):
        strength = MAX_STRENGTH * stage / (N_STAGES - 1)
        centres = rng.standard_normal((N_CLASSES, WIDTH), dtype=np.float32)
        factors = rng.standard_normal((N_FACTORS, WIDTH), dtype=np.float32) * np.float32(0.3)
        x = rng.standard_normal((N_SAMPLES, WIDTH), dtype=np.float32)
        x += rng.standard_normal((N_SAMPLES, N_FACTORS), dtype=np.float32) @ factors
        x += np.float32(strength) * centres[y]
        x *= rng.uniform(0.1, 10.0, size=WIDTH).astype(np.float32)
        x += rng.uniform(-20.0, 20.0, size=WIDTH).astype(np.float32)
        bank[f"stage.{stage}"] = (x[:half], x[half:])
    return bank, fit_y, test_y


def _sklearn_loop(bank: Bank) -> dict[str, tuple[np.ndarray, bool]]:
    inputs, fit_y, _ = bank
    settings = ProbeSettings(backend="sklearn")
    return {name: fit_probe(fit_x, fit_y, test_x, settings) for name, (fit_x, test_x) in inputs.items()}


def _torch(bank: Bank) -> dict[str, tuple[np.ndarray, bool]]:
    inputs, fit_y, _ = bank
    return fit_probes(inputs, fit_y, ProbeSettings(backend="torch"))


def _warm_up(bank: Bank) -> None:
    """First calls pay for imports and one-time setup; neither side should be timed on that."""
    inputs, fit_y, _ = bank
    small = {name: (fit_x[:200, :64], test_x[:50, :64]) for name, (fit_x, test_x) in list(inputs.items())[-2:]}
    fit_probes(small, fit_y[:200], ProbeSettings(backend="torch"))
    fit_probes(small, fit_y[:200], ProbeSettings(backend="sklearn"))


def measure() -> list[dict[str, Any]]:
    import torch

    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    bank = feature_bank()
    _warm_up(bank)
    times: dict[str, list[float]] = {"sklearn": [], "torch": []}
    results: dict[str, dict[str, tuple[np.ndarray, bool]]] = {}
    for _ in range(ROUNDS):
        for side, run in (("sklearn", _sklearn_loop), ("torch", _torch)):
            started = time.perf_counter()
            results[side] = run(bank)
            times[side].append(time.perf_counter() - started)
    sklearn_s, torch_s = statistics.median(times["sklearn"]), statistics.median(times["torch"])
    ratio = sklearn_s / torch_s

    _, _, test_y = bank
    scores = {
        name: (
            balanced_accuracy(results["torch"][name][0], test_y, N_CLASSES),
            balanced_accuracy(results["sklearn"][name][0], test_y, N_CLASSES),
        )
        for name in bank[0]
    }
    worst = max(scores, key=lambda name: abs(scores[name][0] - scores[name][1]))
    difference = abs(scores[worst][0] - scores[worst][1])
    reference = [theirs for _, theirs in scores.values()]
    unconverged = {side: [name for name, (_, converged) in results[side].items() if not converged] for side in results}
    shape = f"{N_STAGES} stages x {WIDTH} dims x {N_SAMPLES} samples (fit/test halves) x {N_CLASSES} classes"
    return [
        {
            "name": "probes: torch backend vs scikit-learn loop",
            "measured": f"{ratio:.1f}× faster",
            "target": f"≥ {SPEED_TARGET:g}×",
            "met": ratio >= SPEED_TARGET,
            "details": (
                f"{shape}; torch {torch_s:.2f} s (all stages together, {torch.get_num_threads()} product "
                f"threads) vs scikit-learn {sklearn_s:.2f} s (fit_probe per stage, 1 BLAS thread); medians of "
                f"{ROUNDS} alternating rounds (torch {', '.join(f'{t:.2f}' for t in times['torch'])} s; "
                f"scikit-learn {', '.join(f'{t:.2f}' for t in times['sklearn'])} s); "
                f"{os.cpu_count()} CPUs, load average {load:.2f} at start"
            ),
        },
        {
            "name": "probes: balanced accuracy, torch vs scikit-learn",
            "measured": f"max |Δ| {difference:.4f}",
            "target": f"≤ {AGREEMENT_TARGET:g} on every stage",
            "met": difference <= AGREEMENT_TARGET and not unconverged["torch"] and not unconverged["sklearn"],
            "details": (
                f"{shape}; scikit-learn's stage scores span {min(reference):.3f}–{max(reference):.3f}; "
                f"largest difference on {worst} ({scores[worst][0]:.4f} vs {scores[worst][1]:.4f}); "
                f"unconverged: torch {unconverged['torch'] or 'none'}, scikit-learn {unconverged['sklearn'] or 'none'}"
            ),
        },
    ]


if __name__ == "__main__":
    for row in measure():
        print(f"{row['name']}: {row['measured']} (target {row['target']}, met: {row['met']})")
        print(f"  {row['details']}")
