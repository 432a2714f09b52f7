"""Feature-evolution health (metrics.md §5): one number for the whole pipeline.

Fails below min_health and names the weakest of fidelity, stability, retention and
alignment.
"""


def test_health(verdicts, check_verdict):
    check_verdict(verdicts.health)
