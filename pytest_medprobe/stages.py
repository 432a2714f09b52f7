"""Stage names (metrics.md §1): the one place that builds and parses them.

A stage is a point of the pipeline where we take one pooled vector per image:

``vision.{i}``        output of vision-encoder block i
``vision``            the vision feature handed to the connector
``connector``         the projector output, as the LLM receives the image tokens
``connector.{i}``     a side connector's output, fed by vision block i, that enters the
                      decoder elsewhere than its input (Qwen3-VL's deepstack mergers)
``llm.{j}``           decoder layer j at the image-token positions (image view)
``llm.{j}@answer``    decoder layer j at the answer position (answer view)

Two more names are scores but not probe stages: ``answer`` (the model's own answer)
and ``pixels`` (the raw-pixel baseline).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

StageKind = Literal["vision_block", "vision", "connector", "side_connector", "llm", "answer", "pixels"]
View = Literal["image", "answer"]

ANSWER = "answer"
PIXELS = "pixels"
VISION = "vision"
CONNECTOR = "connector"

_PATTERN = re.compile(
    r"^(?:(vision)\.(\d+)|(connector)\.(\d+)|(llm)\.(\d+)(@answer)?|(vision|connector|answer|pixels))$"
)


@dataclass(frozen=True)
class StageKey:
    """A parsed stage name."""

    kind: StageKind
    index: int | None = None  # block or layer index; for a side connector, the vision block it reads
    view: View | None = None  # decoder layers only

    @property
    def name(self) -> str:
        if self.kind == "vision_block":
            return f"vision.{self.index}"
        if self.kind == "side_connector":
            return f"connector.{self.index}"
        if self.kind == "llm":
            return f"llm.{self.index}" + ("@answer" if self.view == "answer" else "")
        return self.kind


def parse_stage(name: str) -> StageKey:
    """Parse a stage name; raise ``ValueError`` listing the valid forms when it is not one."""
    match = _PATTERN.match(name.strip())
    if match is None:
        raise ValueError(
            f"{name!r} is not a stage name; use vision.<i>, vision, connector, connector.<i>, llm.<j>, "
            "llm.<j>@answer, answer or pixels"
        )
    block, block_index, side, side_index, llm, layer_index, at_answer, plain = match.groups()
    if block:
        return StageKey("vision_block", int(block_index))
    if side:
        return StageKey("side_connector", int(side_index))
    if llm:
        return StageKey("llm", int(layer_index), "answer" if at_answer else "image")
    return StageKey(plain)  # type: ignore[arg-type]


def vision_block(index: int) -> str:
    return StageKey("vision_block", index).name


def llm_layer(index: int, view: View = "image") -> str:
    return StageKey("llm", index, view).name


def side_connector(vision_block_index: int) -> str:
    return StageKey("side_connector", vision_block_index).name


def stage_order(
    n_vision_blocks: int, n_decoder_layers: int, has_image_view: bool, side_connectors: tuple[int, ...] = ()
) -> tuple[str, ...]:
    """The ordered probe stages: vision blocks, vision, connector(s), image view, answer view.

    ``side_connectors`` are the vision blocks that side connectors read, in the order
    their outputs enter the decoder.
    """
    names = [vision_block(i) for i in range(n_vision_blocks)] + [VISION, CONNECTOR]
    names += [side_connector(i) for i in side_connectors]
    if has_image_view:
        names += [llm_layer(j, "image") for j in range(n_decoder_layers)]
    names += [llm_layer(j, "answer") for j in range(n_decoder_layers)]
    return tuple(names)
