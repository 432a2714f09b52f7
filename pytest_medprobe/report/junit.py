"""JUnit XML: every audit's numbers as ``<testsuite>`` properties, valid under xunit2.

pytest's default ``junit_family`` is xunit2, whose schema allows ``<properties>`` only on
the ``<testsuite>``, not on a ``<testcase>``; per-test properties make the file invalid
for the CI tools that validate it. So each audit's verdict goes to suite-level
properties named after the test's node id, ``<nodeid>::medprobe_<mode>_<field>``, and so
does every sub-check (``<nodeid>::medprobe_<mode>[<setting>:<a>-><b>]_<field>``: each
decoder layer's drop of audit 3, both parts of audit 1 with ``min_vision_score``, ...).

Under pytest-xdist the verdict is computed on a worker; its properties travel on the
test report (an attribute xdist serializes with it) to the controller, which alone
writes the JUnit file.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pytest

    from pytest_medprobe.failure_modes import Verdict

REPORT_ATTRIBUTE = "medprobe_junit_properties"
FIELDS = ("statistic", "low", "high", "threshold")


def _fields(prefix: str, verdict: Verdict) -> list[tuple[str, str]]:
    values = [(f"{prefix}_{name}", f"{float(getattr(verdict, name)):.6g}") for name in FIELDS]
    return [*values, (f"{prefix}_verdict", "pass" if verdict.passed else "fail")]


def verdict_properties(nodeid: str, verdict: Verdict) -> list[tuple[str, str]]:
    """The suite-level properties of one audit: its headline, then every sub-check."""
    properties = _fields(f"{nodeid}::medprobe_{verdict.mode}", verdict)
    if verdict.parts:
        for leaf in verdict.leaves():
            a, b = leaf.segment
            properties += _fields(f"{nodeid}::medprobe_{verdict.mode}[{leaf.setting}:{a}->{b}]", leaf)
    return properties


class JunitProperties:
    """Registered on the process that writes ``--junitxml`` (the controller under xdist)."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        properties = getattr(report, REPORT_ATTRIBUTE, None)
        if not properties:
            return
        # pytest's JUnit writer (LogXML) is a plugin registered when --junitxml is given;
        # it is found by what it does rather than through pytest's private stash key.
        plugins = self.config.pluginmanager.get_plugins()
        writer = next((plugin for plugin in plugins if hasattr(plugin, "add_global_property")), None)
        if writer is not None:
            for name, value in properties:
                writer.add_global_property(name, value)
