"""Where each diagnosis is lost: per-class recall at every stage and for the answer, with each
stage's control probe and selectivity, as an HTML heat map (metrics.md §2).

Rows are the stages in pipeline order (pixels, the probe stages, the model's answer), columns
the classes; a cell's colour is its recall, red (0) through yellow to green (1), so a finding
that the connector distorts, the decoder dilutes or the answer overrides shows as the row
where its column turns red. Strings from data (class names) are escaped.
"""

from __future__ import annotations

from collections.abc import Sequence
from html import escape
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from pytest_medprobe.curve import ProbeCurve

FLAG_STYLE = "color:#856404;background:#fff3cd;font-weight:bold"


def _recall_cell(value: float) -> str:
    if np.isnan(value):
        return '<td class="medprobe-recall" title="class absent from the test split">–</td>'
    hue = 120 * max(0.0, min(1.0, float(value)))
    return f'<td class="medprobe-recall" style="background:hsl({hue:.0f}, 70%, 78%)">{value:.2f}</td>'


def diagnoses_table(curve: ProbeCurve, class_names: Sequence[str], title: str) -> str:
    """The heat map of one pair; empty when its curve carries no per-class recall."""
    from pytest_medprobe.stages import ANSWER, PIXELS

    stages = [PIXELS, *curve.stage_names, ANSWER]
    if any(curve.class_recall(stage) is None for stage in stages):
        return ""
    head = (
        "<tr><th>stage</th><th>score</th><th>control (permuted labels, fit split)</th><th>selectivity</th>"
        + "".join(f"<th>{escape(name)}</th>" for name in class_names)
        + "</tr>"
    )
    rows = []
    for stage in stages:
        control = curve.control(stage) if stage in curve.stage_names else None
        if control is None:
            control_cells = "<td>–</td><td>–</td>"
        else:
            flagged = curve.control_above_chance(stage)
            style = f' style="{FLAG_STYLE}"' if flagged else ""
            note = "<br/>far above chance" if flagged else ""
            control_cells = f"<td{style}>{control:.3f}{note}</td><td>{curve.selectivity(stage):+.3f}</td>"
        recall = curve.class_recall(stage)
        assert recall is not None  # checked above
        rows.append(
            f"<tr><th>{escape(stage)}</th><td>{curve.score(stage):.3f}</td>{control_cells}"
            + "".join(_recall_cell(value) for value in recall)
            + "</tr>"
        )
    caption = (
        f"<caption>where each diagnosis is lost: {escape(title)} (recall of each class on the test split; "
        f"chance {curve.chance:.3f})</caption>"
    )
    return f'<table class="medprobe medprobe-diagnoses">{caption}{head}{"".join(rows)}</table>'
