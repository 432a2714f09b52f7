"""An audit session: every model × dataset pair, computed once and kept.

The session wires four pieces, each with one job, and memoizes what they give:

- the feature store (``store.FeatureStore``): cache keys, the cache, its locks, shard merges;
- the extractor (``extractor.Extractor``): the one model in memory, forward passes counted;
- the prober (``prober.probe_features``): probe curve, health, verdicts, subgroups;
- the gate (``gate.BaselineGate``): each pair against the baseline file.

The session resolves each model and dataset once, asks for features pair by pair, and
turns the first cache miss of a model into one model-major extraction of all of that
model's pending pairs (``matrix``), so at most one model is ever in memory. A notebook can
use it without pytest:

    session = AuditSession(resolve_settings({}, {}, Path.cwd()))
    result = session.result(Pair("tiny-llava", "synthetic-lesions"))
    print(result.curve, result.verdicts.root_cause)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from pytest_medprobe.cache import log_notice
from pytest_medprobe.errors import MedprobeError
from pytest_medprobe.extractor import Extractor
from pytest_medprobe.gate import BaselineGate
from pytest_medprobe.pairs import FeatureProvenance, Pair, PairResult
from pytest_medprobe.store import FeatureStore, features_key

if TYPE_CHECKING:
    from pytest_medprobe.baseline import BaselineComparison
    from pytest_medprobe.cache import FeatureCache
    from pytest_medprobe.config import MedprobeSettings
    from pytest_medprobe.data.base import ProbeDataset
    from pytest_medprobe.extract import FeatureBank
    from pytest_medprobe.models.base import LoadedModel, ModelSource
    from pytest_medprobe.probes import ProbeSettings
    from pytest_medprobe.progress import MatrixProgress
    from pytest_medprobe.store import ComputedOn

__all__ = ["AuditSession", "FeatureProvenance", "Pair", "PairResult"]


class AuditSession:
    """Lazily computes and memoizes the results of every pair."""

    def __init__(
        self,
        settings: MedprobeSettings,
        progress: bool = False,
        run_id: str | None = None,
        echo: Callable[[str], None] | None = None,
    ) -> None:
        self.settings = settings
        self.progress = progress
        self.echo = echo  # where a line per loaded model and per pair goes (the extract CLI), if anywhere
        # Recoverable conditions (a damaged entry extracted again, an unwritable cache), once
        # each, in order: the plugin prints them in the terminal summary.
        self.notices: list[str] = []
        self.store = FeatureStore(settings, run_id, notify=self.notify)
        self.extractor = Extractor(settings, self.source, progress=progress)
        self.gate = BaselineGate(settings)
        # Extract pairs an `extract --all-pairs` rank claimed and died without writing (that command does).
        self.adopt_orphans = False
        self._sources: dict[str, ModelSource] = {}
        self._source_errors: dict[str, MedprobeError] = {}
        self._datasets: dict[str, ProbeDataset] = {}
        self._progress: MatrixProgress | None = None
        self._features: dict[Pair, tuple[FeatureBank, FeatureProvenance]] = {}
        self._feature_errors: dict[Pair, MedprobeError] = {}  # pairs whose extraction failed, and why
        self._results: dict[Pair, PairResult] = {}

    def notify(self, message: str) -> None:
        """Report a condition the run recovers from, once.

        Never as a Python warning: under ``-W error`` or ``filterwarnings = error`` that
        would fail every audit and stop the damaged entry from ever healing.
        """
        if message not in self.notices:
            self.notices.append(message)
            log_notice(message)

    # -- what the run is made of -------------------------------------------------------

    @property
    def pairs(self) -> tuple[Pair, ...]:
        """Every pair to audit, model-major; a model given twice under two names (same content) once."""
        return tuple(Pair(m, d) for m in self.unique_models for d in self.settings.datasets)

    @property
    def unique_models(self) -> tuple[str, ...]:
        """The models of the settings, less those whose checkpoint is another one's (same fingerprint)."""
        duplicates = self.duplicates
        return tuple(model for model in self.settings.models if model not in duplicates)

    @property
    def duplicates(self) -> dict[str, str]:
        """``{name: earlier name}`` for each model whose content is an earlier model's (extracted and reported once)."""
        seen: dict[str, str] = {}
        duplicates: dict[str, str] = {}
        for model in self.settings.models:
            source = self.try_source(model)
            if source is None:
                continue  # unresolvable: its own pairs report why
            if source.fingerprint in seen:
                duplicates[model] = seen[source.fingerprint]
            else:
                seen[source.fingerprint] = model
        return duplicates

    @property
    def computed_results(self) -> tuple[PairResult, ...]:
        """Results of the pairs computed so far, in the order of ``pairs``."""
        return tuple(self._results[p] for p in self.pairs if p in self._results)

    def source(self, model: str) -> ModelSource:
        """The resolved checkpoint of ``model`` (asked once per run; a failure is remembered and raised again)."""
        if model in self._source_errors:
            raise self._source_errors[model]
        if model not in self._sources:
            from pytest_medprobe.models.registry import resolve_model_source

            try:
                self._sources[model] = resolve_model_source(
                    model, self.settings.cache_dir, self.settings.trust_remote_code
                )
            except MedprobeError as exc:
                self._source_errors[model] = exc
                raise
        return self._sources[model]

    def try_source(self, model: str) -> ModelSource | None:
        """The model's source, or None when it cannot be resolved (``source`` raises why)."""
        try:
            return self.source(model)
        except MedprobeError:
            return None

    def dataset(self, dataset: str) -> ProbeDataset:
        """The loaded dataset ``dataset`` (loaded once per run)."""
        if dataset not in self._datasets:
            from pytest_medprobe.data import dataset_options, load_dataset

            self._datasets[dataset] = load_dataset(
                dataset,
                data_root=self.settings.data_root,
                max_samples=self.settings.max_samples,
                seed=self.settings.seed,
                options=dataset_options(self.settings),
                hash_memo=self.settings.cache_dir,
            )
        return self._datasets[dataset]

    def adopt_model(self, loaded: LoadedModel) -> None:
        """Use a model already in memory under its name (``api.probe``): never loaded, never released."""
        self.extractor.adopt(loaded)
        self._sources[loaded.name] = loaded.source

    def adopt_dataset(self, dataset: ProbeDataset) -> None:
        """Use a dataset built in Python (a ``ProbeDataset``) under its name."""
        self._datasets[dataset.name] = dataset

    def answer_mode(self, model: str) -> str:
        """How ``model``'s own answer is read: the user's choice, else the model's preferred mode.

        Reasoning models of the catalogue think before they answer, so the letter logits at
        the end of the prompt say little about what they would answer; they prefer ``generate``.
        """
        if self.settings.answer_mode is not None:
            return self.settings.answer_mode
        from pytest_medprobe.models.registry import preferred_answer_mode

        return preferred_answer_mode(model)

    # -- the extractor, as the matrix and the fixtures use it -----------------------------

    @property
    def matrix_progress(self) -> MatrixProgress:
        """The bar over the whole matrix (pairs done / total) and, for the CLI, one line per event."""
        if self._progress is None:
            from pytest_medprobe.progress import MatrixProgress

            self._progress = MatrixProgress(len(self.pairs), bar=self.progress, echo=self.echo)
        return self._progress

    def model(self, model: str) -> LoadedModel:
        """The loaded model; loading one releases the model loaded before it (one in memory at a time)."""
        return self.extractor.model(model)

    def release_model(self) -> None:
        """Drop the loaded model and give its memory back."""
        self.extractor.release()

    @property
    def loaded_model_name(self) -> str | None:
        """The name of the model in memory now, if any."""
        return self.extractor.loaded_model_name

    @property
    def forward_passes_total(self) -> int:
        """Model forward calls made by this session, over every pair."""
        return self.extractor.forward_passes_total

    def computed_on(self, model: str) -> ComputedOn | None:
        """(device, dtype) of ``model`` when it is the one in memory (what an entry written now records)."""
        return self.extractor.computed_on(model)

    def extract(self, pair: Pair, dataset: ProbeDataset | None = None) -> tuple[FeatureBank, int]:
        """Extract the pair's features (of ``dataset``: a shard's rows of it), with the forward-pass count."""
        rows = self.dataset(pair.dataset) if dataset is None else dataset
        return self.extractor.extract(pair.model, rows, self.answer_mode(pair.model))

    # -- the feature store ---------------------------------------------------------------

    @property
    def cache(self) -> FeatureCache:
        """The feature cache on disk."""
        return self.store.cache

    def numerics(self) -> tuple[str, str]:
        """The dtype and the device type extraction runs in: the settings resolved on this machine."""
        return self.extractor.numerics()

    def features_key(self, pair: Pair) -> str:
        """The cache key of the pair's features (by content: see ``store.features_key``)."""
        dtype, device_type = self.extractor.numerics()
        return features_key(
            model_fingerprint=self.source(pair.model).fingerprint,
            dataset=self.dataset(pair.dataset),
            dtype=dtype,
            device_type=device_type,
            answer_mode=self.answer_mode(pair.model),
            max_new_tokens=self.settings.max_new_tokens,
        )

    def cached_bank(self, key: str) -> FeatureBank | None:
        """The cache entry of ``key`` when this run may use it."""
        return self.store.load(key)

    def is_cached(self, key: str) -> bool:
        """Whether the cache holds an entry for ``key`` that this run would read (its manifest; not verified)."""
        return self.store.is_cached(key)

    def entry_description(self, pair: Pair, forward_passes: int, **extra: object) -> dict[str, object]:
        """What a cache entry written now says about its origin."""
        return self.store.description(pair, forward_passes, self.computed_on(pair.model), **extra)

    def features(self, pair: Pair) -> tuple[FeatureBank, FeatureProvenance]:
        """The pair's feature bank: from the cache, or extracted (one pass) and cached.

        A miss extracts every pending pair of the pair's model in one load (model-major),
        then releases the model; the other pairs are then served from memory.
        """
        if pair in self._features:
            return self._features[pair]
        if pair in self._feature_errors:
            raise self._feature_errors[pair]
        key = self.features_key(pair)
        bank = self.store.load(key)
        if bank is not None:
            self._features[pair] = (bank, self.store.provenance(key, forward_passes=0))
            self.matrix_progress.pair_done(pair, "cached")
            return self._features[pair]
        from pytest_medprobe.matrix import extract_model_pairs

        pending = [p for p in self.pairs if p.model == pair.model and p not in self._features]
        extract_model_pairs(self, pair.model, pending if pair in pending else [pair, *pending])
        if pair in self._feature_errors:
            raise self._feature_errors[pair]
        return self._features[pair]

    def features_of(self, pair: Pair, key: str) -> tuple[FeatureBank, FeatureProvenance] | None:
        """Under the entry's lock: the cached or merged features of ``pair``; None when they must be extracted."""
        bank = self.store.load(key)  # another process may have written it while we waited for the lock
        if bank is None and not self.settings.refresh:
            bank = self.store.merged(pair, key, self.computed_on(pair.model))  # None unless shards were written
        if bank is None:
            return None
        self._features[pair] = (bank, self.store.provenance(key, forward_passes=0))
        return self._features[pair]

    def extracted(self, pair: Pair, key: str, bank: FeatureBank, forward_passes: int) -> None:
        """Store a pair's freshly extracted features (under the entry's lock) and keep them."""
        self.store.store(key, bank, self.entry_description(pair, forward_passes))
        self._features[pair] = (bank, self.store.provenance(key, forward_passes))

    def failed(self, pair: Pair, error: MedprobeError) -> None:
        """Remember why a pair's features could not be had; ``features`` raises it."""
        self._feature_errors[pair] = error

    def error_of(self, pair: Pair) -> MedprobeError | None:
        """Why the pair's features could not be had, once ``features`` was asked for them (else None)."""
        return self._feature_errors.get(pair)

    # -- the prober and the gate ---------------------------------------------------------

    def probe_settings(self) -> ProbeSettings:
        """How this run fits its probes (``prober.probe_settings``)."""
        from pytest_medprobe.prober import probe_settings

        return probe_settings(self.settings)

    def result(self, pair: Pair) -> PairResult:
        """Probe curve, health and verdicts of a pair (computed once)."""
        if pair in self._results:
            return self._results[pair]
        from pytest_medprobe.prober import probe_features

        dataset = self.dataset(pair.dataset)
        bank, provenance = self.features(pair)
        probed = probe_features(self.settings, dataset, bank)
        self._results[pair] = PairResult(
            pair=pair,
            source=self.source(pair.model),
            dataset=dataset,
            features=bank,
            provenance=provenance,
            curve=probed.curve,
            health=probed.health,
            verdicts=probed.verdicts,
            subgroups=probed.subgroups,
        )
        return self._results[pair]

    def baseline_comparison(self, pair: Pair) -> BaselineComparison | None:
        """The pair against its entry in the baseline file; None without an entry."""
        return self.gate.compare(self.result(pair))

    def compared(self, pair: Pair) -> BaselineComparison | None:
        """The comparison made for ``pair`` in this session, if any (for the reports)."""
        return self.gate.compared(pair)

    def baseline_entry(self, result: PairResult) -> tuple[str, dict[str, Any]]:
        """The key and the entry of ``result`` in a baseline file (the one the run saves)."""
        return self.gate.entry(result)
