"""Reports people and CI tools can read: the HTML report rendered in a real headless
browser (plot width, coloured verdicts, skip reasons, the environment record), and the
JUnit file validated against the xunit2 schema with every sub-check in it."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from html import unescape
from pathlib import Path

import pytest

SCHEMA = Path(__file__).with_name("xunit2.xsd")
PAIR = "medprobe-tiny-synthetic-lesions"
# Flags the project's machines need for a headless Chromium (no GPU, no sandbox, no network).
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
    "--window-size=1280,2400",
)
# Run in the page once pytest-html's own script has drawn the rows: what a reader sees.
MEASURE = """
<script>
window.addEventListener("load", () => setTimeout(() => {
  const visible = (element) => element.getBoundingClientRect().width > 0;
  const plots = [...document.querySelectorAll("img.medprobe-plot")].filter(visible);
  const cells = [...document.querySelectorAll("td.medprobe-fail")].filter(visible);
  const out = document.createElement("pre");
  out.id = "medprobe-measure";
  out.textContent = JSON.stringify({
    plot_widths: plots.map((plot) => plot.getBoundingClientRect().width),
    plots_loaded: plots.map((plot) => plot.complete && plot.naturalWidth > 0),
    fail_backgrounds: cells.map((cell) => getComputedStyle(cell).backgroundColor),
  });
  document.body.appendChild(out);
}, 1000));
</script>
"""


def _chromium() -> str:
    """The browser, or a skip (a failure under CI, whose .ci/run installs it)."""
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path is not None:
            return path
    if os.environ.get("CI") == "true":
        pytest.fail("chromium is not installed; .ci/run installs Debian's chromium package", pytrace=False)
    pytest.skip("chromium is not installed (apt-get install chromium); the report is not rendered")


def _browser(chromium: str, profile: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [chromium, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )


@pytest.fixture(scope="module")
def failing_run_reports(tmp_path_factory: pytest.TempPathFactory, shared_cache: Path) -> tuple[Path, Path, Path]:
    """One run of the shipped audits with a failing health audit: HTML, JSON and JUnit files."""
    from tests.plugin.conftest import AUDITS_DIR

    folder = tmp_path_factory.mktemp("reports")
    for path in AUDITS_DIR.glob("test_*.py"):
        shutil.copy(path, folder / path.name)
    (folder / "pytest.ini").write_text("[pytest]\n")
    env = {key: value for key, value in os.environ.items() if key != "PYTEST_ADDOPTS"}
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            str(folder),
            "-p",
            "no:cacheprovider",
            f"--medprobe-cache={shared_cache}",
            "--medprobe-max-samples=120",
            "--medprobe-bootstrap=200",
            "--medprobe-min-health=1",
            "--html=report.html",
            "--self-contained-html",
            "--medprobe-json=results.json",
            "--junitxml=junit.xml",
        ],
        cwd=folder,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    return folder / "report.html", folder / "results.json", folder / "junit.xml"


@pytest.mark.slow
def test_the_report_in_a_headless_browser_shows_a_readable_plot_and_coloured_verdicts(
    failing_run_reports: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    chromium = _chromium()
    report, _, _ = failing_run_reports
    page = tmp_path / "measured.html"
    page.write_text(report.read_text(encoding="utf-8").replace("</body>", MEASURE + "</body>"), encoding="utf-8")

    dom = _browser(chromium, tmp_path / "profile", "--virtual-time-budget=15000", "--dump-dom", page.as_uri())
    found = re.search(r'<pre id="medprobe-measure">(.*?)</pre>', dom.stdout, re.S)
    assert found is not None, dom.stdout[-2000:] + dom.stderr[-2000:]
    measured = json.loads(unescape(found.group(1)))
    # The failing health audit's row is expanded: its plot is drawn at least 600 px wide.
    assert measured["plot_widths"] and min(measured["plot_widths"]) >= 600, measured
    assert all(measured["plots_loaded"]), measured
    assert measured["fail_backgrounds"] and set(measured["fail_backgrounds"]) == {"rgb(248, 215, 218)"}, measured

    screenshot = tmp_path / "report.png"
    shot = _browser(chromium, tmp_path / "profile", f"--screenshot={screenshot}", page.as_uri())
    assert screenshot.is_file(), shot.stderr[-2000:]
    assert screenshot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    width = int.from_bytes(screenshot.read_bytes()[16:20], "big")
    assert width == 1280


@pytest.mark.slow
def test_the_report_carries_the_full_record_and_skip_rows_read_as_reasons(
    failing_run_reports: tuple[Path, Path, Path],
) -> None:
    report, results, _ = failing_run_reports
    html = report.read_text(encoding="utf-8")
    blob = re.search(r'data-jsonblob="([^"]*)"', html)
    assert blob is not None
    data = json.loads(unescape(blob.group(1)))
    environment = data["environment"]
    for row in ("pytest-medprobe", "torch", "transformers", "Python", "CUDA", "seed", "decision rule", "thresholds"):
        assert f"medprobe: {row}" in environment, row
    assert "probes" in " ".join(environment) and "medprobe: command" in environment
    pair_row = next(value for key, value in environment.items() if key.startswith("medprobe: medprobe-tiny ×"))
    assert "device cpu" in pair_row and "dtype float32" in pair_row

    skipped = [runs[-1] for nodeid, runs in data["tests"].items() if "test_regression" in nodeid]
    assert len(skipped) == 6
    for row in skipped:
        log = unescape(row["log"])
        assert not log.lstrip().startswith("("), log  # no raw (path, line, reason) tuple
        assert "no baseline given" in log

    document = json.loads(results.read_text())
    versions = document["environment"]["versions"]
    assert {"pytest-medprobe", "torch", "transformers"} <= set(versions) and all(versions.values())
    assert document["environment"]["python"] and "torch_build" in document["environment"]["cuda"]
    settings = document["settings"]
    assert settings["seed"] == 0 and settings["decision"] == "point"
    assert settings["thresholds"]["min_health"] == 1.0
    assert settings["probe"] == {"backend": "torch", "c": 1.0, "n_bootstrap": 200}
    [run] = document["runs"]
    assert len(run["model"]["fingerprint"]) == 64 and len(run["dataset"]["fingerprint"]) == 64
    assert run["features"]["device"] == "cpu" and run["features"]["dtype"] == "float32"
    assert "--medprobe-min-health=1" in document["command"]["args"]


@pytest.mark.slow
def test_the_junit_file_is_valid_xunit2_and_carries_every_sub_check(
    failing_run_reports: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    import xmlschema

    _, results, junit = failing_run_reports
    schema = xmlschema.XMLSchema(str(SCHEMA))
    schema.validate(str(junit))  # raises, naming the element, when invalid

    from xml.etree import ElementTree

    names = {prop.get("name", ""): prop.get("value", "") for prop in ElementTree.parse(junit).iter("property")}
    llm = f"test_llm_comprehension.py::test_llm_comprehension[{PAIR}]::medprobe_llm_comprehension"
    assert names[f"{llm}_verdict"] == "pass"
    layers = [name for name in names if name.startswith(f"{llm}[max_layer_drop:") and name.endswith("_statistic")]
    [run] = json.loads(results.read_text())["runs"]
    n_layers = len([stage for stage in run["stages"] if re.fullmatch(r"llm\.\d+", stage["stage"])])
    assert len(layers) == n_layers  # connector -> llm.0, llm.0 -> llm.1, ...: every layer's drop
    assert f"{llm}[max_llm_loss:connector->llm.{n_layers - 1}@answer]_statistic" in names
    health = f"test_health.py::test_health[{PAIR}]::medprobe_health"
    assert names[f"{health}_verdict"] == "fail" and float(names[f"{health}_threshold"]) == 1.0


def test_the_schema_refuses_what_xunit2_forbids(pytester: pytest.Pytester) -> None:
    """The check can fail: per-test properties (what xunit1 writes) are refused."""
    import xmlschema

    pytester.makepyfile("def test_one(record_property):\n    record_property('x', 1)\n")
    pytester.runpytest("--junitxml=old.xml", "-o", "junit_family=xunit1")
    assert not xmlschema.XMLSchema(str(SCHEMA)).is_valid(str(pytester.path / "old.xml"))


@pytest.mark.slow
def test_a_results_file_reruns_its_own_command_and_gets_the_same_numbers(
    failing_run_reports: tuple[Path, Path, Path],
) -> None:
    _, results, _ = failing_run_reports
    before = json.loads(results.read_text())
    env = {key: value for key, value in os.environ.items() if key != "PYTEST_ADDOPTS"}
    command = [sys.executable, "-m", "pytest_medprobe", "rerun", str(results)]
    dry = subprocess.run([*command, "--dry-run"], capture_output=True, text=True, env=env, timeout=120, check=False)
    assert dry.returncode == 0 and "--medprobe-min-health=1" in dry.stdout and str(results.parent) in dry.stdout

    again = subprocess.run(command, capture_output=True, text=True, env=env, timeout=600, check=False)
    assert again.returncode == 1, again.stdout[-3000:]  # the health audit fails again, as recorded
    after = json.loads(results.read_text())
    assert after["settings"] == before["settings"] and after["command"]["args"] == before["command"]["args"]
    for old, new in zip(before["runs"], after["runs"]):
        for name in ("model", "dataset", "stages", "answer", "health", "failure_modes", "root_cause"):
            assert new[name] == old[name], name
    assert [audit["outcome"] for audit in after["audits"]] == [audit["outcome"] for audit in before["audits"]]


def test_the_command_line_help_is_plain_text(capsys: pytest.CaptureFixture[str]) -> None:
    from pytest_medprobe.__main__ import main

    for argv in (["--help"], ["extract", "--help"], ["rerun", "--help"], ["zoo", "export", "--help"]):
        with pytest.raises(SystemExit):
            main(argv)
        text = capsys.readouterr().out
        assert "usage: python -m pytest_medprobe" in text
        assert "``" not in text and "`" not in text, argv
