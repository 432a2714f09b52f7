"""--medprobe-probe-c-grid end to end: the audits run with cross-validated C, the results file
says which C each stage's probe got, and the settings record says how probes were fit."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pytest_medprobe import config

GRID = (0.01, 1.0)


def test_a_c_grid_reaches_the_probes_and_the_results_file_names_each_chosen_c(
    shipped_audits: pytest.Pytester, fast_options: list[str]
) -> None:
    result = shipped_audits.runpytest(
        *fast_options,
        "-k",
        "test_health and not regression",
        f"{config.PROBE_C_GRID.flag}={','.join(map(str, GRID))}",
        f"{config.PROBE_CV_FOLDS.flag}=3",
        f"{config.PROBE_DEVICE.flag}=cpu",
        "--medprobe-json=r.json",
    )
    result.assert_outcomes(passed=1, deselected=11)
    document = json.loads((shipped_audits.path / "r.json").read_text())
    (run,) = document["runs"]
    chosen = [record["c"] for record in run["stages"]]
    assert len(chosen) == len(run["stages"]) > 3 and set(chosen) <= set(GRID)
    assert run["pixels"]["c"] in GRID
    probe = document["settings"]["probe"]
    assert (probe["c_grid"], probe["cv_folds"], probe["device_requested"]) == (list(GRID), 3, "cpu")
    assert probe["tolerance"] == 1e-6  # every fit under cross-validation (metrics.md §2)


def test_the_python_entry_point_takes_the_grid_and_reports_each_chosen_c(shared_cache: Path) -> None:
    import pytest_medprobe as mp

    report = mp.probe(
        "medprobe-tiny",
        dataset="synthetic-lesions",
        max_samples=120,
        n_bootstrap=50,
        cache_dir=shared_cache,
        probe_c_grid=GRID,
        probe_cv_folds=3,
        probe_device="cpu",
    )
    record = report.as_dict()
    assert {stage["stage"]: stage["c"] in GRID for stage in record["stages"]} == {
        stage["stage"]: True for stage in record["stages"]
    }
