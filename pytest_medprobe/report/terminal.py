"""The compact table that closes the terminal output: one line per model × dataset pair."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pytest_medprobe.config import MedprobeSettings

SHORT_MODES = {
    "visual_representation": "vision",
    "connector_fidelity": "connector",
    "llm_comprehension": "llm",
    "semantic_mapping": "semantic",
    "health": "health",
}


def header_lines(settings: MedprobeSettings) -> list[str]:
    """What the run audits, printed once the session knows it runs an audit."""
    lines = [
        f"medprobe: models={', '.join(settings.models)}; datasets={', '.join(settings.datasets)}; "
        f"cache={settings.cache_dir}; decision={settings.decision}"
    ]
    if settings.trust_remote_code:
        lines.append("medprobe: trust_remote_code is ON: checkpoints may run their own Python code")
    return lines


def summary_lines(records: Sequence[Mapping[str, Any]]) -> list[str]:
    """The table of the pairs' records (entries of ``runs`` in the results file)."""
    rows = [["model", "dataset", "health", *SHORT_MODES.values(), "root cause", "features"]]
    for record in records:
        verdicts = {v["mode"]: ("pass" if v["verdict"] == "pass" else "FAIL") for v in record["failure_modes"]}
        health = record["health"]
        rows.append(
            [
                record["model"]["name"],
                record["dataset"]["name"],
                f"{health['health']:.3f} [{health['low']:.3f}, {health['high']:.3f}]",
                *(verdicts.get(mode, "-") for mode in SHORT_MODES),
                record["root_cause"] or "none",
                "cached" if record["features"]["cache_hit"] else "extracted",
            ]
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip() for row in rows]
    for model in dict.fromkeys(r["model"]["name"] for r in records if not r["has_image_view"]):
        lines.append(f"{model}: {NO_IMAGE_VIEW}")
    notes = {(r["dataset"]["name"], note): None for r in records for note in r["dataset"].get("notes", ())}
    lines += [f"{dataset}: {note}" for dataset, note in notes]  # once per dataset, not per model
    return lines


NO_IMAGE_VIEW = (
    "no image view: images enter the decoder through cross-attention, not as tokens, so the "
    "curve is vision…, connector, llm.j@answer (metrics.md §1) and the LLM audits read the answer view"
)
