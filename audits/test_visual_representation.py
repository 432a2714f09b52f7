"""Failure mode 1: quality limitation in visual representation (metrics.md §3).

The vision encoder must carry more diagnostic signal than the raw pixels it starts
from; a connector and an LLM cannot recover what the encoder never encoded.
"""


def test_visual_representation(verdicts, check_verdict):
    check_verdict(verdicts.visual_representation)
