"""Subgroup scores and the gap verdict, from test predictions alone (no model, no probe fit)."""

from __future__ import annotations

import numpy as np
import pytest

from pytest_medprobe.config import MAX_SUBGROUP_GAP, flag_names
from pytest_medprobe.probes import bootstrap_counts, curve_from_predictions
from pytest_medprobe.subgroups import SubgroupReport, stratified_counts, subgroup_report

STAGES = ("vision", "connector", "llm.0", "llm.1", "llm.1@answer")
# Where a blind site loses the signal: in the decoder (health measures how the signal flows,
# so a site where every stage guesses alike would have a flat curve, and a health of 1).
LOST_IN_DECODER = ("llm.0", "llm.1", "llm.1@answer", "answer")
N_BOOTSTRAP = 300


def _report(labels: np.ndarray, sites: list[str], blind_site: str | None, seed: int = 0) -> SubgroupReport:
    """Every stage right on every image, except on ``blind_site``, where the decoder's stages guess."""
    rng = np.random.default_rng(seed)
    correct = labels.copy()
    guessed = rng.integers(0, 2, size=len(labels))
    blind = np.array([site == blind_site for site in sites])
    predictions = {
        name: np.where(blind, guessed, correct) if name in LOST_IN_DECODER else correct for name in (*STAGES, "answer")
    }
    predictions["pixels"] = rng.integers(0, 2, size=len(labels))
    counts = bootstrap_counts(len(labels), N_BOOTSTRAP, seed)
    reference = curve_from_predictions(predictions, labels, counts, 2, STAGES, True)
    return subgroup_report(predictions, labels, {"site": sites}, reference, N_BOOTSTRAP, seed, 0.10, "point")


def test_stratified_counts_resample_each_group_within_itself() -> None:
    groups = ["a"] * 5 + ["b"] * 3 + ["a"] * 2
    counts = stratified_counts(groups, 50, seed=0)
    assert counts.shape == (50, 10)
    members_a = np.array([g == "a" for g in groups])
    assert (counts[:, members_a].sum(axis=1) == 7).all() and (counts[:, ~members_a].sum(axis=1) == 3).all()
    assert (stratified_counts(groups, 50, seed=0) == counts).all()


def test_a_blind_site_fails_naming_it_with_every_statistic_per_subgroup() -> None:
    labels = np.tile([0, 1], 200)
    sites = ["north" if index % 4 < 2 else "south" for index in range(400)]
    report = _report(labels, sites, blind_site="south")
    south = next(group for group in report.groups if group.value == "south")
    north = next(group for group in report.groups if group.value == "north")
    assert (south.n_test, north.n_test) == (200, 200)
    assert north.curve.score("llm.1") == 1.0 and south.curve.score("llm.1") < 0.65
    assert south.health.health < 0.5 < north.health.health
    assert not report.verdict.passed and report.verdict.setting == MAX_SUBGROUP_GAP.dest
    assert report.verdict.message.startswith("subgroup gap: worst site=south (n=200) ")
    assert "> max 0.100" in report.verdict.message and "--medprobe-max-subgroup-gap" in report.verdict.render(
        flag_names
    )
    health_gap = next(gap for gap in south.gaps if gap.statistic == "health")
    assert health_gap.judged and not health_gap.passed and health_gap.low > 0.10
    assert all(gap.passed for gap in north.gaps)  # better than the average is no gap
    record = report.as_dict()
    assert [g["value"] for g in record["groups"]] == ["north", "south"] and record["verdict"]["verdict"] == "fail"


def test_sites_of_equal_quality_pass() -> None:
    labels = np.tile([0, 1], 200)
    sites = ["north" if index % 4 < 2 else "south" for index in range(400)]
    report = _report(labels, sites, blind_site=None)
    assert report.verdict.passed and report.verdict.message.endswith("passes.")


def test_a_subgroup_too_small_to_judge_is_reported_not_judged() -> None:
    labels = np.tile([0, 1], 100)
    sites = np.array(["clinic"] * 194 + ["rural"] * 6)
    predictions = {name: labels.copy() for name in (*STAGES, "answer")}
    for name in LOST_IN_DECODER:  # the decoder gets one of the six rural images wrong
        predictions[name][194] = 1 - labels[194]
    predictions["pixels"] = np.zeros(200, dtype=np.int64)
    reference = curve_from_predictions(predictions, labels, bootstrap_counts(200, N_BOOTSTRAP, 0), 2, STAGES, True)
    report = subgroup_report(predictions, labels, {"site": sites.tolist()}, reference, N_BOOTSTRAP, 0, 0.10, "point")
    rural = next(group for group in report.groups if group.value == "rural")
    uncertain = [gap for gap in rural.gaps if not gap.judged]
    assert uncertain and all(gap.high - gap.low > 0.10 and gap.low <= 0.10 <= gap.high for gap in uncertain)
    assert not rural.judged and report.verdict.passed
    assert "not judged (too few test images" in report.verdict.message and "site=rural (n=6)" in report.verdict.message


def test_a_gap_is_never_judged_on_nan() -> None:
    labels = np.tile([0, 1], 50)
    sites = ["a"] * 99 + ["b"]  # a one-image subgroup: one class, every resample the same image
    report = _report(labels, sites, blind_site=None)
    for group in report.groups:
        for gap in group.gaps:
            assert np.isfinite([gap.gap, gap.low, gap.high]).all()


@pytest.mark.parametrize("decision", ["point", "confident-fail", "confident-pass"])
def test_every_decision_rule_fails_a_clearly_blind_site(decision: str) -> None:
    labels = np.tile([0, 1], 200)
    sites = ["north" if index % 4 < 2 else "south" for index in range(400)]
    rng = np.random.default_rng(0)
    predictions = {name: labels.copy() for name in (*STAGES, "answer")}
    for name in LOST_IN_DECODER:
        predictions[name][np.array(sites) == "south"] = rng.integers(0, 2, size=200)
    predictions["pixels"] = rng.integers(0, 2, size=400)
    counts = bootstrap_counts(400, N_BOOTSTRAP, 0)
    reference = curve_from_predictions(predictions, labels, counts, 2, STAGES, True)
    report = subgroup_report(predictions, labels, {"site": sites}, reference, N_BOOTSTRAP, 0, 0.10, decision)  # type: ignore[arg-type]
    assert not report.verdict.passed
