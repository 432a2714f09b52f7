"""End to end: a run on too few test images says, on every reader, which verdicts it cannot decide
(metrics.md §3, "Power"), and a run on enough says nothing of the kind; every run reports
per-class recall and probe selectivity (metrics.md §2)."""

from __future__ import annotations

import json

import pytest


def _leaves(record: dict[str, object]) -> list[dict[str, object]]:
    parts = record["parts"]
    assert isinstance(parts, list)
    return [record] if not parts else [leaf for part in parts for leaf in _leaves(part)]


def test_a_run_on_forty_test_images_states_underpowered_verdicts_everywhere(
    shipped_audits: pytest.Pytester, fast_options: list[str]
) -> None:
    # A semantic gap of 0.05 to resolve on 40 test images: its interval (±0.07 here) cannot.
    options = [*fast_options, "--max-samples=40", "--medprobe-max-semantic-gap=0.05"]
    options += ["--medprobe-json=r.json", "--html=r.html", "-rf"]
    result = shipped_audits.runpytest(*options)
    document = json.loads((shipped_audits.path / "r.json").read_text())
    [run] = document["runs"]
    for verdict in run["failure_modes"]:
        for check in [verdict, *_leaves(verdict)]:
            assert {"half_width", "distance", "underpowered", "n_test", "n_test_needed"} <= set(check)
            holds = check["low"] - 1e-9 <= check["threshold"] <= check["high"] + 1e-9
            assert check["underpowered"] == (holds and check["half_width"] > check["distance"] + 1e-9), check
    semantic = next(v for v in run["failure_modes"] if v["mode"] == "semantic_mapping")
    assert semantic["underpowered"] is True and semantic["n_test"] == 40, semantic
    assert "UNDERPOWERED" in semantic["message"]
    assert semantic["n_test_needed"] > 40
    html = (shipped_audits.path / "r.html").read_text(encoding="utf-8")
    assert "UNDERPOWERED" in html and "to resolve" in html
    result.stdout.fnmatch_lines(["*semantic gap*", "*+0.* pass?*", "? underpowered: *"])


def test_a_run_on_enough_test_images_resolves_the_connector_and_reports_recall_and_selectivity(
    shipped_audits: pytest.Pytester, fast_options: list[str]
) -> None:
    result = shipped_audits.runpytest(*fast_options, "--medprobe-json=r.json", "--html=r.html")
    [run] = json.loads((shipped_audits.path / "r.json").read_text())["runs"]
    assert [v["underpowered"] for v in run["failure_modes"]] == [False] * 5
    assert "UNDERPOWERED" not in result.stdout.str() and "? underpowered" not in result.stdout.str()
    # Per-class recall at every stage and for the answer; a control and selectivity per stage.
    n_classes = len(run["dataset"]["classes"])
    for record in [*run["stages"], run["answer"], run["pixels"]]:
        assert len(record["class_recall"]) == n_classes
        assert sum(record["class_recall"]) / n_classes == pytest.approx(record["score"])
    for record in run["stages"]:
        assert record["selectivity"] == pytest.approx(record["score"] - record["control"])
        # medprobe-tiny is 64 wide against 120 fit images: no stage memorizes permuted labels.
        assert record["control_above_chance"] is False, record
    html = (shipped_audits.path / "r.html").read_text(encoding="utf-8")
    assert "where each diagnosis is lost" in html and html.count('class="medprobe-recall"') >= n_classes * 3
