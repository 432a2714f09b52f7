"""The shipped audits end to end on the tiny LLaVA: verdicts, HTML report, results file."""

from __future__ import annotations

import base64
import json
import re
from html import unescape
from html.parser import HTMLParser
from pathlib import Path

import pytest

AUDITS_DIR = Path(__file__).resolve().parents[2] / "audits"
AUDIT_NAMES = tuple(sorted(path.stem for path in AUDITS_DIR.glob("test_*.py")))
# The failure-mode and health audits; test_regression skips without a baseline, test_subgroups
# without --medprobe-subgroup.
VERDICT_AUDITS = tuple(name for name in AUDIT_NAMES if name not in ("test_regression", "test_subgroups"))

MODES = ("visual_representation", "connector_fidelity", "llm_comprehension", "semantic_mapping", "health")


class _ReportParser(HTMLParser):
    """Collects the text of a pytest-html report's static part (its summary)."""

    def __init__(self) -> None:
        super().__init__()
        self.text: list[str] = []

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def test_every_audit_passes_on_the_default_reference_model(
    shipped_audits: pytest.Pytester, fast_options: list[str]
) -> None:
    result = shipped_audits.runpytest("-v", *fast_options)
    for name in VERDICT_AUDITS:
        result.stdout.fnmatch_lines([f"*{name}.py::{name}[[]medprobe-tiny-synthetic-lesions[]] PASSED*"])
    result.assert_outcomes(passed=5, skipped=7)  # healthy; no baseline (regression), no subgroup column
    result.stdout.fnmatch_lines(
        ["*medprobe summary*", "model*dataset*health*root cause*", "medprobe-tiny*synthetic-lesions*pass*none*"]
    )


def test_thresholds_decide_pass_and_fail_with_a_message_naming_stage_numbers_and_setting(
    shipped_audits: pytest.Pytester, fast_options: list[str]
) -> None:
    lenient = shipped_audits.runpytest(
        *fast_options,
        "--min-vision-gain=0",
        "--max-connector-loss=1",
        "--max-layer-drop=1",
        "--max-llm-loss=1",
        "--max-semantic-gap=1",
        "--min-health=0",
        "-k",
        "not regression and not visual",
    )
    lenient.assert_outcomes(passed=4, skipped=1, deselected=7)  # test_subgroups: no subgroup column
    strict = shipped_audits.runpytest(*fast_options, "--min-health=1", "-k", "test_health")
    strict.assert_outcomes(failed=1, deselected=11)
    strict.stdout.fnmatch_lines(["*health: *< min 1.000*weakest*--medprobe-min-health / ini medprobe_min_health to *"])


def test_report_and_results_file_carry_a_plot_per_audit_and_every_schema_field(
    shipped_audits: pytest.Pytester, fast_options: list[str]
) -> None:
    shipped_audits.runpytest(*fast_options, "--html=r.html", "--self-contained-html", "--medprobe-json=r.json")
    document = json.loads((shipped_audits.path / "r.json").read_text())
    assert set(document) == {"medprobe_version", "environment", "settings", "command", "runs", "audits", "matrix"}
    [run] = document["runs"]
    assert {"model", "dataset", "stages", "pixels", "answer", "health", "failure_modes", "root_cause"} <= set(run)
    assert set(run["model"]) >= {"name", "family", "source", "fingerprint"}
    assert run["model"]["family"] == "llava"
    assert set(run["dataset"]) >= {"name", "classes", "n_fit", "n_test", "fingerprint"}
    stage_names = [stage["stage"] for stage in run["stages"]]
    assert stage_names[:5] == ["vision.0", "vision.1", "vision.2", "vision", "connector"]
    assert stage_names[-1] == "llm.3@answer" and "llm.3" in stage_names
    for stage in run["stages"]:
        # Per-class recall, the control probe and selectivity; audit 2's stages also their
        # whitened probe (metrics.md §2).
        whitened = {"whitened"} if stage["stage"] in ("vision", "connector") else set()
        expected = {"stage", "score", "low", "high", "class_recall", "control", "selectivity", "control_above_chance"}
        assert set(stage) == expected | whitened
        if whitened:
            assert 0.0 <= stage["whitened"]["low"] <= stage["whitened"]["score"] <= stage["whitened"]["high"] <= 1.0
        assert 0.0 <= stage["low"] <= stage["score"] <= stage["high"] <= 1.0
    assert set(run["answer"]) == {"score", "low", "high", "mode", "class_recall"}
    assert run["answer"]["mode"] == "letter-logits"
    assert set(run["health"]) >= {"health", "fidelity", "stability", "retention", "alignment"}
    assert [mode["mode"] for mode in run["failure_modes"]] == list(MODES)
    for mode in run["failure_modes"]:
        assert {"mode", "statistic", "low", "high", "threshold", "verdict"} <= set(mode)
        assert {"half_width", "distance", "underpowered", "n_test", "n_test_needed"} <= set(mode)  # §3 Power
        assert mode["verdict"] in ("pass", "fail")
    failing = [m["mode"] for m in run["failure_modes"][:4] if m["verdict"] == "fail"]
    assert run["root_cause"] == (failing[0] if failing else None)
    assert sorted({a["nodeid"].split("::")[1].split("[")[0] for a in document["audits"]}) == sorted(AUDIT_NAMES)
    assert {a["outcome"] for a in document["audits"]} == {"passed", "skipped"}

    # pytest-html 4 renders rows in the browser from a JSON blob embedded in the page.
    html = (shipped_audits.path / "r.html").read_text()
    blob = re.search(r'data-jsonblob="([^"]*)"', html)
    assert blob is not None
    tests = json.loads(unescape(blob.group(1)))["tests"]
    assert len(tests) == 12
    for nodeid, runs in tests.items():
        if "test_regression" in nodeid or "test_subgroups" in nodeid:
            continue  # skipped: no plot
        extras = runs[-1]["extras"]
        [html_extra] = [extra for extra in extras if extra["format_type"] == "html"]
        content = html_extra["content"]
        # The plot is an SVG embedded in the page (no external file), at the row's full width.
        svg = re.search(r'src="data:image/svg\+xml;base64,([^"]+)"', content)
        assert svg is not None and b"<svg" in base64.b64decode(svg.group(1))[:400]
        assert "balanced" in content or "health" in content
    parser = _ReportParser()
    parser.feed(html)
    summary = " ".join(parser.text)
    assert "medprobe-tiny" in summary and "synthetic-lesions" in summary and "root cause" in summary


def test_junit_properties_carry_statistic_threshold_and_interval(
    shipped_audits: pytest.Pytester, fast_options: list[str]
) -> None:
    shipped_audits.runpytest(*fast_options, "--junitxml=j.xml", "-k", "connector")
    xml = (shipped_audits.path / "j.xml").read_text()
    nodeid = "test_connector_fidelity.py::test_connector_fidelity[medprobe-tiny-synthetic-lesions]"
    for name in ("statistic", "low", "high", "threshold", "verdict"):
        assert f'name="{nodeid}::medprobe_connector_fidelity_{name}"' in xml


def test_ini_thresholds_apply_and_the_command_line_overrides_them(
    pytester: pytest.Pytester, fast_options: list[str]
) -> None:
    pytester.makeini("[pytest]\nmedprobe_max_connector_loss = 0.2\nmedprobe_max_llm_loss = 0.3\n")
    pytester.makepyfile(
        """
        def test_thresholds(thresholds):
            assert thresholds.max_connector_loss == 0.25  # from the command line
            assert thresholds.max_llm_loss == 0.3         # from the ini file
            assert thresholds.max_semantic_gap == 0.10    # default
        """
    )
    result = pytester.runpytest("--max-connector-loss=0.25")
    result.assert_outcomes(passed=1)


def test_a_user_audit_failure_reads_with_stages_scores_and_intervals(
    pytester: pytest.Pytester, fast_options: list[str]
) -> None:
    pytester.makepyfile(
        """
        def test_connector_keeps_everything(probe_curve):
            assert probe_curve.loss("vision", "connector") <= -1.0
        """
    )
    result = pytester.runpytest(*fast_options)
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*assert loss vision→connector = * (95% CI *) <= -1.0*"])
