"""The four failure modes and the health audit (metrics.md §3, §5), on constructed curves."""

from __future__ import annotations

import fnmatch
import json
from pathlib import Path

import pytest

from pytest_medprobe import config
from pytest_medprobe.config import Decision, Thresholds, flag_names, setting_names
from pytest_medprobe.failure_modes import (
    MODES,
    AuditVerdicts,
    Bound,
    connector_fidelity,
    decide,
    evaluate,
    health_verdict,
    llm_comprehension,
    semantic_mapping,
    visual_representation,
)
from pytest_medprobe.health import compute_health
from tests.unit.curve_factory import curve_from_levels

DEFAULTS = Thresholds()
IMAGE_VIEW = [f"llm.{j}" for j in range(4)]
ANSWER_VIEW = [f"llm.{j}@answer" for j in range(4)]


def _at(level: float, names: list[str]) -> dict[str, float]:
    return {name: level for name in names}


# One planted fault per failure mode; each must fail its own audit and pass the others.
FAULTY_LEVELS: dict[str, dict[str, float]] = {
    "visual_representation": _at(
        0.25, ["vision.0", "vision.1", "vision", "connector", *IMAGE_VIEW, *ANSWER_VIEW, "answer"]
    ),
    "connector_fidelity": _at(0.5, ["connector", *IMAGE_VIEW, *ANSWER_VIEW, "answer"]),
    "llm_comprehension": _at(0.3, [*ANSWER_VIEW, "answer"]),
    "semantic_mapping": {"answer": 0.3},
}
SETTINGS_OF = {
    "visual_representation": config.MIN_VISION_GAIN,
    "connector_fidelity": config.MAX_CONNECTOR_LOSS,
    "llm_comprehension": config.MAX_LLM_LOSS,
    "semantic_mapping": config.MAX_SEMANTIC_GAP,
}


def _verdicts(
    levels: dict[str, float], thresholds: Thresholds = DEFAULTS, decision: Decision = "point", **kwargs: object
) -> AuditVerdicts:
    curve = curve_from_levels(levels, **kwargs)  # type: ignore[arg-type]
    return evaluate(curve, compute_health(curve), thresholds, decision)


def test_a_healthy_curve_passes_every_audit() -> None:
    verdicts = _verdicts({})
    assert [v.passed for v in verdicts.failure_modes()] == [True] * 5
    assert verdicts.root_cause is None
    assert all(v.message.endswith("passes.") for v in verdicts.failure_modes())


@pytest.mark.parametrize("mode", MODES)
def test_each_failure_mode_fails_on_its_own_fault_and_only_there(mode: str) -> None:
    verdicts = _verdicts(FAULTY_LEVELS[mode])
    failing = [v.mode for v in verdicts.failure_modes()[:4] if not v.passed]
    assert failing == [mode]
    assert verdicts.root_cause == mode


@pytest.mark.parametrize("mode", MODES)
def test_a_failure_message_says_what_observed_versus_threshold_and_which_setting_to_change(mode: str) -> None:
    verdict = getattr(_verdicts(FAULTY_LEVELS[mode]), mode)
    assert verdict.setting == SETTINGS_OF[mode].dest
    assert setting_names(SETTINGS_OF[mode]) in verdict.render(flag_names)
    assert f"setting {SETTINGS_OF[mode].dest} to " in verdict.message  # the library names keys
    comparison = "<" if verdict.bound == "min" else ">"
    assert f"{comparison} {verdict.bound} {verdict.threshold:.3f}" in verdict.message
    assert f"{verdict.statistic:.3f} (95% CI " in verdict.message
    assert verdict.message.startswith(verdict.title + ":") or verdict.message.startswith(verdict.title + " (")


def test_connector_message_reads_like_the_style_guide() -> None:
    verdict = _verdicts({"connector": 0.8, **_at(0.8, [*IMAGE_VIEW, *ANSWER_VIEW, "answer"])}).connector_fidelity
    assert verdict.message.startswith("connector fidelity: vision 0.900 → connector 0.800, loss 0.100 (95% CI 0.")
    assert "> max 0.030 — the projector loses visual signal the encoder had." in verdict.message
    assert (verdict.stage, verdict.segment, verdict.bound) == ("connector", ("vision", "connector"), "max")


def test_a_blind_encoder_fails_visual_representation_and_health_with_zero_not_nan() -> None:
    verdicts = _verdicts(FAULTY_LEVELS["visual_representation"])
    visual = verdicts.visual_representation
    assert visual.statistic == pytest.approx(-0.25) and visual.segment == ("pixels", "vision")
    assert "(95% CI -0." in visual.message and " to -0." in visual.message
    assert not verdicts.health.passed and verdicts.health.statistic == 0.0


def test_min_vision_score_adds_a_part_that_can_fail_on_its_own() -> None:
    assert _verdicts({}).visual_representation.parts == ()
    verdict = _verdicts({}, Thresholds(min_vision_score=0.95)).visual_representation
    assert [part.setting for part in verdict.parts] == [config.MIN_VISION_GAIN.dest, config.MIN_VISION_SCORE.dest]
    assert [part.passed for part in verdict.parts] == [True, False]
    assert not verdict.passed and verdict.setting == config.MIN_VISION_SCORE.dest
    assert verdict.statistic == pytest.approx(0.9) and verdict.threshold == 0.95


def test_a_decoder_layer_drop_fails_llm_comprehension_naming_both_layers() -> None:
    verdict = _verdicts({"llm.2": 0.7, "llm.3": 0.7}).llm_comprehension
    drop, carried = verdict.parts
    assert not drop.passed and carried.passed and not verdict.passed
    assert (drop.segment, drop.stage, drop.setting) == (("llm.1", "llm.2"), "llm.2", config.MAX_LAYER_DROP.dest)
    assert "llm.1 0.900 → llm.2 0.700, drop 0.200" in drop.message
    assert verdict.setting == config.MAX_LAYER_DROP.dest and verdict.statistic == pytest.approx(0.2)


def test_the_first_decoder_layer_is_measured_against_the_connector() -> None:
    verdict = _verdicts(_at(0.8, IMAGE_VIEW)).llm_comprehension
    assert verdict.parts[0].segment == ("connector", "llm.0")
    assert verdict.parts[0].statistic == pytest.approx(0.1)


def test_when_both_llm_checks_fail_the_headline_is_the_larger_excess_and_both_are_reported() -> None:
    verdict = _verdicts({"llm.3": 0.8, **_at(0.5, ANSWER_VIEW), "answer": 0.5}).llm_comprehension
    assert not verdict.parts[0].passed and not verdict.parts[1].passed
    # layer drop 0.1 over 0.05 (excess 0.05) < LLM loss 0.4 over 0.10 (excess 0.3)
    assert verdict.setting == config.MAX_LLM_LOSS.dest and verdict.statistic == pytest.approx(0.4)
    assert setting_names(config.MAX_LAYER_DROP) in verdict.render(flag_names)
    assert setting_names(config.MAX_LLM_LOSS) in verdict.render(flag_names).splitlines()[0]


def test_when_both_llm_checks_pass_the_headline_is_the_one_closer_to_its_threshold() -> None:
    verdict = _verdicts({"llm.3": 0.86, **_at(0.86, ANSWER_VIEW), "answer": 0.86}).llm_comprehension
    assert verdict.passed  # drop 0.04 of 0.05 allowed, loss 0.04 of 0.10
    assert verdict.setting == config.MAX_LAYER_DROP.dest


def test_a_non_decreasing_curve_has_no_layer_drop() -> None:
    levels = {"vision": 0.6, "connector": 0.6, "llm.0": 0.7, "llm.1": 0.7, "llm.2": 0.8, "llm.3": 0.9}
    drop = _verdicts(levels).llm_comprehension.parts[0]
    assert drop.passed and drop.statistic <= 0.0


def test_without_an_image_view_only_falls_of_the_answer_view_count() -> None:
    rising = dict(zip(ANSWER_VIEW, (0.3, 0.5, 0.7, 0.9)))
    verdict = _verdicts(rising, has_image_view=False).llm_comprehension
    assert verdict.passed and verdict.parts[0].statistic < 0
    falling = {**rising, "llm.2@answer": 0.97}
    verdict = _verdicts(falling, has_image_view=False).llm_comprehension
    assert not verdict.passed and verdict.segment == ("llm.2@answer", "llm.3@answer")
    assert "answer position" in verdict.message


def test_semantic_mapping_compares_the_last_answer_position_with_the_answer() -> None:
    verdict = _verdicts({"answer": 0.75}).semantic_mapping
    assert not verdict.passed and verdict.statistic == pytest.approx(0.15)
    assert verdict.segment == ("llm.3@answer", "answer") and verdict.stage == "answer"
    assert "llm.3@answer 0.900 → answer 0.750, gap 0.150" in verdict.message


def test_the_health_message_names_the_weakest_component_and_the_setting() -> None:
    curve = curve_from_levels(FAULTY_LEVELS["connector_fidelity"])
    health = compute_health(curve)
    verdict = health_verdict(health, Thresholds(min_health=1.0), "point")
    assert not verdict.passed and verdict.setting == config.MIN_HEALTH.dest
    assert fnmatch.fnmatch(
        verdict.render(flag_names), f"health: *< min 1.000*weakest*{setting_names(config.MIN_HEALTH)}*"
    )
    assert f"weakest component {health.weakest} " in verdict.message
    assert verdict.segment == health.segments[health.weakest]


def test_root_cause_is_the_earliest_failing_mode_and_health_is_never_one() -> None:
    both = {**FAULTY_LEVELS["connector_fidelity"], "answer": 0.26}
    verdicts = _verdicts(both)
    assert not verdicts.connector_fidelity.passed and not verdicts.semantic_mapping.passed
    assert verdicts.root_cause == "connector_fidelity"
    # Every loss within its threshold, but together they cost more health than allowed.
    small_losses = _verdicts(_at(0.88, ["connector", *IMAGE_VIEW, *ANSWER_VIEW, "answer"]), Thresholds(min_health=0.99))
    assert [v.passed for v in small_losses.failure_modes()] == [True, True, True, True, False]
    assert small_losses.root_cause is None


@pytest.mark.parametrize(
    ("statistic", "low", "high", "threshold", "bound", "expected"),
    [
        # point / confident-fail / confident-pass
        (0.03, 0.01, 0.05, 0.03, "max", (True, True, False)),  # on the threshold: inside
        (0.04, 0.02, 0.06, 0.03, "max", (False, True, False)),
        (0.04, 0.03, 0.06, 0.03, "max", (False, True, False)),  # interval touches: not wholly past
        (0.04, 0.031, 0.06, 0.03, "max", (False, False, False)),
        (0.02, 0.00, 0.03, 0.03, "max", (True, True, True)),  # interval touches: wholly inside
        (0.02, 0.00, 0.031, 0.03, "max", (True, True, False)),
        (0.60, 0.55, 0.65, 0.60, "min", (True, True, False)),
        (0.58, 0.55, 0.60, 0.60, "min", (False, True, False)),
        (0.58, 0.55, 0.599, 0.60, "min", (False, False, False)),
        (0.62, 0.60, 0.65, 0.60, "min", (True, True, True)),
    ],
)
def test_decision_rules_at_the_boundaries(
    statistic: float, low: float, high: float, threshold: float, bound: Bound, expected: tuple[bool, bool, bool]
) -> None:
    got = tuple(decide(statistic, low, high, threshold, bound, rule) for rule in config.DECISIONS)
    assert got == expected


def test_a_statistic_equal_to_the_threshold_up_to_rounding_passes() -> None:
    assert decide(0.8 - 0.77, 0.8 - 0.77, 0.8 - 0.77, 0.03, "max", "point")  # 0.030000000000000027


def test_the_decision_rule_reaches_the_verdicts() -> None:
    curve = curve_from_levels({"connector": 0.85, **_at(0.85, [*IMAGE_VIEW, *ANSWER_VIEW, "answer"])})
    loss = curve.loss("vision", "connector")
    assert loss.low < 0.045 < 0.05 < loss.high
    strict = Thresholds(max_connector_loss=0.045)
    assert [connector_fidelity(curve, strict, rule).passed for rule in config.DECISIONS] == [False, True, False]


def test_verdicts_serialize_to_json_with_their_parts() -> None:
    verdicts = _verdicts({"llm.2": 0.7}, Thresholds(min_vision_score=0.5))
    document = [v.as_dict(flag_names) for v in verdicts.failure_modes()]
    json.dumps(document, allow_nan=False)
    assert [d["mode"] for d in document] == [*MODES, "health"]
    llm = document[2]
    assert llm["verdict"] == "fail" and llm["setting"] == config.MAX_LAYER_DROP.flag
    assert [part["setting"] for part in llm["parts"]] == [config.MAX_LAYER_DROP.flag, config.MAX_LLM_LOSS.flag]
    assert {"mode", "statistic", "low", "high", "threshold", "verdict", "stage", "bound", "setting", "message"} <= set(
        llm
    )


def test_each_audit_function_returns_its_mode() -> None:
    curve = curve_from_levels()
    for function, mode in zip((visual_representation, connector_fidelity, llm_comprehension, semantic_mapping), MODES):
        assert function(curve, DEFAULTS, "point").mode == mode


def _advised_value(message: str, setting: config.Setting) -> float:
    """The value a failure message (rendered as the plugin does) tells the user to set ``setting`` to."""
    return float(message.split(f"{setting_names(setting)} to ")[1].split()[0].rstrip(".,"))


@pytest.mark.parametrize("decision", ["point", "confident-fail", "confident-pass"])
@pytest.mark.parametrize("mode", MODES)
def test_the_advised_threshold_accepts_the_result_and_is_one_the_settings_allow(mode: str, decision: Decision) -> None:
    verdict = getattr(_verdicts(FAULTY_LEVELS[mode], decision=decision), mode)
    assert not verdict.passed
    failing = [part for part in verdict.parts or (verdict,) if not part.passed]
    overrides = {}
    for part in failing:
        setting = config.SETTINGS_BY_KEY[part.setting]
        value = _advised_value(part.render(flag_names), setting)
        overrides[setting.dest] = str(value)
        if setting is config.MAX_LAYER_DROP and value > DEFAULTS.max_llm_loss:
            assert f"and {config.MAX_LLM_LOSS.flag} to at least that" in part.render(flag_names)
            overrides[config.MAX_LLM_LOSS.dest] = str(value)
    # The advised values parse (a negative vision margin included) and make the audit pass.
    thresholds = config.resolve_settings(overrides, {}, Path(".")).thresholds
    assert getattr(_verdicts(FAULTY_LEVELS[mode], thresholds, decision), mode).passed


def test_a_negative_vision_margin_accepts_an_encoder_below_raw_pixels_by_up_to_that_much() -> None:
    levels = FAULTY_LEVELS["visual_representation"]  # the encoder 0.25 below the pixels
    assert not _verdicts(levels, Thresholds(min_vision_gain=-0.2)).visual_representation.passed
    assert _verdicts(levels, Thresholds(min_vision_gain=-0.3)).visual_representation.passed
