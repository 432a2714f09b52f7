"""The feature store: a run's view of the on-disk feature cache.

It owns what a feature entry *is* for this run: its key (``features_key``, from content:
the model's and the dataset's fingerprints, the question, the pooling and the numerics),
whether the run may read it (``--medprobe-refresh`` ignores entries of earlier runs, but
not those another process of this run wrote), the lock one process extracts it under,
the description its manifest carries, and the merge of an entry's shards
(``shard_merge``). It never loads a model: the extractor does.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from pytest_medprobe.cache import MANIFEST_FILE, FeatureCache, cache_key, log_notice
from pytest_medprobe.pairs import FeatureProvenance, Pair

if TYPE_CHECKING:
    from pytest_medprobe.config import MedprobeSettings
    from pytest_medprobe.data.base import ProbeDataset
    from pytest_medprobe.extract import FeatureBank

POOLING = "mean-over-tokens/v2"  # part of the cache key: change it when pooling changes

# Where and in what precision features were computed: (device, dtype), e.g. ("cpu", "float32").
ComputedOn = tuple[str, str]


def features_key(
    *,
    model_fingerprint: str,
    dataset: ProbeDataset,
    dtype: str,
    device_type: str,
    answer_mode: str,
    max_new_tokens: int,
) -> str:
    """The cache key of a pair's features: everything they depend on, by content.

    Each setting declared with ``scope=FEATURES`` reaches the key through one of these
    parts (the model's or the dataset's content, the resolved numerics, the answer mode);
    ``tests/unit/test_feature_settings.py`` changes each of them and sees the key change.
    """
    from pytest_medprobe.prompts import closed_question

    parts: dict[str, object] = {
        "model": model_fingerprint,
        "dataset": dataset.fingerprint,
        "question": closed_question(dataset.class_names, dataset.modality, dataset.finding),
        "pooling": POOLING,
        "dtype": dtype,
        "device_type": device_type,
    }
    if answer_mode == "generate":  # letter-mode keys stay as they were
        parts["answers"] = {"mode": "generate", "max_new_tokens": max_new_tokens}
    return cache_key(parts)


def _text_or_none(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


class FeatureStore:
    """The cache entries this run reads and writes, under ``settings.cache_dir``."""

    def __init__(
        self, settings: MedprobeSettings, run_id: str | None = None, notify: Callable[[str], None] = log_notice
    ) -> None:
        self.settings = settings
        # Shared by the processes of one run (pytest-xdist's workers): an entry written under
        # this id was extracted by this run, so a refresh need not extract it again.
        self.run_id = run_id
        self.cache = FeatureCache(settings.cache_dir, notify=notify)

    def _readable(self, key: str) -> bool:
        """Whether this run may use the entry of ``key``: always, unless refreshing and another run wrote it."""
        return not self.settings.refresh or (
            self.run_id is not None and self.cache.description(key).get("run") == self.run_id
        )

    def load(self, key: str) -> FeatureBank | None:
        """The verified entry of ``key``, or None (absent, damaged, or refreshed away)."""
        return self.cache.load(key) if self._readable(key) else None

    def is_cached(self, key: str) -> bool:
        """Whether the cache holds an entry for ``key`` that this run would read (its manifest; not verified)."""
        return self._readable(key) and (self.cache.entry_dir(key) / MANIFEST_FILE).is_file()

    @contextmanager
    def lock(self, key: str) -> Iterator[None]:
        """Hold the entry's inter-process lock: one process extracts or merges it."""
        with self.cache.lock(key):
            yield

    def shards_dir(self, key: str) -> Path:
        """Where ``extract --shard`` writes the shards of the entry of ``key``."""
        entry = self.cache.entry_dir(key)
        return entry.with_name(f"{entry.name}.shards")

    def merged(self, pair: Pair, key: str, computed_on: ComputedOn | None, wait: bool = True) -> FeatureBank | None:
        """Under the entry's lock: the entry assembled from its shards and stored; None without shards."""
        from pytest_medprobe.shard_merge import merge_shards

        def write(bank: FeatureBank, forward_passes: int, shards: int) -> Path | None:
            return self.store(key, bank, self.description(pair, forward_passes, computed_on, shards=shards))

        return merge_shards(self.shards_dir(key), pair, key, self.settings, write, wait=wait)

    def description(
        self, pair: Pair, forward_passes: int, computed_on: ComputedOn | None, **extra: object
    ) -> dict[str, object]:
        """What an entry's manifest says about its origin: for people, and for ``run_id``."""
        description: dict[str, object] = {"model": pair.model, "dataset": pair.dataset}
        if self.run_id is not None:
            description["run"] = self.run_id
        if computed_on is not None:  # the device and precision the features were computed in
            description["device"], description["dtype"] = computed_on
        return {**description, "forward_passes": forward_passes, **extra}

    def store(self, key: str, bank: FeatureBank, description: dict[str, object]) -> Path | None:
        """Write the entry atomically; None when the cache cannot be written (said once; the run carries on)."""
        return self.cache.store(key, bank, description)

    def provenance(self, key: str, forward_passes: int) -> FeatureProvenance:
        """Where a pair's features came from: device and dtype as the cache entry recorded them."""
        recorded = self.cache.description(key)
        return FeatureProvenance(
            key,
            cache_hit=forward_passes == 0,
            forward_passes=forward_passes,
            device=_text_or_none(recorded.get("device")),
            dtype=_text_or_none(recorded.get("dtype")),
        )
