"""The plugin's fixtures: each model × dataset pair's results, handed to audits one object at a time.

Registered by ``plugin`` (which imports them). Every fixture reads the audit session on
``config.stash``; a data or model problem of a pair becomes the error of that pair's tests.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from typing import TYPE_CHECKING

import pytest

from pytest_medprobe.config import (
    BASELINE,
    BASELINE_REQUIRED,
    SAVE_BASELINE,
    Thresholds,
    flag_names,
)
from pytest_medprobe.errors import MedprobeError
from pytest_medprobe.pairs import Pair, PairResult
from pytest_medprobe.session import AuditSession

if TYPE_CHECKING:
    from pytest_medprobe.baseline import BaselineComparison
    from pytest_medprobe.curve import ProbeCurve
    from pytest_medprobe.data.base import ProbeDataset
    from pytest_medprobe.extract import FeatureBank
    from pytest_medprobe.failure_modes import AuditVerdicts, Verdict
    from pytest_medprobe.health import HealthScores
    from pytest_medprobe.models.base import LoadedModel
    from pytest_medprobe.subgroups import SubgroupReport

from pytest_medprobe.stash import (
    PAIR_ERRORS_KEY,
    SESSION_KEY,
    VERDICT_KEY,
)


@contextmanager
def _terminal_visible(config: pytest.Config) -> Iterator[None]:
    """Let the extraction progress bar reach the terminal while fixtures are captured."""
    capture = config.pluginmanager.getplugin("capturemanager")
    with capture.global_and_fixture_disabled() if capture is not None else nullcontext():
        yield


def _pair_result(request: pytest.FixtureRequest, pair: Pair) -> PairResult:
    """The pair's results; a data or model problem becomes this test's error, with its message."""
    errors = request.config.stash[PAIR_ERRORS_KEY]
    if pair in errors:
        pytest.fail(errors[pair], pytrace=False)
    try:
        with _terminal_visible(request.config):
            return request.config.stash[SESSION_KEY].result(pair)
    except MedprobeError as exc:
        errors[pair] = f"{pair.model} × {pair.dataset}: {exc}"
    pytest.fail(errors[pair], pytrace=False)  # outside the except: the message says it all, no chained traceback


@pytest.fixture(scope="session")
def medprobe_session(request: pytest.FixtureRequest) -> AuditSession:
    """The audit session: settings, and the results of every model × dataset pair computed so far."""
    return request.config.stash[SESSION_KEY]


@pytest.fixture(scope="session")
def medprobe_pair(request: pytest.FixtureRequest) -> Pair:
    """The model × dataset pair this test audits (tests are parametrized over every pair)."""
    return request.param  # type: ignore[no-any-return]


@pytest.fixture(scope="session")
def medprobe_result(request: pytest.FixtureRequest, medprobe_pair: Pair) -> PairResult:
    """Everything computed for the pair: features, probe curve, health and verdicts."""
    return _pair_result(request, medprobe_pair)


@pytest.fixture
def mllm(request: pytest.FixtureRequest, medprobe_pair: Pair) -> LoadedModel:
    """The loaded model under audit: ``mllm.name``, ``mllm.family``, ``mllm.stage_names()``.

    Loaded on demand, and released when another model loads (one model in memory at a
    time), so keep no reference to it beyond the test.

    Example::

        def test_model_has_enough_layers(mllm):
            assert mllm.n_decoder_layers >= 4
    """
    try:
        return request.config.stash[SESSION_KEY].model(medprobe_pair.model)
    except MedprobeError as exc:
        pytest.fail(f"{medprobe_pair.model}: {exc}", pytrace=False)


@pytest.fixture(scope="session")
def probe_dataset(medprobe_result: PairResult) -> ProbeDataset:
    """The labelled image set: ``class_names``, ``modality``, fit/test images and labels, ``fingerprint``.

    Example::

        def test_every_class_is_in_the_test_split(probe_dataset):
            assert len(set(probe_dataset.test_labels)) == probe_dataset.n_classes
    """
    return medprobe_result.dataset


@pytest.fixture(scope="session")
def features(medprobe_result: PairResult) -> FeatureBank:
    """The cached feature bank: ``features.test.stages["llm.3"]`` is ``[n_test, d]``; answers too.

    Example::

        def test_connector_is_not_constant(features):
            assert features.test.stages["connector"].std(axis=0).max() > 0
    """
    return medprobe_result.features


@pytest.fixture(scope="session")
def probe_curve(medprobe_result: PairResult) -> ProbeCurve:
    """The probe curve: ``score(stage)``, ``interval(stage)``, ``loss(a, b)`` with its paired interval.

    Example::

        def test_middle_layers_keep_the_lesion(probe_curve):
            assert probe_curve.loss("connector", "llm.2") <= 0.02
    """
    return medprobe_result.curve


@pytest.fixture(scope="session")
def health(medprobe_result: PairResult) -> HealthScores:
    """Feature-evolution health (metrics.md §5): ``health.health`` and its four components.

    Example::

        def test_model_is_healthy(health):
            assert health.health >= 0.8, health.weakest
    """
    return medprobe_result.health


@pytest.fixture(scope="session")
def verdicts(medprobe_result: PairResult) -> AuditVerdicts:
    """The verdicts of the four failure modes and of health, under the resolved thresholds.

    Example::

        def test_connector(verdicts, check_verdict):
            check_verdict(verdicts.connector_fidelity)
    """
    return medprobe_result.verdicts


@pytest.fixture(scope="session")
def subgroups(request: pytest.FixtureRequest, medprobe_pair: Pair) -> SubgroupReport:
    """Every score, health and failure-mode statistic per subgroup value (``--medprobe-subgroup``),
    and ``subgroups.verdict``, the gap audit. Skips when no subgroup is configured, or the
    dataset has no columns.

    Example::

        def test_no_site_is_below_080(subgroups):
            assert all(g.health.health >= 0.8 for g in subgroups.groups if g.column == "site")
    """
    from pytest_medprobe.subgroups import NOT_CONFIGURED

    if not request.config.stash[SESSION_KEY].settings.subgroups:
        pytest.skip(NOT_CONFIGURED)
    result = _pair_result(request, medprobe_pair)
    if result.subgroups is None:
        pytest.skip(f"{medprobe_pair.dataset} has no columns to take subgroups from (csv: and hf: datasets have)")
    return result.subgroups


@pytest.fixture(scope="session")
def thresholds(medprobe_session: AuditSession) -> Thresholds:
    """The resolved thresholds (CLI > ini > default), e.g. ``thresholds.max_connector_loss``."""
    return medprobe_session.settings.thresholds


@pytest.fixture(scope="session")
def baseline(request: pytest.FixtureRequest, medprobe_pair: Pair, medprobe_result: PairResult) -> BaselineComparison:
    """The pair's entry in ``--medprobe-baseline``: ``baseline.score(stage)``, ``baseline.health``,
    and ``baseline.verdict(statistic)``, the regression check of one statistic.

    Skips when no baseline is given or the pair has no entry (fails instead with
    ``--medprobe-baseline-required``).

    Example::

        def test_answer_is_no_worse_than_the_release(probe_curve, baseline):
            assert probe_curve.score("answer") >= baseline.score("answer") - 0.02
    """
    session = request.config.stash[SESSION_KEY]
    settings = session.settings
    if settings.baseline_path is None:
        pytest.skip(f"no baseline given: pass {BASELINE.flag} PATH (write one with {SAVE_BASELINE.flag})")
    refused: str | None = None
    try:
        comparison = session.baseline_comparison(medprobe_pair)
    except MedprobeError as exc:
        refused = str(exc)
    if refused is not None:  # outside the except: the message says it all, no chained traceback
        pytest.fail(refused, pytrace=False)
    if comparison is None:
        message = (
            f"no baseline entry for {medprobe_pair.model} × {medprobe_pair.dataset} in {settings.baseline_path} "
            f"(release line {settings.label or 'from the model name'}, dataset fingerprint "
            f"{medprobe_result.dataset.fingerprint[:12]})"
        )
        if settings.baseline_required:
            pytest.fail(f"{message}; {BASELINE_REQUIRED.flag} is set.", pytrace=False)
        pytest.skip(f"{message}; pass {BASELINE_REQUIRED.flag} to fail instead.")
    return comparison


@pytest.fixture
def check_verdict(request: pytest.FixtureRequest) -> Callable[[Verdict], None]:
    """Fail the test with the verdict's message unless it passed; report it either way.

    The verdict's statistic, interval and threshold go to junit properties, and the HTML
    row marks the failing segment of the probe curve.

    Example::

        def test_semantic_mapping(verdicts, check_verdict):
            check_verdict(verdicts.semantic_mapping)
    """

    def check(verdict: Verdict) -> None:
        __tracebackhide__ = True
        # The report hooks read it: JUnit suite properties, the HTML row's plot and table.
        request.node.stash[VERDICT_KEY] = verdict
        if not verdict.passed:
            pytest.fail(verdict.render(flag_names), pytrace=False)

    return check
