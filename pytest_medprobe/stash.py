"""The plugin's names and its state on ``config.stash``: the marker, the pair fixture, the keys.

Shared by the plugin's hooks, its fixtures and the report hooks (``report.html``,
``report.junit``), so that none of them imports another to find the run's state.
"""

from __future__ import annotations

from contextvars import Token
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from pytest_medprobe.pairs import Pair
    from pytest_medprobe.report.outputs import RunOutputs
    from pytest_medprobe.session import AuditSession
    from pytest_medprobe.verdict import Verdict

PAIR_FIXTURE = "medprobe_pair"
MARKER = "medprobe"

SESSION_KEY: pytest.StashKey[AuditSession] = pytest.StashKey()
PAIR_ERRORS_KEY: pytest.StashKey[dict[Pair, str]] = pytest.StashKey()
AUDIT_OUTCOMES_KEY: pytest.StashKey[dict[str, str]] = pytest.StashKey()
VERDICT_KEY: pytest.StashKey[Verdict] = pytest.StashKey()
# pytest-xdist: what each worker computed (RunOutputs as JSON), the controller's collection
# order, and the merged outputs the summary prints.
WORKER_OUTPUT = "medprobe_outputs"
WORKER_NOTICES = "medprobe_notices"
NOTICES_KEY: pytest.StashKey[list[str]] = pytest.StashKey()  # the workers' notices, on the controller
WORKER_OUTPUTS_KEY: pytest.StashKey[list[str]] = pytest.StashKey()
COLLECTED_KEY: pytest.StashKey[list[str]] = pytest.StashKey()
OUTPUTS_KEY: pytest.StashKey[RunOutputs] = pytest.StashKey()
HEADER_SHOWN_KEY: pytest.StashKey[bool] = pytest.StashKey()
CONTEXT_KEY: pytest.StashKey[dict[str, Any]] = pytest.StashKey()
# Messages name settings by flag while this run lasts (naming.use_namer); undone at unconfigure.
NAMER_TOKEN_KEY: pytest.StashKey[Token[Any]] = pytest.StashKey()
