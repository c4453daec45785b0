"""A report as one self-contained HTML page: tables and inline SVG charts,
one inline stylesheet, no script and nothing fetched from elsewhere.

The markup lives in Jinja2 templates (``templates/report.html`` for the page,
``templates/chart.svg`` for a chart), rendered with autoescaping on: team
ids, model aliases, notes and every other value reach the page only through
the template engine's escaping, never as markup. This module only prepares
the data: display text from :mod:`gateway.reports.tables` and
:mod:`gateway.reports.text`, and charts as geometry from
:mod:`gateway.reports.svg`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from jinja2 import Environment, PackageLoader, StrictUndefined

from gateway.reports import tables
from gateway.reports.kpis import Kpi, Report, UsageRow
from gateway.reports.svg import Chart, bar_list, column_chart
from gateway.reports.text import kpi_target, kpi_value, ms, pct, usd, verdict

TEMPLATES = "templates"
PAGE = "report.html"


@dataclass(frozen=True)
class Verdict:
    """A KPI's verdict cell: its text and the class that colours it."""

    text: str
    cls: str


@dataclass(frozen=True)
class Section:
    """A table, or the sentence shown instead when it has no rows."""

    head: Sequence[str]
    rows: Sequence[Sequence[object]]
    empty: str = ""


def verdict_of(met: bool | None) -> Verdict:
    return Verdict(verdict(met), "nodata" if met is None else ("met" if met else "missed"))


def _is_verdict(value: object) -> bool:
    return isinstance(value, Verdict)


def kpi_section(report: Report) -> Section:
    prom = {k.name: k for k in report.prometheus or []}
    head = ["KPI", "value", "target", "verdict"] + (["Prometheus", "verdict (Prometheus)"] if prom else [])
    rows: list[list[object]] = []
    for kpi in report.kpis:
        row: list[object] = [kpi.label, kpi_value(kpi), kpi_target(kpi), verdict_of(kpi.met)]
        if prom:
            other: Kpi | None = prom.get(kpi.name)
            row += [kpi_value(other), verdict_of(other.met)] if other else ["n/a", verdict_of(None)]
        rows.append(row)
    return Section(head, rows)


def satisfaction_section(report: Report) -> Section:
    head, rows = tables.satisfaction(report)
    styled = [[*row[:4], verdict_of(row[4] if isinstance(row[4], bool) else None), *row[5:]] for row in rows]
    return Section(head, styled, empty=tables.satisfaction_empty(report))


def _usage(rows: Sequence[UsageRow], what: str) -> Section:
    return Section(*tables.usage(rows, what), empty="No requests.")


def charts(report: Report) -> list[Chart]:
    targets = {k.name: k.target for k in report.kpis}
    days = report.days
    out = [
        column_chart("Requests per day", [(d.day, float(d.requests)) for d in days], lambda v: f"{v:,.0f}"),
        column_chart("Latency P95 per day", [(d.day, d.p95_ms) for d in days], ms, target=targets.get("p95_ms")),
        column_chart(
            "Error rate (5xx) per day",
            [(d.day, (d.server_errors / d.requests) if d.requests else None) for d in days],
            pct,
            target=targets.get("error_rate"),
        ),
        bar_list("Spend by team", [(r.name, r.cost_usd) for r in report.by_team], usd),
        bar_list(
            "Requests by model alias", [(r.name, float(r.requests)) for r in report.by_alias], lambda v: f"{v:,.0f}"
        ),
    ]
    if report.budgets:
        out.append(
            bar_list(
                "Budget used (highest day / the month)",
                [(f"{b.scope} {b.id} {b.period}", b.ratio) for b in report.budgets],
                lambda v: pct(v, 0),
                limit_at=1.0,
            )
        )
    return out


def page_context(report: Report) -> dict[str, object]:
    """Everything ``report.html`` shows, as display text, cells and charts."""
    return {
        "title": f"Gateway report: {report.kind} {report.label}",
        "report": report,
        "kpis": kpi_section(report),
        "satisfaction_title": tables.satisfaction_title(report),
        "satisfaction": satisfaction_section(report),
        "traffic": Section(*tables.traffic(report)),
        "charts": charts(report),
        "by_team": _usage(report.by_team, "team"),
        "by_alias": _usage(report.by_alias, "alias"),
        "budgets": Section(*tables.budgets(report), empty="No team or gateway budget is set."),
        "reconciliation": Section(*tables.reconciliation(report), empty=tables.reconciliation_empty(report)),
        "errors": Section(*tables.top_errors(report), empty="No errors."),
        "low_use_ratio": pct(report.low_use_ratio, 0),
        "low_use": Section(*tables.low_use(report), empty="None."),
        "per_day": Section(*tables.per_day(report)),
    }


class HtmlRenderer:
    """Renders reports as HTML pages. It holds the Jinja2 environment (the
    loader and its cache of compiled templates, which the environment fills
    as it loads them, so it is not shared through module state): build one
    per app or command run and keep it. A broken template fails here, at
    construction, not at the first report."""

    def __init__(self) -> None:
        self._env = Environment(
            loader=PackageLoader("gateway.reports", TEMPLATES),
            autoescape=True,
            undefined=StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
            keep_trailing_newline=True,
        )
        self._env.tests["verdict"] = _is_verdict
        self._page = self._env.get_template(PAGE)

    def render(self, report: Report) -> str:
        return self._page.render(page_context(report))
