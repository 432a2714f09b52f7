"""Settings resolution: CLI > ini > default, validation with messages that name the setting."""

from __future__ import annotations

from pathlib import Path

import pytest

from pytest_medprobe import config
from pytest_medprobe.config import resolve_settings
from pytest_medprobe.errors import MedprobeUsageError


def test_defaults_follow_metrics_md() -> None:
    settings = resolve_settings({}, {}, Path("/root"))
    t = settings.thresholds
    assert (t.min_vision_gain, t.min_vision_score, t.max_connector_loss) == (0.0, None, 0.03)
    assert (t.max_layer_drop, t.max_llm_loss, t.max_semantic_gap, t.min_health) == (0.05, 0.10, 0.10, 0.6)
    assert settings.decision == "point" and settings.n_bootstrap == 1000 and settings.probe_c == 1.0
    assert settings.models == (config.DEFAULT_MODEL,) and settings.datasets == (config.DEFAULT_DATASET,)
    assert settings.cache_dir == Path("/root") / config.DEFAULT_CACHE_DIR


def test_the_command_line_wins_over_the_ini_file() -> None:
    cli = {config.MAX_CONNECTOR_LOSS.dest: "0.2"}
    ini = {config.MAX_CONNECTOR_LOSS.ini: "0.1", config.MAX_LLM_LOSS.ini: "0.3"}
    thresholds = resolve_settings(cli, ini, Path(".")).thresholds
    assert thresholds.max_connector_loss == 0.2
    assert thresholds.max_llm_loss == 0.3


def test_ini_keys_are_the_flags_with_a_medprobe_prefix() -> None:
    for setting in config.SETTINGS:
        bare = setting.flag.removeprefix("--").removeprefix("medprobe-").replace("-", "_")
        assert setting.ini == f"medprobe_{bare}"


@pytest.mark.parametrize(
    ("setting", "value", "allowed"),
    [
        (config.MAX_CONNECTOR_LOSS, "-0.1", "from 0 to 1"),
        (config.MAX_CONNECTOR_LOSS, "1.5", "from 0 to 1"),
        (config.MIN_HEALTH, "abc", "from 0 to 1"),
        (config.MIN_HEALTH, "nan", "from 0 to 1"),
        (config.BATCH_SIZE, "0", ">= 1"),
        (config.MAX_SAMPLES, "0", ">= 1"),
        (config.SEED, "-3", ">= 0"),
        (config.DEVICE, "tpu", "cuda:<index>"),
        (config.DTYPE, "int8", "bfloat16"),
        (config.DECISION, "majority", "confident-fail"),
        (config.PROBE_C, "0", "positive"),
        (config.ANSWER_MODE, "logits", "letter-logits, generate"),
        (config.PROBE_C_GRID, "0.1,zero", "positive numbers"),
        (config.PROBE_C_GRID, "0.1,-1", "positive numbers"),
        (config.PROBE_CV_FOLDS, "1", "a whole number >= 2"),
        (config.PROBE_DEVICE, "tpu", "auto, cpu, cuda or cuda:<index>"),
    ],
)
def test_a_bad_value_names_the_setting_the_value_and_what_is_allowed(
    setting: config.Setting, value: str, allowed: str
) -> None:
    with pytest.raises(MedprobeUsageError) as caught:
        resolve_settings({setting.dest: value}, {}, Path("."))
    message = str(caught.value)
    assert setting.flag in message and setting.ini in message
    assert repr(value) in message and allowed in message


def test_max_samples_none_means_no_cap() -> None:
    assert resolve_settings({config.MAX_SAMPLES.dest: "none"}, {}, Path(".")).max_samples is None
    assert resolve_settings({config.MAX_SAMPLES.dest: "40"}, {}, Path(".")).max_samples == 40


def test_repeated_models_are_kept_in_order_once() -> None:
    settings = resolve_settings({config.MODEL.dest: ["b", "a", "b"]}, {}, Path("."))
    assert settings.models == ("b", "a")


def test_an_unset_answer_mode_stays_distinguishable_from_the_letter_logits_chosen_explicitly() -> None:
    assert resolve_settings({}, {}, Path(".")).answer_mode is None
    chosen_in_ini = resolve_settings({}, {config.ANSWER_MODE.ini: "letter-logits"}, Path("."))
    assert chosen_in_ini.answer_mode == "letter-logits"
    both = resolve_settings({config.ANSWER_MODE.dest: "generate"}, {config.ANSWER_MODE.ini: "letter-logits"}, Path("."))
    assert both.answer_mode == "generate"


def test_offline_is_off_unless_the_flag_or_the_ini_key_says_so() -> None:
    assert resolve_settings({}, {}, Path(".")).offline is False
    assert resolve_settings({config.OFFLINE.dest: True}, {}, Path(".")).offline is True
    assert resolve_settings({}, {config.OFFLINE.ini: True}, Path(".")).offline is True


def test_offline_stops_medmnist_downloads_too() -> None:
    assert resolve_settings({}, {}, Path("."), environ={}).medmnist_url is not None
    assert resolve_settings({config.OFFLINE.dest: True}, {}, Path("."), environ={}).medmnist_url is None
