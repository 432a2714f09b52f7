"""Options in --help, and bad values rejected as usage errors before anything runs."""

from __future__ import annotations

import pytest

from pytest_medprobe import config


def test_help_lists_every_option_and_ini_key_in_the_medprobe_group(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest("--help")
    result.stdout.fnmatch_lines(["*pytest-medprobe*"])
    text = result.stdout.str()
    for setting in config.SETTINGS:
        assert setting.flag in text, setting.flag
        assert setting.ini in text, setting.ini


def test_help_does_not_import_torch_transformers_or_sklearn(pytester: pytest.Pytester) -> None:
    script = (
        "import sys, pytest\n"
        "pytest.main(['--help'])\n"
        "heavy = [m for m in ('torch', 'transformers', 'sklearn') if m in sys.modules]\n"
        "print('HEAVY', heavy)\n"
    )
    result = pytester.run(sys_executable(), "-c", script)
    result.stdout.fnmatch_lines(["HEAVY []"])


def sys_executable() -> str:
    import sys

    return sys.executable


@pytest.mark.parametrize(
    ("argument", "expected"),
    [
        (
            "--max-connector-loss=-0.1",
            "*--medprobe-max-connector-loss / ini medprobe_max_connector_loss: got '-0.1'; "
            "allowed: a number from 0 to 1*",
        ),
        ("--min-health=high", "*-min-health*got 'high'*from 0 to 1*"),
        ("--batch-size=0", "*-batch-size*got '0'*>= 1*"),
        ("--max-samples=0", "*-max-samples*got '0'*>= 1*"),
        ("--medprobe-decision=vote", "*--medprobe-decision*got 'vote'*point, confident-fail, confident-pass*"),
        ("--dtype=int4", "*-dtype*got 'int4'*auto, float32, bfloat16, float16*"),
    ],
)
def test_a_bad_value_is_a_usage_error_naming_setting_value_and_allowed(
    pytester: pytest.Pytester, argument: str, expected: str
) -> None:
    result = pytester.runpytest(argument)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([expected])


def test_a_bad_ini_value_is_a_usage_error_too(pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\nmedprobe_max_semantic_gap = 2\n")
    result = pytester.runpytest()
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*medprobe_max_semantic_gap*got '2'*"])


def test_an_unknown_model_is_a_usage_error_listing_the_known_names(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest("--model=gpt-17-med")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        [
            "*--medprobe-model 'gpt-17-med': no such model name*built-in names: medprobe-tiny, *tiny-llava*"
            "huatuogpt-vision*"
        ]
    )


def test_an_unknown_dataset_is_a_usage_error_listing_the_known_names(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest("--dataset=imagenet")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    text = result.stderr.str()
    assert "imagenet" in text and "synthetic-lesions" in text and "medmnist:" in text and "folder:" in text


def test_a_directory_without_config_json_is_a_usage_error(pytester: pytest.Pytester) -> None:
    empty = pytester.mkdir("not-a-checkpoint")
    result = pytester.runpytest(f"--model={empty}")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*no config.json in*not-a-checkpoint*"])


def test_a_missing_medmnist_file_names_the_path_and_the_expected_file(pytester: pytest.Pytester) -> None:
    root = pytester.mkdir("medmnist-root")
    result = pytester.runpytest("--dataset=medmnist:breastmnist_64", f"--data-root={root}")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    text = result.stderr.str()
    assert str(root / "breastmnist_64.npz") in text
    assert "breastmnist_64.npz" in text


def test_fixtures_show_their_docstrings_in_pytest_fixtures(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest("--fixtures")
    # pytest orders fixtures by "file:line" as text; each fixture is checked with its own docstring.
    result.stdout.fnmatch_lines(["*mllm* -- *", "*The loaded model under audit*"])
    result.stdout.fnmatch_lines(["*probe_curve* -- *", "*The probe curve*"])
    result.stdout.fnmatch_lines(["*health* -- *"])
    result.stdout.fnmatch_lines(["*thresholds* -- *"])
