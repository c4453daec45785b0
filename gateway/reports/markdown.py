"""A report as Markdown (GitHub-flavoured tables)."""

from __future__ import annotations

from collections.abc import Sequence

from gateway.reports.kpis import Kpi, Report, UsageRow
from gateway.reports.text import count, kpi_target, kpi_value, ms, pct, usd, verdict


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
    if not rows:
        return ["No requests."]
    return table(
        [what, "requests", "share", "5xx", "4xx", "error rate", "P95", "input tokens", "output tokens", "spend"],
        [
            [
                r.name,
                count(r.requests),
                pct(r.share, 1),
                count(r.server_errors),
                count(r.client_errors),
                pct(r.error_rate),
                ms(r.p95_ms),
                count(r.prompt_tokens),
                count(r.completion_tokens),
                usd(r.cost_usd),
            ]
            for r in rows
        ],
    )


def render_markdown(report: Report) -> str:
    t = report.total
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
        "## Traffic",
        "",
        *table(
            ["requests", "OK", "4xx", "5xx", "cache hits", "input tokens", "output tokens", "spend"],
            [
                [
                    count(t.requests),
                    count(t.ok),
                    count(t.client_errors),
                    count(t.server_errors),
                    count(t.cache_hits),
                    count(t.prompt_tokens),
                    count(t.completion_tokens),
                    usd(t.cost_usd),
                ]
            ],
        ),
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
        *(
            table(
                [
                    "scope",
                    "id",
                    "budget",
                    "limit",
                    "highest spend",
                    "when",
                    "used",
                    "at/over limit",
                    "over warn",
                    "status",
                ],
                [
                    [
                        b.scope,
                        b.id,
                        b.period,
                        usd(b.limit_usd),
                        usd(b.spent_usd),
                        b.when,
                        pct(b.ratio, 1),
                        b.breaches,
                        b.warnings,
                        b.status,
                    ]
                    for b in report.budgets
                ],
            )
            if report.budgets
            else ["No team or gateway budget is set."]
        ),
        "",
        "## Top errors",
        "",
        *(
            table(
                ["code", "count", "share of requests"],
                [[e.code, count(e.count), pct(e.share)] for e in report.top_errors],
            )
            if report.top_errors
            else ["No errors."]
        ),
        "",
        f"## Aliases under {pct(report.low_use_ratio, 0)} of requests",
        "",
        *(
            table(
                ["alias", "requests", "share"], [[r.alias, count(r.requests), pct(r.share, 1)] for r in report.low_use]
            )
            if report.low_use
            else ["None."]
        ),
        "",
        "## Per day",
        "",
        *table(
            ["day", "requests", "5xx", "4xx", "P50", "P95", "P99", "spend"],
            [
                [
                    d.day,
                    count(d.requests),
                    count(d.server_errors),
                    count(d.client_errors),
                    ms(d.p50_ms),
                    ms(d.p95_ms),
                    ms(d.p99_ms),
                    usd(d.cost_usd),
                ]
                for d in report.days
            ],
        ),
        "",
    ]
    return "\n".join(lines)
