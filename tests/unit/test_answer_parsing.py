"""Parsing free-form answers in the generate answer mode (metrics.md §4)."""

from __future__ import annotations

import pytest

from pytest_medprobe.prompts import parse_generated_answer

CLASSES = ("round lesion", "ring lesion", "stellate lesion")
TEN_CLASSES = (*CLASSES, *(f"class {k}" for k in range(7)))  # options A..J: "I" is an option


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("B", 1),
        ("B.", 1),
        ("(B) ring lesion", 1),
        ("A A A", 0),
        ("C\nBecause the border is stellate.", 2),
        ("The answer is C.", 2),
        ("Answer: (A)", 0),
        ("ANSWER: C", 2),
        ("<think>Could be (A), but the border is spiky.</think><answer>C</answer>", 2),
        ("<think>(A)?</think>\n<answer>(B) ring lesion</answer>", 1),
        ("It looks like a ring lesion.", 1),
        ("First (A) seemed likely; on reflection (C).", 2),
    ],
)
def test_answers_that_name_an_option(text: str, expected: int) -> None:
    assert parse_generated_answer(text, CLASSES) == expected


@pytest.mark.parametrize(
    "text",
    [
        "",
        "I cannot tell from this image.",
        "D",  # not an option of three
        "round lesion or ring lesion",  # two class names: ambiguous
        "The answer is a lesion.",  # lower-case 'a' is an article, not option A
        "<answer></answer>",
    ],
)
def test_answers_that_name_no_option_are_unparseable(text: str) -> None:
    assert parse_generated_answer(text, CLASSES) == -1


def test_a_sentence_starting_with_a_capital_that_is_an_option_letter_is_not_that_option() -> None:
    assert parse_generated_answer("I think it is benign.", TEN_CLASSES) == -1
    assert parse_generated_answer("I", TEN_CLASSES) == 8
