"""A check's outcome (``Verdict``), the decision rule, and the public way to make one.

A verdict carries everything both of its readers need: the assertion helper prints its
message, the reports draw ``statistic``, the interval and ``segment``. It names the
setting that moves its threshold by *key* (``"max_connector_loss"``), never by flag: the
message is kept as a template whose setting mentions are filled in when it is read, in
plain keys by the library (``verdict.message``) and as ``--medprobe-max-connector-loss /
ini medprobe_max_connector_loss`` by the pytest plugin (``verdict.render(names)``).

Example (a user audit, reported like the shipped ones by ``check_verdict``)::

    verdict = make_verdict(
        mode="lesion_survives", statistic=probe_curve.loss("connector", "llm.2"),
        threshold=0.05, bound="max", segment=("connector", "llm.2"), setting="max_layer_drop",
    )
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal

from pytest_medprobe.curve import format_interval
from pytest_medprobe.power import is_underpowered, needed_test_images, power_statement
from pytest_medprobe.thresholds import Decision

Bound = Literal["max", "min"]
# How a message names a setting: (key, short) -> text. ``short``: the flag alone.
SettingNamer = Callable[[str, bool], str]

# Scores are ratios of counts: a statistic equal to its threshold in exact arithmetic can
# land 1e-17 past it in floating point, and the message would then read "0.030 > max 0.030".
_TOLERANCE = 1e-9


def plain_names(key: str, short: bool = False) -> str:
    """The library's way to name a setting: its key (a ``Thresholds`` field)."""
    return key


def setting_ref(key: str, short: bool = False) -> str:
    """A setting mention inside a message template, filled in by ``Verdict.render``."""
    return "{" + key + (":short" if short else "") + "}"


def escape(text: str) -> str:
    """Text from data (stage names, class names, a user's advice) made safe inside a template."""
    return text.replace("{", "{{").replace("}", "}}")


class _Mention:
    def __init__(self, key: str, names: SettingNamer) -> None:
        self.key, self.names = key, names

    def __format__(self, spec: str) -> str:
        return self.names(self.key, spec == "short")


class _Mentions(dict):  # type: ignore[type-arg]
    def __init__(self, names: SettingNamer) -> None:
        super().__init__()
        self.names = names

    def __missing__(self, key: str) -> _Mention:
        return _Mention(key, self.names)


@dataclass(frozen=True)
class Verdict:
    """One check's outcome: the statistic, its interval, the threshold and what to do.

    Make one with ``make_verdict`` (keyword-only); ``message`` names settings by key,
    ``render(names)`` as the caller names them.
    """

    mode: str  # a failure mode's name, "health", or any name a user audit chooses
    title: str
    statistic: float
    low: float
    high: float
    threshold: float
    bound: Bound  # max: fail when statistic > threshold; min: fail when statistic < threshold
    passed: bool
    stage: str  # the stage the verdict is about
    segment: tuple[str, str]  # the two stages the statistic compares (marked on the plot)
    setting: str  # the key of the setting that moves the threshold, e.g. "max_connector_loss"
    template: str  # the message, setting mentions as {key} (see ``setting_ref``)
    parts: tuple[Verdict, ...] = ()  # sub-checks, when the check has more than one
    # Power (metrics.md §3, "Power"): the distance the interval must resolve (None: not
    # stated) and the test images behind the interval.
    distance: float | None = None
    n_test: int = 0

    @property
    def half_width(self) -> float:
        """Half the width of the 95% interval: how far the statistic can be trusted either way."""
        return (float(self.high) - float(self.low)) / 2

    @property
    def underpowered(self) -> bool:
        """The interval cannot tell a pass from a fail: it holds the threshold and its half-width
        exceeds the distance to resolve (metrics.md §3, "Power")."""
        return self.distance is not None and is_underpowered(self.low, self.high, self.threshold, self.distance)

    @property
    def needed_test_images(self) -> int | None:
        """About how many test images would resolve the distance (None when not stated)."""
        return None if self.distance is None else needed_test_images(self.half_width, self.distance, self.n_test)

    def power_record(self) -> dict[str, Any]:
        """The power statement of the results file (metrics.md §3, "Power")."""
        return {
            "half_width": self.half_width,
            "distance": self.distance,
            "underpowered": self.underpowered,
            "n_test": self.n_test,
            "n_test_needed": self.needed_test_images,
        }

    @property
    def message(self) -> str:
        """The readable message, settings named by key."""
        return self.render(plain_names)

    def render(self, names: SettingNamer = plain_names) -> str:
        """The message with every setting named by ``names``."""
        return self.template.format_map(_Mentions(names))

    def leaves(self) -> list[Verdict]:
        """Every sub-check, depth first (the verdict itself when it has none)."""
        return [self] if not self.parts else [leaf for part in self.parts for leaf in part.leaves()]

    def as_dict(self, names: SettingNamer = plain_names) -> dict[str, Any]:
        """JSON-safe form for the results file; ``names`` names the settings."""
        return {
            "mode": self.mode,
            "title": self.title,
            "statistic": float(self.statistic),
            "low": float(self.low),
            "high": float(self.high),
            "threshold": float(self.threshold),
            "bound": self.bound,
            "verdict": "pass" if self.passed else "fail",
            "stage": self.stage,
            "segment": list(self.segment),
            "setting": names(self.setting, True),
            "message": self.render(names),
            **self.power_record(),
            "parts": [part.as_dict(names) for part in self.parts],
        }


def decide(statistic: float, low: float, high: float, threshold: float, bound: Bound, decision: Decision) -> bool:
    """Whether the check passes, under the decision rule (docs/metrics.md §3).

    ``point``: the point estimate decides. ``confident-fail``: fail only when the whole
    interval is past the threshold. ``confident-pass``: pass only when the whole interval
    is inside. A value equal to the threshold is inside.
    """
    # Flip "min" checks into "max" checks: fail when value > limit.
    sign = 1.0 if bound == "max" else -1.0
    limit = sign * threshold + _TOLERANCE
    value, best, worst = sign * statistic, min(sign * low, sign * high), max(sign * low, sign * high)
    if decision == "point":
        return value <= limit
    if decision == "confident-fail":
        return best <= limit
    if decision == "confident-pass":
        return worst <= limit
    raise ValueError(f"unknown decision rule {decision!r}")


def accepting_threshold(statistic: float, low: float, high: float, bound: Bound, decision: Decision) -> float:
    """The threshold, rounded outward to 3 decimals, at which this check would pass under
    ``decision``: what a failure message tells the user to set."""
    sign = 1.0 if bound == "max" else -1.0
    values = {"point": sign * statistic, "confident-fail": min(sign * low, sign * high)}
    needed = values.get(decision, max(sign * low, sign * high))  # confident-pass: the worst end
    return sign * math.ceil(round(needed * 1000, 6)) / 1000


def make_verdict(
    *,
    mode: str,
    statistic: float,
    threshold: float,
    bound: Bound,
    segment: tuple[str, str],
    setting: str,
    low: float | None = None,
    high: float | None = None,
    decision: Decision = "point",
    title: str | None = None,
    heading: str | None = None,
    stage: str | None = None,
    observed: str | None = None,
    what: str = "",
    advice: str = "",
    also: str = "",
    distance: float | None = None,
    n_test: int = 0,
) -> Verdict:
    """A verdict whose message reads: heading: observed (CI) vs threshold — why. What to do.

    ``statistic`` may be a ``ProbeCurve.loss`` difference: its interval is then the default
    ``low``/``high`` (else the point itself). ``setting`` is the key that moves the
    threshold; a failure message names the value that would accept the result under
    ``decision`` (``also``: a template fragment saying what else must move with it).
    ``stage`` defaults to the segment's second stage, ``title`` to the mode's name.
    ``distance``: what the interval must resolve (metrics.md §3, "Power"), measured on
    ``n_test`` test images; an underpowered verdict's message says so.

    Example::

        make_verdict(mode="lesion_survives", statistic=probe_curve.loss("connector", "llm.2"),
                     threshold=0.05, bound="max", segment=("connector", "llm.2"), setting="max_layer_drop")

    Long because a third of it is the keyword-only signature a user audit fills in, and the
    rest builds the one readable message in the order it reads (value, interval, bound, advice).
    """
    low = float(getattr(statistic, "low", statistic) if low is None else low)
    high = float(getattr(statistic, "high", statistic) if high is None else high)
    statistic = float(statistic)
    if math.isnan(statistic) or math.isnan(low) or math.isnan(high):
        raise ValueError(f"{mode}: the statistic or its interval is NaN; NaN is an error, not a score")
    title = title if title is not None else mode.replace("_", " ")
    passed = decide(statistic, low, high, threshold, bound, decision)
    if passed:
        comparison, tail = ("≤" if bound == "max" else "≥"), "passes"
    else:
        comparison = ">" if bound == "max" else "<"
        accept = accepting_threshold(statistic, low, high, bound, decision)
        accepting = f"accept it by setting {setting_ref(setting)} to {accept:g}{also}"
        if advice:
            tail = f"{escape(what)}. {escape(advice)}, or {accepting}" if what else f"{escape(advice)}, or {accepting}"
        else:
            tail = f"{escape(what)}. A{accepting[1:]}" if what else f"A{accepting[1:]}"
    shown = observed if observed is not None else f"{statistic:.3f}"
    message = (
        f"{escape(heading if heading is not None else title)}: {escape(shown)} {format_interval(low, high)} "
        f"{comparison} {bound} {threshold:.3f} — {tail}."
    )
    verdict = Verdict(
        mode=mode,
        title=title,
        statistic=statistic,
        low=low,
        high=high,
        threshold=float(threshold),
        bound=bound,
        passed=passed,
        stage=stage if stage is not None else segment[1],
        segment=segment,
        setting=setting,
        template=message,
    )
    return verdict if distance is None else with_power(verdict, lambda check: distance, n_test)


def with_power(verdict: Verdict, distance: Callable[[Verdict], float | None], n_test: int) -> Verdict:
    """``verdict`` with its power statement (metrics.md §3, "Power"): every sub-check gets the
    distance ``distance(sub_check)`` and ``n_test``, and an underpowered one's message says so;
    combined verdicts are combined again from the stated parts (same headline, same order)."""
    if verdict.parts:
        parts = [with_power(part, distance, n_test) for part in verdict.parts]
        return combine_verdicts(verdict.mode, parts, verdict.title)
    resolve = distance(verdict)
    if resolve is None or verdict.distance is not None:  # no distance, or already stated
        return verdict
    statement = power_statement(verdict.low, verdict.high, verdict.threshold, resolve, n_test)
    return replace(verdict, distance=resolve, n_test=n_test, template=verdict.template + escape(statement))


def _excess(verdict: Verdict) -> float:
    """How far past its threshold a statistic is (negative: inside)."""
    return verdict.statistic - verdict.threshold if verdict.bound == "max" else verdict.threshold - verdict.statistic


def combine_verdicts(mode: str, parts: Sequence[Verdict], title: str | None = None) -> Verdict:
    """One verdict from sub-checks: fails if any fails; headline = the part furthest past its threshold."""
    failing = [part for part in parts if not part.passed]
    headline = max(failing or parts, key=_excess)
    if len(parts) == 1:
        return headline
    messages = [headline.template, *(part.template for part in failing if part is not headline)]
    return replace(
        headline,
        mode=mode,
        title=title if title is not None else headline.title,
        passed=not failing,
        template="\n".join(messages),
        parts=tuple(parts),
    )
