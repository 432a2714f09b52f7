"""The library entry point: ``probe`` a model on a dataset from plain Python, no pytest.

The same loader, extractor, probes, health and verdicts as ``pytest audits/`` (both go
through ``AuditSession``), so the numbers are the same for the same settings.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pytest_medprobe.thresholds import Decision, Thresholds
from pytest_medprobe.verdict import plain_names

if TYPE_CHECKING:
    from pytest_medprobe.curve import ProbeCurve, StageScore
    from pytest_medprobe.data.base import ProbeDataset
    from pytest_medprobe.extract import FeatureBank
    from pytest_medprobe.failure_modes import AuditVerdicts
    from pytest_medprobe.health import HealthScores
    from pytest_medprobe.pairs import PairResult
    from pytest_medprobe.session import AuditSession
    from pytest_medprobe.subgroups import SubgroupReport

__all__ = ["ProbeReport", "probe", "reference_checkpoint"]


@dataclass(frozen=True)
class ProbeReport:
    """What ``probe`` found on one model × dataset pair.

    ``curve`` (scores per stage with intervals), ``health``, ``verdicts`` (one per failure
    mode, and health), ``answer`` (the model's own answer score), ``root_cause``,
    ``fingerprint`` (the model's content identity), ``dataset`` and ``features``.
    """

    result: PairResult

    @property
    def curve(self) -> ProbeCurve:
        return self.result.curve

    @property
    def health(self) -> HealthScores:
        return self.result.health

    @property
    def verdicts(self) -> AuditVerdicts:
        return self.result.verdicts

    @property
    def answer(self) -> StageScore:
        """The balanced accuracy of the model's own answers, with its interval."""
        return self.result.curve.answer

    @property
    def root_cause(self) -> str | None:
        """The earliest failing failure mode along the pipeline, or None."""
        return self.result.verdicts.root_cause

    @property
    def fingerprint(self) -> str:
        return self.result.source.fingerprint

    @property
    def dataset(self) -> ProbeDataset:
        return self.result.dataset

    @property
    def features(self) -> FeatureBank:
        return self.result.features

    @property
    def subgroups(self) -> SubgroupReport | None:
        return self.result.subgroups

    def as_dict(self) -> dict[str, Any]:
        """The pair's record, as an entry of ``runs`` in the results file (settings named by key)."""
        from pytest_medprobe.report.json_results import run_record

        return run_record(self.result, names=plain_names)

    def __repr__(self) -> str:
        return (
            f"ProbeReport({self.result.pair.model} × {self.dataset.name}: health {self.health.health:.3f}, "
            f"root cause {self.root_cause or 'none'})"
        )


def reference_checkpoint() -> Path:
    """The folder of the reference model shipped in the package (a tiny LLaVA), for trying ``probe``."""
    from pytest_medprobe.zoo import SHIPPED_DIR

    return Path(SHIPPED_DIR)


@contextmanager
def _prepared(model: Any, processor: Any) -> Iterator[None]:
    """Eval mode and left padding for the extraction, the caller's settings restored afterwards."""
    training = bool(getattr(model, "training", False))
    tokenizer = processor.tokenizer
    padding_side = tokenizer.padding_side
    model.eval()
    tokenizer.padding_side = "left"  # every prompt's last token in the last column, where the answer is read
    try:
        yield
    finally:
        tokenizer.padding_side = padding_side
        model.train(training)


def _settings(values: Mapping[str, object], thresholds: Thresholds | None, rootdir: Path) -> Any:
    from pytest_medprobe.config import resolve_settings

    given = {key: value for key, value in values.items() if value is not None}
    cli = {key: value if isinstance(value, list) else str(value) for key, value in given.items()}
    settings = resolve_settings(cli, {}, rootdir)
    return settings if thresholds is None else replace(settings, thresholds=thresholds)


def probe(
    model: Any,
    processor: Any = None,
    dataset: str | ProbeDataset = "synthetic-lesions",
    *,
    thresholds: Thresholds | None = None,
    decision: Decision = "point",
    name: str | None = None,
    max_samples: int | None = None,
    seed: int = 0,
    n_bootstrap: int = 1000,
    probe_c: float = 1.0,
    probe_backend: str = "torch",
    probe_c_grid: Sequence[float] | None = None,
    probe_cv_folds: int = 5,
    probe_device: str = "auto",
    batch_size: int = 16,
    device: str = "auto",
    dtype: str = "auto",
    answer_mode: str | None = None,
    max_new_tokens: int = 512,
    cache_dir: str | Path | None = ".medprobe-cache",
    data_root: str | Path | None = None,
    trust_remote_code: bool = False,
    offline: bool = False,
) -> ProbeReport:
    """Probe ``model`` layer by layer on ``dataset``: the probe curve, health, verdicts, answer.

    (Its length is the keyword-only signature, one keyword per setting, and this docstring;
    the body only turns the keywords into settings and hands them to ``AuditSession``.)

    ``model`` is a transformers image-text-to-text model already in memory (then pass its
    ``processor``; its identity is computed from its weights, config and processor, and
    ``device``/``dtype`` are the model's own), or a name or folder as ``--model`` takes it
    (``"medprobe-tiny"``, ``"NAME=DIR"``, a checkpoint folder, a catalogue name).
    ``dataset`` is a ``--dataset`` value (``"synthetic-lesions"``, ``"medmnist:dermamnist"``,
    ``"folder:DIR"``, ``"csv:FILE"``, ``"hf:NAME"``) or a ``ProbeDataset``. The other
    arguments are the settings of the same name (``pytest --help``); ``thresholds`` the
    audit thresholds. Features are cached in ``cache_dir`` (relative to the current
    folder) by content; ``cache_dir=None`` keeps nothing.

    Example::

        import pytest_medprobe as mp
        from transformers import AutoModelForImageTextToText, AutoProcessor

        folder = mp.reference_checkpoint()
        model = AutoModelForImageTextToText.from_pretrained(folder)
        report = mp.probe(model, AutoProcessor.from_pretrained(folder), "synthetic-lesions")
        print(report.curve, report.health.health, report.root_cause)
        assert report.verdicts.connector_fidelity.passed, report.verdicts.connector_fidelity.message

    Long because its body is the table that maps each keyword to the setting of the same
    name, in plain sight; the work itself is in ``_probe_in_memory`` and the session.
    """
    from pytest_medprobe.pairs import Pair
    from pytest_medprobe.preflight import check_sources
    from pytest_medprobe.session import AuditSession

    in_memory = not isinstance(model, (str, Path))
    if in_memory and processor is None:
        raise TypeError("probe(model, processor, ...): a model in memory needs its processor")
    spec = dataset if isinstance(dataset, str) else dataset.name
    with tempfile.TemporaryDirectory(prefix="medprobe-") if cache_dir is None else _nothing() as scratch:
        values: dict[str, object] = {
            "model": [name or (type(model).__name__ if in_memory else str(model))],
            "dataset": [spec],
            "decision": decision,
            "max_samples": max_samples,
            "seed": seed,
            "n_bootstrap": n_bootstrap,
            "probe_c": probe_c,
            "probe_backend": probe_backend,
            "probe_c_grid": None if probe_c_grid is None else ",".join(map(str, probe_c_grid)),
            "probe_cv_folds": probe_cv_folds,
            "probe_device": probe_device,
            "batch_size": batch_size,
            "device": device,
            "dtype": dtype,
            "answer_mode": answer_mode,
            "max_new_tokens": max_new_tokens,
            "cache_dir": scratch or cache_dir,
            "data_root": data_root,
            "trust_remote_code": trust_remote_code or None,
            "offline": offline or None,
        }
        if in_memory:
            return _probe_in_memory(model, processor, dataset, values, thresholds)
        settings = _settings(values, thresholds, Path.cwd())
        settings = check_sources(settings) if isinstance(dataset, str) else settings
        session = AuditSession(settings)
        if not isinstance(dataset, str):
            session.adopt_dataset(dataset)
        return ProbeReport(session.result(Pair(settings.models[0], settings.datasets[0])))


@contextmanager
def _nothing() -> Iterator[None]:
    yield None


def _probe_in_memory(
    model: Any, processor: Any, dataset: str | ProbeDataset, values: dict[str, object], thresholds: Thresholds | None
) -> ProbeReport:
    from pytest_medprobe.models.in_memory import adopt_model
    from pytest_medprobe.pairs import Pair
    from pytest_medprobe.preflight import check_datasets
    from pytest_medprobe.session import AuditSession

    loaded = adopt_model(model, processor, str(values["model"][0]), bool(values["trust_remote_code"]))  # type: ignore[index]
    dtype = str(loaded.dtype).removeprefix("torch.")
    values = {**values, "device": str(loaded.device), "dtype": dtype}
    settings = _settings(values, thresholds, Path.cwd())
    settings = check_datasets(settings) if isinstance(dataset, str) else settings
    session: AuditSession = AuditSession(settings)
    session.adopt_model(loaded)
    if not isinstance(dataset, str):
        session.adopt_dataset(dataset)
    with _prepared(model, processor):
        return ProbeReport(session.result(Pair(settings.models[0], settings.datasets[0])))
