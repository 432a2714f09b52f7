"""Power statements (metrics.md §3, "Power"): every verdict says whether its interval can tell
a pass from a fail, in the message, the results record, the HTML and the terminal summary."""

from __future__ import annotations

import pytest

from pytest_medprobe.config import Thresholds
from pytest_medprobe.failure_modes import AuditVerdicts, evaluate
from pytest_medprobe.health import compute_health
from pytest_medprobe.power import VISION_RESOLUTION, needed_test_images
from pytest_medprobe.report.html import power_html
from pytest_medprobe.report.matrix_table import UNDERPOWERED_NOTE, matrix_rows, terminal_lines
from tests.unit.curve_factory import curve_from_levels


def _verdicts(n_per_class: int, **levels: float) -> AuditVerdicts:
    # Independent right/wrong draws per stage: the two stages of a comparison disagree
    # often, as noisy probes on a small test set do, so the paired interval is wide.
    curve = curve_from_levels(levels, n_per_class=n_per_class, independent=True, default=0.8)
    return evaluate(curve, compute_health(curve), Thresholds(), "point")


def test_a_small_test_set_makes_the_connector_verdict_underpowered_and_says_so() -> None:
    verdict = _verdicts(10).connector_fidelity
    assert verdict.half_width > verdict.distance == pytest.approx(0.03)
    assert verdict.underpowered
    assert "UNDERPOWERED" in verdict.message and f"this run has {verdict.n_test}" in verdict.message
    record = verdict.as_dict()
    assert record["underpowered"] is True and record["half_width"] == pytest.approx(verdict.half_width)
    assert record["n_test"] == 40 and record["n_test_needed"] > 40
    assert "UNDERPOWERED" in power_html(verdict)


def test_a_large_test_set_resolves_the_distances_and_the_messages_stay_short() -> None:
    verdicts = _verdicts(2000)
    for verdict in verdicts.failure_modes():
        assert not verdict.underpowered, verdict.message
        assert "UNDERPOWERED" not in verdict.message
        assert verdict.as_dict()["underpowered"] is False
        assert "resolved" in power_html(verdict)


def test_each_statistic_resolves_the_distance_metrics_md_defines() -> None:
    verdicts = _verdicts(100)
    t = Thresholds()
    assert verdicts.visual_representation.distance == VISION_RESOLUTION
    assert verdicts.connector_fidelity.distance == pytest.approx(t.max_connector_loss)
    assert verdicts.semantic_mapping.distance == pytest.approx(t.max_semantic_gap)
    assert verdicts.health.distance == pytest.approx(1 - t.min_health)
    # Every sub-check of audit 3 carries its own statement: layer drops resolve max_layer_drop.
    drops = [part for part in verdicts.llm_comprehension.parts if part.parts]
    assert drops and all(leaf.distance == pytest.approx(t.max_layer_drop) for leaf in drops[0].parts)
    assert all("underpowered" in leaf for leaf in verdicts.llm_comprehension.as_dict()["parts"])


@pytest.mark.parametrize(
    ("half_width", "distance", "n_test", "expected"), [(0.06, 0.03, 100, 400), (0.01, 0.03, 90, 10)]
)
def test_the_needed_test_size_scales_as_one_over_root_n(
    half_width: float, distance: float, n_test: int, expected: int
) -> None:
    assert needed_test_images(half_width, distance, n_test) == expected


def test_no_test_size_resolves_a_zero_distance() -> None:
    assert needed_test_images(0.05, 0.0, 100) is None
    verdict = evaluate(
        (curve := curve_from_levels({}, n_per_class=10, independent=True, default=0.8)),
        compute_health(curve),
        Thresholds(max_connector_loss=0.0, max_layer_drop=0.0),
        "point",
    ).connector_fidelity
    assert verdict.underpowered and "no test size resolves a zero distance" in verdict.message


def _record(verdicts: AuditVerdicts) -> dict[str, object]:
    health = {"health": 0.9, "low": 0.8, "high": 1.0}
    return {
        "model": {"name": "m", "family": "llava"},
        "dataset": {"name": "d", "n_fit": 40, "n_test": 40},
        "health": health,
        "failure_modes": [verdict.as_dict() for verdict in verdicts.failure_modes()],
        "root_cause": verdicts.root_cause,
        "answer": {"score": 0.8},
        "features": {"cache_hit": True},
    }


def test_the_terminal_summary_marks_underpowered_statistics_and_explains_the_mark() -> None:
    lines = terminal_lines(matrix_rows([_record(_verdicts(10))]), {})
    assert any("pass?" in line or "FAIL?" in line for line in lines[1:]), lines
    assert UNDERPOWERED_NOTE in lines
    resolved = terminal_lines(matrix_rows([_record(_verdicts(2000))]), {})
    assert UNDERPOWERED_NOTE not in resolved and not any("?" in line for line in resolved)
