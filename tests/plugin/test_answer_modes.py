"""The generate answer mode end to end: generated, parsed, cached, and reported."""

from __future__ import annotations

import json
from pathlib import Path

import pytest


def test_generate_mode_scores_parsed_answers_like_the_letter_logits_on_the_reference_model(
    shipped_audits: pytest.Pytester, fast_options: list[str]
) -> None:
    letters = shipped_audits.runpytest(*fast_options, "--medprobe-json=letters.json")
    generated = shipped_audits.runpytest(
        *fast_options, "--medprobe-answer-mode=generate", "--medprobe-max-new-tokens=3", "--medprobe-json=gen.json"
    )
    assert letters.ret == 0 and generated.ret == 0
    by_letters = json.loads((shipped_audits.path / "letters.json").read_text())["runs"][0]["answer"]
    by_generation = json.loads((shipped_audits.path / "gen.json").read_text())["runs"][0]["answer"]
    assert by_letters["mode"] == "letter-logits"
    assert by_generation["mode"] == "generate"
    assert by_generation["unparseable"] == 0
    assert len(by_generation["examples"]) == 3
    # The trained reference model says the letter it scores highest.
    assert abs(by_generation["score"] - by_letters["score"]) <= 0.05


def test_unparseable_answers_count_as_wrong_and_the_report_shows_how_many_and_some_examples(
    shipped_audits: pytest.Pytester, tiny_llava_dir: Path, fast_options: list[str]
) -> None:
    options = [f"--model={tiny_llava_dir}", "--medprobe-answer-mode=generate", "--medprobe-max-new-tokens=4"]
    result = shipped_audits.runpytest(*fast_options, *options, "--medprobe-json=r.json", "--html=r.html")
    assert result.parseoutcomes().get("errors", 0) == 0
    answer = json.loads((shipped_audits.path / "r.json").read_text())["runs"][0]["answer"]
    assert answer["mode"] == "generate"
    assert answer["unparseable"] > 0  # a random-init model babbles
    assert 1 <= len(answer["unparseable_examples"]) <= 3
    assert answer["score"] < 0.5
    html = (shipped_audits.path / "r.html").read_text()
    assert f"{answer['unparseable']} of {answer['n']} named no option" in html
    # The generated texts are cached with the features: a second run generates nothing.
    again = shipped_audits.runpytest(*fast_options, *options, "--medprobe-json=again.json")
    run = json.loads((shipped_audits.path / "again.json").read_text())["runs"][0]
    assert run["features"]["cache_hit"] is True
    assert run["answer"] == answer
    assert again.parseoutcomes().get("errors", 0) == 0


@pytest.mark.parametrize(
    ("model", "chosen", "expected"),
    [
        ("medvlm-r1", None, "generate"),  # reasoning models of the catalogue think before answering
        ("medix-r1-2b", None, "generate"),
        ("medvlm-r1=/models/medvlm-r1", None, "generate"),  # NAME=DIR keeps the entry's preference
        ("medgemma-4b-it", None, "letter-logits"),
        ("tiny-llava", None, "letter-logits"),
        ("/models/an-unnamed-checkpoint", None, "letter-logits"),
        ("medvlm-r1", "letter-logits", "letter-logits"),  # the user's choice wins, even the default value
        ("tiny-llava", "generate", "generate"),
    ],
)
def test_each_model_is_read_in_its_preferred_answer_mode_unless_the_user_chose_one(
    model: str, chosen: str | None, expected: str, tmp_path: Path
) -> None:
    from pytest_medprobe.config import ANSWER_MODE, resolve_settings
    from pytest_medprobe.session import AuditSession

    settings = resolve_settings({ANSWER_MODE.dest: chosen}, {}, tmp_path)
    assert AuditSession(settings).answer_mode(model) == expected


@pytest.mark.slow
def test_a_reasoning_model_of_the_catalogue_is_audited_with_generated_answers_by_default(
    shipped_audits: pytest.Pytester, fast_options: list[str], tmp_path_factory: pytest.TempPathFactory
) -> None:
    from tests.families import tiny_qwen2_vl

    checkpoint = tiny_qwen2_vl.build(tmp_path_factory.mktemp("reasoning") / "medvlm-r1")
    options = [f"--model=medvlm-r1={checkpoint}", "--max-samples=40", "--medprobe-max-new-tokens=2"]
    result = shipped_audits.runpytest(*fast_options, *options, "--medprobe-json=r.json")
    assert result.parseoutcomes().get("errors", 0) == 0
    answer = json.loads((shipped_audits.path / "r.json").read_text())["runs"][0]["answer"]
    assert answer["mode"] == "generate"
    assert answer["n"] > 0 and len(answer["examples"]) >= 1
