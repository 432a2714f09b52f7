"""The compact table that closes the terminal output: one line per model × dataset pair (``matrix_table``)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pytest_medprobe.config import MedprobeSettings


def header_lines(settings: MedprobeSettings) -> list[str]:
    """What the run audits, printed once the session knows it runs an audit."""
    lines = [
        f"medprobe: models={', '.join(settings.models)}; datasets={', '.join(settings.datasets)}; "
        f"cache={settings.cache_dir}; decision={settings.decision}"
    ]
    if settings.trust_remote_code:
        lines.append("medprobe: trust_remote_code is ON: checkpoints may run their own Python code")
    return lines


def summary_lines(
    records: Sequence[Mapping[str, Any]],
    errors: Sequence[tuple[str, str, str]] = (),
    duplicates: Mapping[str, str] | None = None,
) -> list[str]:
    """The table of the pairs' records (entries of ``runs`` in the results file), sorted by health per dataset.

    Each failure-mode statistic is shown with its verdict; pairs that errored and models
    given twice follow the table.
    """
    from pytest_medprobe.report.matrix_table import matrix_rows, terminal_lines

    lines = terminal_lines(matrix_rows(records, errors), duplicates or {})
    for model in dict.fromkeys(r["model"]["name"] for r in records if not r["has_image_view"]):
        lines.append(f"{model}: {NO_IMAGE_VIEW}")
    lines += selectivity_lines(records)
    notes = {(r["dataset"]["name"], note): None for r in records for note in r["dataset"].get("notes", ())}
    lines += [f"{dataset}: {note}" for dataset, note in notes]  # once per dataset, not per model
    return lines


def selectivity_lines(records: Sequence[Mapping[str, Any]]) -> list[str]:
    """One line per pair with stages whose control probe is far above chance (metrics.md §2)."""
    from pytest_medprobe.models.registry import model_short_name as short

    lines = []
    for r in records:
        flagged = [stage for stage in r["stages"] if stage.get("control_above_chance")]
        if flagged:
            listed = ", ".join(f"{s['stage']} ({s['control']:.3f})" for s in flagged)
            lines.append(
                f"{short(r['model']['name'])} × {r['dataset']['name']}: control probe far above chance "
                f"({r['chance']:.3f}) at {listed}: the probe memorizes permuted labels there, so scores at those "
                "stages say as much about the probe as about the model; use more fit images "
                "(metrics.md §2, Selectivity)"
            )
    return lines


NO_IMAGE_VIEW = (
    "no image view: images enter the decoder through cross-attention, not as tokens, so the "
    "curve is vision…, connector, llm.j@answer (metrics.md §1) and the LLM audits read the answer view"
)
