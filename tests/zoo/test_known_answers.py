"""Known answers: the reference model passes every audit; each planted fault fails its own.

The matrix of metrics.md §3's localization rule: 8 models × 5 audits. A fault must fail
exactly its own failure-mode audit and pass the other three; health fails where the
fault drags it under the bound (three of the four faults do, to 0). The wide model's
connectors (test_wide_connector) check audit 2 on a widening: lossless passes, rank-limited fails.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from pytest_medprobe.config import resolve_settings
from pytest_medprobe.session import AuditSession, Pair
from pytest_medprobe.zoo import REFERENCE_NAME
from pytest_medprobe.zoo.wide import WIDE_NAME

MODES = ("visual_representation", "connector_fidelity", "llm_comprehension", "semantic_mapping")
FAULT_MODE = {
    "blind-vision": "visual_representation",
    "lossy-connector": "connector_fidelity",
    "forgetful-llm": "llm_comprehension",
    "misaligned-head": "semantic_mapping",
}
# Expected verdicts per model: the failing audits (health included where it drops).
EXPECTED_FAILURES = {
    REFERENCE_NAME: set(),
    f"{REFERENCE_NAME}:blind-vision": {"visual_representation", "health"},
    # The decoder still answers from what survives the projector: health stays above 0.6.
    f"{REFERENCE_NAME}:lossy-connector": {"connector_fidelity"},
    f"{REFERENCE_NAME}:forgetful-llm": {"llm_comprehension", "health"},
    f"{REFERENCE_NAME}:misaligned-head": {"semantic_mapping", "health"},
    # The widening connectors (zoo/wide.py): a lossless one passes audit 2; its decoder was
    # trained for another encoding, so the model holds the diagnosis and does not say it.
    WIDE_NAME: set(),
    f"{WIDE_NAME}:injective-connector": {"semantic_mapping", "health"},
    f"{WIDE_NAME}:rank-limited-connector": {"connector_fidelity", "semantic_mapping"},
}
# Where each fault's failure message must point.
EXPECTED_STAGE = {
    "blind-vision": "vision",
    "lossy-connector": "connector",
    "forgetful-llm": "llm.3@answer",
    "misaligned-head": "answer",
}
MODELS = tuple(EXPECTED_FAILURES)


def _session(cache: Path, seed: int = 0) -> AuditSession:
    cli = {"model": list(MODELS), "seed": str(seed), "cache_dir": str(cache)}
    return AuditSession(resolve_settings(cli, {}, cache))


@pytest.fixture(scope="module")
def zoo_session(shared_cache: Path) -> AuditSession:
    return _session(shared_cache)


@pytest.mark.parametrize("model", MODELS)
def test_each_model_fails_exactly_the_audits_of_its_fault(zoo_session: AuditSession, model: str) -> None:
    result = zoo_session.result(Pair(model, "synthetic-lesions"))
    failing = {verdict.mode for verdict in result.verdicts.failure_modes() if not verdict.passed}
    assert failing == EXPECTED_FAILURES[model], result.curve


@pytest.mark.parametrize("fault", FAULT_MODE)
def test_the_root_cause_names_the_broken_module(zoo_session: AuditSession, fault: str) -> None:
    result = zoo_session.result(Pair(f"{REFERENCE_NAME}:{fault}", "synthetic-lesions"))
    assert result.verdicts.root_cause == FAULT_MODE[fault]
    verdict = getattr(result.verdicts, FAULT_MODE[fault])
    assert EXPECTED_STAGE[fault] in verdict.message


def test_the_reference_model_is_healthy_by_a_clear_margin(zoo_session: AuditSession) -> None:
    result = zoo_session.result(Pair(REFERENCE_NAME, "synthetic-lesions"))
    curve, thresholds = result.curve, zoo_session.settings.thresholds
    assert curve.score("vision") - curve.score("pixels") > 0.3
    assert result.health.health > thresholds.min_health + 0.2
    assert curve.score("answer") > 0.9


def test_the_widening_connectors_are_judged_by_what_they_lose(zoo_session: AuditSession) -> None:
    """The lossless widening passes audit 2 near 0; the rank-limited one fails it by a clear
    margin and is named the root cause."""
    lossless = zoo_session.result(Pair(f"{WIDE_NAME}:injective-connector", "synthetic-lesions")).verdicts
    assert abs(lossless.connector_fidelity.statistic) < 0.01, lossless.connector_fidelity.message
    assert "(whitened probes)" in lossless.connector_fidelity.message
    assert lossless.root_cause == "semantic_mapping"
    limited = zoo_session.result(Pair(f"{WIDE_NAME}:rank-limited-connector", "synthetic-lesions")).verdicts
    assert limited.root_cause == "connector_fidelity"
    assert limited.connector_fidelity.low > limited.connector_fidelity.threshold + 0.02, limited.connector_fidelity


@pytest.mark.parametrize("fault", FAULT_MODE)
def test_each_fault_fails_by_a_clear_margin_not_by_a_hair(zoo_session: AuditSession, fault: str) -> None:
    """The whole 95% interval of the statistic lies past the threshold."""
    result = zoo_session.result(Pair(f"{REFERENCE_NAME}:{fault}", "synthetic-lesions"))
    verdict = getattr(result.verdicts, FAULT_MODE[fault])
    if verdict.bound == "max":
        assert verdict.low > verdict.threshold + 0.02, verdict.message
    else:
        assert verdict.high < verdict.threshold - 0.02, verdict.message


@pytest.mark.slow
@pytest.mark.parametrize("seed", [1, 2, 3, 4, 5])
def test_verdicts_are_the_same_under_other_seeds(tmp_path_factory: pytest.TempPathFactory, seed: int) -> None:
    """Another seed draws other images, probes and bootstrap resamples; verdicts stay."""
    session = _session(tmp_path_factory.mktemp(f"seed{seed}"), seed)
    for model, expected in EXPECTED_FAILURES.items():
        result = session.result(Pair(model, "synthetic-lesions"))
        failing = {verdict.mode for verdict in result.verdicts.failure_modes() if not verdict.passed}
        assert failing == expected, (model, seed, result.curve)


@pytest.mark.parametrize(
    ("options", "name"),
    [
        ([], REFERENCE_NAME),
        *[(["--variant", fault], f"{REFERENCE_NAME}:{fault}") for fault in FAULT_MODE],
        (["--model", f"{WIDE_NAME}:injective-connector"], f"{WIDE_NAME}:injective-connector"),
    ],
    ids=lambda value: value if isinstance(value, str) else None,
)
def test_an_exported_checkpoint_gives_the_same_verdicts_as_the_zoo_name(
    pytester: pytest.Pytester, shared_cache: Path, options: list[str], name: str
) -> None:
    directory = pytester.path / "exported"
    command = [sys.executable, "-m", "pytest_medprobe", "zoo", "export", str(directory)]
    subprocess.run(command + options, check=True, capture_output=True)
    assert (directory / "config.json").is_file() and (directory / "model.safetensors").is_file()
    pytester.makepyfile(
        """
        def test_all(verdicts):
            pass
        """
    )
    runs = {}
    for model in (name, str(directory)):
        pytester.runpytest(f"--model={model}", f"--medprobe-cache={shared_cache}", "--medprobe-json=r.json")
        [run] = json.loads((pytester.path / "r.json").read_text())["runs"]
        runs[model] = run
    assert runs[name]["stages"] == runs[str(directory)]["stages"]
    assert runs[name]["failure_modes"] == runs[str(directory)]["failure_modes"]


@pytest.mark.parametrize("fault", FAULT_MODE)
def test_shipped_audits_on_a_variant_fail_exactly_its_audits_and_point_at_the_stage(
    pytester: pytest.Pytester, shared_cache: Path, fault: str
) -> None:
    audits = Path(__file__).resolve().parents[2] / "audits"
    pytester.makepyfile(**{path.stem: path.read_text() for path in audits.glob("test_*.py")})
    result = pytester.runpytest(f"--model={REFERENCE_NAME}:{fault}", f"--medprobe-cache={shared_cache}", "-rf")
    expected = EXPECTED_FAILURES[f"{REFERENCE_NAME}:{fault}"]
    result.assert_outcomes(failed=len(expected), passed=5 - len(expected), skipped=7)  # regression, subgroups
    for mode in expected:
        result.stdout.fnmatch_lines(
            [f"FAILED test_{mode}.py::test_{mode}[[]{REFERENCE_NAME}:{fault}-synthetic-lesions[]]*"]
        )
    result.stdout.fnmatch_lines([f"*{EXPECTED_STAGE[fault]}*", f"*{REFERENCE_NAME}:{fault}*{FAULT_MODE[fault]}*"])
