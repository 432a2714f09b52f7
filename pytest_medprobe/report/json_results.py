"""The results file (``--medprobe-json``): the schema of architecture.md, one document per run."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pytest_medprobe import __version__
from pytest_medprobe.files import atomic_write_text

if TYPE_CHECKING:
    from pytest_medprobe.baseline import BaselineComparison
    from pytest_medprobe.session import AuditSession, Pair, PairResult


def _score(curve: Any, stage: str) -> dict[str, float]:
    low, high = curve.interval(stage)
    return {"score": curve.score(stage), "low": low, "high": high}


def run_record(
    result: PairResult, comparison: BaselineComparison | None = None, trust_remote_code: bool = False
) -> dict[str, Any]:
    """One entry of ``runs``: model, dataset, curve, answer, health, verdicts, root cause."""
    dataset, source, curve = result.dataset, result.source, result.curve
    record = {
        "model": {
            "name": result.pair.model,
            "family": source.family,
            "source": str(source.directory),
            "fingerprint": source.fingerprint,
            "trust_remote_code": trust_remote_code,
        },
        "dataset": {
            "name": dataset.name,
            "classes": list(dataset.class_names),
            "modality": dataset.modality,
            "n_fit": dataset.n_fit,
            "n_test": dataset.n_test,
            "fingerprint": dataset.fingerprint,
        },
        "stages": curve.to_records(),
        "has_image_view": curve.has_image_view,
        "pixels": _score(curve, "pixels"),
        "answer": {**_score(curve, "answer"), "mode": "letter-logits"},
        "chance": curve.chance,
        "health": result.health.as_dict(),
        "failure_modes": [verdict.as_dict() for verdict in result.verdicts.failure_modes()],
        "root_cause": result.verdicts.root_cause,
        "features": {
            "cache_key": result.provenance.cache_key,
            "cache_hit": result.provenance.cache_hit,
            "forward_passes": result.provenance.forward_passes,
        },
    }
    if comparison is not None:
        from pytest_medprobe.baseline import STATISTICS

        record["baseline"] = {
            "key": comparison.key,
            "release_line": comparison.release_line,
            "paired": comparison.paired,
            "regressions": [comparison.verdict(name).as_dict() for name in STATISTICS],
        }
    return record


def results_document(
    session: AuditSession, pair_errors: Mapping[Pair, str], audit_outcomes: Mapping[str, str]
) -> dict[str, Any]:
    runs: list[dict[str, Any]] = [
        run_record(result, session.compared(result.pair), session.settings.trust_remote_code)
        for result in session.computed_results
    ]
    for pair, message in pair_errors.items():
        runs.append({"model": {"name": pair.model}, "dataset": {"name": pair.dataset}, "error": message})
    return {
        "medprobe_version": __version__,
        "runs": runs,
        "audits": [{"nodeid": nodeid, "outcome": outcome} for nodeid, outcome in audit_outcomes.items()],
    }


def write_results(
    path: Path, session: AuditSession, pair_errors: Mapping[Pair, str], audit_outcomes: Mapping[str, str]
) -> None:
    """Write the results file atomically (a reader never sees half a document)."""
    document = results_document(session, pair_errors, audit_outcomes)
    atomic_write_text(path, json.dumps(document, indent=2, allow_nan=False) + "\n")
