"""The four failure modes and the health audit (metrics.md §3, §5): statistics and verdicts.

Pure functions from a ``ProbeCurve`` (and ``HealthScores``) plus thresholds to ``Verdict``
objects. A verdict carries everything both of its readers need: the assertion helper
prints ``message``, the reports draw ``statistic``, the interval and ``segment``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from pytest_medprobe.config import (
    MAX_CONNECTOR_LOSS,
    MAX_LAYER_DROP,
    MAX_LLM_LOSS,
    MAX_SEMANTIC_GAP,
    MIN_HEALTH,
    MIN_VISION_GAIN,
    MIN_VISION_SCORE,
    Decision,
    Setting,
    Thresholds,
    setting_names,
)
from pytest_medprobe.curve import ProbeCurve, format_interval
from pytest_medprobe.health import HealthScores
from pytest_medprobe.stages import ANSWER, CONNECTOR, PIXELS, VISION

MODES = ("visual_representation", "connector_fidelity", "llm_comprehension", "semantic_mapping")
TITLES = {
    "visual_representation": "visual representation",
    "connector_fidelity": "connector fidelity",
    "llm_comprehension": "LLM comprehension",
    "semantic_mapping": "semantic mapping",
    "health": "health",
}
Bound = Literal["max", "min"]

# Scores are ratios of counts: a statistic equal to its threshold in exact arithmetic can
# land 1e-17 past it in floating point, and the message would then read "0.030 > max 0.030".
_TOLERANCE = 1e-9


@dataclass(frozen=True)
class Verdict:
    """One audit's outcome: the statistic, its interval, the threshold and what to do."""

    mode: str  # one of MODES, or "health"
    title: str
    statistic: float
    low: float
    high: float
    threshold: float
    bound: Bound  # max: fail when statistic > threshold; min: fail when statistic < threshold
    passed: bool
    stage: str  # the stage the verdict is about
    segment: tuple[str, str]  # the two stages the statistic compares (marked on the plot)
    setting: Setting  # the setting that moves the threshold
    message: str
    parts: tuple[Verdict, ...] = ()  # sub-checks, when the audit has more than one

    def as_dict(self) -> dict[str, Any]:
        """JSON-safe form for the results file."""
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
            "setting": self.setting.flag,
            "message": self.message,
            "parts": [part.as_dict() for part in self.parts],
        }


def decide(statistic: float, low: float, high: float, threshold: float, bound: Bound, decision: Decision) -> bool:
    """Whether the check passes, under metrics.md §3's decision rule.

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


def _num(value: float) -> str:
    return f"{value:.3f}"


def accepting_threshold(statistic: float, low: float, high: float, bound: Bound, decision: Decision) -> float:
    """The threshold, rounded outward to 3 decimals, at which this check would pass under
    ``decision``: what a failure message tells the user to set."""
    sign = 1.0 if bound == "max" else -1.0
    values = {"point": sign * statistic, "confident-fail": min(sign * low, sign * high)}
    needed = values.get(decision, max(sign * low, sign * high))  # confident-pass: the worst end
    return sign * math.ceil(round(needed * 1000, 6)) / 1000


def _verdict(
    mode: str,
    heading: str,
    statistic: float,
    low: float,
    high: float,
    threshold: float,
    bound: Bound,
    decision: Decision,
    stage: str,
    segment: tuple[str, str],
    setting: Setting,
    observed: str,
    what: str,
    advice: str,
    also: str = "",
) -> Verdict:
    """A verdict whose message reads: heading: observed (CI) vs threshold — why. What to do.

    What to do names the value that would accept the result (under the decision rule in
    force), so the user never has to guess it; ``also`` adds what else must move with it.
    """
    passed = decide(statistic, low, high, threshold, bound, decision)
    if passed:
        comparison = "≤" if bound == "max" else "≥"
        tail = "passes"
    else:
        comparison = ">" if bound == "max" else "<"
        accept = accepting_threshold(statistic, low, high, bound, decision)
        tail = f"{what}. {advice}, or accept it by setting {setting_names(setting)} to {accept:g}{also}"
    message = f"{heading}: {observed} {format_interval(low, high)} {comparison} {bound} {_num(threshold)} — {tail}."
    return Verdict(
        mode,
        TITLES[mode],
        float(statistic),
        float(low),
        float(high),
        float(threshold),
        bound,
        passed,
        stage,
        segment,
        setting,
        message,
    )


def _transition(curve: ProbeCurve, a: str, b: str, name: str) -> str:
    return f"{a} {_num(curve.score(a))} → {b} {_num(curve.score(b))}, {name} "


def _excess(verdict: Verdict) -> float:
    """How far past its threshold a statistic is (negative: inside)."""
    return verdict.statistic - verdict.threshold if verdict.bound == "max" else verdict.threshold - verdict.statistic


def _combine(mode: str, parts: Sequence[Verdict]) -> Verdict:
    """One verdict from sub-checks: fails if any fails; headline = the part furthest past its threshold."""
    failing = [part for part in parts if not part.passed]
    headline = max(failing or parts, key=_excess)
    if len(parts) == 1:
        return headline
    messages = [headline.message, *(part.message for part in failing if part is not headline)]
    return Verdict(
        mode,
        TITLES[mode],
        headline.statistic,
        headline.low,
        headline.high,
        headline.threshold,
        headline.bound,
        not failing,
        headline.stage,
        headline.segment,
        headline.setting,
        "\n".join(messages),
        tuple(parts),
    )


def visual_representation(curve: ProbeCurve, thresholds: Thresholds, decision: Decision) -> Verdict:
    """Audit 1: the encoder must beat raw pixels (and reach ``min_vision_score`` when set)."""
    mode = "visual_representation"
    gain = curve.loss(VISION, PIXELS)
    parts = [
        _verdict(
            mode,
            TITLES[mode],
            gain,
            gain.low,
            gain.high,
            thresholds.min_vision_gain,
            "min",
            decision,
            VISION,
            (PIXELS, VISION),
            MIN_VISION_GAIN,
            f"{PIXELS} {_num(curve.score(PIXELS))} → {VISION} {_num(curve.score(VISION))}, gain {_num(gain)}",
            "the vision encoder carries no more diagnostic signal than the raw pixels",
            "Check that the encoder and its preprocessing suit this modality (or fine-tune it)",
        )
    ]
    if thresholds.min_vision_score is not None:
        low, high = curve.interval(VISION)
        parts.append(
            _verdict(
                mode,
                TITLES[mode],
                curve.score(VISION),
                low,
                high,
                thresholds.min_vision_score,
                "min",
                decision,
                VISION,
                (PIXELS, VISION),
                MIN_VISION_SCORE,
                f"{VISION} {_num(curve.score(VISION))}",
                "the vision encoder falls short of the reference score",
                "Check that the encoder and its preprocessing suit this modality (or fine-tune it)",
            )
        )
    return _combine(mode, parts)


def connector_fidelity(curve: ProbeCurve, thresholds: Thresholds, decision: Decision) -> Verdict:
    """Audit 2: every connector must keep what the vision encoder handed it.

    The main connector is read against ``vision``; a side connector ``connector.{i}``
    (Qwen3-VL's deepstack mergers) against the vision block ``vision.{i}`` it reads, so a
    lossy deepstack merger fails here and names its own stage.
    """
    mode = "connector_fidelity"
    parts = []
    for source, output in curve.connector_pairs:
        loss = curve.loss(source, output)
        parts.append(
            _verdict(
                mode,
                TITLES[mode],
                loss,
                loss.low,
                loss.high,
                thresholds.max_connector_loss,
                "max",
                decision,
                output,
                (source, output),
                MAX_CONNECTOR_LOSS,
                _transition(curve, source, output, "loss") + _num(loss),
                "the projector loses visual signal the encoder had"
                if output == CONNECTOR
                else f"the side connector {output} loses visual signal that {source} had",
                "Inspect the connector",
            )
        )
    return _combine(mode, parts)


def _layer_drop(curve: ProbeCurve, thresholds: Thresholds, decision: Decision) -> Verdict | None:
    """Audit 3 (a): one sub-check per decoder layer, combined; the headline is the largest drop."""
    mode = "llm_comprehension"
    if curve.has_image_view:
        # The hidden state entering decoder layer 0 at the image positions is the
        # connector output (metrics.md §1), so connector → llm.0 is layer 0's own drop.
        sequence, view = (CONNECTOR, *curve.image_view), "image tokens"
    else:
        # The answer view rises by design; only its falls count, and the connector is
        # not at the answer position, so the sequence starts at layer 0.
        sequence, view = curve.answer_view, "answer position"
    if len(sequence) < 2:
        return None
    layers = []
    for a, b in zip(sequence[:-1], sequence[1:]):
        drop = curve.loss(a, b)
        # A layer may not be allowed to lose more than the whole decoder (config refuses it),
        # so accepting a large drop may need the decoder bound raised as well.
        accept = accepting_threshold(float(drop), drop.low, drop.high, "max", decision)
        also = f" and {MAX_LLM_LOSS.flag} to at least that" if accept > thresholds.max_llm_loss else ""
        layers.append(
            _verdict(
                mode,
                f"{TITLES[mode]} ({view})",
                drop,
                drop.low,
                drop.high,
                thresholds.max_layer_drop,
                "max",
                decision,
                b,
                (a, b),
                MAX_LAYER_DROP,
                f"layer drop {_transition(curve, a, b, 'drop')}{_num(drop)}",
                f"decoder layer {b} discards signal the {view} carried",
                "Inspect that layer (its attention to the image tokens, or a fault in its weights)",
                also,
            )
        )
    # Every layer is a sub-check (JSON, JUnit and HTML list them all); with one threshold
    # for all, the combined headline is the largest drop, the first of equal ones.
    return _combine(mode, layers)


def llm_comprehension(curve: ProbeCurve, thresholds: Thresholds, decision: Decision) -> Verdict:
    """Audit 3: no decoder layer may drop the signal, and it must reach the answer position."""
    mode = "llm_comprehension"
    last = curve.last_layer_answer
    loss = curve.loss(CONNECTOR, last)
    carried = _verdict(
        mode,
        TITLES[mode],
        loss,
        loss.low,
        loss.high,
        thresholds.max_llm_loss,
        "max",
        decision,
        last,
        (CONNECTOR, last),
        MAX_LLM_LOSS,
        _transition(curve, CONNECTOR, last, "LLM loss") + _num(loss),
        "the decoder does not carry the image signal to the position where the answer is formed",
        "Inspect how the answer position attends to the image tokens (prompt, attention, context length)",
    )
    drop = _layer_drop(curve, thresholds, decision)
    return _combine(mode, [carried] if drop is None else [drop, carried])


def semantic_mapping(curve: ProbeCurve, thresholds: Thresholds, decision: Decision) -> Verdict:
    """Audit 4: what the model holds at the answer position it must also say."""
    mode = "semantic_mapping"
    last = curve.last_layer_answer
    gap = curve.loss(last, ANSWER)
    return _verdict(
        mode,
        TITLES[mode],
        gap,
        gap.low,
        gap.high,
        thresholds.max_semantic_gap,
        "max",
        decision,
        ANSWER,
        (last, ANSWER),
        MAX_SEMANTIC_GAP,
        _transition(curve, last, ANSWER, "gap") + _num(gap),
        "the model holds the diagnosis at the answer position but does not say it",
        "Check the prompt's options and how answers are read (letter tokens), or tune the output mapping",
    )


_COMPONENT_ADVICE = {
    "fidelity": "The connector loses signal: see the connector fidelity audit",
    "stability": "The probe curve falls along the pipeline: see the LLM comprehension audit",
    "retention": "Little of the peak signal reaches the answer position: see the LLM comprehension audit",
    "alignment": "The answer does not say what the model holds: see the semantic mapping audit",
}


def health_verdict(health: HealthScores, thresholds: Thresholds, decision: Decision) -> Verdict:
    """The health audit: health ≥ ``min_health``; the message names the weakest component."""
    weakest = health.weakest
    a, b = health.segments[weakest]
    return _verdict(
        "health",
        TITLES["health"],
        health.health,
        health.low,
        health.high,
        thresholds.min_health,
        "min",
        decision,
        b,
        (a, b),
        MIN_HEALTH,
        _num(health.health),
        f"weakest component {weakest} {_num(health.component(weakest))} ({a} → {b})",
        _COMPONENT_ADVICE[weakest],
    )


@dataclass(frozen=True)
class AuditVerdicts:
    """The verdicts of one model × dataset pair."""

    visual_representation: Verdict
    connector_fidelity: Verdict
    llm_comprehension: Verdict
    semantic_mapping: Verdict
    health: Verdict

    @property
    def root_cause(self) -> str | None:
        """The earliest failing failure mode along the pipeline (health is a summary, not a cause)."""
        return next((v.mode for v in self.failure_modes()[: len(MODES)] if not v.passed), None)

    def failure_modes(self) -> tuple[Verdict, ...]:
        """The four failure modes in pipeline order, then health."""
        return (
            self.visual_representation,
            self.connector_fidelity,
            self.llm_comprehension,
            self.semantic_mapping,
            self.health,
        )


def evaluate(curve: ProbeCurve, health: HealthScores, thresholds: Thresholds, decision: Decision) -> AuditVerdicts:
    """Every verdict of a pair."""
    return AuditVerdicts(
        visual_representation=visual_representation(curve, thresholds, decision),
        connector_fidelity=connector_fidelity(curve, thresholds, decision),
        llm_comprehension=llm_comprehension(curve, thresholds, decision),
        semantic_mapping=semantic_mapping(curve, thresholds, decision),
        health=health_verdict(health, thresholds, decision),
    )
