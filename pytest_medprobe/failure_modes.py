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

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import numpy as np

from pytest_medprobe.power import resolution
from pytest_medprobe.stages import ANSWER, CONNECTOR, PIXELS, VISION
from pytest_medprobe.thresholds import Decision, Thresholds
from pytest_medprobe.verdict import (
    Bound,
    Verdict,
    accepting_threshold,
    combine_verdicts,
    decide,
    make_verdict,
    with_power,
)
from pytest_medprobe.verdict import setting_ref as _ref

if TYPE_CHECKING:
    from pytest_medprobe.curve import ProbeCurve
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
    "register_failure_mode",
    "unregister_failure_mode",
]

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


def judge_segments(
    mode: FailureMode, curve: ProbeCurve, health: HealthScores, thresholds: Thresholds, decision: Decision
) -> Verdict:
    """The generic judge: one sub-check per segment, combined."""
    parts = []
    for a, b in mode.segments(curve):
        statistic = curve.loss(a, b) if mode.bound == "max" else curve.loss(b, a)
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
                observed=_transition(curve, a, b, mode.statistic_name) + _num(statistic),
                what=mode.what(a, b) if callable(mode.what) else mode.what,
                advice=mode.advice,
            )
        )
    return combine_verdicts(mode.name, parts, mode.title)


def _judge_connector(
    mode: FailureMode, curve: ProbeCurve, health: HealthScores, thresholds: Thresholds, decision: Decision
) -> Verdict:
    """Audit 2: per connector pair, the loss of the whitened probes (metrics.md §2, "Whitened
    probes"), which a lossless widening cannot fake; the standardized probes' loss on a curve
    built without them."""
    parts = []
    for a, b in mode.segments(curve):
        whitened = curve.whitened_loss(a, b)
        statistic = curve.loss(a, b) if whitened is None else whitened
        if whitened is None:
            observed = _transition(curve, a, b, mode.statistic_name) + _num(statistic)
        else:
            scores = curve.whitened_scores
            observed = f"{a} {_num(scores[a])} → {b} {_num(scores[b])} (whitened probes), loss {_num(statistic)}"
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
