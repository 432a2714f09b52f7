"""The failure modes as one registry (docs/metrics.md §3, §5): one declaration per mode.

A ``FailureMode`` says everything about a mode once: its name, title, the short label of
its column, the stages it spans, the statistic it reads off the probe curve, the setting
key of its threshold, the bound, what a failure means and what to do, and the statistics
a release must not get worse on. ``evaluate``, the ``verdicts`` fixture's attributes, the
terminal and HTML columns, the results file and the baseline statistics all read
``FAILURE_MODES``; a fifth mode is one ``register_failure_mode`` call and one audit file.

Example (a toy mode: the answer must not fall below the first decoder layer)::

    register_failure_mode(FailureMode(
        name="early_answer", title="early answer", label="early gap", setting="max_early_gap",
        bound="max", statistic_name="gap", default=0.2,
        what="the answer says less than the first decoder layer holds", advice="Inspect the head",
        segments=lambda curve: [(curve.answer_view[0], "answer")],
    ))
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np

from pytest_medprobe.mode_registry import (
    FAILURE_MODES,
    AuditVerdicts,
    Better,
    FailureMode,
    RegressionStatistic,
    Segment,
    Tracked,
    _num,
    _threshold,
    _transition,
    cause_modes,
    evaluate,
    judge_segments,
    probe_loss,
    register_failure_mode,
    regression_statistics,
    statistic_names,
    tracked_statistics,
    unregister_failure_mode,
)
from pytest_medprobe.stages import ANSWER, CONNECTOR, PIXELS, VISION
from pytest_medprobe.thresholds import Decision, Thresholds
from pytest_medprobe.verdict import Bound, Verdict, accepting_threshold, combine_verdicts, decide, make_verdict
from pytest_medprobe.verdict import setting_ref as _ref

if TYPE_CHECKING:
    from pytest_medprobe.curve import Difference, ProbeCurve
    from pytest_medprobe.health import HealthScores

__all__ = [
    "FAILURE_MODES",
    "MODES",
    "AuditVerdicts",
    "Better",
    "Bound",
    "FailureMode",
    "RegressionStatistic",
    "Tracked",
    "Verdict",
    "cause_modes",
    "decide",
    "evaluate",
    "judge_segments",
    "regression_statistics",
    "register_failure_mode",
    "statistic_names",
    "tracked_statistics",
    "unregister_failure_mode",
]


def _difference(
    title: Callable[[ProbeCurve], str], a: Callable[[ProbeCurve], str], b: Callable[[ProbeCurve], str]
) -> Callable[[ProbeCurve], tuple[str, Segment, float, np.ndarray]]:
    """``score(a) - score(b)`` with its per-resample samples."""

    def measure(curve: ProbeCurve) -> tuple[str, Segment, float, np.ndarray]:
        first, second = a(curve), b(curve)
        point = curve.score(first) - curve.score(second)
        return title(curve), (first, second), point, curve.samples(first) - curve.samples(second)

    return measure


def _largest_drop(curve: ProbeCurve) -> tuple[str, Segment, float, np.ndarray]:
    """The largest fall between consecutive stages of the decoder chain, and its samples."""
    chain = curve.decoder_chain
    pairs = list(zip(chain[:-1], chain[1:]))
    drops = [curve.score(a) - curve.score(b) for a, b in pairs]
    worst = int(np.argmax(drops))
    samples = np.max(np.stack([curve.samples(a) - curve.samples(b) for a, b in pairs]), axis=0)
    return "largest decoder-layer drop", pairs[worst], max(drops), samples


def _whitened_loss(mode: FailureMode, curve: ProbeCurve, a: str, b: str) -> tuple[Difference, str]:
    """Audit 2's reading of a connector pair: the loss of the whitened probes (metrics.md §2,
    "Whitened probes"), which a lossless widening cannot fake; the standardized probes' loss
    on a curve built without them."""
    whitened = curve.whitened_loss(a, b)
    if whitened is None:
        return probe_loss(mode, curve, a, b)
    scores = curve.whitened_scores
    return whitened, f"{a} {_num(scores[a])} → {b} {_num(scores[b])} (whitened probes), loss {_num(whitened)}"


def _judge_connector(
    mode: FailureMode, curve: ProbeCurve, health: HealthScores, thresholds: Thresholds, decision: Decision
) -> Verdict:
    """Audit 2: per connector pair, the loss of the whitened probes."""
    return judge_segments(mode, curve, health, thresholds, decision, measure=_whitened_loss)


def _judge_vision(
    mode: FailureMode, curve: ProbeCurve, health: HealthScores, thresholds: Thresholds, decision: Decision
) -> Verdict:
    """Audit 1: the encoder must beat raw pixels (and reach ``min_vision_score`` when set)."""
    gain = judge_segments(mode, curve, health, thresholds, decision)
    reference = mode.threshold(thresholds, "min_vision_score")
    if reference is None:
        return gain
    low, high = curve.interval(VISION)
    score = make_verdict(
        mode=mode.name,
        title=mode.title,
        statistic=curve.score(VISION),
        low=low,
        high=high,
        threshold=reference,
        bound="min",
        decision=decision,
        segment=(PIXELS, VISION),
        setting="min_vision_score",
        observed=f"{VISION} {_num(curve.score(VISION))}",
        what="the vision encoder falls short of the reference score",
        advice=mode.advice,
    )
    return combine_verdicts(mode.name, [gain, score], mode.title)


def _judge_llm(
    mode: FailureMode, curve: ProbeCurve, health: HealthScores, thresholds: Thresholds, decision: Decision
) -> Verdict:
    """Audit 3: no decoder layer may drop the signal, and it must reach the answer position.

    Every layer of the decoder chain is a sub-check (JSON, JUnit and HTML list them all);
    with one threshold for all, their headline is the largest drop, the first of equal ones.
    """
    last, max_llm_loss = curve.last_layer_answer, _threshold(mode, thresholds)
    loss = curve.loss(CONNECTOR, last)
    carried = make_verdict(
        mode=mode.name,
        title=mode.title,
        statistic=loss,
        threshold=max_llm_loss,
        bound="max",
        decision=decision,
        segment=(CONNECTOR, last),
        setting=mode.setting,
        observed=_transition(curve, CONNECTOR, last, "LLM loss") + _num(loss),
        what="the decoder does not carry the image signal to the position where the answer is formed",
        advice="Inspect how the answer position attends to the image tokens (prompt, attention, context length)",
    )
    # The answer view rises by design; only its falls count (decoder_chain says which view).
    chain, view = curve.decoder_chain, "image tokens" if curve.has_image_view else "answer position"
    if len(chain) < 2:
        return combine_verdicts(mode.name, [carried], mode.title)
    layers = []
    for a, b in zip(chain[:-1], chain[1:]):
        drop = curve.loss(a, b)
        # A layer may not lose more than the whole decoder (config refuses it), so accepting
        # a large drop may need the decoder bound raised as well.
        accept = accepting_threshold(float(drop), drop.low, drop.high, "max", decision)
        layers.append(
            make_verdict(
                mode=mode.name,
                title=mode.title,
                heading=f"{mode.title} ({view})",
                statistic=drop,
                threshold=_threshold(mode, thresholds, "max_layer_drop"),
                bound="max",
                decision=decision,
                segment=(a, b),
                setting="max_layer_drop",
                observed=f"layer drop {_transition(curve, a, b, 'drop')}{_num(drop)}",
                what=f"decoder layer {b} discards signal the {view} carried",
                advice="Inspect that layer (its attention to the image tokens, or a fault in its weights)",
                also=f" and {_ref(mode.setting, short=True)} to at least that" if accept > max_llm_loss else "",
            )
        )
    return combine_verdicts(mode.name, [combine_verdicts(mode.name, layers, mode.title), carried], mode.title)


_COMPONENT_ADVICE = {
    "fidelity": "The connector loses signal: see the connector fidelity audit",
    "stability": "The probe curve falls along the pipeline: see the LLM comprehension audit",
    "retention": "Little of the peak signal reaches the answer position: see the LLM comprehension audit",
    "alignment": "The answer does not say what the model holds: see the semantic mapping audit",
}


def _judge_health(
    mode: FailureMode, curve: ProbeCurve, health: HealthScores, thresholds: Thresholds, decision: Decision
) -> Verdict:
    """The health audit: health ≥ ``min_health``; the message names the weakest component."""
    weakest = health.weakest
    a, b = health.segments[weakest]
    return make_verdict(
        mode=mode.name,
        title=mode.title,
        statistic=health.health,
        low=health.low,
        high=health.high,
        threshold=_threshold(mode, thresholds),
        bound="min",
        decision=decision,
        segment=(a, b),
        setting=mode.setting,
        observed=_num(health.health),
        what=f"weakest component {weakest} {_num(health.component(weakest))} ({a} → {b})",
        advice=_COMPONENT_ADVICE[weakest],
    )


def _last(curve: ProbeCurve) -> str:
    return curve.last_layer_answer


for _mode in (
    FailureMode(
        name="visual_representation",
        title="visual representation",
        label="vision gain",
        setting="min_vision_gain",
        bound="min",
        statistic_name="gain",
        what="the vision encoder carries no more diagnostic signal than the raw pixels",
        advice="Check that the encoder and its preprocessing suit this modality (or fine-tune it)",
        segments=lambda curve: [(PIXELS, VISION)],
        judge=_judge_vision,
        ideal=None,  # no faultless gain: its interval must resolve power.VISION_RESOLUTION
        tracked=(
            Tracked(
                "visual_gain",
                "higher",
                _difference(lambda c: "visual gain (vision − pixels)", lambda c: VISION, lambda c: PIXELS),
            ),
        ),
    ),
    FailureMode(
        name="connector_fidelity",
        title="connector fidelity",
        label="connector loss",
        setting="max_connector_loss",
        bound="max",
        statistic_name="loss",
        # A side connector connector.{i} (Qwen3-VL's deepstack mergers) is read against the
        # vision block vision.{i} it reads, so a lossy one fails here and names its own stage.
        what=lambda a, b: (
            "the projector loses visual signal the encoder had"
            if b == CONNECTOR
            else f"the side connector {b} loses visual signal that {a} had"
        ),
        advice="Inspect the connector",
        segments=lambda curve: curve.connector_pairs,
        judge=_judge_connector,
        tracked=(
            Tracked(
                "connector_loss",
                "lower",
                _difference(lambda c: "connector loss (vision − connector)", lambda c: VISION, lambda c: CONNECTOR),
            ),
        ),
    ),
    FailureMode(
        name="llm_comprehension",
        title="LLM comprehension",
        label="llm loss",
        setting="max_llm_loss",
        bound="max",
        statistic_name="LLM loss",
        what="the decoder does not carry the image signal to the position where the answer is formed",
        advice="Inspect how the answer position attends to the image tokens",
        segments=lambda curve: [*zip(curve.decoder_chain[:-1], curve.decoder_chain[1:]), (CONNECTOR, _last(curve))],
        judge=_judge_llm,
        tracked=(
            Tracked("layer_drop", "lower", _largest_drop),
            Tracked(
                "llm_loss",
                "lower",
                _difference(lambda c: f"LLM loss (connector − {_last(c)})", lambda c: CONNECTOR, _last),
            ),
        ),
    ),
    FailureMode(
        name="semantic_mapping",
        title="semantic mapping",
        label="semantic gap",
        setting="max_semantic_gap",
        bound="max",
        statistic_name="gap",
        what="the model holds the diagnosis at the answer position but does not say it",
        advice="Check the prompt's options and how answers are read (letter tokens), or tune the output mapping",
        segments=lambda curve: [(_last(curve), ANSWER)],
        tracked=(
            Tracked(
                "semantic_gap",
                "lower",
                _difference(lambda c: f"semantic gap ({_last(c)} − answer)", _last, lambda c: ANSWER),
            ),
        ),
    ),
    FailureMode(
        name="health",
        title="health",
        label="health",
        setting="min_health",
        bound="min",
        statistic_name="health",
        what="health is low",
        advice="See the weakest component",
        segments=lambda curve: [(VISION, ANSWER)],
        judge=_judge_health,
        summary=True,
        ideal=1.0,
    ),
):
    register_failure_mode(_mode)

MODES = tuple(mode.name for mode in cause_modes())  # the shipped four, in pipeline order
TITLES = {mode.name: mode.title for mode in FAILURE_MODES.values()}


def visual_representation(curve: ProbeCurve, thresholds: Thresholds, decision: Decision) -> Verdict:
    """Audit 1 alone (see ``FAILURE_MODES``)."""
    return FAILURE_MODES["visual_representation"].check(curve, None, thresholds, decision)  # type: ignore[arg-type]


def connector_fidelity(curve: ProbeCurve, thresholds: Thresholds, decision: Decision) -> Verdict:
    """Audit 2 alone."""
    return FAILURE_MODES["connector_fidelity"].check(curve, None, thresholds, decision)  # type: ignore[arg-type]


def llm_comprehension(curve: ProbeCurve, thresholds: Thresholds, decision: Decision) -> Verdict:
    """Audit 3 alone."""
    return FAILURE_MODES["llm_comprehension"].check(curve, None, thresholds, decision)  # type: ignore[arg-type]


def semantic_mapping(curve: ProbeCurve, thresholds: Thresholds, decision: Decision) -> Verdict:
    """Audit 4 alone."""
    return FAILURE_MODES["semantic_mapping"].check(curve, None, thresholds, decision)  # type: ignore[arg-type]


def health_verdict(health: HealthScores, thresholds: Thresholds, decision: Decision, n_test: int = 0) -> Verdict:
    """The health audit alone; ``n_test``: the test images behind it (for its power statement)."""
    mode = FAILURE_MODES["health"]
    return mode.with_power(_judge_health(mode, None, health, thresholds, decision), n_test)  # type: ignore[arg-type]
