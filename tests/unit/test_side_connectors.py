"""Side connectors (``connector.{i}``, Qwen3-VL's deepstack mergers) in the curve, the audits and health.

A side connector reads vision block i and feeds the decoder elsewhere than the input
embeddings. It is a connector: audit 2 reads it against the block it reads, so a lossy
deepstack merger fails connector fidelity at its own stage, is named the root cause, and
leaves the visual audit upstream of it alone; the image-view chain of the LLM audit and
of health's stability (connector, llm.0, ...) is unchanged.
"""

from __future__ import annotations

import pytest

from pytest_medprobe.config import Thresholds
from pytest_medprobe.failure_modes import evaluate
from pytest_medprobe.health import compute_health
from pytest_medprobe.stages import StageKey, parse_stage, stage_order
from tests.unit.curve_factory import curve_from_levels

DEEPSTACK = (0, 1)


def test_a_side_connector_is_a_stage_named_after_the_vision_block_it_reads() -> None:
    assert parse_stage("connector.1") == StageKey("side_connector", 1)
    assert parse_stage("connector.1").name == "connector.1"
    assert stage_order(2, 2, True, DEEPSTACK) == (
        "vision.0",
        "vision.1",
        "vision",
        "connector",
        "connector.0",
        "connector.1",
        "llm.0",
        "llm.1",
        "llm.0@answer",
        "llm.1@answer",
    )


def test_the_curve_pairs_each_connector_with_what_it_reads_and_keeps_the_image_view_chain() -> None:
    curve = curve_from_levels(side_connectors=DEEPSTACK)
    assert curve.side_connectors == ("connector.0", "connector.1")
    assert curve.connector_pairs == (("vision", "connector"), ("vision.0", "connector.0"), ("vision.1", "connector.1"))
    assert curve.health_curve_stages == ("vision", "connector", "llm.0", "llm.1", "llm.2", "llm.3")


def test_a_lossy_deepstack_merger_fails_connector_fidelity_at_its_own_stage_and_is_the_root_cause() -> None:
    curve = curve_from_levels({"connector.1": 0.5}, side_connectors=DEEPSTACK)
    verdicts = evaluate(curve, compute_health(curve), Thresholds(), "point")
    assert [v.passed for v in verdicts.failure_modes()[:4]] == [True, False, True, True]
    fidelity = verdicts.connector_fidelity
    assert fidelity.stage == "connector.1" and fidelity.segment == ("vision.1", "connector.1")
    assert fidelity.statistic == pytest.approx(0.4)
    assert "vision.1 0.900 → connector.1 0.500, loss 0.400" in fidelity.message
    assert "the side connector connector.1 loses visual signal that vision.1 had" in fidelity.message
    assert verdicts.root_cause == "connector_fidelity"
    health = compute_health(curve)
    assert health.segments["fidelity"] == ("vision.1", "connector.1")
    assert health.fidelity == pytest.approx((0.5 - 0.25) / (0.9 - 0.25), abs=1e-9)


def test_a_side_connector_is_read_against_its_own_block_not_the_handed_off_feature() -> None:
    # Block 0 is weaker than the final feature; its merger keeps all of it: no loss.
    curve = curve_from_levels({"vision.0": 0.6, "connector.0": 0.6}, side_connectors=DEEPSTACK)
    verdicts = evaluate(curve, compute_health(curve), Thresholds(), "point")
    assert verdicts.connector_fidelity.passed and verdicts.root_cause is None
    assert compute_health(curve).fidelity == 1.0


def test_a_side_connector_without_its_vision_block_is_refused() -> None:
    with pytest.raises(ValueError, match="need the vision blocks they read"):
        curve_from_levels(side_connectors=(5,))
