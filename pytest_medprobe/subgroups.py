"""Subgroup gates: every score, statistic and health per subgroup value, and the gap audit.

A release gate in medicine is asked about subgroups (sex, age band, site, scanner), not
only the average. The probes are fit once, on the whole fit split; their predictions on the
test split are then scored per subgroup value (``probes.curve_from_predictions``). Fitting a
probe per subgroup would mix two questions (is the signal there for this group, and is
there enough data in this group to fit a probe) and would make small groups look worse
for want of training data; the question here is the first one.

Intervals are paired: the test split is resampled *within* each subgroup value (a
stratified bootstrap, seed-fixed), and the overall numbers are recomputed on the union of
the same resamples, so that "subgroup minus overall" has the tight interval of a paired
difference. Statistics are those of the regression audits (``failure_modes.statistic_names()``):
health and every failure-mode statistic. The gap of a statistic is how much *worse* the
subgroup is than the overall (positive = worse). A gap is judged unless it is too
uncertain to say: its interval is wider than ``max_subgroup_gap`` and straddles it. Such
a subgroup is reported, not judged.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from pytest_medprobe.curve import ProbeCurve, format_interval, percentile_interval
from pytest_medprobe.failure_modes import RegressionStatistic, regression_statistics, statistic_names
from pytest_medprobe.health import HealthScores, compute_health, health_samples
from pytest_medprobe.naming import mention
from pytest_medprobe.probes import curve_from_predictions
from pytest_medprobe.stages import ANSWER, VISION
from pytest_medprobe.thresholds import Decision
from pytest_medprobe.verdict import SettingNamer, Verdict, decide, escape, plain_names, setting_ref

MODE = "subgroups"
TITLE = "subgroup gap"


@dataclass(frozen=True)
class SubgroupGap:
    """How much worse one subgroup is than the overall on one statistic, with its paired interval."""

    statistic: str  # one of failure_modes.statistic_names()
    title: str
    overall: float
    subgroup: float
    gap: float  # positive: the subgroup is worse
    low: float
    high: float
    judged: bool  # False: too few images to tell (interval wider than the gap, straddling it)
    passed: bool  # judged and within the gap (an unjudged gap passes)

    def as_dict(self) -> dict[str, Any]:
        return {
            "statistic": self.statistic,
            "overall": self.overall,
            "subgroup": self.subgroup,
            "gap": self.gap,
            "low": self.low,
            "high": self.high,
            "judged": self.judged,
            "verdict": "pass" if self.passed else "fail",
        }


@dataclass(frozen=True)
class Subgroup:
    """One value of one subgroup column: its curve, health and gaps to the overall."""

    column: str
    value: str
    n_test: int
    curve: ProbeCurve
    health: HealthScores
    gaps: tuple[SubgroupGap, ...]

    @property
    def label(self) -> str:
        return f"{self.column}={self.value}"

    @property
    def judged(self) -> bool:
        """Whether every gap could be judged; a subgroup with any gap too uncertain to tell is
        listed as "not judged" (its conclusive gaps still count)."""
        return all(gap.judged for gap in self.gaps)

    def as_dict(self) -> dict[str, Any]:
        return {
            "column": self.column,
            "value": self.value,
            "n_test": self.n_test,
            "judged": self.judged,
            "stages": self.curve.to_records(),
            "answer": {"score": self.curve.answer.score, "low": self.curve.answer.low, "high": self.curve.answer.high},
            "health": self.health.as_dict(),
            "gaps": [gap.as_dict() for gap in self.gaps],
        }


@dataclass(frozen=True)
class SubgroupReport:
    """Every subgroup of a pair and the verdict of ``test_subgroups``."""

    columns: tuple[str, ...]
    max_gap: float
    groups: tuple[Subgroup, ...]
    verdict: Verdict

    def as_dict(self, names: SettingNamer = plain_names) -> dict[str, Any]:
        """The ``subgroups`` entry of a run in the results file; ``names`` names the settings."""
        return {
            "columns": list(self.columns),
            "max_gap": self.max_gap,
            "groups": [group.as_dict() for group in self.groups],
            "verdict": self.verdict.as_dict(names),
        }


def stratified_counts(groups: Sequence[str], n_bootstrap: int, seed: int) -> np.ndarray:
    """``[B, n]`` int32 resample counts, each group resampled within itself (its size kept)."""
    values = np.asarray(groups, dtype=object)
    counts = np.zeros((n_bootstrap, len(values)), dtype=np.int32)
    rng = np.random.default_rng(seed)
    for value in sorted(set(values.tolist())):
        members = np.flatnonzero(values == value)
        counts[:, members] = rng.multinomial(len(members), np.full(len(members), 1.0 / len(members)), n_bootstrap)
    return counts


def _statistics(curve: ProbeCurve) -> tuple[HealthScores, dict[str, RegressionStatistic]]:
    health = compute_health(curve)
    return health, regression_statistics(curve, health_samples(curve), health.health)


def _gap(
    overall: RegressionStatistic, subgroup: RegressionStatistic, max_gap: float, decision: Decision
) -> SubgroupGap:
    sign = 1.0 if overall.better == "higher" else -1.0  # "worse" is lower health, higher loss
    point = sign * (overall.point - subgroup.point)
    low, high = percentile_interval(sign * (overall.samples - subgroup.samples), point)
    straddles = low <= max_gap <= high
    judged = not (high - low > max_gap and straddles)
    passed = not judged or decide(point, low, high, max_gap, "max", decision)
    return SubgroupGap(overall.name, overall.title, overall.point, subgroup.point, point, low, high, judged, passed)


def subgroup_report(
    predictions: Mapping[str, np.ndarray],
    test_labels: np.ndarray,
    test_subgroups: Mapping[str, Sequence[str]],
    reference: ProbeCurve,
    n_bootstrap: int,
    seed: int,
    max_gap: float,
    decision: Decision,
) -> SubgroupReport:
    """Per-subgroup curves, health and gaps of one pair; ``reference`` is the pair's overall curve."""
    labels = np.asarray(test_labels, dtype=np.int64)
    groups: list[Subgroup] = []
    for index, (column, values) in enumerate(test_subgroups.items()):
        counts = stratified_counts(values, n_bootstrap, seed + index)

        def curve_of(rows: np.ndarray) -> ProbeCurve:
            return curve_from_predictions(
                {name: np.asarray(pred)[rows] for name, pred in predictions.items()},
                labels[rows],
                counts[:, rows],
                reference.n_classes,
                reference.stage_names,
                reference.has_image_view,
                n_fit=reference.n_fit,
            )

        _, overall = _statistics(curve_of(np.arange(len(labels))))
        array = np.asarray(values, dtype=object)
        for value in sorted(set(array.tolist())):
            rows = np.flatnonzero(array == value)
            curve = curve_of(rows)
            health, statistics = _statistics(curve)
            gaps = tuple(_gap(overall[name], statistics[name], max_gap, decision) for name in statistic_names())
            groups.append(Subgroup(column, str(value), len(rows), curve, health, gaps))
    columns = tuple(test_subgroups)
    return SubgroupReport(columns, max_gap, tuple(groups), _verdict(columns, groups, max_gap))


def _describe(group: Subgroup, gap: SubgroupGap) -> str:
    return (
        f"{group.label} (n={group.n_test}) {gap.title} {gap.subgroup:.3f} vs overall {gap.overall:.3f}, "
        f"{gap.gap:.3f} worse {format_interval(gap.low, gap.high)}"
    )


def _verdict(columns: Sequence[str], groups: Sequence[Subgroup], max_gap: float) -> Verdict:
    """The worst judged gap decides; failing ones are all named, unjudged subgroups listed."""
    judged = [(group, gap) for group in groups for gap in group.gaps if gap.judged]
    failing = [(group, gap) for group, gap in judged if not gap.passed]
    unjudged = [group for group in groups if not group.judged]
    pool = failing or judged
    if pool:
        group, gap = max(pool, key=lambda item: item[1].gap)
        statistic, low, high = gap.gap, gap.low, gap.high
        headline = f"{TITLE}: worst {_describe(group, gap)} {'>' if failing else '≤'} max {max_gap:.3f}"
    else:
        statistic, low, high = 0.0, 0.0, 0.0
        headline = f"{TITLE}: no subgroup of {', '.join(columns)} has enough test images to judge"
    template = escape(headline)
    if failing:
        template += (
            escape(
                f" — {group.label} does worse than the whole test split. Look at what differs for it (site, scanner, "
                "protocol, population), or set "
            )
            + f"{setting_ref('max_subgroup_gap')} to accept it."
        )
        others = [_describe(g, x) for g, x in failing if (g, x) != (group, gap)]
        template += escape("".join(f"\n  also: {line}" for line in others))
    else:
        template += " — passes." if pool else "."
    if unjudged:
        template += escape(
            f"\n  not judged (too few test images: the interval of a gap is wider than {max_gap:.3f}): "
            + ", ".join(f"{g.label} (n={g.n_test})" for g in unjudged)
        )
    return Verdict(
        mode=MODE,
        title=TITLE,
        statistic=float(statistic),
        low=float(low),
        high=float(high),
        threshold=max_gap,
        bound="max",
        passed=not failing,
        stage=ANSWER,
        segment=(VISION, ANSWER),
        setting="max_subgroup_gap",
        template=template,
        # A gap must tell "no worse than overall" (0) from the allowed gap; subgroups whose
        # intervals cannot are listed above as not judged (metrics.md §7).
        distance=max_gap,
        n_test=group.n_test if pool else 0,
    )


NOT_CONFIGURED = f"no subgroup configured: name a column with {mention('subgroups')}=COLUMN (e.g. site, sex, scanner)"
