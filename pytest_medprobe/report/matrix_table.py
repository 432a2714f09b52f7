"""The study's table: models × datasets, health with its interval, every failure-mode statistic, root cause.

Built from the pairs' records (entries of ``runs`` in the results file) and the pairs
that errored, so that every reader (terminal summary, JSON ``matrix`` section, CSV,
HTML heat map) shows the same rows. Within each dataset (in the order of the run's
``--dataset`` values) models sort by health, best first; a pair that errored comes last
in its dataset, with its reason.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Mapping, Sequence
from html import escape
from pathlib import Path
from typing import Any

from pytest_medprobe.files import atomic_write_text

# Per mode: the statistic, its interval, threshold and verdict, then its power statement
# (metrics.md §3, "Power"; None in records written before it).
PARTS = ("statistic", "low", "high", "threshold", "verdict")
POWER_PARTS = ("half_width", "underpowered")


def _modes() -> tuple[str, ...]:
    """The failure modes' names, in pipeline order: the registry decides the columns."""
    from pytest_medprobe.failure_modes import cause_modes

    return tuple(mode.name for mode in cause_modes())


def matrix_rows(
    records: Sequence[Mapping[str, Any]], errors: Sequence[tuple[str, str, str]] = ()
) -> list[dict[str, Any]]:
    """One flat row per pair, sorted: dataset (run order), then health (best first); errors last."""
    rows: list[dict[str, Any]] = []
    for record in records:
        health = record["health"]
        verdicts = {v["mode"]: v for v in record["failure_modes"]}
        row: dict[str, Any] = {
            "dataset": record["dataset"]["name"],
            "model": record["model"]["name"],
            "family": record["model"].get("family"),
            "health": health["health"],
            "health_low": health["low"],
            "health_high": health["high"],
            "health_verdict": verdicts["health"]["verdict"] if "health" in verdicts else None,
        }
        for mode in _modes():
            verdict = verdicts.get(mode)
            for part in PARTS:
                row[f"{mode}_{part}"] = None if verdict is None else verdict[part]
            for part in POWER_PARTS:
                row[f"{mode}_{part}"] = None if verdict is None else verdict.get(part)
        row.update(
            {
                "root_cause": record["root_cause"] or "none",
                "answer": record["answer"]["score"],
                "n_fit": record["dataset"]["n_fit"],
                "n_test": record["dataset"]["n_test"],
                "features": "cached" if record["features"]["cache_hit"] else "extracted",
                "error": None,
            }
        )
        rows.append(row)
    for model, dataset, message in errors:
        rows.append({"dataset": dataset, "model": model, "health": None, "error": message})
    datasets = list(dict.fromkeys([*(r["dataset"]["name"] for r in records), *(e[1] for e in errors)]))
    rows.sort(key=lambda row: (datasets.index(row["dataset"]), row["health"] is None, -(row["health"] or 0.0)))
    rank: dict[str, int] = {}
    for row in rows:
        if row["health"] is not None:
            rank[row["dataset"]] = rank.get(row["dataset"], 0) + 1
            row["rank"] = rank[row["dataset"]]
        else:
            row["rank"] = None
    return rows


def matrix_document(rows: Sequence[Mapping[str, Any]], duplicates: Mapping[str, str]) -> dict[str, Any]:
    """The ``matrix`` section of the results file."""
    return {
        "models": list(dict.fromkeys(row["model"] for row in rows)),
        "datasets": list(dict.fromkeys(row["dataset"] for row in rows)),
        "sorted_by": "health within each dataset, best first",
        "cells": [dict(row) for row in rows],
        "duplicates": [
            {"model": name, "same_content_as": original, "reported_as": original}
            for name, original in duplicates.items()
        ],
    }


LEADING_COLUMNS = ("dataset", "rank", "model", "family", "health", "health_low", "health_high", "health_verdict")
TRAILING_COLUMNS = ("root_cause", "answer", "n_fit", "n_test", "features", "error")


def csv_columns() -> tuple[str, ...]:
    """The CSV header: every registered failure mode's statistic, interval, threshold, verdict and power."""
    modes = _modes()
    return (*LEADING_COLUMNS, *(f"{mode}_{part}" for mode in modes for part in PARTS + POWER_PARTS), *TRAILING_COLUMNS)


def csv_text(rows: Sequence[Mapping[str, Any]]) -> str:
    """The rows as CSV, one line per pair, in the table's order (for a paper's table)."""
    stream = io.StringIO()
    columns = csv_columns()
    writer = csv.DictWriter(stream, fieldnames=columns, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({column: "" if row.get(column) is None else row.get(column) for column in columns})
    return stream.getvalue()


def write_csv(path: Path, rows: Sequence[Mapping[str, Any]]) -> None:
    atomic_write_text(path, csv_text(rows))


def terminal_lines(rows: Sequence[Mapping[str, Any]], duplicates: Mapping[str, str]) -> list[str]:
    """The summary table: one line per pair, every statistic with its verdict, sorted as the table is."""
    from pytest_medprobe.failure_modes import cause_modes
    from pytest_medprobe.models.registry import model_short_name as short

    labels = {mode.name: mode.label for mode in cause_modes()}
    header = ["model", "dataset", "#", "health [95% CI]", *labels.values(), "root cause", "features"]
    table = [header]
    notes = []
    underpowered = False
    for row in rows:
        if row["health"] is None:
            # Pair errors are stored as "model × dataset: why"; the line names the pair once, shortly.
            why = str(row["error"]).removeprefix(f"{row['model']} × {row['dataset']}: ").splitlines()[0]
            notes.append(f"{short(row['model'])} × {row['dataset']}: error: {why}")
            continue
        cells = [short(row["model"]), row["dataset"], str(row["rank"])]
        cells.append(f"{row['health']:.3f} [{row['health_low']:.3f}, {row['health_high']:.3f}]")
        for mode in labels:
            statistic, verdict = row.get(f"{mode}_statistic"), row.get(f"{mode}_verdict")
            weak = bool(row.get(f"{mode}_underpowered"))
            underpowered |= weak
            shown = f"{statistic:+.3f} {'pass' if verdict == 'pass' else 'FAIL'}{'?' if weak else ''}"
            cells.append("-" if statistic is None else shown)
        cells += [row["root_cause"], row["features"]]
        table.append(cells)
    widths = [max(len(cells[i]) for cells in table) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(cells, widths)).rstrip() for cells in table]
    lines += notes
    if underpowered:
        lines.append(UNDERPOWERED_NOTE)
    lines += [
        f"{short(name)}: same content as {short(original)}; extracted and reported once, as {short(original)}"
        for name, original in duplicates.items()
    ]
    return lines


UNDERPOWERED_NOTE = (
    "? underpowered: the statistic's 95% interval is wider than the distance its audit must resolve, "
    "so that verdict cannot tell a pass from a fail; add test images (metrics.md §3, Power)"
)


def _colour(health: float) -> str:
    """Red (0) through yellow to green (1), light enough for black text."""
    return f"hsl({120 * max(0.0, min(1.0, health)):.0f}, 70%, 78%)"


def heatmap_html(rows: Sequence[Mapping[str, Any]], duplicates: Mapping[str, str]) -> str:
    """Models × datasets: health (colour and number, with its interval) and root cause in each cell."""
    from pytest_medprobe.models.registry import model_short_name as short

    datasets = list(dict.fromkeys(row["dataset"] for row in rows))
    models = list(dict.fromkeys(row["model"] for row in rows))
    cells = {(row["model"], row["dataset"]): row for row in rows}
    head = "<tr><th>model \\ dataset</th>" + "".join(f"<th>{escape(d)}</th>" for d in datasets) + "</tr>"
    body = []
    for model in models:
        parts = [f'<tr><th title="{escape(model)}">{escape(short(model))}</th>']
        for dataset in datasets:
            row = cells.get((model, dataset))
            if row is None:
                parts.append('<td class="medprobe-cell">–</td>')
            elif row["health"] is None:
                message = escape(str(row["error"]).splitlines()[0])
                parts.append(f'<td class="medprobe-cell" data-health="" title="{message}">error</td>')
            else:
                parts.append(
                    f'<td class="medprobe-cell" data-health="{row["health"]:.6f}" '
                    f'style="background:{_colour(row["health"])}">'
                    f"<b>{row['health']:.3f}</b> [{row['health_low']:.3f}–{row['health_high']:.3f}]<br/>"
                    f"{escape(row['root_cause'])}</td>"
                )
        parts.append("</tr>")
        body.append("".join(parts))
    notes = "".join(
        f"<li>{escape(short(name))}: same content as {escape(short(original))}; extracted and reported once, "
        f"as {escape(short(original))}</li>"
        for name, original in duplicates.items()
    )
    return (
        '<h3>health by model and dataset</h3><table class="medprobe-heatmap">'
        + head
        + "".join(body)
        + "</table>"
        + (f"<ul>{notes}</ul>" if notes else "")
    )
