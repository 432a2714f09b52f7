"""Failure mode 3: comprehension deficit in LLM reasoning (metrics.md §3).

No decoder layer may drop the image signal (image view), and the decoder must carry
it to the answer position: score(connector) - score(last layer @answer) stays within
max_llm_loss.
"""


def test_llm_comprehension(verdicts, check_verdict):
    check_verdict(verdicts.llm_comprehension)
