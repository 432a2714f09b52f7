"""A failure mode registered from a conftest, and a user audit built with ``make_verdict``,
are reported like the shipped ones: terminal summary, results file, JUnit, HTML."""

from __future__ import annotations

import json
import re
from html import unescape
from pathlib import Path
from xml.etree import ElementTree

import pytest

from pytest_medprobe.failure_modes import FAILURE_MODES

CONFTEST = """
from pytest_medprobe import FailureMode, register_failure_mode
from pytest_medprobe.failure_modes import unregister_failure_mode

TOY = FailureMode(
    name="early_answer",
    title="early answer",
    label="early gap",
    setting="max_early_gap",
    bound="max",
    statistic_name="gap",
    default=1.0,
    what="the answer says less than the first decoder layer holds",
    advice="Inspect the output head",
    segments=lambda curve: [(curve.answer_view[0], "answer")],
)


def pytest_configure(config):
    register_failure_mode(TOY)


def pytest_unconfigure(config):
    unregister_failure_mode(TOY.name)
"""

AUDITS = """
from pytest_medprobe import make_verdict


def test_early_answer(verdicts, check_verdict):
    check_verdict(verdicts.early_answer)


def test_user_audit(probe_curve, check_verdict):
    layer = probe_curve.image_view[-1]
    check_verdict(
        make_verdict(
            mode="lesion_survives",
            statistic=probe_curve.loss("connector", layer),
            threshold=-1.0,
            bound="max",
            segment=("connector", layer),
            setting="max_layer_drop",
            what="the lesion fades",
            advice="Inspect the decoder",
        )
    )
"""


@pytest.fixture
def toy_run(pytester: pytest.Pytester, fast_options: list[str]) -> tuple[pytest.RunResult, Path]:
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(test_toy=AUDITS)
    result = pytester.runpytest(
        *fast_options,
        "--medprobe-json=results.json",
        "--junitxml=junit.xml",
        "--html=report.html",
        "--self-contained-html",
    )
    return result, pytester.path


def _html_tests(folder: Path) -> dict[str, list[dict[str, object]]]:
    blob = re.search(r'data-jsonblob="([^"]*)"', (folder / "report.html").read_text(encoding="utf-8"))
    assert blob is not None
    return json.loads(unescape(blob.group(1)))["tests"]  # type: ignore[no-any-return]


def test_a_registered_mode_appears_in_the_summary_the_results_file_and_the_html(
    toy_run: tuple[pytest.RunResult, Path],
) -> None:
    result, folder = toy_run
    result.assert_outcomes(passed=1, failed=1)
    assert "early_answer" not in FAILURE_MODES  # the conftest took it back
    header = next(line for line in result.outlines if line.startswith("model ") and "health [95% CI]" in line)
    assert header.index("semantic gap") < header.index("early gap") < header.index("root cause")
    [run] = json.loads((folder / "results.json").read_text())["runs"]
    modes = [verdict["mode"] for verdict in run["failure_modes"]]
    assert modes[-2:] == ["early_answer", "health"]
    toy = run["failure_modes"][-2]
    assert toy["setting"] == "max_early_gap" and toy["threshold"] == 1.0 and toy["verdict"] == "pass"
    assert toy["segment"] == ["llm.0@answer", "answer"]
    html = (folder / "report.html").read_text(encoding="utf-8")
    assert "<th>early answer</th>" in unescape(html)
    document = json.loads((folder / "results.json").read_text())
    assert "early_answer_statistic" in document["matrix"]["cells"][0]


def test_a_user_audit_gets_junit_properties_a_readable_message_and_an_html_plot_row(
    toy_run: tuple[pytest.RunResult, Path],
) -> None:
    result, folder = toy_run
    result.stdout.fnmatch_lines(
        [
            "*lesion survives: *> max -1.000 — the lesion fades. Inspect the decoder, or accept it by setting "
            "--medprobe-max-layer-drop / ini medprobe_max_layer_drop to *"
        ]
    )
    names = {
        prop.get("name", ""): prop.get("value", "") for prop in ElementTree.parse(folder / "junit.xml").iter("property")
    }
    prefix = "test_toy.py::test_user_audit[medprobe-tiny-synthetic-lesions]::medprobe_lesion_survives"
    assert {f"{prefix}_{field}" for field in ("statistic", "low", "high", "threshold", "verdict")} <= set(names)
    assert names[f"{prefix}_verdict"] == "fail" and float(names[f"{prefix}_threshold"]) == -1.0
    rows = _html_tests(folder)
    [user] = [runs for nodeid, runs in rows.items() if "test_user_audit[" in nodeid]
    extras = "".join(str(extra["content"]) for extra in user[-1]["extras"])  # type: ignore[index,union-attr]
    assert 'class="medprobe-plot"' in extras and "lesion survives" in extras
    assert "--medprobe-max-layer-drop" in extras  # the setting, named as the plugin names it
