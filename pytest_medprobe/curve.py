"""The probe curve: one balanced-accuracy score per stage, with paired-bootstrap intervals.

``ProbeCurve`` is what the ``probe_curve`` fixture hands to user audits, and what health,
failure modes and the reports read. It holds numbers only (no probes, no features) and
renders itself readably, so that a failed ``assert`` on it explains itself.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from pytest_medprobe.stages import ANSWER, CONNECTOR, PIXELS, VISION, StageKey, parse_stage

CONFIDENCE = 95  # percent, of every interval the package prints
# A control probe (fit to permuted labels) is "far above chance" when memorization alone takes
# it more than half of the way from chance to a perfect score (normalized control > 0.5):
# the probe has the capacity to fit labels without meaning at this stage, so its held-out
# score there says as much about the probe as about the model (metrics.md §2, "Selectivity").
CONTROL_FAR = 0.5


def percentile_interval(samples: np.ndarray, point: float) -> tuple[float, float]:
    """The 95% percentile interval of bootstrap ``samples: [B]``, widened to hold ``point``.

    Balanced accuracy is a ratio and health takes a maximum, so on small test sets the
    resampled values can sit to one side of the point estimate; an interval printed next
    to a score that it does not contain reads as a bug, and widening costs nothing else.
    """
    tail = (100 - CONFIDENCE) / 2
    low, high = np.percentile(samples, [tail, 100 - tail])
    return float(min(low, point)), float(max(high, point))


def format_interval(low: float, high: float) -> str:
    """``(95% CI 0.031–0.071)``; with a negative bound "to", since a dash then reads as a minus."""
    separator = " to " if min(low, high) < 0 else "–"
    return f"({CONFIDENCE}% CI {low:.3f}{separator}{high:.3f})"


class Difference(float):
    """``score(a) - score(b)``, a float that carries its paired 95% interval.

    A float so that user audits compare and compute with it directly; its repr names
    both stages and the interval, so pytest's assertion message explains a failure.
    """

    __slots__ = ("a", "b", "low", "high")
    a: str
    b: str
    low: float
    high: float

    def __new__(cls, value: float, a: str, b: str, low: float, high: float) -> Difference:
        self = super().__new__(cls, value)
        self.a, self.b, self.low, self.high = a, b, low, high
        return self

    def __repr__(self) -> str:
        return f"loss {self.a}→{self.b} = {float(self):.3f} {format_interval(self.low, self.high)}"

    __str__ = __repr__

    def __reduce__(self) -> tuple[Any, ...]:  # __new__ needs more than the float
        return (Difference, (float(self), self.a, self.b, self.low, self.high))


@dataclass(frozen=True)
class StageScore:
    """One score with its 95% interval (``curve.answer``, ``curve.pixels``)."""

    stage: str
    score: float
    low: float
    high: float


def _frozen(array: np.ndarray) -> np.ndarray:
    array = np.array(array)  # a private copy
    array.setflags(write=False)
    return array


class UnknownStageError(KeyError):
    """A stage name the curve does not have; the message lists those it has."""

    def __str__(self) -> str:  # KeyError would quote the whole message
        return str(self.args[0])


@dataclass(frozen=True, eq=False)  # identity equality: the fields hold arrays
class ProbeCurve:
    """Scores of every probe stage, of the model's ``answer`` and of the ``pixels`` baseline."""

    stage_names: tuple[str, ...]  # ordered probe stages (stages.stage_order)
    scores: Mapping[str, float]  # every probe stage, plus "answer" and "pixels"
    bootstrap: Mapping[str, np.ndarray]  # same keys; [B], all from one set of resamples
    n_classes: int
    has_image_view: bool
    unconverged: tuple[str, ...] = ()  # stages whose probe hit max_iter
    n_fit: int = 0
    n_test: int = 0
    # Where each diagnosis is lost (metrics.md §2, "Per-class recall"): stage, answer or
    # pixels -> recall of each class [K] on the test split (NaN: class absent from it).
    recall_by_class: Mapping[str, np.ndarray] = field(default_factory=dict)
    # Control probes (metrics.md §2, "Selectivity"): stage -> the balanced accuracy the same
    # probe reaches on the fit split when fit to permuted labels: memorization alone.
    control_scores: Mapping[str, float] = field(default_factory=dict)
    # Each probe's C when cross-validation chose it (metrics.md §2), probe stages and
    # pixels; empty when every probe used the one fixed C.
    chosen_c: Mapping[str, float] = field(default_factory=dict)
    # Whitened probes (metrics.md §2, "Whitened probes"): the stages audit 2 compares ->
    # score and [B] bootstrap scores of a probe on PCA-whitened features, same resamples.
    whitened_scores: Mapping[str, float] = field(default_factory=dict)
    whitened_bootstrap: Mapping[str, np.ndarray] = field(default_factory=dict)
    _keys: dict[str, StageKey] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        keys = {name: parse_stage(name) for name in self.stage_names}
        bad = [name for name, key in keys.items() if key.kind in ("answer", "pixels") or key.name != name]
        if bad or len(keys) != len(self.stage_names):
            raise ValueError(
                f"probe stages must be distinct canonical probe stage names, got {bad or self.stage_names}"
            )
        needed = [*self.stage_names, ANSWER, PIXELS]
        absent = [name for name in needed if name not in self.scores or name not in self.bootstrap]
        if absent:
            raise ValueError(f"the curve lacks scores or bootstrap samples for {', '.join(absent)}")
        if self.n_classes < 2:
            raise ValueError(f"n_classes must be at least 2, got {self.n_classes}")
        views = {key.view for key in keys.values() if key.kind == "llm"}
        if VISION not in keys or CONNECTOR not in keys or "answer" not in views:
            raise ValueError("a probe curve needs vision, connector and at least one llm.<j>@answer stage")
        unfed = [
            name for name, key in keys.items() if key.kind == "side_connector" and f"vision.{key.index}" not in keys
        ]
        if unfed:
            raise ValueError(f"side connectors {unfed} need the vision blocks they read among the stages")
        if self.has_image_view != ("image" in views):
            raise ValueError(f"has_image_view={self.has_image_view} disagrees with the stages {self.stage_names}")
        frozen: dict[str, np.ndarray] = {}
        for name in needed:
            samples = np.array(self.bootstrap[name], dtype=np.float64)  # a private copy
            samples.setflags(write=False)
            frozen[name] = samples
        if len({samples.shape for samples in frozen.values()}) != 1 or frozen[ANSWER].ndim != 1:
            raise ValueError("every stage needs the same number of bootstrap samples, as a [B] array")
        object.__setattr__(self, "bootstrap", frozen)
        object.__setattr__(self, "scores", {name: float(self.scores[name]) for name in needed})
        extra = (set(self.recall_by_class) - set(needed)) | (set(self.control_scores) - set(self.stage_names))
        if extra:
            raise ValueError(f"per-class recall and control scores must be of the curve's stages, got {sorted(extra)}")
        recall = {name: _frozen(np.asarray(value, dtype=np.float64)) for name, value in self.recall_by_class.items()}
        if any(value.shape != (self.n_classes,) for value in recall.values()):
            raise ValueError(f"per-class recall must be [{self.n_classes}] per stage")
        object.__setattr__(self, "recall_by_class", recall)
        object.__setattr__(self, "control_scores", {name: float(v) for name, v in self.control_scores.items()})
        strange = sorted(set(self.chosen_c) - {*self.stage_names, PIXELS})
        if strange:
            raise ValueError(f"chosen C for stages the curve does not have: {', '.join(strange)}")
        object.__setattr__(self, "chosen_c", {name: float(c) for name, c in self.chosen_c.items()})
        whitened = set(self.whitened_scores)
        if whitened != set(self.whitened_bootstrap) or whitened - set(self.stage_names):
            raise ValueError("whitened scores and their bootstrap samples must be of the same probe stages")
        object.__setattr__(self, "whitened_scores", {name: float(v) for name, v in self.whitened_scores.items()})
        object.__setattr__(self, "whitened_bootstrap", {n: _frozen(v) for n, v in self.whitened_bootstrap.items()})
        if any(v.shape != frozen[ANSWER].shape for v in self.whitened_bootstrap.values()):
            raise ValueError("whitened bootstrap samples must share the curve's resamples")
        object.__setattr__(self, "_keys", keys)

    # -- looking stages up -------------------------------------------------------------

    def _name(self, stage: str) -> str:
        """The canonical name of a probe stage, ``answer`` or ``pixels``; else a helpful KeyError."""
        try:
            name = parse_stage(stage).name
        except ValueError as exc:
            raise UnknownStageError(f"{exc}. This curve has: {self._available()}") from None
        if name not in self.scores:
            raise UnknownStageError(f"this curve has no stage {stage!r}; it has: {self._available()}")
        return name

    def _available(self) -> str:
        return ", ".join([*self.stage_names, ANSWER, PIXELS])

    def _of_kind(self, kind: str, view: str | None = None) -> tuple[str, ...]:
        return tuple(n for n, k in self._keys.items() if k.kind == kind and (view is None or k.view == view))

    @property
    def stages(self) -> tuple[str, ...]:
        """The ordered probe stages (not ``answer``, not ``pixels``)."""
        return self.stage_names

    @property
    def vision_blocks(self) -> tuple[str, ...]:
        return self._of_kind("vision_block")

    @property
    def side_connectors(self) -> tuple[str, ...]:
        """``connector.{i}`` stages: connectors that read vision block i (Qwen3-VL's deepstack)."""
        return self._of_kind("side_connector")

    @property
    def connector_pairs(self) -> tuple[tuple[str, str], ...]:
        """(what a connector reads, what it outputs): ``(vision, connector)``, then each side connector."""
        sides = tuple((f"vision.{self._keys[name].index}", name) for name in self.side_connectors)
        return ((VISION, CONNECTOR), *sides)

    @property
    def image_view(self) -> tuple[str, ...]:
        """``llm.j`` stages in order; empty for models whose images never enter the tokens."""
        return self._of_kind("llm", "image")

    @property
    def answer_view(self) -> tuple[str, ...]:
        return self._of_kind("llm", "answer")

    @property
    def last_layer_answer(self) -> str:
        """``llm.{L-1}@answer``: where the model forms its answer."""
        return self.answer_view[-1]

    @property
    def decoder_chain(self) -> tuple[str, ...]:
        """The decoder's stages in order, the one rule for "which view the LLM audits read".

        With an image view: the connector (the hidden state entering decoder layer 0 at the
        image positions, docs/metrics.md §1) then ``llm.j``; without one (cross-attention
        models) the answer view ``llm.j@answer``, the connector not being at that position.
        """
        if self.has_image_view:
            return (CONNECTOR, *self.image_view)
        return self.answer_view

    @property
    def health_curve_stages(self) -> tuple[str, ...]:
        """The stages of docs/metrics.md §5's curve c, in order."""
        if self.has_image_view:
            return (VISION, *self.decoder_chain)
        return self.decoder_chain

    # -- numbers -----------------------------------------------------------------------

    @property
    def chance(self) -> float:
        return 1.0 / self.n_classes

    @property
    def n_bootstrap(self) -> int:
        return len(self.bootstrap[ANSWER])

    def score(self, stage: str) -> float:
        """Balanced accuracy of the probe at ``stage`` (or of ``answer``, ``pixels``)."""
        return self.scores[self._name(stage)]

    def samples(self, stage: str) -> np.ndarray:
        """``[B]`` bootstrap scores; the same resamples for every stage (read-only)."""
        return self.bootstrap[self._name(stage)]

    def interval(self, stage: str) -> tuple[float, float]:
        """The 95% percentile-bootstrap interval of ``score(stage)``."""
        return percentile_interval(self.samples(stage), self.score(stage))

    def _normalize(self, scores: np.ndarray | float) -> np.ndarray:
        return np.clip((np.asarray(scores) - self.chance) / (1.0 - self.chance), 0.0, 1.0)

    def normalized(self, stage: str) -> float:
        """n = clip((s - 1/K) / (1 - 1/K), 0, 1): 0 at chance, 1 when perfect."""
        return float(self._normalize(self.score(stage)))

    def normalized_samples(self, stage: str) -> np.ndarray:
        return self._normalize(self.samples(stage))

    def loss(self, a: str, b: str) -> Difference:
        """``score(a) - score(b)`` with the interval of the paired differences."""
        a, b = self._name(a), self._name(b)
        point = self.scores[a] - self.scores[b]
        low, high = percentile_interval(self.bootstrap[a] - self.bootstrap[b], point)
        return Difference(point, a, b, low, high)

    def whitened_loss(self, a: str, b: str) -> Difference | None:
        """``score(a) - score(b)`` of the whitened probes (metrics.md §2), paired as ``loss``;
        None when the curve has no whitened probe at ``a`` or ``b``."""
        a, b = self._name(a), self._name(b)
        if a not in self.whitened_scores or b not in self.whitened_scores:
            return None
        point = self.whitened_scores[a] - self.whitened_scores[b]
        low, high = percentile_interval(self.whitened_bootstrap[a] - self.whitened_bootstrap[b], point)
        return Difference(point, a, b, low, high)

    def stage_score(self, stage: str) -> StageScore:
        low, high = self.interval(stage)
        return StageScore(self._name(stage), self.score(stage), low, high)

    @property
    def answer(self) -> StageScore:
        return self.stage_score(ANSWER)

    def class_recall(self, stage: str) -> np.ndarray | None:
        """``[K]`` recall of each class at ``stage`` (or ``answer``, ``pixels``) on the test split;
        NaN for a class absent from it; None when the curve was built without it."""
        return self.recall_by_class.get(self._name(stage))

    def control(self, stage: str) -> float | None:
        """The control probe's score at a probe stage: the same protocol fit to permuted labels,
        scored on the fit split against them, i.e. what memorization alone reaches
        (metrics.md §2, "Selectivity"); None when the curve was built without controls."""
        return self.control_scores.get(self._name(stage))

    def selectivity(self, stage: str) -> float | None:
        """score − control at a probe stage (metrics.md §2); None without a control."""
        control = self.control(stage)
        return None if control is None else self.score(stage) - control

    def control_above_chance(self, stage: str) -> bool:
        """The control is far above chance: memorization alone takes the probe more than
        ``CONTROL_FAR`` of the way from chance to perfect (metrics.md §2, "Selectivity")."""
        control = self.control(stage)
        return control is not None and float(self._normalize(control)) > CONTROL_FAR

    @property
    def pixels(self) -> StageScore:
        return self.stage_score(PIXELS)

    # -- rendering ---------------------------------------------------------------------

    def to_records(self) -> list[dict[str, Any]]:
        """The ``stages`` list of the results file: probe stages in order, each with its
        per-class recall and, when the curve has controls, its control and selectivity."""
        records = []
        for s in map(self.stage_score, self.stage_names):
            record: dict[str, Any] = {"stage": s.stage, "score": s.score, "low": s.low, "high": s.high}
            record.update(self.diagnostics_record(s.stage))
            records.append(record)
        return records

    def diagnostics_record(self, stage: str) -> dict[str, Any]:
        """Per-class recall (a list in class order; null for a class absent from the test split),
        the C cross-validation chose (``c``) and the control probe's numbers, where the curve
        has them."""
        record: dict[str, Any] = {}
        recall = self.class_recall(stage)
        if recall is not None:
            record["class_recall"] = [None if np.isnan(value) else float(value) for value in recall]
        if self._name(stage) in self.chosen_c:
            record["c"] = self.chosen_c[self._name(stage)]
        control = self.control(stage) if self._name(stage) in self.stage_names else None
        if control is not None:
            record["control"] = control
            record["selectivity"] = self.selectivity(stage)
            record["control_above_chance"] = self.control_above_chance(stage)
        name = self._name(stage)
        if name in self.whitened_scores:
            low, high = percentile_interval(self.whitened_bootstrap[name], self.whitened_scores[name])
            record["whitened"] = {"score": self.whitened_scores[name], "low": low, "high": high}
        return record

    def __repr__(self) -> str:
        names = [PIXELS, *self.stage_names, ANSWER]
        width = max(map(len, names))
        lines = [
            f"ProbeCurve: {self.n_classes} classes (chance {self.chance:.3f}), n_fit={self.n_fit}, "
            f"n_test={self.n_test}; balanced accuracy [{CONFIDENCE}% CI of {self.n_bootstrap} resamples]"
        ]
        for s in map(self.stage_score, names):
            chosen = f"  C={self.chosen_c[s.stage]:g}" if s.stage in self.chosen_c else ""
            lines.append(f"  {s.stage:<{width}}  {s.score:.3f} [{s.low:.3f}, {s.high:.3f}]{chosen}")
        if self.unconverged:
            lines.append(f"  probes that did not converge: {', '.join(self.unconverged)}")
        return "\n".join(lines)
