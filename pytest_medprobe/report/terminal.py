"""The compact table that closes the terminal output: one line per model × dataset pair."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pytest_medprobe.session import PairResult

SHORT_MODES = {
    "visual_representation": "vision",
    "connector_fidelity": "connector",
    "llm_comprehension": "llm",
    "semantic_mapping": "semantic",
    "health": "health",
}


def summary_lines(results: tuple[PairResult, ...]) -> list[str]:
    rows = [["model", "dataset", "health", *SHORT_MODES.values(), "root cause", "features"]]
    for result in results:
        verdicts = {v.mode: ("pass" if v.passed else "FAIL") for v in result.verdicts.failure_modes()}
        health = result.health
        rows.append(
            [
                result.pair.model,
                result.dataset.name,
                f"{health.health:.3f} [{health.low:.3f}, {health.high:.3f}]",
                *(verdicts.get(mode, "-") for mode in SHORT_MODES),
                result.verdicts.root_cause or "none",
                "cached" if result.provenance.cache_hit else "extracted",
            ]
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return ["  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip() for row in rows]
