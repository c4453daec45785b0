"""A report as one self-contained HTML page: tables and inline SVG charts,
one inline stylesheet, no script and nothing fetched from elsewhere."""

from __future__ import annotations

from collections.abc import Sequence
from html import escape

from gateway.reports import tables
from gateway.reports.kpis import Kpi, Report, UsageRow
from gateway.reports.svg import bar_list, column_chart
from gateway.reports.text import kpi_target, kpi_value, ms, pct, usd, verdict

STYLE = """
body{font:14px/1.45 system-ui,sans-serif;margin:24px auto;max-width:1000px;color:#222;padding:0 16px}
h1{font-size:22px}h2{font-size:17px;margin-top:28px;border-bottom:1px solid #ddd}
table{border-collapse:collapse;margin:8px 0;font-size:13px}
th,td{border:1px solid #ddd;padding:3px 8px;text-align:right}th{background:#f4f6f8}
td:first-child,th:first-child{text-align:left}
.met{color:#1e8449;font-weight:600}.missed{color:#c0392b;font-weight:600}.nodata{color:#888}
.note{background:#fff8e1;border-left:4px solid #d68910;padding:6px 10px}
.charts svg{display:block;margin:12px 0}.meta{color:#555}
"""


def _table(head: Sequence[str], rows: Sequence[Sequence[object]], html_cells: bool = False) -> str:
    def cell(value: object) -> str:
        return str(value) if html_cells else escape(str(value))

    out = ["<table><thead><tr>", *(f"<th>{escape(h)}</th>" for h in head), "</tr></thead><tbody>"]
    out += ["<tr>" + "".join(f"<td>{cell(c)}</td>" for c in row) + "</tr>" for row in rows]
    out.append("</tbody></table>")
    return "".join(out)


def _verdict(met: bool | None) -> str:
    cls = "nodata" if met is None else ("met" if met else "missed")
    return f'<span class="{cls}">{escape(verdict(met))}</span>'


def _kpis(report: Report) -> str:
    prom = {k.name: k for k in report.prometheus or []}
    head = ["KPI", "value", "target", "verdict"] + (["Prometheus", "verdict (Prometheus)"] if prom else [])
    rows = []
    for kpi in report.kpis:
        row = [escape(kpi.label), escape(kpi_value(kpi)), escape(kpi_target(kpi)), _verdict(kpi.met)]
        if prom:
            other: Kpi | None = prom.get(kpi.name)
            row += [escape(kpi_value(other)), _verdict(other.met)] if other else ["n/a", _verdict(None)]
        rows.append(row)
    return _table(head, rows, html_cells=True)


def _usage(rows: Sequence[UsageRow], what: str) -> str:
    return _table(*tables.usage(rows, what)) if rows else "<p>No requests.</p>"


def _charts(report: Report) -> str:
    targets = {k.name: k.target for k in report.kpis}
    days = report.days
    charts = [
        column_chart("Requests per day", [(d.day, float(d.requests)) for d in days], lambda v: f"{v:,.0f}"),
        column_chart(
            "Latency P95 per day",
            [(d.day, d.p95_ms) for d in days],
            ms,
            target=targets.get("p95_ms"),
        ),
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
        charts.append(
            bar_list(
                "Budget used (highest day / the month)",
                [(f"{b.scope} {b.id} {b.period}", b.ratio) for b in report.budgets],
                lambda v: pct(v, 0),
                limit_at=1.0,
            )
        )
    return '<div class="charts">' + "".join(charts) + "</div>"


def render_html(report: Report) -> str:
    title = f"Gateway report: {report.kind} {report.label}"
    budgets = _table(*tables.budgets(report)) if report.budgets else "<p>No team or gateway budget is set.</p>"
    errors = _table(*tables.top_errors(report)) if report.top_errors else "<p>No errors.</p>"
    low = _table(*tables.low_use(report)) if report.low_use else "<p>None.</p>"
    per_day = _table(*tables.per_day(report))
    traffic = _table(*tables.traffic(report))
    notes = "".join(f'<p class="note">{escape(n)}</p>' for n in report.notes)
    return "".join(
        [
            '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">',
            f"<title>{escape(title)}</title><style>{STYLE}</style></head><body>",
            f"<h1>{escape(title)}</h1>",
            f'<p class="meta">Period {escape(report.start)} to {escape(report.end)} ({escape(report.timezone)}); '
            f"generated {escape(report.generated_at)}; from {escape(', '.join(report.sources))}.</p>",
            notes,
            "<h2>KPIs against the operations manual's targets</h2>",
            _kpis(report),
            "<h2>Traffic</h2>",
            traffic,
            "<h2>Charts</h2>",
            _charts(report),
            "<h2>By team</h2>",
            _usage(report.by_team, "team"),
            "<h2>By model alias</h2>",
            _usage(report.by_alias, "alias"),
            "<h2>Budget adherence</h2>",
            budgets,
            "<h2>Top errors</h2>",
            errors,
            f"<h2>Aliases under {escape(pct(report.low_use_ratio, 0))} of requests</h2>",
            low,
            "<h2>Per day</h2>",
            per_day,
            "</body></html>\n",
        ]
    )
