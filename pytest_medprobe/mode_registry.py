"""The failure-mode registry: what a failure mode is, and the modes registered now.

A ``FailureMode`` declares a mode once (see ``failure_modes`` for the shipped ones, and
for how to add one); ``evaluate`` judges a pair with every registered mode, and the
tracked statistics (``regression_statistics``) are what baselines keep and regressions
and subgroups compare. Import the registry through ``failure_modes``, which registers the
shipped modes first.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import numpy as np

from pytest_medprobe.power import resolution
from pytest_medprobe.stages import ANSWER, VISION
from pytest_medprobe.thresholds import Decision, Thresholds
from pytest_medprobe.verdict import Bound, Verdict, combine_verdicts, make_verdict, with_power

if TYPE_CHECKING:
    from pytest_medprobe.curve import Difference, ProbeCurve
    from pytest_medprobe.health import HealthScores

Better = Literal["higher", "lower"]
Segment = tuple[str, str]


@dataclass(frozen=True)
class RegressionStatistic:
    """One number a release must not get worse on, with its bootstrap samples."""

    name: str
    title: str
    better: Better
    segment: Segment  # the stages it compares (the whole pipeline for health)
    point: float
    samples: np.ndarray  # [B], resample b of the same bootstrap as every stage


@dataclass(frozen=True)
class Tracked:
    """A statistic of a mode that baselines keep and regressions and subgroups compare."""

    name: str
    better: Better
    measure: Callable[[ProbeCurve], tuple[str, Segment, float, np.ndarray]]  # title, segment, point, samples

    def of(self, curve: ProbeCurve) -> RegressionStatistic:
        title, segment, point, samples = self.measure(curve)
        return RegressionStatistic(self.name, title, self.better, segment, point, samples)


Judge = Callable[["FailureMode", "ProbeCurve", "HealthScores", Thresholds, Decision], Verdict]


@dataclass(frozen=True)
class FailureMode:
    """One failure mode, declared once.

    ``segments(curve)``: the (a, b) stage pairs it reads. Without a ``judge``, each pair's
    statistic is ``score(a) - score(b)`` for a ``max`` bound (a loss) and ``score(b) -
    score(a)`` for a ``min`` bound (a gain), judged against the threshold named
    ``setting``; the verdict combines them (the worst decides). ``what`` may depend on the
    pair. ``default`` is the threshold when ``Thresholds`` has none under ``setting``.
    ``summary`` marks a mode that sums up the others (health): never a root cause, no column.
    ``ideal`` is the statistic of a faultless module (0 for a loss, 1 for health; None: it has
    none, as the vision gain): every sub-check's interval must resolve |threshold − ideal|,
    and ``check`` states whether it does (metrics.md §3, "Power").
    """

    name: str
    title: str
    label: str
    setting: str
    bound: Bound
    statistic_name: str
    what: str | Callable[[str, str], str]
    advice: str
    segments: Callable[[ProbeCurve], Sequence[Segment]]
    judge: Judge | None = None
    tracked: tuple[Tracked, ...] = ()
    default: float | None = None
    summary: bool = False
    ideal: float | None = 0.0

    def threshold(self, thresholds: Thresholds, key: str | None = None) -> float | None:
        """The threshold under ``key`` (default: this mode's setting)."""
        key = key or self.setting
        return thresholds.value(key, self.default if key == self.setting else None)

    def check(self, curve: ProbeCurve, health: HealthScores, thresholds: Thresholds, decision: Decision) -> Verdict:
        """This mode's verdict on a pair, every sub-check with its power statement."""
        judge = self.judge if self.judge is not None else judge_segments
        return self.with_power(judge(self, curve, health, thresholds, decision), curve.n_test)

    def with_power(self, verdict: Verdict, n_test: int) -> Verdict:
        """``verdict`` with every sub-check's power statement: resolve |threshold − ideal|."""
        return with_power(verdict, lambda check: resolution(check.threshold, self.ideal), n_test)


def _num(value: float) -> str:
    return f"{value:.3f}"


def _transition(curve: ProbeCurve, a: str, b: str, name: str) -> str:
    return f"{a} {_num(curve.score(a))} → {b} {_num(curve.score(b))}, {name} "


def _threshold(mode: FailureMode, thresholds: Thresholds, key: str | None = None) -> float:
    value = mode.threshold(thresholds, key)
    if value is None:
        raise ValueError(f"{mode.name}: no threshold {key or mode.setting!r} (set it in Thresholds.extra)")
    return value


# How a judge reads one segment ``(a, b)`` of the curve: the statistic and how the message shows it.
SegmentMeasure = Callable[["FailureMode", "ProbeCurve", str, str], "tuple[Difference, str]"]


def probe_loss(mode: FailureMode, curve: ProbeCurve, a: str, b: str) -> tuple[Difference, str]:
    """The standard reading of a segment: the probe score lost from ``a`` to ``b`` (gained, for a min bound)."""
    statistic = curve.loss(a, b) if mode.bound == "max" else curve.loss(b, a)
    return statistic, _transition(curve, a, b, mode.statistic_name) + _num(statistic)


def judge_segments(
    mode: FailureMode,
    curve: ProbeCurve,
    health: HealthScores,
    thresholds: Thresholds,
    decision: Decision,
    measure: SegmentMeasure = probe_loss,
) -> Verdict:
    """The generic judge: one sub-check per segment, read by ``measure``, combined."""
    parts = []
    for a, b in mode.segments(curve):
        statistic, observed = measure(mode, curve, a, b)
        parts.append(
            make_verdict(
                mode=mode.name,
                title=mode.title,
                statistic=statistic,
                threshold=_threshold(mode, thresholds),
                bound=mode.bound,
                decision=decision,
                segment=(a, b),
                setting=mode.setting,
                observed=observed,
                what=mode.what(a, b) if callable(mode.what) else mode.what,
                advice=mode.advice,
            )
        )
    return combine_verdicts(mode.name, parts, mode.title)


FAILURE_MODES: dict[str, FailureMode] = {}


def register_failure_mode(mode: FailureMode) -> FailureMode:
    """Add ``mode`` to the registry (replacing one of the same name); summaries stay last."""
    FAILURE_MODES[mode.name] = mode
    ordered = sorted(FAILURE_MODES.values(), key=lambda declared: declared.summary)  # stable: causes first
    FAILURE_MODES.clear()
    FAILURE_MODES.update((declared.name, declared) for declared in ordered)
    return mode


def unregister_failure_mode(name: str) -> None:
    """Remove a registered mode (a test's toy mode, once it is done)."""
    FAILURE_MODES.pop(name, None)


def cause_modes() -> tuple[FailureMode, ...]:
    """The modes that can be a root cause, in pipeline order (every mode but the summaries)."""
    return tuple(mode for mode in FAILURE_MODES.values() if not mode.summary)


class AuditVerdicts:
    """The verdicts of one model × dataset pair, one attribute per registered mode.

    ``verdicts.connector_fidelity``, ``verdicts["health"]``; ``failure_modes()`` lists them
    in pipeline order, summaries last.
    """

    def __init__(self, verdicts: Mapping[str, Verdict]) -> None:
        self._verdicts = dict(verdicts)

    def __getattr__(self, name: str) -> Verdict:
        if name.startswith("_") or name not in self.__dict__.get("_verdicts", {}):
            raise AttributeError(f"no verdict {name!r}; the modes are: {', '.join(self.__dict__.get('_verdicts', {}))}")
        return self._verdicts[name]

    def __getitem__(self, name: str) -> Verdict:
        return self._verdicts[name]

    def __repr__(self) -> str:
        return f"AuditVerdicts({', '.join(f'{n}={v.passed}' for n, v in self._verdicts.items())})"

    @property
    def root_cause(self) -> str | None:
        """The earliest failing failure mode along the pipeline (health is a summary, not a cause)."""
        summaries = {name for name, mode in FAILURE_MODES.items() if mode.summary}
        return next((v.mode for v in self.failure_modes() if v.mode not in summaries and not v.passed), None)

    def failure_modes(self) -> tuple[Verdict, ...]:
        """Every verdict in pipeline order, then the summaries (health)."""
        return tuple(self._verdicts.values())


def evaluate(curve: ProbeCurve, health: HealthScores, thresholds: Thresholds, decision: Decision) -> AuditVerdicts:
    """Every registered mode's verdict on a pair."""
    return AuditVerdicts(
        {mode.name: mode.check(curve, health, thresholds, decision) for mode in FAILURE_MODES.values()}
    )


def tracked_statistics(curve: ProbeCurve) -> list[RegressionStatistic]:
    """Every registered mode's tracked statistics, in registry order."""
    return [tracked.of(curve) for mode in FAILURE_MODES.values() for tracked in mode.tracked]


def statistic_names() -> tuple[str, ...]:
    """Health, then every registered failure mode's tracked statistics (``FailureMode.tracked``)."""
    return ("health", *(tracked.name for mode in FAILURE_MODES.values() for tracked in mode.tracked))


def regression_statistics(
    curve: ProbeCurve, health_samples: np.ndarray, health: float
) -> dict[str, RegressionStatistic]:
    """Health and the failure-mode statistics of docs/metrics.md §3, each with paired samples."""
    health_statistic = RegressionStatistic("health", "health", "higher", (VISION, ANSWER), health, health_samples)
    return {statistic.name: statistic for statistic in [health_statistic, *tracked_statistics(curve)]}
