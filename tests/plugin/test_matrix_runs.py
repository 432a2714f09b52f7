"""Matrix runs through pytest: the plan, resuming a killed run, bad models, and the study's table.

Models are four different tiny LLaVA checkpoints (``tiny_matrix_models``); splits are
capped small so that each pair extracts in a second or two.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from pytest_medprobe.config import BATCH_SIZE, BOOTSTRAP, CACHE, CSV, DATASET, JSON, MAX_SAMPLES, MODEL
from pytest_medprobe.matrix import INJECT_OOM_ENV
from pytest_medprobe.models import loader
from pytest_medprobe.plan import PLAN_FLAG

FAST = (f"{MAX_SAMPLES.flag}=12", f"{BATCH_SIZE.flag}=8", f"{BOOTSTRAP.flag}=50", "-p", "no:cacheprovider")
FORWARD_PASSES = 4  # 12 fit + 12 test images in batches of 8
TIMEOUT_S = 300.0


def _name(model: str) -> str:
    return model.partition("=")[0]


def _models(models: list[str]) -> list[str]:
    return [f"{MODEL.flag}={model}" for model in models]


def test_the_plan_lists_models_datasets_and_pairs_then_exits_without_loading_a_model(
    pytester: pytest.Pytester, tiny_matrix_models: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_loading(*args: object, **kwargs: object) -> None:
        raise AssertionError("the plan loaded a model")

    monkeypatch.setattr(loader, "load_model", no_loading)
    cache = tmp_path / "cache"

    result = pytester.runpytest(PLAN_FLAG, f"{CACHE.flag}={cache}", *_models(tiny_matrix_models[:3]), *FAST)

    assert result.ret == 0
    result.stdout.fnmatch_lines(
        [
            f"medprobe plan: 3 models × 1 dataset = 3 pairs; 0 cached (not extracted again), 3 to extract: "
            f"{3 * FORWARD_PASSES} forward passes at {BATCH_SIZE.flag}=8",
            "  model    tiny-1=* llava, *B of weights, auto → cpu, float32",
            "  dataset  synthetic-lesions  12 fit + 12 test images",
            "  pairs * synthetic-lesions",
            f"  tiny-3=* to extract ({FORWARD_PASSES})",
        ]
    )
    assert "collected" not in result.stdout.str()  # no collection, no test
    assert not (cache / "features").exists()


def _audit_command(cache: Path, models: list[str], *extra: str) -> list[str]:
    return [sys.executable, "-m", "pytest", f"{CACHE.flag}={cache}", *_models(models), *FAST, *extra]


def _env(**extra: str) -> dict[str, str]:
    drop = ("PYTEST_ADDOPTS", "RANK", "WORLD_SIZE", "LOCAL_RANK", INJECT_OOM_ENV)
    env = {k: v for k, v in os.environ.items() if k not in drop and not k.startswith("PYTEST_XDIST")}
    return {**env, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "OMP_NUM_THREADS": "1", **extra}


def _entries(cache: Path) -> list[Path]:
    return sorted((cache / "features").glob("*/*/manifest.json"))


@pytest.mark.slow
def test_a_matrix_run_killed_after_its_first_model_resumes_without_extracting_it_again(
    pytester: pytest.Pytester, shipped_audits: pytest.Pytester, tiny_matrix_models: list[str], tmp_path: Path
) -> None:
    models, cache = tiny_matrix_models[:3], tmp_path / "cache"
    process = subprocess.Popen(
        _audit_command(cache, models),
        cwd=pytester.path,
        env=_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + TIMEOUT_S
    while not _entries(cache) and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)  # the first model's pair is written; its audits are running
    process.wait()
    [written] = _entries(cache)
    assert json.loads(written.read_text())["description"]["model"] == models[0]

    rerun = subprocess.run(
        _audit_command(cache, models, f"{JSON.flag}=r.json"),
        cwd=pytester.path,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
    )

    assert rerun.returncode in (0, 1), rerun.stdout[-3000:]
    plan = re.search(r"medprobe plan: .*", rerun.stdout)
    assert plan is not None and "1 cached (not extracted again), 2 to extract" in plan.group(0), rerun.stdout[:3000]
    assert re.search(rf"{re.escape(models[0])} +cached", rerun.stdout)
    runs = json.loads((pytester.path / "r.json").read_text())["runs"]
    assert [(run["model"]["name"], run["features"]["forward_passes"]) for run in runs] == [
        (models[0], 0),
        (models[1], FORWARD_PASSES),
        (models[2], FORWARD_PASSES),
    ]
    assert len(_entries(cache)) == 3


class _HeatMap(HTMLParser):
    """The cells of the report's heat map: (row header, data-health, text)."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[list[tuple[str | None, str]]] = []
        self.inside = False
        self.cell: list[Any] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        if tag == "table":
            self.inside = values.get("class") == "medprobe-heatmap"
        elif self.inside and tag == "tr":
            self.rows.append([])
        elif self.inside and tag in ("td", "th"):
            self.cell = [values.get("data-health"), ""]

    def handle_data(self, data: str) -> None:
        if self.cell is not None:
            self.cell[1] += data

    def handle_endtag(self, tag: str) -> None:
        if tag == "table":
            self.inside = False
        elif self.inside and tag in ("td", "th") and self.cell is not None:
            self.rows[-1].append((self.cell[0], self.cell[1]))
            self.cell = None


@pytest.mark.slow
def test_a_matrix_with_a_broken_model_an_out_of_memory_model_and_a_duplicate_reports_the_others_in_one_table(
    shipped_audits: pytest.Pytester,
    tiny_matrix_models: list[str],
    medmnist_root: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    first, second, third = tiny_matrix_models[:3]
    broken = tmp_path / "broken"
    shutil.copytree(Path(third.partition("=")[2]), broken)
    config = json.loads((broken / "config.json").read_text())
    config["vision_config"]["model_type"] = "no-such-vision-tower"  # whole files, but transformers cannot build it
    (broken / "config.json").write_text(json.dumps(config))
    duplicate = f"again={shutil.copytree(Path(first.partition('=')[2]), tmp_path / 'again')}"
    models = [first, f"broken={broken}", second, third, duplicate]
    monkeypatch.setenv(INJECT_OOM_ENV, second)  # the second model runs out of memory at its first forward pass

    result = shipped_audits.runpytest(
        "-v",
        f"{CACHE.flag}={tmp_path / 'cache'}",
        *_models(models),
        f"{DATASET.flag}=synthetic-lesions",
        f"{DATASET.flag}=medmnist:breastmnist",
        f"--data-root={medmnist_root}",
        *FAST,
        f"{JSON.flag}=r.json",
        f"{CSV.flag}=r.csv",
        "--html=r.html",
        "--self-contained-html",
    )

    output = result.stdout.str()
    assert "[again-" not in output  # the duplicate has no tests of its own ...
    result.stdout.fnmatch_lines(
        [
            "*model    again=* same content as tiny-1=*: extracted and reported once, as tiny-1=*",
            "*test_health?broken-synthetic-lesions? ERROR*",
            "*test_health?tiny-2-breastmnist? ERROR*",
            "*medprobe summary*",
            f"broken × synthetic-lesions: error: {MODEL.flag} 'broken=*': *could not load the checkpoint*",
            f"tiny-2 × medmnist:breastmnist: error: out of memory while extracting * at {BATCH_SIZE.flag}=8 *",
            "again: same content as tiny-1; extracted and reported once, as tiny-1",
        ]
    )
    outcomes = result.parseoutcomes()
    assert outcomes["errors"] == 2 * 2 * 11  # broken and tiny-2: 2 datasets × 11 audits each
    assert outcomes.get("passed", 0) + outcomes.get("failed", 0) + outcomes.get("skipped", 0) >= 2 * 2 * 11

    document = json.loads((shipped_audits.path / "r.json").read_text())
    matrix = document["matrix"]
    assert matrix["datasets"] == ["synthetic-lesions", "medmnist:breastmnist"]
    assert matrix["duplicates"] == [{"model": duplicate, "same_content_as": first, "reported_as": first}]
    cells = matrix["cells"]
    scored = [(c["dataset"], c["model"], c["rank"]) for c in cells if c["error"] is None]
    assert sorted(model for _, model, _ in scored) == sorted([first, first, third, third])
    for dataset in {c["dataset"] for c in cells}:
        ours = [c for c in cells if c["dataset"] == dataset]
        healths = [c["health"] for c in ours if c["error"] is None]
        assert healths == sorted(healths, reverse=True) and [c["rank"] for c in ours[:2]] == [1, 2]
        assert [c["error"] is not None for c in ours] == [False, False, True, True]  # errors last
        for cell in ours[:2]:
            assert cell["health_low"] <= cell["health"] <= cell["health_high"]
            assert {"connector_fidelity_statistic", "semantic_mapping_verdict", "root_cause"} <= set(cell)
    oom = next(c for c in cells if c["model"] == second and c["error"])
    assert f"{BATCH_SIZE.flag}=8" in oom["error"] and second in oom["error"]

    rows = list(csv.DictReader(io.StringIO((shipped_audits.path / "r.csv").read_text())))
    assert [(r["dataset"], r["model"]) for r in rows] == [(c["dataset"], c["model"]) for c in cells]
    assert [float(r["health"]) for r in rows if r["health"]] == [c["health"] for c in cells if c["error"] is None]

    heatmap = _HeatMap()
    heatmap.feed((shipped_audits.path / "r.html").read_text())
    header, *body = heatmap.rows
    assert [text for _, text in header][1:] == [dataset for dataset in dict.fromkeys(c["dataset"] for c in cells)]
    by_model = {row[0][1]: row[1:] for row in body}
    assert set(by_model) == {"tiny-1", "tiny-3", "broken", "tiny-2"}
    for cell in cells:
        health, text = by_model[_name(cell["model"])][matrix["datasets"].index(cell["dataset"])]
        if cell["error"] is None:
            assert float(health or "nan") == pytest.approx(cell["health"], abs=1e-6)
            assert cell["root_cause"] in text
        else:
            assert text == "error"
