"""pytest glue: options, ini keys, the marker, fixtures and report hooks. Nothing else.

Everything that computes lives in plain modules (``session``, ``probes``, ``health``,
``failure_modes``, ``report``); this module turns options into settings, exposes the
results of each model × dataset pair as fixtures, and hands them to the reporters.
Heavy libraries (torch, transformers, scikit-learn) are imported only when a fixture
needs them, so ``pytest --help`` stays fast.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from pytest_medprobe.config import (
    BASELINE,
    BASELINE_REQUIRED,
    LABEL,
    MODEL,
    SAVE_BASELINE,
    SETTINGS,
    MedprobeSettings,
    Thresholds,
    flag_names,
    resolve_settings,
    setting_names,
)
from pytest_medprobe.errors import MedprobeError, MedprobeUsageError
from pytest_medprobe.options import register_options, register_short_spellings, relative_paths_root
from pytest_medprobe.session import AuditSession, Pair, PairResult, check_datasets, share_cpu_threads

if TYPE_CHECKING:
    from pytest_medprobe.baseline import BaselineComparison
    from pytest_medprobe.curve import ProbeCurve
    from pytest_medprobe.data.base import ProbeDataset
    from pytest_medprobe.extract import FeatureBank
    from pytest_medprobe.failure_modes import AuditVerdicts, Verdict
    from pytest_medprobe.health import HealthScores
    from pytest_medprobe.models.base import LoadedModel
    from pytest_medprobe.report.outputs import RunOutputs
    from pytest_medprobe.subgroups import SubgroupReport

PAIR_FIXTURE = "medprobe_pair"
MARKER = "medprobe"

SESSION_KEY = pytest.StashKey[AuditSession]()
PAIR_ERRORS_KEY = pytest.StashKey[dict[Pair, str]]()
AUDIT_OUTCOMES_KEY = pytest.StashKey[dict[str, str]]()
VERDICT_KEY = pytest.StashKey["Verdict"]()
# pytest-xdist: what each worker computed (RunOutputs as JSON), the controller's collection
# order, and the merged outputs the summary prints.
WORKER_OUTPUT = "medprobe_outputs"
WORKER_NOTICES = "medprobe_notices"
NOTICES_KEY = pytest.StashKey[list[str]]()  # the workers' notices, on the controller
WORKER_OUTPUTS_KEY = pytest.StashKey[list[str]]()
COLLECTED_KEY = pytest.StashKey[list[str]]()
OUTPUTS_KEY: pytest.StashKey[RunOutputs] = pytest.StashKey()
HEADER_SHOWN_KEY = pytest.StashKey[bool]()
CONTEXT_KEY = pytest.StashKey[dict[str, Any]]()


def pytest_addoption(parser: pytest.Parser) -> None:
    register_options(parser)


@pytest.hookimpl(wrapper=True)
def pytest_load_initial_conftests(early_config: pytest.Config, parser: pytest.Parser, args: list[str]) -> Any:
    """The short spellings (``--model``, ``--seed``, ...) wait for the other plugins and the
    initial conftests: a conftest's own ``--device`` keeps it, and pytest does not crash."""
    result = yield
    register_short_spellings(parser)
    return result


def pytest_cmdline_main(config: pytest.Config) -> int | None:
    if config.getoption("medprobe_plan", default=False):
        try:
            settings = _settings_from(config)
        except MedprobeUsageError as exc:
            print(f"ERROR: {exc}")
            return pytest.ExitCode.USAGE_ERROR
        from pytest_medprobe.plan import make_plan

        print("\n".join(make_plan(AuditSession(settings)).lines()))
        return 0
    if not config.getoption("medprobe_models", default=False):
        return None
    from pytest_medprobe.models.registry import models_listing

    print(models_listing())
    return 0


def _settings_from(config: pytest.Config) -> MedprobeSettings:
    cli = {setting.dest: config.getoption(setting.option_dest) for setting in SETTINGS}
    ini = {setting.ini: config.getini(setting.ini) for setting in SETTINGS}
    settings = resolve_settings(cli, ini, relative_paths_root(config))
    from pytest_medprobe.models.registry import check_distinct_names, check_model_spec

    for model in settings.models:
        check_model_spec(model, settings.trust_remote_code, offline=settings.offline)
    check_distinct_names(settings.models)
    if settings.label is not None and len(settings.models) > 1:
        raise MedprobeUsageError(
            f"{setting_names(LABEL)} names one release line, but {len(settings.models)} models were "
            f"given; name each model instead ({MODEL.flag} NAME=DIR: NAME is its release line), or run them "
            "separately, each with its label."
        )
    settings = check_datasets(settings)
    from pytest_medprobe.preflight import check_outputs

    check_outputs(settings, Path(config.invocation_params.dir))
    return settings


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", f"{MARKER}: an audit of pytest-medprobe (set on every test that uses its fixtures)"
    )
    try:
        settings = _settings_from(config)
    except MedprobeUsageError as exc:
        raise pytest.UsageError(str(exc)) from None
    # tqdm shows the bar only on a terminal, so CI logs stay clean. Under pytest-xdist the
    # workers share the run's id, so --medprobe-refresh extracts a pair once per run, and
    # split the cores between them.
    workerinput = getattr(config, "workerinput", None)
    run_id = None
    if workerinput is not None:
        run_id = workerinput.get("testrunuid")
        share_cpu_threads(int(workerinput.get("workercount", 1)))
    config.stash[SESSION_KEY] = AuditSession(settings, progress=True, run_id=run_id)
    config.stash[PAIR_ERRORS_KEY] = {}
    config.stash[AUDIT_OUTCOMES_KEY] = {}
    config.stash[WORKER_OUTPUTS_KEY] = []
    config.stash[NOTICES_KEY] = []
    config.stash[COLLECTED_KEY] = []
    if getattr(config.option, "xmlpath", None) and workerinput is None:  # the process writing --junitxml
        from pytest_medprobe.report.junit import JunitProperties

        config.pluginmanager.register(JunitProperties(config), "medprobe-junit")
    # Only when a report is asked for (--html): the plots cost about 1 s a run otherwise unused.
    if config.pluginmanager.hasplugin("html") and config.getoption("htmlpath", None):
        from pytest_medprobe.report.html import HtmlReportHooks

        config.pluginmanager.register(HtmlReportHooks(config), "medprobe-html")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if PAIR_FIXTURE in metafunc.fixturenames:
        pairs = metafunc.config.stash[SESSION_KEY].pairs
        metafunc.parametrize(PAIR_FIXTURE, pairs, ids=[pair.id for pair in pairs], indirect=True, scope="session")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if PAIR_FIXTURE in getattr(item, "fixturenames", ()):
            item.add_marker(MARKER)


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
    try:
        comparison = session.baseline_comparison(medprobe_pair)
    except MedprobeError as exc:
        pytest.fail(str(exc), pytrace=False)
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


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    if MARKER not in item.keywords:
        return report
    verdict = item.stash.get(VERDICT_KEY, None)
    if verdict is not None and report.when == "call":
        from pytest_medprobe.report.junit import REPORT_ATTRIBUTE, verdict_properties

        setattr(report, REPORT_ATTRIBUTE, verdict_properties(item.nodeid, verdict))
    outcomes = item.config.stash[AUDIT_OUTCOMES_KEY]
    if report.when == "setup":
        outcomes[item.nodeid] = "error" if report.failed else report.outcome
    elif report.when == "call":
        outcomes[item.nodeid] = report.outcome
    elif report.failed:  # an error in teardown spoils a passed test
        outcomes[item.nodeid] = "error"
    return report


def pytest_report_collectionfinish(config: pytest.Config, items: list[pytest.Item]) -> list[str]:
    """The header, after collection and only when an audit is about to run: every pytest
    session of the environment loads the plugin, and the unrelated ones stay quiet."""
    from pytest_medprobe.report.terminal import header_lines

    session = config.stash.get(SESSION_KEY, None)
    if session is None or not any(MARKER in item.keywords for item in items):
        return []
    config.stash[HEADER_SHOWN_KEY] = True
    lines = header_lines(session.settings)
    # The plan, before any forward pass; not on an xdist worker, whose header nobody sees.
    if not config.option.collectonly and getattr(config, "workerinput", None) is None:
        from pytest_medprobe.plan import make_plan

        lines.extend(make_plan(session).lines())
    return lines


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    session = config.stash.get(SESSION_KEY, None)
    notices = [*(session.notices if session is not None else ()), *config.stash.get(NOTICES_KEY, [])]
    if notices:  # recoverable conditions: reported here, never as warnings that -W error would fail on
        terminalreporter.section("medprobe notices")
        for notice in dict.fromkeys(notices):
            terminalreporter.write_line(notice)
    outputs = config.stash.get(OUTPUTS_KEY, None)  # set at sessionfinish, never on an xdist worker
    if outputs is None or not (outputs.pairs or outputs.outcomes or outputs.errors):
        return
    from pytest_medprobe.report.terminal import summary_lines

    terminalreporter.section("medprobe summary")
    if not config.stash.get(HEADER_SHOWN_KEY, False):  # under xdist the controller collects nothing
        from pytest_medprobe.report.terminal import header_lines

        for line in header_lines(config.stash[SESSION_KEY].settings):
            terminalreporter.write_line(line)
    for line in summary_lines([pair.record for pair in outputs.pairs], outputs.errors, outputs.duplicates):
        terminalreporter.write_line(line)


def pytest_sessionfinish(session: pytest.Session) -> None:
    config = session.config
    audit = config.stash.get(SESSION_KEY, None)
    if audit is None:
        return
    audit.matrix_progress.close()
    from pytest_medprobe.report.outputs import RunOutputs, merge, write_files

    pair_errors: dict[Pair, str] = config.stash[PAIR_ERRORS_KEY]
    audit_outcomes: dict[str, str] = config.stash[AUDIT_OUTCOMES_KEY]
    own = RunOutputs.of_session(audit, pair_errors, audit_outcomes)
    workeroutput = getattr(config, "workeroutput", None)
    if workeroutput is not None:  # an xdist worker: the controller writes every file, once
        workeroutput[WORKER_OUTPUT] = own.to_json()
        workeroutput[WORKER_NOTICES] = list(audit.notices)
        return
    received = [RunOutputs.from_json(text) for text in config.stash[WORKER_OUTPUTS_KEY]]
    collected: list[str] = config.stash[COLLECTED_KEY]
    outputs = merge([own, *received], audit.pairs, collected)
    config.stash[OUTPUTS_KEY] = outputs
    context = None
    if outputs.pairs or outputs.outcomes:  # an audit ran: record what produced the numbers
        from pytest_medprobe.report.environment import run_context

        context = run_context(audit.settings, config.invocation_params.args, Path(config.invocation_params.dir))
        config.stash[CONTEXT_KEY] = context
    lines = write_files(outputs, audit.settings, Path(config.invocation_params.dir), context)
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        for line in lines:
            reporter.write_line(line)


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_node_collection_finished(node: Any, ids: list[str]) -> None:
    collected = node.config.stash[COLLECTED_KEY]
    if not collected:
        collected.extend(ids)


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node: Any, error: object) -> None:
    # A crashed worker sends nothing: its pairs are missing from the files, its tests failed.
    node.config.stash[NOTICES_KEY].extend(getattr(node, "workeroutput", {}).get(WORKER_NOTICES, ()))
    text = getattr(node, "workeroutput", {}).get(WORKER_OUTPUT)
    if text is not None:
        node.config.stash[WORKER_OUTPUTS_KEY].append(text)
