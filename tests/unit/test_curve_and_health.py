"""The probe curve (lookups, paired differences, rendering) and health (metrics.md §5)."""

from __future__ import annotations

import math
import pickle
import re

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pytest_medprobe.curve import Difference, ProbeCurve
from pytest_medprobe.health import COMPONENTS, compute_health
from pytest_medprobe.stages import stage_order
from tests.unit.curve_factory import curve_from_levels

LEVEL = st.floats(0.0, 1.0, allow_nan=False)


def test_scores_intervals_and_normalized_scores_follow_the_levels() -> None:
    curve = curve_from_levels({"connector": 0.7, "answer": 0.6}, pixels=0.4)
    assert curve.score("connector") == pytest.approx(0.7)
    assert (curve.score("answer"), curve.score("pixels")) == pytest.approx((0.6, 0.4))
    low, high = curve.interval("connector")
    assert low < 0.7 < high and high - low < 0.2
    assert curve.normalized("connector") == pytest.approx((0.7 - 0.25) / 0.75)
    assert curve.normalized("pixels") == pytest.approx((0.4 - 0.25) / 0.75)
    assert curve_from_levels({"vision": 0.1}).normalized("vision") == 0.0  # below chance clips to 0
    assert curve.samples("llm.1").shape == (300,)
    assert (curve.answer.score, curve.pixels.stage) == (pytest.approx(0.6), "pixels")
    assert curve.chance == 0.25


def test_views_and_the_health_curve_follow_the_model_kind() -> None:
    curve = curve_from_levels(n_vision_blocks=2, n_layers=3)
    assert curve.vision_blocks == ("vision.0", "vision.1")
    assert curve.image_view == ("llm.0", "llm.1", "llm.2")
    assert curve.answer_view == ("llm.0@answer", "llm.1@answer", "llm.2@answer")
    assert curve.last_layer_answer == "llm.2@answer"
    assert curve.health_curve_stages == ("vision", "connector", "llm.0", "llm.1", "llm.2")
    cross_attention = curve_from_levels(n_layers=3, has_image_view=False)
    assert cross_attention.image_view == ()
    assert cross_attention.health_curve_stages == cross_attention.answer_view


def test_an_unknown_or_malformed_stage_raises_a_key_error_listing_the_stages() -> None:
    curve = curve_from_levels(n_layers=2)
    with pytest.raises(KeyError, match=r"no stage 'llm\.7'.*llm\.1@answer, answer, pixels"):
        curve.score("llm.7")
    with pytest.raises(KeyError, match=r"'decoder' is not a stage name.*This curve has: vision\.0"):
        curve.interval("decoder")


def test_the_paired_difference_is_narrower_than_the_separate_intervals() -> None:
    curve = curve_from_levels({"vision": 0.85, "connector": 0.8})
    loss = curve.loss("vision", "connector")
    assert float(loss) == pytest.approx(0.05)
    widths = [high - low for low, high in map(curve.interval, ("vision", "connector"))]
    assert loss.high - loss.low < min(widths)
    assert loss.low > 0  # the separate intervals overlap; the paired one says it is a real loss
    assert curve.interval("connector")[1] > curve.interval("vision")[0]


def test_a_difference_is_a_float_whose_repr_names_stages_and_interval() -> None:
    loss = curve_from_levels({"llm.2": 0.8}).loss("connector", "llm.2")
    assert isinstance(loss, float) and (loss.a, loss.b) == ("connector", "llm.2")
    assert loss <= 0.11 and not loss <= 0.09 and loss + 1 == pytest.approx(1.1)
    assert type(loss * 2) is float
    assert re.fullmatch(r"loss connector→llm\.2 = 0\.100 \(95% CI 0\.\d{3}–0\.\d{3}\)", repr(loss))
    assert str(loss) == repr(loss) and f"{loss:.2f}" == "0.10"
    assert repr(pickle.loads(pickle.dumps(loss))) == repr(loss)
    negative = Difference(-0.02, "a", "b", -0.05, 0.01)
    assert repr(negative) == "loss a→b = -0.020 (95% CI -0.050 to 0.010)"


def test_the_curve_repr_is_a_readable_table_not_an_array_dump() -> None:
    text = repr(curve_from_levels({"connector": 0.7}, n_layers=2))
    lines = text.splitlines()
    assert lines[0].startswith("ProbeCurve: 4 classes (chance 0.250)")
    assert re.fullmatch(r"  connector +0\.700 \[0\.\d{3}, 0\.\d{3}\]", lines[5])
    assert [line.split()[0] for line in lines[1:]][:2] == ["pixels", "vision.0"]
    assert lines[-1].split()[0] == "answer" and "array" not in text


def test_records_list_every_probe_stage_in_order_with_its_interval() -> None:
    curve = curve_from_levels(n_layers=2)
    records = curve.to_records()
    assert [r["stage"] for r in records] == list(stage_order(2, 2, True))
    for record in records:
        assert set(record) == {"stage", "score", "low", "high"}
        assert record["low"] <= record["score"] <= record["high"]


def test_a_curve_refuses_inconsistent_parts() -> None:
    good = curve_from_levels(n_layers=2)
    scores = {name: good.score(name) for name in (*good.stages, "answer", "pixels")}
    samples = {name: good.samples(name) for name in scores}
    with pytest.raises(ValueError, match="has_image_view"):
        ProbeCurve(good.stages, scores, samples, 4, has_image_view=False)
    with pytest.raises(ValueError, match="lacks scores"):
        ProbeCurve(good.stages, {k: v for k, v in scores.items() if k != "answer"}, samples, 4, True)


# -- health ----------------------------------------------------------------------------


def test_a_healthy_curve_has_health_one() -> None:
    health = compute_health(curve_from_levels())
    assert health.health == pytest.approx(1.0)
    assert all(health.as_dict()[name] == pytest.approx(1.0) for name in COMPONENTS)


def test_each_component_reads_its_own_part_of_the_curve() -> None:
    # Normalized: vision 0.8, connector 0.4 (fidelity 0.5); llm.1 0.2 then back to 0.4
    # (drawdown 0.2 of peak 0.8: stability 0.75); last@answer 0.4 (retention 0.5);
    # answer 0.2 (alignment 0.5).
    def level(n: float) -> float:
        return 0.25 + 0.75 * n

    curve = curve_from_levels(
        {
            **{f"vision.{i}": level(0.8) for i in range(2)},
            "vision": level(0.8),
            "connector": level(0.4),
            "llm.0": level(0.4),
            "llm.1": level(0.2),
            "llm.2": level(0.4),
            "llm.3": level(0.4),
            "answer": level(0.2),
            **{f"llm.{j}@answer": level(0.4) for j in range(4)},
        },
        n_per_class=400,
    )
    health = compute_health(curve)
    assert health.fidelity == pytest.approx(0.5, abs=0.01)
    assert health.stability == pytest.approx(1 - (0.4 + 0.2) / 0.8, abs=0.01)  # vision→connector, llm.0→llm.1
    assert health.retention == pytest.approx(0.5, abs=0.01)
    assert health.alignment == pytest.approx(0.5, abs=0.01)
    assert health.health == pytest.approx((0.5 * 0.25 * 0.5 * 0.5) ** 0.25, abs=0.01)
    assert health.weakest == "stability" and health.segments["stability"] == ("vision", "connector")
    assert health.per_stage["vision"] == 1.0 and health.per_stage["llm.1"] == pytest.approx(0.25, abs=0.01)
    assert health.low <= health.health <= health.high


def test_a_non_decreasing_curve_has_stability_one() -> None:
    image = {"vision": 0.5, "connector": 0.5, "llm.0": 0.6, "llm.1": 0.7, "llm.2": 0.7, "llm.3": 0.8}
    assert compute_health(curve_from_levels(image)).stability == 1.0


def test_a_curve_at_chance_everywhere_has_health_zero_not_nan() -> None:
    health = compute_health(curve_from_levels(default=0.25, pixels=0.25))
    assert health.health == 0.0 and health.retention == 0.0 and health.weakest == "retention"
    assert (health.fidelity, health.stability, health.alignment) == (1.0, 1.0, 1.0)
    assert all(math.isfinite(value) for value in health.as_dict().values() if isinstance(value, float))
    assert set(health.per_stage.values()) == {0.0}


def test_nothing_to_keep_counts_as_kept() -> None:
    # A blind encoder: the connector cannot lose what vision never had (fidelity 1), and an
    # answer position at chance has nothing for the answer to say (alignment 1).
    health = compute_health(
        curve_from_levels(
            {"vision": 0.25, "connector": 0.25, "answer": 0.25, **{f"llm.{j}@answer": 0.25 for j in range(4)}}
        )
    )
    assert health.fidelity == 1.0 and health.alignment == 1.0


@settings(deadline=None, max_examples=40)
@given(
    levels=st.lists(LEVEL, min_size=13, max_size=13),
    has_image_view=st.booleans(),
    independent=st.booleans(),
)
def test_health_and_its_components_are_bounded_and_finite_for_any_curve(
    levels: list[float], has_image_view: bool, independent: bool
) -> None:
    names = (*stage_order(1, 3, has_image_view), "answer", "pixels")
    curve = curve_from_levels(
        dict(zip(names, levels)),
        n_per_class=20,
        n_vision_blocks=1,
        n_layers=3,
        has_image_view=has_image_view,
        n_bootstrap=50,
        independent=independent,
    )
    health = compute_health(curve)
    for name, value in health.as_dict().items():
        if name != "weakest":
            assert math.isfinite(value) and 0.0 <= value <= 1.0, (name, value)
    assert health.low <= health.health <= health.high
    assert all(0.0 <= value <= 1.0 for value in health.per_stage.values())
    assert health.weakest in COMPONENTS
    assert np.isclose(health.component(health.weakest), min(health.component(n) for n in COMPONENTS))
