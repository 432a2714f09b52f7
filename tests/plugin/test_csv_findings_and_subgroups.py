"""``--dataset=csv:…``, ``--medprobe-finding`` and ``--medprobe-subgroup`` end to end through the
shipped audits.

The CSV manifests hold synthetic-lesion PNGs from two sites (the reference model is healthy on
that distribution); the degraded manifest's south site has blurred, noisy images, a planted
subgroup gap. Both are built once per session, so their features are extracted once.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from tests.manifests import write_fake_chestmnist, write_lesion_manifest, write_manifest

VERDICT_AUDITS = ("test_connector_fidelity", "test_health", "test_llm_comprehension", "test_semantic_mapping",
                  "test_visual_representation")  # fmt: skip
NO_CAP = ("--max-samples=none",)  # every image of the manifests: 120 test images per site


@pytest.fixture(scope="session")
def lesion_manifest(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_lesion_manifest(tmp_path_factory.mktemp("clinic"))


@pytest.fixture(scope="session")
def degraded_manifest(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_lesion_manifest(tmp_path_factory.mktemp("clinic-degraded"), degraded_site="south")


@pytest.mark.slow
def test_a_csv_manifest_of_lesion_images_audits_end_to_end_and_passes(
    shipped_audits: pytest.Pytester, fast_options: list[str], lesion_manifest: Path
) -> None:
    manifest = lesion_manifest
    result = shipped_audits.runpytest(
        *fast_options, *NO_CAP, f"--dataset=csv:{manifest}", "-k", "not regression", "--medprobe-json=r.json"
    )
    result.assert_outcomes(passed=5, skipped=1, deselected=6)  # test_subgroups: no subgroup column
    for name in VERDICT_AUDITS:
        result.stdout.no_fnmatch_line(f"*{name}*FAILED*")
    [run] = json.loads((shipped_audits.path / "r.json").read_text())["runs"]
    assert run["dataset"]["name"] == f"csv:{manifest}"
    assert run["dataset"]["classes"] == ["round lesion", "ring lesion", "stellate lesion", "elongated lesion"]
    assert run["dataset"]["modality"] == "dermatoscopy"
    assert (run["dataset"]["n_fit"], run["dataset"]["n_test"]) == (240, 240)  # the CSV's own split
    assert "subgroups" not in run


@pytest.mark.slow
def test_chestmnist_is_audited_as_one_binary_dataset_per_finding(
    shipped_audits: pytest.Pytester, fast_options: list[str], tmp_path: Path
) -> None:
    write_fake_chestmnist(tmp_path / "medmnist")
    result = shipped_audits.runpytest(
        *fast_options,
        "--dataset=medmnist:chestmnist",
        f"--data-root={tmp_path / 'medmnist'}",
        "--medprobe-finding=effusion",
        "--medprobe-finding=atelectasis",
        "--max-samples=40",
        "-k",
        "health or semantic",
        "--medprobe-json=r.json",
        "-v",
    )
    for finding in ("effusion", "atelectasis"):
        result.stdout.fnmatch_lines([f"*test_health.py::test_health[[]medprobe-tiny-chestmnist-{finding}[]]*"])
    outcomes = result.parseoutcomes()
    assert outcomes.get("passed", 0) + outcomes.get("failed", 0) == 4 and "error" not in outcomes
    runs = json.loads((shipped_audits.path / "r.json").read_text())["runs"]
    names = [run["dataset"]["name"] for run in runs]
    assert names == ["medmnist:chestmnist#effusion", "medmnist:chestmnist#atelectasis"]
    assert all(run["dataset"]["classes"] == ["absent", "present"] for run in runs)
    assert len({run["dataset"]["fingerprint"] for run in runs}) == 2


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        ([], "*multi-label*--medprobe-finding=NAME*among: atelectasis, cardiomegaly, effusion*hernia*"),
        (["--medprobe-finding=lesion"], "*no finding 'lesion'; its findings are: atelectasis*hernia*"),
    ],
    ids=["no-finding", "unknown-finding"],
)
def test_a_multi_label_set_needs_a_finding_it_has(
    pytester: pytest.Pytester, tmp_path: Path, options: list[str], expected: str
) -> None:
    write_fake_chestmnist(tmp_path, n_train=8, n_test=8)
    pytester.makepyfile("def test_nothing(): pass")
    result = pytester.runpytest("--dataset=medmnist:chestmnist", f"--data-root={tmp_path}", *options)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([expected])


def test_a_csv_with_a_label_spelled_two_ways_is_a_usage_error(pytester: pytest.Pytester, tmp_path: Path) -> None:
    for name in ("a.png", "b.png"):
        (tmp_path / name).write_bytes(b"")
    rows = [("a.png", "Nevus"), ("b.png", "nevus")]
    manifest = write_manifest(tmp_path / "m.csv", ("image", "label"), rows)
    pytester.makepyfile("def test_nothing(): pass")
    result = pytester.runpytest(f"--dataset=csv:{manifest}")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*spells one class several ways: 'Nevus' (1 rows) and 'nevus' (1 rows)*"])


def _subgroup_run(pytester: pytest.Pytester, options: list[str], manifest: Path) -> pytest.RunResult:
    return pytester.runpytest(
        *options, *NO_CAP, f"--dataset=csv:{manifest}", "--medprobe-subgroup=site", "--medprobe-subgroup=sex",
        "-k", "subgroups", "--medprobe-json=r.json", "--html=r.html", "--self-contained-html",
    )  # fmt: skip


@pytest.mark.slow
def test_a_site_with_degraded_images_fails_test_subgroups_naming_the_site(
    shipped_audits: pytest.Pytester, fast_options: list[str], degraded_manifest: Path
) -> None:
    result = _subgroup_run(shipped_audits, fast_options, degraded_manifest)
    result.assert_outcomes(failed=1, deselected=11)
    result.stdout.fnmatch_lines(
        ["*subgroup gap: worst site=south (n=120) * vs overall *, * worse (95% CI *) > max 0.100*"
         "--medprobe-max-subgroup-gap / ini medprobe_max_subgroup_gap*"]
    )  # fmt: skip
    result.stdout.no_fnmatch_line("*sex=*worse*")  # both sexes come from both sites: no gap
    [run] = json.loads((shipped_audits.path / "r.json").read_text())["runs"]
    report = run["subgroups"]
    assert report["columns"] == ["site", "sex"] and report["max_gap"] == 0.1
    groups = {(group["column"], group["value"]): group for group in report["groups"]}
    assert set(groups) == {("site", "north"), ("site", "south"), ("sex", "F"), ("sex", "M")}
    south, north = groups["site", "south"], groups["site", "north"]
    assert south["n_test"] == north["n_test"] == 120
    assert south["health"]["health"] < run["health"]["health"] < north["health"]["health"]
    assert [stage["stage"] for stage in south["stages"]] == [stage["stage"] for stage in run["stages"]]
    failing = [gap for gap in south["gaps"] if gap["verdict"] == "fail"]
    assert failing and all(gap["judged"] and gap["gap"] > 0.1 for gap in failing)
    assert report["verdict"]["verdict"] == "fail" and "site=south" in report["verdict"]["message"]
    html = (shipped_audits.path / "r.html").read_text()
    table = html[html.index('<table class="medprobe medprobe-subgroups">') :]
    table = table[: table.index("</table>")]
    rows = re.findall(r"<tr><td>(.*?)</td><td>(\d+)</td>.*?<td>(pass|FAIL)[^<]*</td></tr>", table)
    assert [(label, int(n), verdict) for label, n, verdict in rows] == [
        ("site=north", 120, "pass"), ("site=south", 120, "FAIL"), ("sex=F", 120, "pass"), ("sex=M", 120, "pass"),
    ]  # fmt: skip


@pytest.mark.slow
def test_without_the_planted_gap_test_subgroups_passes(
    shipped_audits: pytest.Pytester, fast_options: list[str], lesion_manifest: Path
) -> None:
    result = _subgroup_run(shipped_audits, fast_options, lesion_manifest)
    result.assert_outcomes(passed=1, deselected=11)
    [run] = json.loads((shipped_audits.path / "r.json").read_text())["runs"]
    assert run["subgroups"]["verdict"]["verdict"] == "pass"
    assert all(gap["verdict"] == "pass" for group in run["subgroups"]["groups"] for gap in group["gaps"])


def test_test_subgroups_skips_with_a_reason_when_no_subgroup_is_configured(
    shipped_audits: pytest.Pytester, fast_options: list[str]
) -> None:
    result = shipped_audits.runpytest("-rs", *fast_options, "-k", "subgroups")
    result.assert_outcomes(skipped=1, deselected=11)
    result.stdout.fnmatch_lines(["*no subgroup configured: name a column with --medprobe-subgroup=COLUMN*"])


@pytest.mark.parametrize(
    ("column", "expected"),
    [
        ("scanner", "*--medprobe-subgroup names column 'scanner', but the columns are *'image', 'label', 'site'*"),
        ("site", "*subgroup column 'site' holds one value only ('A')*"),
    ],
    ids=["missing-column", "one-value"],
)
def test_a_subgroup_column_that_is_missing_or_has_one_value_is_a_usage_error(
    pytester: pytest.Pytester, tmp_path: Path, column: str, expected: str
) -> None:
    for name in ("a.png", "b.png"):
        (tmp_path / name).write_bytes(b"")
    manifest = write_manifest(tmp_path / "m.csv", ("image", "label", "site"), [("a.png", 0, "A"), ("b.png", 1, "A")])
    pytester.makepyfile("def test_nothing(): pass")
    result = pytester.runpytest(f"--dataset=csv:{manifest}", f"--medprobe-subgroup={column}")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([expected])
