"""The plugin as a guest in someone else's pytest: its options never collide, and a
session that runs no audit hears nothing from it."""

from __future__ import annotations

import pytest

from pytest_medprobe.config import DEVICE, MODEL, SEED, SETTINGS

# A conftest of an ML repository that owns three of our short spellings (no dest given,
# so pytest derives dests "device", "seed" and "model", as most conftests do).
OWN_OPTIONS_CONFTEST = """
def pytest_addoption(parser):
    parser.addoption("--device", default="their-default")
    parser.addoption("--seed", type=int, default=7)
    parser.addoption("--model", action="store", default="their-model")
"""

THEIR_TEST = """
def test_their_options_are_theirs(request):
    assert request.config.getoption("device") == "cuda:7"
    assert request.config.getoption("seed") == 5
    assert request.config.getoption("model") == "resnet"
"""


def test_every_setting_has_a_canonical_medprobe_flag_and_a_prefixed_dest() -> None:
    for setting in SETTINGS:
        assert setting.flag.startswith("--medprobe-"), setting
        assert setting.option_dest.startswith("medprobe_"), setting
        assert setting.ini == "medprobe_" + setting.flag.removeprefix("--medprobe-").replace("-", "_")
    assert (MODEL.short, DEVICE.short, SEED.short) == ("--model", "--device", "--seed")


def test_a_conftest_owning_device_seed_and_model_loads_and_audits_run_with_canonical_names(
    shipped_audits: pytest.Pytester, fast_options: list[str]
) -> None:
    shipped_audits.makeconftest(OWN_OPTIONS_CONFTEST)
    shipped_audits.makepyfile(test_theirs=THEIR_TEST)
    result = shipped_audits.runpytest(
        *fast_options,
        "--device=cuda:7",
        "--seed=5",
        "--model=resnet",
        f"{MODEL.flag}=medprobe-tiny",
        f"{DEVICE.flag}=cpu",
        f"{SEED.flag}=0",
        "test_theirs.py",
        "test_health.py",
        "test_connector_fidelity.py",
    )
    result.assert_outcomes(passed=3)
    result.stdout.fnmatch_lines(["medprobe: models=medprobe-tiny; *"])
    assert "already used" not in result.stdout.str() + result.stderr.str()


def test_short_spellings_still_work_where_nobody_else_owns_them(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest("--help")
    text = result.stdout.str()
    for setting in SETTINGS:
        assert setting.flag in text
        if setting.short is not None:
            assert setting.short in text, setting.short


def test_an_unrelated_session_prints_nothing_from_the_plugin(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_plain="def test_plain():\n    assert 1 + 1 == 2\n")
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)
    # pytest's own "plugins: medprobe-0.1.0, ..." line is pytest's, not ours.
    lines = result.stdout.lines + result.stderr.lines
    assert [line for line in lines if "medprobe" in line.lower() and not line.startswith("plugins:")] == []


def test_the_plugin_can_be_switched_off_with_p_no_medprobe(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_plain="def test_plain():\n    pass\n")
    result = pytester.runpytest_subprocess("-p", "no:medprobe", "--help")
    assert MODEL.flag not in result.stdout.str()
    assert pytester.runpytest_subprocess("-p", "no:medprobe").ret == 0
