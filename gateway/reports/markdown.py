"""A report as Markdown (GitHub-flavoured tables)."""

from __future__ import annotations

from collections.abc import Sequence

from gateway.reports import tables
from gateway.reports.kpis import Kpi, Report, UsageRow
from gateway.reports.text import kpi_target, kpi_value, pct, verdict


def _cell(text: object) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def table(head: Sequence[str], rows: Sequence[Sequence[object]]) -> list[str]:
    out = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    out += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in rows]
    return out


def _kpi_lines(report: Report) -> list[str]:
    prom = {k.name: k for k in report.prometheus or []}
    head = ["KPI", "value", "target", "verdict"] + (["Prometheus", "verdict (Prometheus)"] if prom else [])
    rows = []
    for kpi in report.kpis:
        row: list[object] = [kpi.label, kpi_value(kpi), kpi_target(kpi), verdict(kpi.met)]
        if prom:
            other: Kpi | None = prom.get(kpi.name)
            row += [kpi_value(other), verdict(other.met)] if other else ["n/a", "no data"]
        rows.append(row)
    return table(head, rows)


def _usage(rows: Sequence[UsageRow], what: str) -> list[str]:
    return table(*tables.usage(rows, what)) if rows else ["No requests."]


def _satisfaction(report: Report) -> list[str]:
    head, rows = tables.satisfaction(report)
    if not rows:
        return [tables.satisfaction_empty(report)]
    return table(head, [[*row[:4], verdict(row[4] if isinstance(row[4], bool) else None), *row[5:]] for row in rows])


def render_markdown(report: Report) -> str:
    lines = [
        f"# Gateway report: {report.kind} {report.label}",
        "",
        f"Period {report.start} to {report.end} ({report.timezone}); generated {report.generated_at}; "
        f"from {', '.join(report.sources)}.",
        "",
        *[f"> {note}" for note in report.notes],
        *([""] if report.notes else []),
        "## KPIs against the operations manual's targets",
        "",
        *_kpi_lines(report),
        "",
        f"## {tables.satisfaction_title(report)}",
        "",
        *_satisfaction(report),
        "",
        "## Traffic",
        "",
        *table(*tables.traffic(report)),
        "",
        "## By team",
        "",
        *_usage(report.by_team, "team"),
        "",
        "## By model alias",
        "",
        *_usage(report.by_alias, "alias"),
        "",
        "## Budget adherence",
        "",
        *(table(*tables.budgets(report)) if report.budgets else ["No team or gateway budget is set."]),
        "",
        "## Cost reconciliation",
        "",
        *(table(*tables.reconciliation(report)) if report.reconciliation else [tables.reconciliation_empty(report)]),
        "",
        "## Top errors",
        "",
        *(table(*tables.top_errors(report)) if report.top_errors else ["No errors."]),
        "",
        f"## Aliases under {pct(report.low_use_ratio, 0)} of requests",
        "",
        *(table(*tables.low_use(report)) if report.low_use else ["None."]),
        "",
        "## Per day",
        "",
        *table(*tables.per_day(report)),
        "",
    ]
    return "\n".join(lines)
