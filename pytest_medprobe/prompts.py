"""The closed question of metrics.md §4 and the option-letter tokens its answer is read from."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pytest_medprobe.errors import DatasetError, ExtractionError

QUESTION_TEMPLATE = "What does this {modality} image show? Options: {options} Answer with the letter."
# One finding of a multi-label set (ChestMNIST's effusion, say) as a binary question.
FINDING_TEMPLATE = "Is there {finding} in this {modality} image? Options: {options} Answer with the letter."
MAX_OPTIONS = 26


def option_letters(n_classes: int) -> tuple[str, ...]:
    if not 2 <= n_classes <= MAX_OPTIONS:
        raise DatasetError(
            f"a closed question needs 2 to {MAX_OPTIONS} options (one letter per class); the "
            f"dataset has {n_classes} classes. Merge or drop classes to audit it."
        )
    return tuple(chr(ord("A") + index) for index in range(n_classes))


def closed_question(class_names: Sequence[str], modality: str, finding: str | None = None) -> str:
    """The question text, before the model's chat template wraps it.

    With ``finding``, the question asks about that finding and ``class_names`` are its
    two answers (absent, present).
    """
    letters = option_letters(len(class_names))
    options = " ".join(f"({letter}) {name}" for letter, name in zip(letters, class_names))
    if finding is not None:
        return FINDING_TEMPLATE.format(finding=finding, modality=modality, options=options)
    return QUESTION_TEMPLATE.format(modality=modality, options=options)


def chat_prompt(processor: Any, question: str) -> str:
    """The full prompt: through the processor's chat template when it has one."""
    if getattr(processor, "chat_template", None):
        messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": question}]}]
        return str(processor.apply_chat_template(messages, add_generation_prompt=True))
    image_token = getattr(processor, "image_token", None)
    if image_token is None:
        raise ExtractionError(
            "the processor has neither a chat template nor an image_token attribute, so the "
            "image cannot be placed in the prompt; save the processor with a chat template."
        )
    return f"{image_token}\n{question}\nAnswer:"


def letter_token_ids(tokenizer: Any, letters: Sequence[str]) -> list[list[int]]:
    """For each option letter, the token ids that can start it as the first answer token.

    Tokenizers spell a letter after a space and at the start of a turn differently
    ("A" vs " A"), so both are candidates; the letter's logit is the larger of them.
    """
    candidates: list[list[int]] = []
    for letter in letters:
        ids: list[int] = []
        for spelling in (letter, " " + letter):
            encoded = tokenizer.encode(spelling, add_special_tokens=False)
            if encoded and encoded[0] not in ids and tokenizer.decode(encoded[:1]).strip() == letter:
                ids.append(int(encoded[0]))
        if not ids:
            raise ExtractionError(
                f"the tokenizer has no token for the option letter {letter!r}, so the answer "
                "cannot be read from the letter logits."
            )
        candidates.append(ids)
    return candidates


def parse_generated_answer(text: str, class_names: Sequence[str]) -> int:
    """The option a free-form answer names, or -1 when it names none (counted as wrong).

    Reasoning models think first and wrap the verdict in ``<answer>…</answer>``; only
    that part is read when it exists. Inside it, in order of how explicit they are: a
    letter at the very start ("B", "(B) ring lesion", "B."), a stated answer ("the
    answer is B", "Answer: (B)"), a parenthesized letter, and finally a class name if
    exactly one is mentioned. A letter outside the options never counts.
    """
    import re

    letters = option_letters(len(class_names))
    tagged = re.findall(r"<answer>(.*?)</answer>", text, flags=re.S | re.I)
    segment = (tagged[-1] if tagged else text).strip()
    letter_class = "[" + "".join(letters) + "]"
    # Letters are matched in capitals only, and a leading letter must not start a
    # sentence: "the answer is a ring lesion" names no option A, "I think" no option I.
    patterns = (
        rf"^\(?({letter_class})(?:[).:,]|\s*$|\s+(?![a-z]))",
        rf"(?i:answer)\s*(?:(?i:is)|:)?\s*[:\-]?\s*\(?({letter_class})(?![A-Za-z])",
        rf"\(({letter_class})\)",
    )
    for pattern in patterns:
        found = re.findall(pattern, segment)
        if found:
            # The last statement wins: reasoning often names options before settling.
            return letters.index(found[-1])
    lowered = segment.lower()
    mentioned = {index for index, name in enumerate(class_names) if name.lower() in lowered}
    # "benign" inside "not benign" or two names in one sentence are ambiguous; no guess.
    return mentioned.pop() if len(mentioned) == 1 else -1
