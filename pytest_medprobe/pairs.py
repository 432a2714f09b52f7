"""What an audit run is made of: a model × dataset ``Pair``, and what is known about it.

Plain records, shared by every layer (the feature store, the extractor, the prober, the
gate, the session and the reports), so that none of them needs another to name a pair.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pytest_medprobe.curve import ProbeCurve
    from pytest_medprobe.data.base import ProbeDataset
    from pytest_medprobe.extract import FeatureBank
    from pytest_medprobe.failure_modes import AuditVerdicts
    from pytest_medprobe.health import HealthScores
    from pytest_medprobe.models.base import ModelSource
    from pytest_medprobe.subgroups import SubgroupReport


@dataclass(frozen=True)
class Pair:
    """One model × dataset combination the audits run on."""

    model: str
    dataset: str

    @property
    def id(self) -> str:
        from pytest_medprobe.data import dataset_short_name
        from pytest_medprobe.models.registry import model_short_name

        return f"{model_short_name(self.model)}-{dataset_short_name(self.dataset)}"


@dataclass(frozen=True)
class FeatureProvenance:
    """Where a pair's features came from, for the report."""

    cache_key: str
    cache_hit: bool
    forward_passes: int  # model forward calls made for this pair in this session
    # Where the features were computed and in what precision: this session's model when it
    # extracted them, else what the cache entry recorded (None: not recorded there).
    device: str | None = None
    dtype: str | None = None


@dataclass(frozen=True)
class PairResult:
    """Everything the audits and the reports need about one pair."""

    pair: Pair
    source: ModelSource
    dataset: ProbeDataset
    features: FeatureBank
    provenance: FeatureProvenance
    curve: ProbeCurve
    health: HealthScores
    verdicts: AuditVerdicts
    subgroups: SubgroupReport | None = None  # with subgroup columns configured, on a dataset with columns
