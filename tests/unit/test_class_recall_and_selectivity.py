"""Per-class recall and control probes (metrics.md §2): where each diagnosis is lost, and what
the probe alone can do."""

from __future__ import annotations

import numpy as np
import pytest

from pytest_medprobe.curve import CONTROL_FAR
from pytest_medprobe.probes import ProbeSettings, build_probe_curve, permuted_labels, recall_by_class
from pytest_medprobe.report.diagnoses import diagnoses_table
from pytest_medprobe.report.terminal import selectivity_lines

K = 4
STAGES = ["vision", "connector", "llm.0@answer"]


def _curve(width: int, n_fit: int = 480, controls: bool = True, seed: int = 0):  # type: ignore[no-untyped-def]
    """Features of K classes; the connector loses class 3 (its mean moved onto class 2's)."""
    rng = np.random.default_rng(seed)
    fit_y, test_y = np.arange(n_fit) % K, np.arange(240) % K
    means = rng.normal(size=(K, width))
    lossy = means.copy()
    lossy[3] = lossy[2]

    def features(table: np.ndarray, labels: np.ndarray) -> np.ndarray:
        return table[labels] + 1.0 * rng.normal(size=(len(labels), width))

    tables = {"vision": means, "connector": lossy, "llm.0@answer": lossy}
    fit = {stage: features(table, fit_y) for stage, table in tables.items()}
    test = {stage: features(table, test_y) for stage, table in tables.items()}
    answers = np.where(test_y == 1, 0, test_y)  # the model says class 0 for every class-1 image
    pixels = rng.normal(size=(n_fit, 8)), rng.normal(size=(240, 8))
    settings = ProbeSettings(n_bootstrap=100, controls=controls)
    return build_probe_curve(fit, test, fit_y, test_y, answers, *pixels, K, STAGES, False, settings)


def test_recall_by_class_is_the_share_of_each_class_predicted_as_itself_and_averages_to_balanced_accuracy() -> None:
    labels = np.array([0, 0, 1, 1, 1, 1, 2, 2])
    pred = np.array([0, 1, 1, 1, 2, -1, 2, 2])
    assert recall_by_class(pred, labels, 4) == pytest.approx([0.5, 0.5, 1.0, np.nan], nan_ok=True)


def test_the_curve_shows_which_class_is_lost_where() -> None:
    curve = _curve(width=16)
    vision, connector, answer = (curve.class_recall(s) for s in ("vision", "connector", "answer"))
    assert vision is not None and connector is not None and answer is not None
    # The connector merges classes 2 and 3: their recalls fall there, classes 0 and 1 keep theirs.
    assert min(vision) > 0.8 and connector[2] + connector[3] < 1.3 and min(connector[:2]) > 0.8
    # The answer overrides class 1 only.
    assert answer[1] == 0.0 and answer[0] == 1.0
    assert np.nanmean(connector) == pytest.approx(curve.score("connector"))
    record = curve.diagnostics_record("connector")
    assert record["class_recall"] == pytest.approx(list(connector)) and "selectivity" in record


def test_a_narrow_stage_memorizes_little_and_a_wide_one_is_flagged() -> None:
    narrow, wide = _curve(width=16), _curve(width=512)
    for curve in (narrow, wide):
        for stage in STAGES:
            control = curve.control(stage)
            assert control is not None
            assert curve.selectivity(stage) == pytest.approx(curve.score(stage) - control)
    assert not any(narrow.control_above_chance(s) for s in STAGES)
    # 512 dimensions and 480 fit images: the probe fits permuted labels almost perfectly.
    assert all(wide.control(s) > 0.9 and wide.control_above_chance(s) for s in STAGES)  # type: ignore[operator]
    assert (0.9 - 0.25) / 0.75 > CONTROL_FAR


def test_controls_are_deterministic_and_can_be_left_out() -> None:
    assert _curve(width=16).control_scores == _curve(width=16).control_scores
    assert np.array_equal(permuted_labels(np.arange(40) % 4, 0), permuted_labels(np.arange(40) % 4, 0))
    bare = _curve(width=16, controls=False)
    assert bare.control("vision") is None and "control" not in bare.diagnostics_record("vision")


def test_the_html_table_and_the_terminal_name_flagged_stages_and_escape_class_names() -> None:
    curve = _curve(width=512)
    html = diagnoses_table(curve, ["<b>nevus</b>", "melanoma", "bcc", "akiec"], "m × d")
    assert "&lt;b&gt;nevus&lt;/b&gt;" in html and "<b>nevus</b>" not in html
    assert html.count("far above chance") == len(STAGES)
    assert html.count('class="medprobe-recall"') == (len(STAGES) + 2) * K  # pixels, stages, answer
    record = {
        "model": {"name": "m"},
        "dataset": {"name": "d", "notes": []},
        "stages": curve.to_records(),
        "chance": curve.chance,
        "has_image_view": False,
        "failure_modes": [],
    }
    [line] = selectivity_lines([record])
    assert "control probe far above chance" in line and "connector" in line and "vision" in line
    assert selectivity_lines([{**record, "stages": _curve(width=16).to_records()}]) == []
