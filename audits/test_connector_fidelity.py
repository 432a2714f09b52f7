"""Failure mode 2: fidelity loss in connector projection (metrics.md §3).

The projector must hand the LLM the signal the vision encoder produced:
score(vision) - score(connector) stays within max_connector_loss.
"""


def test_connector_fidelity(verdicts, check_verdict):
    check_verdict(verdicts.connector_fidelity)
