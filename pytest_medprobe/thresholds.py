"""The audit thresholds and the decision rule: plain values the library reads by setting key.

Nothing here knows how a threshold is set (flag, ini key, a ``Thresholds(...)`` call): a
failure mode names its threshold by key (``"max_connector_loss"``), and ``value`` finds it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Literal

Decision = Literal["point", "confident-fail", "confident-pass"]
DECISIONS: tuple[Decision, ...] = ("point", "confident-fail", "confident-pass")


@dataclass(frozen=True)
class Thresholds:
    """The resolved audit thresholds (docs/metrics.md §3 and §5), in raw balanced-accuracy points.

    ``extra`` holds the thresholds of failure modes registered beyond the shipped ones, by
    setting key. Example::

        Thresholds(max_connector_loss=0.05, min_health=0.7)
    """

    min_vision_gain: float = 0.0
    min_vision_score: float | None = None
    max_connector_loss: float = 0.03
    max_layer_drop: float = 0.05
    max_llm_loss: float = 0.10
    max_semantic_gap: float = 0.10
    min_health: float = 0.6
    max_subgroup_gap: float = 0.10
    extra: Mapping[str, float] = field(default_factory=dict, hash=False, compare=True)

    def value(self, key: str, default: float | None = None) -> float | None:
        """The threshold named ``key`` (a field, else an ``extra`` entry, else ``default``)."""
        if key in THRESHOLD_KEYS:
            return getattr(self, key)  # type: ignore[no-any-return]
        return self.extra.get(key, default)

    def as_dict(self) -> dict[str, float | None]:
        """Every threshold by key (the fields, then ``extra``), for the results file."""
        return {**{key: getattr(self, key) for key in THRESHOLD_ORDER}, **self.extra}


THRESHOLD_ORDER = tuple(f.name for f in fields(Thresholds) if f.name != "extra")
THRESHOLD_KEYS = frozenset(THRESHOLD_ORDER)
