"""Release gating: matrix runs, baselines (save, compare, policies), CI-readable outputs."""

from __future__ import annotations

import json
import re
import shutil
import xml.etree.ElementTree as ElementTree
from html import unescape
from pathlib import Path

import numpy as np
import pytest

AUDITS_DIR = Path(__file__).resolve().parents[2] / "audits"
FAST = ["--max-samples=60", "--medprobe-bootstrap=200", "-p", "no:cacheprovider"]


def _copy_audits(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(**{path.stem: path.read_text() for path in AUDITS_DIR.glob("test_*.py")})


def _write_breastmnist(root: Path) -> None:
    rng = np.random.default_rng(1)
    arrays = {}
    for split, n in (("train", 60), ("val", 10), ("test", 40)):
        arrays[f"{split}_images"] = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        arrays[f"{split}_labels"] = (np.arange(n) % 2).reshape(n, 1).astype(np.uint8)
    np.savez(root / "breastmnist.npz", **arrays)


def test_two_models_and_two_datasets_run_every_audit_for_four_pairs_with_four_extractions(
    pytester: pytest.Pytester, tmp_path: Path
) -> None:
    _copy_audits(pytester)
    root = pytester.mkdir("medmnist")
    _write_breastmnist(root)
    result = pytester.runpytest(
        "-v",
        *FAST,
        f"--medprobe-cache={tmp_path / 'cache'}",
        "--model=medprobe-tiny",
        "--model=tiny-llava",
        "--dataset=synthetic-lesions",
        "--dataset=medmnist:breastmnist",
        f"--data-root={root}",
        "--html=r.html",
        "--self-contained-html",
        "--medprobe-json=r.json",
    )
    pairs = [
        "medprobe-tiny-synthetic-lesions",
        "medprobe-tiny-breastmnist",
        "tiny-llava-synthetic-lesions",
        "tiny-llava-breastmnist",
    ]
    for pair in pairs:
        result.stdout.fnmatch_lines([f"*::test_connector_fidelity[[]{pair}[]] *"])
    outcomes = result.parseoutcomes()
    assert outcomes.get("passed", 0) + outcomes.get("failed", 0) == 4 * 5
    assert "error" not in outcomes and "errors" not in outcomes
    document = json.loads((pytester.path / "r.json").read_text())
    runs = document["runs"]
    assert sorted((run["model"]["name"], run["dataset"]["name"]) for run in runs) == sorted(
        (model, dataset)
        for model in ("medprobe-tiny", "tiny-llava")
        for dataset in ("synthetic-lesions", "medmnist:breastmnist")
    )
    assert all(run["features"]["forward_passes"] > 0 for run in runs)  # each pair extracted ...
    assert len({run["features"]["cache_key"] for run in runs}) == 4  # ... once, into its own entry
    html = (pytester.path / "r.html").read_text()
    summary = html[html.index("<h2>medprobe</h2>") :]
    assert summary.count("<tr><td>") == 4
    assert len(re.findall(r'class="medprobe-overlay"', summary)) == 2  # one overlay per dataset
    blob = json.loads(unescape(re.search(r'data-jsonblob="([^"]*)"', html).group(1)))
    assert len(blob["tests"]) == 4 * 5 + 4 * 7  # regression (no baseline) and subgroups (no column) skip


def _gate(pytester: pytest.Pytester, cache: Path, *args: str) -> pytest.RunResult:
    return pytester.runpytest("-rs", *FAST, f"--medprobe-cache={cache}", *args)


def test_a_degraded_model_fails_the_regression_audits_and_the_release_passes_against_itself(
    pytester: pytest.Pytester, shared_cache: Path
) -> None:
    _copy_audits(pytester)
    saved = _gate(pytester, shared_cache, "--medprobe-save-baseline=base.json")
    saved.assert_outcomes(passed=5, skipped=7)
    entries = json.loads((pytester.path / "base.json").read_text())["entries"]
    [(key, entry)] = entries.items()
    assert key.startswith("medprobe-tiny|") and key.endswith("|test")
    assert entry["release_line"] == "medprobe-tiny"
    assert {"health", "connector_loss", "semantic_gap"} <= set(entry["statistics"])
    assert len(entry["statistics"]["health"]["samples"]) == 200

    same = _gate(pytester, shared_cache, "--medprobe-baseline=base.json", "-k", "regression")
    same.assert_outcomes(passed=6, deselected=6)

    degraded = _gate(
        pytester,
        shared_cache,
        "--model=medprobe-tiny:lossy-connector",
        "--medprobe-label=medprobe-tiny",
        "--medprobe-baseline=base.json",
        "--medprobe-json=gate.json",
        "-k",
        "regression",
    )
    [run] = json.loads((pytester.path / "gate.json").read_text())["runs"]
    assert run["baseline"]["release_line"] == "medprobe-tiny" and run["baseline"]["paired"] is True
    regressions = {r["mode"]: r["verdict"] for r in run["baseline"]["regressions"]}
    assert regressions["regression_connector_loss"] == "fail" and regressions["regression_visual_gain"] == "pass"
    outcomes = degraded.parseoutcomes()
    assert outcomes["failed"] >= 2
    degraded.stdout.fnmatch_lines(
        [
            "*regression of connector loss (vision − connector) against baseline 'medprobe-tiny': baseline * → "
            "candidate *, worse by * (95% CI *, paired bootstrap) > tolerance 0.020*vision → connector*"
            "--medprobe-tolerance / ini medprobe_tolerance*",
        ]
    )


def test_a_missing_baseline_entry_skips_by_default_and_fails_when_required(
    pytester: pytest.Pytester, shared_cache: Path
) -> None:
    _copy_audits(pytester)
    _gate(pytester, shared_cache, "--medprobe-save-baseline=base.json", "-k", "health")
    other_line = ["--model=tiny-llava", "--medprobe-label=other-line", "--medprobe-baseline=base.json"]
    skipped = _gate(pytester, shared_cache, *other_line, "-k", "regression")
    skipped.assert_outcomes(skipped=6, deselected=6)
    skipped.stdout.fnmatch_lines(
        ["*no baseline entry for tiny-llava × synthetic-lesions*--medprobe-baseline-required*"]
    )
    required = _gate(pytester, shared_cache, *other_line, "--medprobe-baseline-required", "-k", "regression")
    required.assert_outcomes(errors=6, deselected=6)
    required.stdout.fnmatch_lines(["*no baseline entry*--medprobe-baseline-required is set*"])


def test_a_partial_update_keeps_the_entries_of_pairs_that_did_not_run(
    pytester: pytest.Pytester, shared_cache: Path
) -> None:
    _copy_audits(pytester)
    _gate(pytester, shared_cache, "--medprobe-save-baseline=base.json", "-k", "health")
    _gate(pytester, shared_cache, "--model=tiny-llava", "--medprobe-save-baseline=base.json", "-k", "health")
    lines = {
        entry["release_line"] for entry in json.loads((pytester.path / "base.json").read_text())["entries"].values()
    }
    assert lines == {"medprobe-tiny", "tiny-llava"}
    before = json.loads((pytester.path / "base.json").read_text())["entries"]
    _gate(pytester, shared_cache, "--model=tiny-llava", "--medprobe-save-baseline=base.json", "-k", "health")
    after = json.loads((pytester.path / "base.json").read_text())["entries"]
    assert after.keys() == before.keys()
    medprobe_key = next(key for key in before if key.startswith("medprobe-tiny|"))
    assert after[medprobe_key] == before[medprobe_key]


def test_a_new_checkpoint_folder_is_compared_with_the_only_release_line_without_a_label(
    pytester: pytest.Pytester, shared_cache: Path, tiny_llava_dir: Path
) -> None:
    _copy_audits(pytester)
    candidate = shutil.copytree(tiny_llava_dir, pytester.path / "candidate-checkpoint")
    _gate(pytester, shared_cache, "--model=tiny-llava", "--medprobe-save-baseline=base.json", "-k", "health")
    result = _gate(pytester, shared_cache, f"--model={candidate}", "--medprobe-baseline=base.json", "-k", "regression")
    result.assert_outcomes(passed=6, deselected=6)  # the same weights as the saved release


def test_several_release_lines_without_a_label_is_an_error_that_asks_for_one(
    pytester: pytest.Pytester, shared_cache: Path, tiny_llava_dir: Path
) -> None:
    _copy_audits(pytester)
    _gate(pytester, shared_cache, "--medprobe-save-baseline=base.json", "-k", "health")
    _gate(pytester, shared_cache, "--model=tiny-llava", "--medprobe-save-baseline=base.json", "-k", "health")
    candidate = shutil.copytree(tiny_llava_dir, pytester.path / "candidate-checkpoint")
    result = _gate(pytester, shared_cache, f"--model={candidate}", "--medprobe-baseline=base.json", "-k", "regression")
    result.assert_outcomes(errors=6, deselected=6)
    result.stdout.fnmatch_lines(["*several release lines*medprobe-tiny, tiny-llava*--medprobe-label*"])


def test_junit_xml_carries_statistic_interval_threshold_and_verdict_of_every_audit(
    pytester: pytest.Pytester, shared_cache: Path
) -> None:
    _copy_audits(pytester)
    _gate(pytester, shared_cache, "--junitxml=j.xml")
    tree = ElementTree.parse(pytester.path / "j.xml")
    # Suite-level properties (valid under xunit2), named "<nodeid>::<property>".
    properties: dict[str, dict[str, str]] = {}
    for prop in tree.iter("property"):
        nodeid, name = prop.get("name", "").split("::medprobe_", 1)
        properties.setdefault(nodeid.split("::")[-1], {})["medprobe_" + name] = prop.get("value", "")
    assert not [case for case in tree.iter("testcase") if case.find("properties") is not None]
    connector = properties["test_connector_fidelity[medprobe-tiny-synthetic-lesions]"]
    assert float(connector["medprobe_connector_fidelity_threshold"]) == 0.03
    low, statistic, high = (float(connector[f"medprobe_connector_fidelity_{n}"]) for n in ("low", "statistic", "high"))
    assert low <= statistic <= high
    assert connector["medprobe_connector_fidelity_verdict"] == "pass"
    for mode in ("visual_representation", "llm_comprehension", "semantic_mapping", "health"):
        assert f"medprobe_{mode}_statistic" in properties[f"test_{mode}[medprobe-tiny-synthetic-lesions]"]


def test_a_baseline_probed_under_another_protocol_is_refused_not_compared(
    pytester: pytest.Pytester, shared_cache: Path
) -> None:
    """Scores of two probe protocols differ by the protocol: a gate across them would judge the probe."""
    _copy_audits(pytester)
    _gate(pytester, shared_cache, "--medprobe-save-baseline=base.json", "-k", "health")
    [entry] = json.loads((pytester.path / "base.json").read_text())["entries"].values()
    assert entry["probe"] == {"backend": "torch", "c": 1.0, "tolerance": 1e-4}
    other = _gate(
        pytester, shared_cache, "--medprobe-baseline=base.json", "--medprobe-probe-c-grid=0.1,1", "-k", "regression"
    )
    assert other.ret != pytest.ExitCode.OK
    assert "passed" not in other.parseoutcomes()
    assert "During handling" not in other.stdout.str()  # the message alone, no chained traceback
    other.stdout.fnmatch_lines(
        [
            "*baseline entry 'medprobe-tiny|*|test' was probed with the torch backend, C = 1, tolerance 0.0001; "
            "this run probes with the torch backend, C chosen among 0.1,1 by 5-fold cross-validation, tolerance 1e-06*"
            "--medprobe-probe-c-grid*--medprobe-save-baseline*",
        ]
    )


def test_an_entry_that_records_no_protocol_is_read_as_the_default_one() -> None:
    from pytest_medprobe.baseline import check_protocol
    from pytest_medprobe.errors import MedprobeUsageError
    from pytest_medprobe.probes import ProbeSettings

    legacy: dict[str, object] = {"release_line": "r1"}  # saved before entries kept their probe protocol
    check_protocol("r1|f|test", legacy, ProbeSettings().protocol())
    check_protocol("r1|f|test", legacy, ProbeSettings(c_grid=(1.0,)).protocol())  # a grid of one is that C
    with pytest.raises(MedprobeUsageError, match=r"records no protocol.*read as the defaults.*C chosen among 0\.1,1"):
        check_protocol("r1|f|test", legacy, ProbeSettings(c_grid=(0.1, 1.0)).protocol())
    with pytest.raises(MedprobeUsageError, match=r"the sklearn backend, C = 1.*the torch backend, C = 1"):
        check_protocol("r1|f|test", {"probe": ProbeSettings(backend="sklearn").protocol()}, ProbeSettings().protocol())
    grid = ProbeSettings(c_grid=(0.1, 1.0), cv_folds=3).protocol()
    check_protocol("r1|f|test", json.loads(json.dumps({"probe": grid})), grid)  # a JSON round trip keeps it equal
