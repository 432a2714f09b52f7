"""pytest-html integration: the probe-curve plot and a table on every audit row, a summary.

Registered only when pytest-html is active. Every string that comes from data or from
the user (class names, paths, model names) is escaped, so a hostile class name cannot
inject markup into the report.
"""

from __future__ import annotations

import base64
from collections.abc import Generator, Mapping, Sequence
from html import escape
from typing import TYPE_CHECKING, Any

import pytest

from pytest_medprobe.config import flag_names
from pytest_medprobe.report.json_results import answer_mode_record

if TYPE_CHECKING:
    from pytest_medprobe.failure_modes import Verdict
    from pytest_medprobe.pairs import PairResult
    from pytest_medprobe.subgroups import SubgroupReport


def _fmt(value: float | None) -> str:
    return "–" if value is None else f"{value:.3f}"


# Inline styles: pytest-html's stylesheet knows nothing of these cells, and a report is
# often read as a single file attached to a ticket.
PASS_STYLE = "background:#d4edda;color:#155724;font-weight:bold"
FAIL_STYLE = "background:#f8d7da;color:#721c24;font-weight:bold"
UNDERPOWERED_STYLE = "color:#856404;background:#fff3cd;font-weight:bold"
PLOT_STYLE = "width:100%;min-width:600px;max-width:1400px;height:auto;display:block;background:#fff"


def verdict_cell(passed: bool, text: str | None = None) -> str:
    """A coloured verdict cell: green pass, red FAIL."""
    label = text if text is not None else ("pass" if passed else "FAIL")
    css = "pass" if passed else "fail"
    return f'<td class="medprobe-verdict medprobe-{css}" style="{PASS_STYLE if passed else FAIL_STYLE}">{label}</td>'


def plot_html(svg: bytes, alt: str, css_class: str = "medprobe-plot") -> str:
    """An SVG plot as a self-contained image at the width of the page (at least 600 px)."""
    data = base64.b64encode(svg).decode("ascii")
    return (
        f'<div class="{css_class}-box" style="width:100%;overflow-x:auto">'
        f'<img class="{css_class}" alt="{escape(alt)}" style="{PLOT_STYLE}" '
        f'src="data:image/svg+xml;base64,{data}"/></div>'
    )


def power_html(verdict: Verdict) -> str:
    """The verdict's power statement (metrics.md §3, "Power"): ± half-width against the distance to resolve."""
    if verdict.distance is None:
        return ""
    text = f"±{_fmt(verdict.half_width)} vs {_fmt(verdict.distance)} to resolve"
    if not verdict.underpowered:
        return f'<br/><span class="medprobe-power">{text}: resolved</span>'
    needed = verdict.needed_test_images
    more = f"; about {needed} test images would resolve it (this run: {verdict.n_test})" if needed else ""
    return (
        f'<br/><span class="medprobe-power medprobe-underpowered" style="{UNDERPOWERED_STYLE}">'
        f"UNDERPOWERED: {text}, so this verdict cannot tell a pass from a fail{more}</span>"
    )


def verdict_table(result: PairResult, verdict: Verdict | None) -> str:
    """A small HTML table: the verdict (when the test checked one) and the key scores."""
    curve = result.curve
    rows = []
    if verdict is not None:
        # The headline, then every sub-check (each decoder layer's drop of audit 3, ...).
        checks = [verdict, *(verdict.leaves() if verdict.parts else [])]
        for index, check in enumerate(checks):
            comparison = "≤" if check.bound == "max" else "≥"
            name = escape(check.title) if index == 0 else escape(f"{check.segment[0]} → {check.segment[1]}")
            flag = escape(flag_names(check.setting, True))
            rows.append(
                f"<tr><th>{name}</th><td>{_fmt(check.statistic)} "
                f"(95% CI {_fmt(check.low)}–{_fmt(check.high)}) must be {comparison} "
                f"{_fmt(check.threshold)} ({flag}){power_html(check)}</td>{verdict_cell(check.passed)}</tr>"
            )
    key_stages = ["pixels", "vision", "connector", curve.last_layer_answer, "answer"]
    for stage in key_stages:
        low, high = curve.interval(stage)
        rows.append(
            f"<tr><td>{escape(stage)}</td><td>{_fmt(curve.score(stage))} "
            f"(95% CI {_fmt(low)}–{_fmt(high)})</td><td></td></tr>"
        )
    rows.append(
        f"<tr><td>health</td><td>{_fmt(result.health.health)} (weakest: "
        f"{escape(result.health.weakest)})</td><td></td></tr>"
    )
    if not curve.has_image_view:
        from pytest_medprobe.report.terminal import NO_IMAGE_VIEW

        rows.append(f"<tr><td>image view</td><td>{escape(NO_IMAGE_VIEW)}</td><td></td></tr>")
    answers = answer_mode_record(result)
    if answers["mode"] == "generate":
        examples = "".join(f"<li><code>{escape(text)}</code></li>" for text in answers["unparseable_examples"])
        rows.append(
            f"<tr><td>generated answers</td><td>{answers['unparseable']} of {answers['n']} named no option "
            f"(counted as wrong){'<ul>' + examples + '</ul>' if examples else ''}</td><td></td></tr>"
        )
    return '<table class="medprobe">' + "".join(rows) + "</table>"


def subgroup_table(report: SubgroupReport) -> str:
    """Every subgroup value: its size, key scores and health with intervals, and its worst gap."""
    header = (
        "<tr><th>subgroup</th><th>n test</th><th>vision</th><th>connector</th><th>last layer @answer</th>"
        "<th>answer</th><th>health</th><th>worst gap to overall</th><th>verdict</th></tr>"
    )
    rows = []
    for group in report.groups:
        curve = group.curve
        scores = "".join(
            f"<td>{_fmt(curve.score(stage))} ({_fmt(curve.interval(stage)[0])}–{_fmt(curve.interval(stage)[1])})</td>"
            for stage in ("vision", "connector", curve.last_layer_answer, "answer")
        )
        worst = max(group.gaps, key=lambda gap: gap.gap)
        verdict = "FAIL" if any(not gap.passed for gap in group.gaps) else "pass"
        if not group.judged:
            verdict += " (some gaps not judged: too few images)"
        rows.append(
            f"<tr><td>{escape(group.label)}</td><td>{group.n_test}</td>{scores}"
            f"<td>{_fmt(group.health.health)} ({_fmt(group.health.low)}–{_fmt(group.health.high)})</td>"
            f"<td>{escape(worst.title)}: {_fmt(worst.gap)} worse ({_fmt(worst.low)}–{_fmt(worst.high)})</td>"
            f"<td>{verdict}</td></tr>"
        )
    caption = f"<caption>subgroups (gap allowed: {_fmt(report.max_gap)}; 95% CIs)</caption>"
    return f'<table class="medprobe medprobe-subgroups">{caption}{header}{"".join(rows)}</table>'


def summary_html(
    results: tuple[PairResult, ...],
    trust_remote_code: bool = False,
    errors: Sequence[tuple[str, str, str]] = (),
    duplicates: Mapping[str, str] | None = None,
) -> str:
    """The summary section: the models × datasets heat map of health, a table of every pair, and
    per dataset one plot overlaying the probe curves of all its models on a normalized depth axis.

    Long because it lays the section out in page order (heat map, pair table, subgroups,
    diagnoses, plots, notes) from one sorted list of results; the heat map, plots and
    tables each come from their own helper, only the pair table's rows are built here.
    """
    from pytest_medprobe.failure_modes import cause_modes
    from pytest_medprobe.report.diagnoses import diagnoses_table
    from pytest_medprobe.report.json_results import run_record
    from pytest_medprobe.report.matrix_table import heatmap_html, matrix_rows
    from pytest_medprobe.report.plots import plot_overlay

    datasets = list(dict.fromkeys(result.dataset.name for result in results))
    # Within each dataset, models by health, best first (as in the heat map, terminal and CSV).
    results = tuple(sorted(results, key=lambda r: (datasets.index(r.dataset.name), -r.health.health)))
    modes = [mode.name for mode in cause_modes()]
    header = (
        "<tr><th>model</th><th>family</th><th>dataset</th><th>n fit / test</th><th>health</th>"
        + "".join(f"<th>{escape(mode.replace('_', ' '))}</th>" for mode in modes)
        + "<th>root cause</th><th>features</th></tr>"
    )
    rows = []
    for result in results:
        dataset, health = result.dataset, result.health
        verdicts = {verdict.mode: verdict for verdict in result.verdicts.failure_modes()}
        cells = "".join(
            verdict_cell(
                verdicts[mode].passed,
                f"{'pass' if verdicts[mode].passed else 'FAIL'} ({_fmt(verdicts[mode].statistic)} "
                f"±{_fmt(verdicts[mode].half_width)})" + ("<br/>UNDERPOWERED" if verdicts[mode].underpowered else ""),
            )
            for mode in modes
        )
        rows.append(
            f"<tr><td>{escape(result.pair.model)}</td><td>{escape(result.source.family)}</td>"
            f"<td>{escape(dataset.name)}</td><td>{dataset.n_fit} / {dataset.n_test}</td>"
            f"<td>{_fmt(health.health)} (95% CI {_fmt(health.low)}–{_fmt(health.high)})</td>{cells}"
            f"<td>{escape(result.verdicts.root_cause or 'none')}</td>"
            f"<td>{'cached' if result.provenance.cache_hit else 'extracted'}</td></tr>"
        )
    plots = []
    for dataset_name in dict.fromkeys(result.dataset.name for result in results):
        curves = [(r.pair.model, r.curve) for r in results if r.dataset.name == dataset_name]
        svg = plot_overlay(curves, f"probe curves on {dataset_name}")
        plots.append(plot_html(svg, f"probe curves on {dataset_name}", "medprobe-overlay"))
    classes = "".join(
        f"<li>{escape(r.dataset.name)}: {escape(', '.join(r.dataset.class_names))}</li>"
        for r in {r.dataset.name: r for r in results}.values()
    )
    remote_code = (
        "<p><strong>trust_remote_code was ON</strong>: the checkpoints were allowed to run their own Python code.</p>"
        if trust_remote_code
        else "<p>trust_remote_code was off: only transformers' own model code ran.</p>"
    )
    subgroups = "".join(
        f"<h3>{escape(r.pair.model)} × {escape(r.dataset.name)}</h3>{subgroup_table(r.subgroups)}"
        for r in results
        if r.subgroups is not None
    )
    heatmap = heatmap_html(matrix_rows([run_record(r) for r in results], errors), duplicates or {})
    diagnoses = "".join(
        diagnoses_table(r.curve, r.dataset.class_names, f"{r.pair.model} × {r.dataset.name}") for r in results
    )
    return (
        "<h2>medprobe</h2>"
        + heatmap
        + '<table class="medprobe">'
        + header
        + "".join(rows)
        + "</table>"
        + subgroups
        + diagnoses
        + f"<ul>{classes}</ul>"
        + remote_code
        + "".join(plots)
    )


class HtmlReportHooks:
    """Hooks that only exist when pytest-html is installed and active."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self._plots: dict[tuple[Any, tuple[str, str] | None, bool], str] = {}

    def _plot(self, result: PairResult, verdict: Verdict | None) -> str:
        """Plots are drawn once per pair and marking, and reused by every row."""
        from pytest_medprobe.report.plots import plot_probe_curve

        marked = verdict.segment if verdict is not None else None
        failed = verdict is not None and not verdict.passed
        key = (result.pair, marked, failed)
        if key not in self._plots:
            title = f"{result.pair.model} × {result.dataset.name}"
            svg = plot_probe_curve(result.curve, title, marked=marked, failed=failed)
            self._plots[key] = plot_html(svg, f"probe curve of {title}")
        return self._plots[key]

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_makereport(
        self, item: pytest.Item, call: pytest.CallInfo[None]
    ) -> Generator[None, pytest.TestReport, pytest.TestReport]:
        report = yield
        if report.when != "call":
            return report
        from pytest_medprobe.stash import PAIR_FIXTURE, SESSION_KEY, VERDICT_KEY

        callspec = getattr(item, "callspec", None)
        pair = callspec.params.get(PAIR_FIXTURE) if callspec is not None else None
        session = self.config.stash[SESSION_KEY]
        result = next((r for r in session.computed_results if r.pair == pair), None)
        if result is None:
            return report
        from pytest_html import extras

        verdict = item.stash.get(VERDICT_KEY, None)
        # An html extra rather than an image one: pytest-html shows images as ~320 px
        # thumbnails, too small to read a probe curve; this one takes the row's full width.
        report.extras = [  # type: ignore[attr-defined]
            *getattr(report, "extras", []),
            extras.html(self._plot(result, verdict) + verdict_table(result, verdict)),
        ]
        if verdict is not None and result.subgroups is not None and verdict is result.subgroups.verdict:
            report.extras.append(extras.html(subgroup_table(result.subgroups)))  # type: ignore[attr-defined]
        return report

    def pytest_html_results_table_html(self, report: pytest.TestReport, data: list[str]) -> None:
        """A skipped audit's log says why it skipped, not pytest's raw (path, line, reason) tuple."""
        from pytest_medprobe.stash import MARKER

        longrepr = report.longrepr  # a tuple; a list once it has crossed from an xdist worker
        if report.skipped and MARKER in report.keywords and isinstance(longrepr, (tuple, list)) and len(longrepr) == 3:
            path, line, reason = longrepr
            data[:] = [f"{escape(reason.removeprefix('Skipped: '))} ({escape(str(path))}:{int(line) + 1})"]

    def pytest_html_results_summary(
        self, prefix: list[str], summary: list[str], postfix: list[str], session: pytest.Session
    ) -> None:
        from pytest_medprobe.stash import PAIR_ERRORS_KEY, SESSION_KEY

        audit = self.config.stash[SESSION_KEY]
        errors = [(p.model, p.dataset, message) for p, message in self.config.stash[PAIR_ERRORS_KEY].items()]
        if audit.computed_results or errors:
            prefix.append(
                summary_html(audit.computed_results, audit.settings.trust_remote_code, errors, audit.duplicates)
            )
        self._add_environment_rows()

    def _add_environment_rows(self) -> None:
        """The run's record (versions, settings, fingerprints, device and dtype) in pytest-html's
        environment table, which it reads from pytest-metadata when it writes the page."""
        from pytest_medprobe.report.environment import environment_rows
        from pytest_medprobe.stash import CONTEXT_KEY, OUTPUTS_KEY

        context = self.config.stash.get(CONTEXT_KEY, None)
        outputs = self.config.stash.get(OUTPUTS_KEY, None)
        if context is None or outputs is None:
            return
        try:
            from pytest_metadata.plugin import metadata_key
        except ImportError:  # pytest-html depends on pytest-metadata; kept safe all the same
            return
        metadata = self.config.stash.get(metadata_key, None)
        if metadata is not None:
            metadata.update(environment_rows(context, [pair.record for pair in outputs.pairs]))
