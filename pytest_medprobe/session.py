"""An audit session: every model × dataset pair, computed once and kept.

This is the plain-Python orchestration behind the fixtures: resolve a model, load a
dataset, read the features from the cache or extract them (loading the model only
then), fit the probes, compute health and verdicts. Each step runs at most once per
pair. Extraction is model-major (``pytest_medprobe.matrix``): the first pair of a model
that misses the cache extracts every pending pair of that model, then the model is
released before another one loads, so at most one model is in memory at a time. A
notebook can use it without pytest:

    session = AuditSession(resolve_settings({}, {}, Path.cwd()))
    result = session.result(Pair("tiny-llava", "synthetic-lesions"))
    print(result.curve, result.verdicts.root_cause)
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, MutableMapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pytest_medprobe.cache import FeatureCache, cache_key, log_notice
from pytest_medprobe.errors import MedprobeError

if TYPE_CHECKING:
    from pytest_medprobe.baseline import BaselineComparison
    from pytest_medprobe.config import MedprobeSettings
    from pytest_medprobe.curve import ProbeCurve
    from pytest_medprobe.data.base import ProbeDataset
    from pytest_medprobe.extract import FeatureBank
    from pytest_medprobe.failure_modes import AuditVerdicts
    from pytest_medprobe.health import HealthScores
    from pytest_medprobe.models.base import LoadedModel, ModelSource
    from pytest_medprobe.probes import ProbeSettings
    from pytest_medprobe.progress import MatrixProgress
    from pytest_medprobe.subgroups import SubgroupReport

POOLING = "mean-over-tokens/v2"  # part of the cache key: change it when pooling changes


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
    subgroups: SubgroupReport | None = None  # with --medprobe-subgroup, on a dataset with columns


def _text_or_none(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


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
        # Shared by the processes of one run (pytest-xdist's workers): an entry written under
        # this id was extracted by this run, so --medprobe-refresh need not extract it again.
        self.run_id = run_id
        # Recoverable conditions (a damaged entry extracted again, an unwritable cache), once
        # each, in order: the plugin prints them in the terminal summary.
        self.notices: list[str] = []
        self.cache = FeatureCache(settings.cache_dir, notify=self.notify)
        self._sources: dict[str, ModelSource] = {}
        self._source_errors: dict[str, MedprobeError] = {}
        self._loaded: LoadedModel | None = None  # at most one model in memory (see ``model``)
        self._pinned: dict[str, LoadedModel] = {}  # models the caller holds in memory (``adopt_model``)
        self._feature_errors: dict[Pair, MedprobeError] = {}  # pairs whose extraction failed, and why
        self.forward_passes_total = 0  # model forward calls made by this session, over every pair
        self._progress: MatrixProgress | None = None
        # Extract pairs an `extract --all-pairs` rank claimed and died without writing (that command does).
        self.adopt_orphans = False
        self._datasets: dict[str, ProbeDataset] = {}
        self._features: dict[Pair, tuple[FeatureBank, FeatureProvenance]] = {}
        self._results: dict[Pair, PairResult] = {}
        self._baseline_document: dict[str, object] | None = None
        self._comparisons: dict[Pair, BaselineComparison | None] = {}

    def notify(self, message: str) -> None:
        """Report a condition the run recovers from, once.

        Never as a Python warning: under ``-W error`` or ``filterwarnings = error`` that
        would fail every audit and stop the damaged entry from ever healing.
        """
        if message not in self.notices:
            self.notices.append(message)
            log_notice(message)

    @property
    def pairs(self) -> tuple[Pair, ...]:
        """Every pair to audit, model-major; a model given twice under two names (same content) once."""
        return tuple(Pair(m, d) for m in self.unique_models for d in self.settings.datasets)

    @property
    def unique_models(self) -> tuple[str, ...]:
        """The ``--model`` values, less those whose checkpoint is another value's (same fingerprint)."""
        duplicates = self.duplicates
        return tuple(model for model in self.settings.models if model not in duplicates)

    @property
    def duplicates(self) -> dict[str, str]:
        """``{name: earlier name}`` for each model whose content is an earlier model's (extracted and reported once)."""
        seen: dict[str, str] = {}
        duplicates: dict[str, str] = {}
        for model in self.settings.models:
            fingerprint = self.try_source(model)
            if fingerprint is None:
                continue  # unresolvable: its own pairs report why
            if fingerprint.fingerprint in seen:
                duplicates[model] = seen[fingerprint.fingerprint]
            else:
                seen[fingerprint.fingerprint] = model
        return duplicates

    def try_source(self, model: str) -> ModelSource | None:
        """The model's source, or None when it cannot be resolved (``source`` raises why)."""
        try:
            return self.source(model)
        except MedprobeError:
            return None

    @property
    def computed_results(self) -> tuple[PairResult, ...]:
        """Results of the pairs computed so far, in the order of ``pairs``."""
        return tuple(self._results[p] for p in self.pairs if p in self._results)

    def adopt_model(self, loaded: LoadedModel) -> None:
        """Use a model already in memory under its name (``api.probe``): never loaded, never released."""
        self._pinned[loaded.name] = loaded
        self._sources[loaded.name] = loaded.source

    def adopt_dataset(self, dataset: ProbeDataset) -> None:
        """Use a dataset built in Python (a ``ProbeDataset``) under its name."""
        self._datasets[dataset.name] = dataset

    def source(self, model: str) -> ModelSource:
        if model in self._source_errors:
            raise self._source_errors[model]
        if model not in self._sources:
            from pytest_medprobe.models.registry import resolve_model_source

            try:
                self._sources[model] = resolve_model_source(
                    model, self.settings.cache_dir, self.settings.trust_remote_code
                )
            except MedprobeError as exc:
                self._source_errors[model] = exc  # asked once per run, not once per pair
                raise
        return self._sources[model]

    def answer_mode(self, model: str) -> str:
        """How ``model``'s own answer is read: the user's choice, else the model's preferred mode.

        Reasoning models of the catalogue think before they answer, so the letter logits at
        the end of the prompt say little about what they would answer; they prefer ``generate``.
        """
        if self.settings.answer_mode is not None:
            return self.settings.answer_mode
        from pytest_medprobe.models.registry import preferred_answer_mode

        return preferred_answer_mode(model)

    def model(self, model: str) -> LoadedModel:
        """The loaded model; loading one releases the model loaded before it (one in memory at a time)."""
        if self._loaded is not None and self._loaded.name == model:
            return self._loaded
        self.release_model()
        if model in self._pinned:
            self._loaded = self._pinned[model]
            return self._loaded
        from pytest_medprobe.matrix import map_large_blocks_directly
        from pytest_medprobe.models.loader import load_model

        map_large_blocks_directly()  # so that releasing the model gives all of its memory back
        self._loaded = load_model(
            self.source(model),
            device=self.settings.device,
            dtype=self.settings.dtype,
            trust_remote_code=self.settings.trust_remote_code,
        )
        return self._loaded

    @property
    def matrix_progress(self) -> MatrixProgress:
        """The bar over the whole matrix (pairs done / total) and, for the CLI, one line per event."""
        if self._progress is None:
            from pytest_medprobe.progress import MatrixProgress

            self._progress = MatrixProgress(len(self.pairs), bar=self.progress, echo=self.echo)
        return self._progress

    @property
    def loaded_model_name(self) -> str | None:
        """The name of the model in memory now, if any."""
        return None if self._loaded is None else self._loaded.name

    def release_model(self) -> None:
        """Drop the loaded model: the session's reference, then a collection and the CUDA cache."""
        if self._loaded is None:
            return
        self._loaded = None
        from pytest_medprobe.matrix import free_memory

        free_memory()

    def dataset(self, dataset: str) -> ProbeDataset:
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

    def numerics(self) -> tuple[str, str]:
        """The dtype and the device type extraction runs in: the settings resolved on this machine.

        ``--dtype auto`` is bfloat16 on a GPU and float32 on a CPU, and the two give other
        features, so the cache key holds what is used, never the setting.
        """
        from pytest_medprobe.models.loader import resolve_device, resolve_dtype

        device = resolve_device(self.settings.device)
        return str(resolve_dtype(self.settings.dtype, device)).removeprefix("torch."), device.type

    def features_key(self, pair: Pair) -> str:
        from pytest_medprobe.prompts import closed_question

        dataset = self.dataset(pair.dataset)
        dtype, device_type = self.numerics()
        parts: dict[str, object] = {
            "model": self.source(pair.model).fingerprint,
            "dataset": dataset.fingerprint,
            "question": closed_question(dataset.class_names, dataset.modality, dataset.finding),
            "pooling": POOLING,
            "dtype": dtype,
            "device_type": device_type,
        }
        if self.answer_mode(pair.model) == "generate":  # letter-mode keys stay as they were
            parts["answers"] = {"mode": "generate", "max_new_tokens": self.settings.max_new_tokens}
        return cache_key(parts)

    def features(self, pair: Pair) -> tuple[FeatureBank, FeatureProvenance]:
        """The pair's feature bank: from the cache, or extracted (one pass) and cached.

        A miss extracts every pending pair of the pair's model in one load (model-major),
        then releases the model; the other pairs are then served from memory.
        """
        if pair in self._features:
            return self._features[pair]
        if pair in self._feature_errors:
            raise self._feature_errors[pair]
        bank = self.cached_bank(self.features_key(pair))
        if bank is not None:
            self._features[pair] = (bank, self.provenance(self.features_key(pair), forward_passes=0))
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
        bank = self.cached_bank(key)  # another process may have written it while we waited for the lock
        if bank is None and not self.settings.refresh:
            from pytest_medprobe.shards import merge_shards

            bank = merge_shards(self, pair, key)  # None unless `extract --shard` wrote shards
        if bank is None:
            return None
        self._features[pair] = (bank, self.provenance(key, forward_passes=0))
        return self._features[pair]

    def extracted(self, pair: Pair, key: str, bank: FeatureBank, forward_passes: int) -> None:
        """Store a pair's freshly extracted features (under the entry's lock) and keep them."""
        self.cache.store(key, bank, self.entry_description(pair, forward_passes))
        self._features[pair] = (bank, self.provenance(key, forward_passes))

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

    def error_of(self, pair: Pair) -> MedprobeError | None:
        """Why the pair's features could not be had, once ``features`` was asked for them (else None)."""
        return self._feature_errors.get(pair)

    def failed(self, pair: Pair, error: MedprobeError) -> None:
        """Remember why a pair's features could not be had; ``features`` raises it."""
        self._feature_errors[pair] = error

    def cached_bank(self, key: str) -> FeatureBank | None:
        if self.settings.refresh and (self.run_id is None or self.cache.description(key).get("run") != self.run_id):
            return None
        return self.cache.load(key)

    def is_cached(self, key: str) -> bool:
        """Whether the cache holds an entry for ``key`` that this run would read (its manifest; not verified)."""
        from pytest_medprobe.cache import MANIFEST_FILE

        if self.settings.refresh and (self.run_id is None or self.cache.description(key).get("run") != self.run_id):
            return False
        return (self.cache.entry_dir(key) / MANIFEST_FILE).is_file()

    def entry_description(self, pair: Pair, forward_passes: int, **extra: object) -> dict[str, object]:
        """What a cache entry's manifest says about its origin: for people, and for ``run_id``."""
        description: dict[str, object] = {"model": pair.model, "dataset": pair.dataset}
        if self.run_id is not None:
            description["run"] = self.run_id
        loaded = self._loaded if self._loaded is not None and self._loaded.name == pair.model else None
        if loaded is not None:  # the device and precision the features were computed in
            description["device"] = str(loaded.device)
            description["dtype"] = str(loaded.dtype).removeprefix("torch.")
        return {**description, "forward_passes": forward_passes, **extra}

    def extract(self, pair: Pair, dataset: ProbeDataset | None = None) -> tuple[FeatureBank, int]:
        """Extract the pair's features (of ``dataset``: a shard's rows of it), with the forward-pass count."""
        from pytest_medprobe.extract import extract_features

        loaded = self.model(pair.model)
        calls = [0]
        handle = loaded.model.register_forward_hook(lambda *_: calls.__setitem__(0, calls[0] + 1))
        try:
            bank = extract_features(
                loaded,
                self.dataset(pair.dataset) if dataset is None else dataset,
                self.settings.batch_size,
                progress=self.progress,
                answer_mode=self.answer_mode(pair.model),
                max_new_tokens=self.settings.max_new_tokens,
            )
        finally:
            handle.remove()
            self.forward_passes_total += calls[0]
        return bank, calls[0]

    def probe_settings(self) -> ProbeSettings:
        """How this run fits its probes; the torch backend fits where the audit runs unless
        ``--medprobe-probe-device`` says otherwise."""
        from pytest_medprobe.probes import ProbeSettings
        from pytest_medprobe.torch_probes import resolve_probe_device

        backend = self.settings.probe_backend
        audit_device = self.settings.device
        device = "cpu" if backend == "sklearn" else resolve_probe_device(self.settings.probe_device, audit_device)
        return ProbeSettings(
            c=self.settings.probe_c,
            n_bootstrap=self.settings.n_bootstrap,
            seed=self.settings.seed,
            backend=backend,
            c_grid=self.settings.probe_c_grid,
            cv_folds=self.settings.probe_cv_folds,
            device=device,
        )

    def result(self, pair: Pair) -> PairResult:
        """Probe curve, health and verdicts of a pair (computed once)."""
        if pair in self._results:
            return self._results[pair]
        from pytest_medprobe.data.base import pixel_features
        from pytest_medprobe.failure_modes import evaluate
        from pytest_medprobe.health import compute_health
        from pytest_medprobe.probes import build_probe_curve_with_predictions

        dataset = self.dataset(pair.dataset)
        bank, provenance = self.features(pair)
        curve, predictions = build_probe_curve_with_predictions(
            fit_features=bank.fit.stages,
            test_features=bank.test.stages,
            fit_labels=dataset.fit_labels,
            test_labels=dataset.test_labels,
            answers=bank.test.answers,
            pixel_fit=pixel_features(dataset.fit_images),
            pixel_test=pixel_features(dataset.test_images),
            n_classes=dataset.n_classes,
            stage_names=bank.stage_names,
            has_image_view=bank.has_image_view,
            settings=self.probe_settings(),
        )
        health = compute_health(curve)
        verdicts = evaluate(curve, health, self.settings.thresholds, self.settings.decision)
        subgroups = None
        if dataset.test_subgroups:
            from pytest_medprobe.subgroups import subgroup_report

            subgroups = subgroup_report(
                predictions,
                dataset.test_labels,
                dataset.test_subgroups,
                curve,
                n_bootstrap=self.settings.n_bootstrap,
                seed=self.settings.seed,
                max_gap=self.settings.thresholds.max_subgroup_gap,
                decision=self.settings.decision,
            )
        self._results[pair] = PairResult(
            pair=pair,
            source=self.source(pair.model),
            dataset=dataset,
            features=bank,
            provenance=provenance,
            curve=curve,
            health=health,
            verdicts=verdicts,
            subgroups=subgroups,
        )
        return self._results[pair]

    def baseline_comparison(self, pair: Pair) -> BaselineComparison | None:
        """The pair against its entry in ``--medprobe-baseline``; None without an entry."""
        if pair in self._comparisons:
            return self._comparisons[pair]
        from pytest_medprobe.baseline import compare, find_entry, read_baseline

        path = self.settings.baseline_path
        if path is None:
            raise ValueError("no baseline file is configured")
        if self._baseline_document is None:
            self._baseline_document = read_baseline(path)
        result = self.result(pair)
        found = find_entry(
            self._baseline_document,
            pair.model,
            self.settings.label,
            result.dataset.fingerprint,
            result.source.fingerprint,
        )
        comparison = None
        if found is not None:
            key, entry = found
            comparison = compare(
                result,
                key,
                entry,
                n_bootstrap=self.settings.n_bootstrap,
                seed=self.settings.seed,
                tolerance=self.settings.tolerance,
                decision=self.settings.decision,
            )
        self._comparisons[pair] = comparison
        return comparison

    def compared(self, pair: Pair) -> BaselineComparison | None:
        """The comparison made for ``pair`` in this session, if any (for the reports)."""
        return self._comparisons.get(pair)

    def baseline_entry(self, result: PairResult) -> tuple[str, dict[str, Any]]:
        """The key and the entry of ``result`` in a baseline file (``--medprobe-save-baseline``)."""
        from pytest_medprobe.baseline import default_release_line, entry_key, make_entry

        line = self.settings.label or default_release_line(result.pair.model, result.source.fingerprint)
        entry = make_entry(result, line, n_bootstrap=self.settings.n_bootstrap, seed=self.settings.seed)
        return entry_key(line, result.dataset.fingerprint), entry


def share_cpu_threads(processes: int, environ: MutableMapping[str, str] = os.environ) -> int | None:
    """Give torch in this process an equal share of the machine's cores, one of ``processes`` sharing them.

    For pytest-xdist workers: each would otherwise start one thread per core, and on a busy
    CPU every operation waits for threads the other workers hold (measured: a two-pair
    ``-n 2`` run on 2 cores took 44-129 s instead of 18-23 s). Works through
    ``OMP_NUM_THREADS``, read when torch is imported; an ``OMP_NUM_THREADS`` the user set
    wins. Returns the share, or None when the user's setting stays.
    """
    if "OMP_NUM_THREADS" in environ:
        return None
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    threads = max(1, cores // max(1, processes))
    environ["OMP_NUM_THREADS"] = str(threads)
    if "torch" in sys.modules:  # imported already (a conftest): too late for the variable
        sys.modules["torch"].set_num_threads(threads)
    return threads


def check_datasets(settings: MedprobeSettings) -> MedprobeSettings:
    """Check every ``--dataset`` before anything loads (``MedprobeUsageError``); returns the
    settings with each multi-label dataset expanded into one task per ``--medprobe-finding``."""
    from dataclasses import replace

    from pytest_medprobe.config import SUBGROUP
    from pytest_medprobe.data import check_dataset_spec, dataset_options, expand_findings, has_columns
    from pytest_medprobe.errors import MedprobeUsageError

    options = dataset_options(settings)
    datasets = expand_findings(settings.datasets, settings.findings, settings.data_root, options)
    for dataset in datasets:
        check_dataset_spec(dataset, settings.data_root, medmnist_url=settings.medmnist_url, options=options)
    if settings.subgroups and not any(map(has_columns, datasets)):
        raise MedprobeUsageError(
            f"{SUBGROUP.flag}={', '.join(settings.subgroups)}: subgroups are columns of a csv: or hf: dataset, and "
            f"none of the datasets ({', '.join(datasets)}) has columns."
        )
    return replace(settings, datasets=datasets)


def check_sources(settings: MedprobeSettings) -> MedprobeSettings:
    """Check every ``--model`` and ``--dataset`` before anything loads (``MedprobeUsageError``);
    returns the settings with the run's dataset tasks (``check_datasets``)."""
    from pytest_medprobe.models.registry import check_distinct_names, check_model_spec

    for model in settings.models:
        check_model_spec(model, settings.trust_remote_code, offline=settings.offline)
    check_distinct_names(settings.models)
    return check_datasets(settings)
