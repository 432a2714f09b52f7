"""What model-major extraction (``matrix``) and ``extract --all-pairs`` ranks (``ranks``) need from a run.

``AuditSession`` is the run; these modules are called by it (its first cache miss of a
model extracts all of that model's pending pairs), so they name what they use as this
protocol rather than import the session: the layering stays one way.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from pytest_medprobe.config import MedprobeSettings
    from pytest_medprobe.data.base import ProbeDataset
    from pytest_medprobe.errors import MedprobeError
    from pytest_medprobe.extract import FeatureBank
    from pytest_medprobe.models.base import LoadedModel, ModelSource
    from pytest_medprobe.pairs import FeatureProvenance, Pair
    from pytest_medprobe.progress import MatrixProgress


class EntryLocks(Protocol):
    """The feature store's entry locks."""

    def lock(self, key: str) -> AbstractContextManager[None]: ...


class ExtractionRun(Protocol):
    """The pairs of a run, their cache keys and entries, the model in memory, and the progress."""

    settings: MedprobeSettings
    adopt_orphans: bool  # extract pairs a dead `extract --all-pairs` rank claimed (that command does)

    @property
    def store(self) -> EntryLocks: ...

    @property
    def pairs(self) -> tuple[Pair, ...]: ...

    @property
    def matrix_progress(self) -> MatrixProgress: ...

    def try_source(self, model: str) -> ModelSource | None: ...

    def features_key(self, pair: Pair) -> str: ...

    def cached_bank(self, key: str) -> FeatureBank | None: ...

    def is_cached(self, key: str) -> bool: ...

    def features_of(self, pair: Pair, key: str) -> tuple[FeatureBank, FeatureProvenance] | None: ...

    def model(self, model: str) -> LoadedModel: ...

    def release_model(self) -> None: ...

    def extract(self, pair: Pair, dataset: ProbeDataset | None = None) -> tuple[FeatureBank, int]: ...

    def extracted(self, pair: Pair, key: str, bank: FeatureBank, forward_passes: int) -> None: ...

    def failed(self, pair: Pair, error: MedprobeError) -> None: ...
