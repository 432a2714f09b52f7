"""The files a run writes at its end, from its merged outputs: baseline, results JSON, CSV table.

The results file holds one record per pair (``json_results.run_record``), the pairs that
could not be computed, every audit's outcome and the models × datasets matrix.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pytest_medprobe._version import __version__
from pytest_medprobe.files import atomic_write_text

if TYPE_CHECKING:
    from pytest_medprobe.config import MedprobeSettings
    from pytest_medprobe.report.outputs import RunOutputs


def write_files(
    outputs: RunOutputs,
    settings: MedprobeSettings,
    invocation_dir: Path,
    context: Mapping[str, Any] | None = None,
) -> list[str]:
    """Write ``--medprobe-save-baseline``, ``--medprobe-json`` (with ``context``, the run's
    environment, settings and command line) and ``--medprobe-csv``; returns lines for the terminal."""
    lines = []
    entries = outputs.baseline_entries
    if settings.save_baseline_path is not None and entries:
        from pytest_medprobe.baseline import update_baseline

        update_baseline(settings.save_baseline_path, entries)
        lines.append(f"medprobe: saved {len(entries)} baseline entries to {settings.save_baseline_path}")
    if settings.json_path is not None:
        path = settings.json_path if settings.json_path.is_absolute() else invocation_dir / settings.json_path
        write_results(path, outputs, context)
    if settings.csv_path is not None:
        from pytest_medprobe.report.matrix_table import matrix_rows, write_csv

        path = settings.csv_path if settings.csv_path.is_absolute() else invocation_dir / settings.csv_path
        write_csv(path, matrix_rows([pair.record for pair in outputs.pairs], outputs.errors))
        lines.append(f"medprobe: wrote the models × datasets table to {path}")
    return lines


def results_document(outputs: RunOutputs, context: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The document; ``context`` (``environment.run_context``) adds the environment, the
    resolved settings and the command line."""
    runs: list[dict[str, Any]] = [pair.record for pair in outputs.pairs]
    for model, dataset, message in outputs.errors:
        runs.append({"model": {"name": model}, "dataset": {"name": dataset}, "error": message})
    from pytest_medprobe.report.matrix_table import matrix_document, matrix_rows

    rows = matrix_rows([pair.record for pair in outputs.pairs], outputs.errors)
    return {
        "medprobe_version": __version__,
        **(context or {}),
        "runs": runs,
        "audits": [{"nodeid": nodeid, "outcome": outcome} for nodeid, outcome in outputs.outcomes.items()],
        "matrix": matrix_document(rows, outputs.duplicates),
    }


def write_results(path: Path, outputs: RunOutputs, context: Mapping[str, Any] | None = None) -> None:
    """Write the results file atomically (a reader never sees half a document)."""
    document = results_document(outputs, context)
    atomic_write_text(path, json.dumps(document, indent=2, allow_nan=False) + "\n")
