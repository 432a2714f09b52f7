"""Failure mode 4: misalignment of semantic mapping (metrics.md §3).

What the model holds at the answer position it must also say: the probe at the last
decoder layer's answer position and the model's own answer differ by at most
max_semantic_gap.
"""


def test_semantic_mapping(verdicts, check_verdict):
    check_verdict(verdicts.semantic_mapping)
