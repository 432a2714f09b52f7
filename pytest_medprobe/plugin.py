"""pytest glue: options, ini keys, the marker, fixtures and report hooks. Nothing else.

Everything that computes lives in plain modules (``session``, ``probes``, ``health``,
``failure_modes``, ``report``); this module turns options into settings, registers the
fixtures of ``fixtures`` (each model × dataset pair's results), and hands the results to
the reporters. Its state is on ``config.stash`` under the keys of ``stash``.
Heavy libraries (torch, transformers, scikit-learn) are imported only when a fixture
needs them, so ``pytest --help`` stays fast.
"""

from __future__ import annotations

from collections.abc import Generator
from pathlib import Path
from typing import Any

import pytest

from pytest_medprobe.config import (
    LABEL,
    MODEL,
    SETTINGS,
    MedprobeSettings,
    flag_names,
    resolve_settings,
    setting_names,
)
from pytest_medprobe.errors import MedprobeUsageError

# The fixtures, registered with the plugin by being names of this module.
from pytest_medprobe.fixtures import (  # noqa: F401
    baseline,
    check_verdict,
    features,
    health,
    medprobe_pair,
    medprobe_result,
    medprobe_session,
    mllm,
    probe_curve,
    probe_dataset,
    subgroups,
    thresholds,
    verdicts,
)
from pytest_medprobe.naming import restore_namer, use_namer
from pytest_medprobe.options import register_options, register_short_spellings, relative_paths_root
from pytest_medprobe.pairs import Pair
from pytest_medprobe.preflight import check_datasets
from pytest_medprobe.resources import share_cpu_threads
from pytest_medprobe.session import AuditSession
from pytest_medprobe.stash import (
    AUDIT_OUTCOMES_KEY,
    COLLECTED_KEY,
    CONTEXT_KEY,
    HEADER_SHOWN_KEY,
    MARKER,
    NAMER_TOKEN_KEY,
    NOTICES_KEY,
    OUTPUTS_KEY,
    PAIR_ERRORS_KEY,
    PAIR_FIXTURE,
    SESSION_KEY,
    VERDICT_KEY,
    WORKER_NOTICES,
    WORKER_OUTPUT,
    WORKER_OUTPUTS_KEY,
)


def pytest_addoption(parser: pytest.Parser) -> None:
    register_options(parser)


@pytest.hookimpl(wrapper=True)
def pytest_load_initial_conftests(early_config: pytest.Config, parser: pytest.Parser, args: list[str]) -> Any:
    """The short spellings (``--model``, ``--seed``, ...) wait for the other plugins and the
    initial conftests: a conftest's own ``--device`` keeps it, and pytest does not crash."""
    result = yield
    register_short_spellings(parser)
    return result


def _name_settings_by_flag(config: pytest.Config) -> None:
    """From now until unconfigure, library messages name settings as "flag / ini key" (``naming``)."""
    if NAMER_TOKEN_KEY not in config.stash:
        config.stash[NAMER_TOKEN_KEY] = use_namer(flag_names)


def pytest_unconfigure(config: pytest.Config) -> None:
    token = config.stash.get(NAMER_TOKEN_KEY, None)
    if token is not None:
        del config.stash[NAMER_TOKEN_KEY]
        restore_namer(token)


def pytest_cmdline_main(config: pytest.Config) -> int | None:
    _name_settings_by_flag(config)
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
    _name_settings_by_flag(config)
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
    from pytest_medprobe.report.outputs import RunOutputs, merge
    from pytest_medprobe.report.writing import write_files

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
