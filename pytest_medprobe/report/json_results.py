"""The results file (``--medprobe-json``): the schema of architecture.md, one document per run."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pytest_medprobe import __version__

if TYPE_CHECKING:
    from pytest_medprobe.session import AuditSession, Pair, PairResult


def _score(curve: Any, stage: str) -> dict[str, float]:
    low, high = curve.interval(stage)
    return {"score": curve.score(stage), "low": low, "high": high}


def run_record(result: PairResult) -> dict[str, Any]:
    """One entry of ``runs``: model, dataset, curve, answer, health, verdicts, root cause."""
    dataset, source, curve = result.dataset, result.source, result.curve
    return {
        "model": {
            "name": result.pair.model,
            "family": source.family,
            "source": str(source.directory),
            "fingerprint": source.fingerprint,
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


def results_document(
    session: AuditSession, pair_errors: Mapping[Pair, str], audit_outcomes: Mapping[str, str]
) -> dict[str, Any]:
    runs: list[dict[str, Any]] = [run_record(result) for result in session.computed_results]
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
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, staging = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as stream:
            json.dump(document, stream, indent=2, allow_nan=False)
            stream.write("\n")
        os.replace(staging, path)
    finally:
        if os.path.exists(staging):
            os.unlink(staging)
