"""Release gating: save a release's numbers as a baseline, judge a candidate against them.

A baseline file (JSON) holds one entry per release line × dataset × split. The key is the
release line and the dataset's content fingerprint, never anything about the machine. The
release line is a name the user chose (``--medprobe-label``, the NAME of ``NAME=DIR``, a
registry name), else the checkpoint folder's name *with the weights' content identity*
(``final@1a2b3c4d5e6f``): two folders both called ``final`` are two lines, never one entry
that the second silently replaces. Each entry keeps the per-stage
scores, the answer, health, and every failure-mode statistic with its bootstrap
samples, so a candidate scored on the same test images with the same resamples is
compared *per resample*: the regression verdict rests on a paired interval of the
difference, not on two point estimates. Updating a file keeps every entry the run did
not touch.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from pytest_medprobe import stages
from pytest_medprobe._version import __version__
from pytest_medprobe.curve import format_interval, percentile_interval
from pytest_medprobe.errors import MedprobeUsageError
from pytest_medprobe.failure_modes import RegressionStatistic, regression_statistics, statistic_names
from pytest_medprobe.files import atomic_write_text
from pytest_medprobe.naming import mention, mention_full
from pytest_medprobe.thresholds import Decision
from pytest_medprobe.verdict import Verdict, decide, escape, setting_ref, with_power

if TYPE_CHECKING:
    from pytest_medprobe.pairs import PairResult

FORMAT_VERSION = 1
SPLIT = "test"


# The shipped statistics, for the regression audit's parameters (fixed at collection).
STATISTICS = statistic_names()


def default_release_line(model: str, model_fingerprint: str) -> str:
    """A model's release line without a label: the name the user gave it, else folder name and content.

    A folder name alone says nothing (``x/final`` and ``y/final``), so a bare checkpoint
    folder's line carries the first 12 hex digits of its content fingerprint.
    """
    from pytest_medprobe.models.registry import parse_model_spec

    parsed = parse_model_spec(model)
    if parsed.name is not None:
        return parsed.name
    folder = parsed.directory.name or parsed.directory.resolve().name  # type: ignore[union-attr]
    return f"{folder}@{model_fingerprint[:12]}"


def entry_key(line: str, dataset_fingerprint: str) -> str:
    return f"{line}|{dataset_fingerprint}|{SPLIT}"


def _rounded(values: np.ndarray) -> list[float]:
    return [round(float(value), 6) for value in values]


def make_entry(result: PairResult, line: str, n_bootstrap: int, seed: int, probe: Mapping[str, Any]) -> dict[str, Any]:
    """The baseline entry of one pair; ``probe``: the run's probe protocol (``ProbeSettings.protocol``)."""
    from pytest_medprobe.health import health_samples

    curve = result.curve
    statistics = regression_statistics(curve, health_samples(curve), result.health.health)
    return {
        "release_line": line,
        "model": {"name": result.pair.model, "fingerprint": result.source.fingerprint},
        "dataset": {"name": result.dataset.name, "fingerprint": result.dataset.fingerprint, "split": SPLIT},
        "bootstrap": {"n": n_bootstrap, "seed": seed, "n_test": result.dataset.n_test},
        "probe": dict(probe),
        "stages": curve.to_records(),
        "answer": {"score": curve.answer.score, "low": curve.answer.low, "high": curve.answer.high},
        "health": result.health.as_dict(),
        "statistics": {
            name: {
                "point": statistic.point,
                "better": statistic.better,
                "sd": float(np.std(statistic.samples)),
                "samples": _rounded(statistic.samples),
            }
            for name, statistic in statistics.items()
        },
        "medprobe_version": __version__,
    }


def _entry_problem(entry: object) -> str | None:
    """What makes a stored entry unusable for a comparison, or None."""
    if not isinstance(entry, dict):
        return "is not a JSON object"
    for field in ("release_line", "dataset", "bootstrap", "stages", "answer", "health", "statistics"):
        if field not in entry:
            return f"has no {field!r}"
    statistics, n = entry["statistics"], entry["bootstrap"].get("n") if isinstance(entry["bootstrap"], dict) else None
    if not isinstance(statistics, dict):
        return "has no 'statistics' object"
    for name in statistic_names():
        statistic = statistics.get(name)
        if not isinstance(statistic, dict) or not {"point", "better", "sd", "samples"} <= statistic.keys():
            return f"has no complete statistic {name!r}"
        samples = statistic["samples"]
        if not isinstance(samples, list) or len(samples) != n:
            count = len(samples) if isinstance(samples, list) else "no"
            return f"holds {count} bootstrap samples of {name!r}, but its bootstrap has n={n} (truncated)"
    return None


def read_baseline(path: Path, setting: str = "baseline_path") -> dict[str, Any]:
    """A baseline file's content; a missing file is an empty baseline, a damaged one a usage error.

    ``setting`` is the key of the setting that named the file, so that the message can say which.
    """
    if not path.exists():
        return {"format_version": FORMAT_VERSION, "entries": {}}
    try:
        if path.is_dir():
            raise ValueError("it is a folder")
        document = json.loads(path.read_text(encoding="utf-8"))
        if document.get("format_version") != FORMAT_VERSION or not isinstance(document.get("entries"), dict):
            raise ValueError(f"format_version {document.get('format_version')!r}, expected {FORMAT_VERSION}")
        for key, entry in document["entries"].items():
            problem = _entry_problem(entry)
            if problem is not None:
                raise ValueError(f"entry {key!r} {problem}")
    except (OSError, ValueError, AttributeError) as exc:
        raise MedprobeUsageError(
            f"{mention_full(setting)}: {path} is not a usable pytest-medprobe baseline file ({exc}); "
            f"restore it from version control, or write a new one with {mention('save_baseline_path')}."
        ) from None
    return document


def update_baseline(path: Path, entries: Mapping[str, dict[str, Any]]) -> None:
    """Add or replace ``entries`` in the file at ``path``, keeping every other entry.

    Read, merge and write happen under a file lock, and the write is atomic, so two
    runs saving different pairs at once both keep their entries.
    """
    from pytest_medprobe.locks import held

    with held(path.with_name(path.name + ".lock")):
        document = read_baseline(path, "save_baseline_path")
        document["entries"].update(entries)
        atomic_write_text(path, json.dumps(document, indent=1, sort_keys=True, allow_nan=False) + "\n")


def find_entry(
    document: Mapping[str, Any], model: str, label: str | None, dataset_fingerprint: str, model_fingerprint: str
) -> tuple[str, dict[str, Any]] | None:
    """The baseline entry a candidate is compared with, or None when there is none.

    With a label, or for a model whose release line is in the file, that line decides.
    A new checkpoint folder without a label is compared with the file's only release
    line for this dataset; when there are several, the label must choose.
    """
    entries = document["entries"]
    line = label or default_release_line(model, model_fingerprint)
    key = entry_key(line, dataset_fingerprint)
    if key in entries:
        return key, entries[key]
    if label is not None:
        return None
    candidates = {k: v for k, v in entries.items() if v["dataset"]["fingerprint"] == dataset_fingerprint}
    lines = sorted({entry["release_line"] for entry in candidates.values()})
    if len(lines) == 1:
        only = entry_key(lines[0], dataset_fingerprint)
        return only, candidates[only]
    if len(lines) > 1:
        raise MedprobeUsageError(
            f"the baseline holds several release lines for this dataset ({', '.join(lines)}) and "
            f"{model!r} is none of them; choose one with {mention_full('label')}."
        )
    return None


@dataclass(frozen=True)
class BaselineComparison:
    """A candidate pair against its baseline entry; ``verdict(name)`` judges one statistic."""

    key: str
    entry: dict[str, Any]
    candidate: dict[str, RegressionStatistic]
    paired: bool  # same test images, resample count and seed: differences taken per resample
    tolerance: float
    decision: Decision
    n_test: int = 0  # the candidate's test images (for the power statement)

    @property
    def release_line(self) -> str:
        return str(self.entry["release_line"])

    @property
    def health(self) -> float:
        """The baseline's health."""
        return float(self.entry["health"]["health"])

    def score(self, stage: str) -> float:
        """The baseline's score at ``stage`` (a probe stage, or ``answer``)."""
        if stage == stages.ANSWER:
            return float(self.entry["answer"]["score"])
        for record in self.entry["stages"]:
            if record["stage"] == stage:
                return float(record["score"])
        raise KeyError(f"the baseline has no stage {stage!r}")

    def verdict(self, name: str) -> Verdict:
        """Whether the candidate is worse than the baseline on ``name`` by more than the tolerance."""
        if name not in self.candidate:
            raise KeyError(f"{name!r} is not a regression statistic; use one of {', '.join(self.candidate)}")
        stored, current = self.entry["statistics"][name], self.candidate[name]
        sign = 1.0 if current.better == "higher" else -1.0  # worsening = sign * (baseline - candidate)
        worsening = sign * (stored["point"] - current.point)
        if self.paired:
            worsening_samples = sign * (np.asarray(stored["samples"]) - current.samples)
            low, high = percentile_interval(worsening_samples, worsening)
            how = "paired bootstrap"
        else:
            spread = 1.96 * float(np.hypot(stored["sd"], np.std(current.samples)))
            low, high = worsening - spread, worsening + spread
            how = "independent bootstraps: the test split or resampling differs from the baseline's"
        passed = decide(worsening, low, high, self.tolerance, "max", self.decision)
        comparison = "≤" if passed else ">"
        message = escape(
            f"regression of {current.title} against baseline {self.release_line!r}: baseline "
            f"{stored['point']:.3f} → candidate {current.point:.3f}, worse by {worsening:.3f} "
            f"{format_interval(low, high)[:-1]}, {how}) {comparison} tolerance {self.tolerance:.3f}"
        )
        if not passed:
            message += (
                escape(f" — the candidate lost ground at {current.segment[0]} → {current.segment[1]}. Inspect it, ")
                + f"or set {setting_ref('tolerance')} to accept it."
            )
        verdict = Verdict(
            mode=f"regression_{name}",
            title=f"regression of {current.title}",
            statistic=worsening,
            low=low,
            high=high,
            threshold=self.tolerance,
            bound="max",
            passed=passed,
            stage=current.segment[1],
            segment=current.segment,
            setting="tolerance",
            template=message,
        )
        # A regression must tell "no worse" (0) from the tolerance (metrics.md §3, "Power").
        return with_power(verdict, lambda check: self.tolerance, self.n_test)


def _describe_protocol(protocol: Mapping[str, Any]) -> str:
    if "c_grid" in protocol:
        grid = ",".join(f"{c:g}" for c in protocol["c_grid"])
        choice = f"C chosen among {grid} by {protocol['cv_folds']}-fold cross-validation"
    else:
        choice = f"C = {protocol.get('c', '?'):g}"
    return f"the {protocol.get('backend', '?')} backend, {choice}, tolerance {protocol.get('tolerance', '?'):g}"


def check_protocol(key: str, entry: Mapping[str, Any], probe: Mapping[str, Any]) -> None:
    """Refuse to compare a candidate with a baseline entry probed under another protocol.

    Scores of two protocols (backend, C or C grid, solver tolerance) differ by the protocol,
    not by the model: a gate across them would judge the probe. An entry saved before
    entries recorded their protocol is read as the default protocol of that time (the
    torch backend, C = 1, tolerance 1e-4), which the default protocol still is.
    """
    from pytest_medprobe.probes import ProbeSettings

    recorded = "probe" in entry
    stored = entry["probe"] if recorded else ProbeSettings().protocol()
    if stored == dict(probe):
        return
    read_as = "" if recorded else " (the entry records no protocol: saved by an older version, read as the defaults)"
    raise MedprobeUsageError(
        f"baseline entry {key!r} was probed with {_describe_protocol(stored)}{read_as}; this run probes with "
        f"{_describe_protocol(probe)}. Scores of two probe protocols differ by the protocol, not by the model, so "
        f"the gate cannot compare them. Gate with the baseline's probe settings ({mention('probe_backend')}, "
        f"{mention('probe_c')}, {mention('probe_c_grid')}, {mention('probe_cv_folds')}), or save a baseline of "
        f"the last release under this run's settings ({mention_full('save_baseline_path')})."
    )


def compare(
    result: PairResult,
    key: str,
    entry: dict[str, Any],
    n_bootstrap: int,
    seed: int,
    tolerance: float,
    decision: Decision,
    probe: Mapping[str, Any],
) -> BaselineComparison:
    """``result`` against its baseline ``entry``, probed with the same ``probe`` protocol (else a usage error)."""
    from pytest_medprobe.health import health_samples

    check_protocol(key, entry, probe)
    curve = result.curve
    bootstrap = {"n": n_bootstrap, "seed": seed, "n_test": result.dataset.n_test}
    return BaselineComparison(
        key=key,
        entry=entry,
        candidate=regression_statistics(curve, health_samples(curve), result.health.health),
        paired=entry.get("bootstrap") == bootstrap,
        tolerance=tolerance,
        decision=decision,
        n_test=result.dataset.n_test,
    )
