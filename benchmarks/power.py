"""How many test images each audit needs to resolve its default threshold (metrics.md §3, "Power").

``python benchmarks/power.py`` prints the README's table. Deterministic (fixed seeds) and
fast (about 3.5 minutes on 2 shared cores), so it can be rerun whenever a default changes.

The simulation is the plugin's own scoring code on synthetic predictions. An audit's
statistic is a paired difference of two balanced accuracies (two probe stages, or a probe
and the model's answer) on one test split; its interval's half-width depends on the number
of test images n and on the *discordance* d: the share of test images on which exactly one
of the two is right. For a lossless module both sides score the same accuracy p (true
statistic 0); the test split is drawn with K balanced classes, each image's pair of
outcomes (right/right, right/wrong, wrong/right, wrong/wrong) with probabilities
(p − d/2, d/2, d/2, 1 − p − d/2), and the interval comes from ``bootstrap_counts`` and
``bootstrap_balanced_accuracy`` exactly as in a run. A cell is the smallest n of the grid at
which the median half-width over the repetitions is at most the distance the audit must
resolve; the verdict is then not underpowered in at least half of such runs.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pytest_medprobe.config import Thresholds  # noqa: E402
from pytest_medprobe.curve import percentile_interval  # noqa: E402
from pytest_medprobe.power import VISION_RESOLUTION  # noqa: E402
from pytest_medprobe.probes import balanced_accuracy, bootstrap_balanced_accuracy, bootstrap_counts  # noqa: E402

N_CLASSES = 4
ACCURACY = 0.75  # p: both sides of a lossless module (d ≤ 2 min(p, 1 − p))
DISCORDANCES = (0.02, 0.05, 0.10, 0.20, 0.40)
GRID = (50, 100, 150, 200, 250, 300, 400, 500, 600, 800, 1000, 1200, 1500, 2000, 2500, 3000, 4000, 5000)
REPETITIONS = 40
N_BOOTSTRAP = 1000


def _distances() -> list[tuple[str, str, float]]:
    """(audit, statistic, the distance its default threshold asks it to resolve)."""
    t = Thresholds()
    return [
        ("1 visual representation", "visual gain", VISION_RESOLUTION),
        ("2 connector fidelity", "connector loss", t.max_connector_loss),
        ("3 LLM comprehension (a)", "layer drop", t.max_layer_drop),
        ("3 LLM comprehension (b)", "LLM loss", t.max_llm_loss),
        ("4 semantic mapping", "semantic gap", t.max_semantic_gap),
    ]


def _pair(n: int, discordance: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Labels and two prediction vectors ``[n]`` with accuracy p each and the given discordance."""
    labels = np.arange(n) % N_CLASSES
    outcome = rng.choice(
        4, size=n, p=[ACCURACY - discordance / 2, discordance / 2, discordance / 2, 1 - ACCURACY - discordance / 2]
    )
    a_right, b_right = np.isin(outcome, (0, 1)), np.isin(outcome, (0, 2))
    wrong = (labels + rng.integers(1, N_CLASSES, size=n)) % N_CLASSES
    return labels, np.where(a_right, labels, wrong), np.where(b_right, labels, wrong)


def median_half_width(n: int, discordance: float, seed: int) -> float:
    """The median half-width of the paired 95% interval of score(a) − score(b) over the repetitions."""
    rng = np.random.default_rng(seed)
    widths = []
    for repetition in range(REPETITIONS):
        labels, a, b = _pair(n, discordance, rng)
        counts = bootstrap_counts(n, N_BOOTSTRAP, seed + repetition)
        samples = bootstrap_balanced_accuracy(a, labels, counts, N_CLASSES) - bootstrap_balanced_accuracy(
            b, labels, counts, N_CLASSES
        )
        point = balanced_accuracy(a, labels, N_CLASSES) - balanced_accuracy(b, labels, N_CLASSES)
        low, high = percentile_interval(samples, point)
        widths.append((high - low) / 2)
    return float(np.median(widths))


def needed(distance: float, discordance: float) -> int | None:
    """The smallest n of the grid whose median half-width is within ``distance``."""
    for n in GRID:
        if median_half_width(n, discordance, seed=n) <= distance:
            return n
    return None


def main() -> None:
    header = "| audit (statistic) | distance to resolve | " + " | ".join(f"d = {d:.2f}" for d in DISCORDANCES) + " |"
    print(header)
    print("|" + "---|" * (2 + len(DISCORDANCES)))
    for audit, statistic, distance in _distances():
        cells = []
        for discordance in DISCORDANCES:
            n = needed(distance, discordance)
            cells.append(f"> {GRID[-1]}" if n is None else str(n))
        print(f"| {audit} ({statistic}) | {distance:.2f} | " + " | ".join(cells) + " |")
    print()
    print("approximation 1.96² d / distance² (for comparison):")
    for audit, _, distance in _distances():
        print(f"  {audit}: " + ", ".join(f"{math.ceil(1.96**2 * d / distance**2)}" for d in DISCORDANCES))


if __name__ == "__main__":
    main()
