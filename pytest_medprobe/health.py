"""Feature-evolution health (metrics.md §5): four bounded components and their geometric mean.

Every component is computed on arrays, so the same code scores the point estimate and
every bootstrap resample at once; the resamples give health its 95% interval.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from pytest_medprobe.curve import ProbeCurve, percentile_interval
from pytest_medprobe.stages import ANSWER

COMPONENTS = ("fidelity", "stability", "retention", "alignment")


@dataclass(frozen=True)
class HealthScores:
    """Health, its components, its interval, and where each component looks on the curve."""

    health: float
    fidelity: float
    stability: float
    retention: float
    alignment: float
    low: float
    high: float
    weakest: str  # the component with the lowest value (the first one on ties)
    per_stage: dict[str, float]  # n(stage) / P for every probe stage: the plotted health curve
    segments: dict[str, tuple[str, str]]  # component -> the two stages it compares

    def component(self, name: str) -> float:
        if name not in COMPONENTS:
            raise KeyError(f"{name!r} is not a health component; use one of {', '.join(COMPONENTS)}")
        return float(getattr(self, name))

    def as_dict(self) -> dict[str, Any]:
        """The ``health`` entry of the results file."""
        return {
            "health": self.health,
            **{name: self.component(name) for name in COMPONENTS},
            "low": self.low,
            "high": self.high,
            "weakest": self.weakest,
        }


def _share(part: np.ndarray, whole: np.ndarray, when_whole_is_zero: float) -> np.ndarray:
    """``part / whole`` clipped to [0, 1], with a defined value where ``whole`` is 0."""
    out = np.full(np.shape(part), when_whole_is_zero, dtype=np.float64)
    np.divide(part, whole, out=out, where=whole > 0)
    return np.clip(out, 0.0, 1.0)


def _components(n: Mapping[str, np.ndarray], curve: ProbeCurve) -> dict[str, np.ndarray]:
    """The four components from normalized scores ``n[stage]: [m]`` (point: m=1, bootstrap: m=B)."""
    peak = np.max(np.stack([n[stage] for stage in curve.stages]), axis=0)  # P
    c = np.stack([n[stage] for stage in curve.health_curve_stages])  # [len(c), m]
    drawdown = np.maximum(0.0, c[:-1] - c[1:]).sum(axis=0)
    last = n[curve.last_layer_answer]
    return {
        # A ratio whose denominator is 0 has nothing to keep, so it lost nothing: 1.
        # Every connector (the main one, and side connectors such as Qwen3-VL's deepstack
        # mergers) against what it reads: the connector that keeps least decides.
        "fidelity": np.min(np.stack([_share(n[out], n[src], 1.0) for src, out in curve.connector_pairs]), axis=0),
        "stability": 1.0 - _share(drawdown, peak, 0.0),  # P = 0 ⇒ c ≡ 0: no drawdown
        # The one exception: P = 0 means no stage holds any signal, so none reaches the
        # answer position. Retention 0 (not 1) is what makes a curve at chance everywhere
        # score health 0, as metrics.md §5 requires, instead of a perfect 1 built from
        # nothing; fidelity and alignment keep "nothing to keep ⇒ 1" so that a blind
        # encoder is blamed on retention and on audit 1, not on the connector or the answer.
        "retention": _share(last, peak, 0.0),
        "alignment": _share(n[ANSWER], last, 1.0),
    }


def _geometric_mean(components: Mapping[str, np.ndarray]) -> np.ndarray:
    product = np.prod(np.stack([components[name] for name in COMPONENTS]), axis=0)
    return np.asarray(product ** (1.0 / len(COMPONENTS)))


def _fidelity_point(n: Mapping[str, float], pair: tuple[str, str]) -> float:
    source, output = pair
    return float(_share(np.array(n[output]), np.array(n[source]), 1.0))


def _segments(n: Mapping[str, float], curve: ProbeCurve) -> dict[str, tuple[str, str]]:
    c = curve.health_curve_stages
    falls = [n[c[k]] - n[c[k + 1]] for k in range(len(c) - 1)]
    steepest = int(np.argmax(falls)) if falls else 0
    peak_stage = max(curve.stages, key=lambda stage: n[stage])  # the first of equal maxima
    return {
        "fidelity": min(curve.connector_pairs, key=lambda pair: _fidelity_point(n, pair)),
        "stability": (c[steepest], c[min(steepest + 1, len(c) - 1)]),
        "retention": (peak_stage, curve.last_layer_answer),
        "alignment": (curve.last_layer_answer, ANSWER),
    }


def health_samples(curve: ProbeCurve) -> np.ndarray:
    """Health on every bootstrap resample of ``curve``: ``[B]``, paired with its stage samples."""
    sample_n = {name: curve.normalized_samples(name) for name in [*curve.stages, ANSWER]}
    return _geometric_mean(_components(sample_n, curve))


def compute_health(curve: ProbeCurve) -> HealthScores:
    """metrics.md §5 on ``curve``: components, health, its bootstrap interval, the weakest part."""
    names = [*curve.stages, ANSWER]
    point_n = {name: np.array([curve.normalized(name)]) for name in names}
    point = {name: float(value[0]) for name, value in _components(point_n, curve).items()}
    health = float(_geometric_mean({name: np.array([value]) for name, value in point.items()})[0])
    low, high = percentile_interval(health_samples(curve), health)
    n = {name: float(value[0]) for name, value in point_n.items()}
    peak = max(n[stage] for stage in curve.stages)
    return HealthScores(
        health=health,
        **point,
        low=low,
        high=high,
        weakest=min(COMPONENTS, key=lambda name: point[name]),
        per_stage={stage: (n[stage] / peak if peak > 0 else 0.0) for stage in curve.stages},
        segments=_segments(n, curve),
    )
