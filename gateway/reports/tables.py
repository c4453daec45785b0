"""The report's tables as (header, rows) of display text: one definition that
the Markdown and the HTML renderers each lay out in their own markup.

Teams are listed by id; the by-team and budget tables add a ``name`` column
(the team's display name, empty for a team without one) when at least one of
their rows has a name. Names are free text from users: they leave here as
plain text, and each renderer escapes them for its own markup."""

from __future__ import annotations

from collections.abc import Sequence

from gateway.reports.kpis import Report, UsageRow
from gateway.reports.text import count, ms, pct, usd

Table = tuple[list[str], list[list[object]]]


def traffic(report: Report) -> Table:
    t = report.total
    head = ["requests", "OK", "4xx", "5xx", "cache hits", "input tokens", "output tokens", "spend"]
    row: list[object] = [
        count(t.requests),
        count(t.ok),
        count(t.client_errors),
        count(t.server_errors),
        count(t.cache_hits),
        count(t.prompt_tokens),
        count(t.completion_tokens),
        usd(t.cost_usd),
    ]
    return head, [row]


def usage(rows: Sequence[UsageRow], what: str) -> Table:
    named = any(r.display_name for r in rows)
    head = [what, *(["name"] if named else []), "requests", "share", "5xx", "4xx", "error rate", "P95"]
    head += ["input tokens", "output tokens", "spend"]
    return head, [
        [
            r.name,
            *([r.display_name or ""] if named else []),
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
    ]


def budgets(report: Report) -> Table:
    named = any(b.display_name for b in report.budgets)
    head = ["scope", "id", *(["name"] if named else []), "budget", "limit", "highest spend", "when", "used"]
    head += ["at/over limit", "over warn", "status"]
    return head, [
        [
            b.scope,
            b.id,
            *([b.display_name or ""] if named else []),
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
    ]


def top_errors(report: Report) -> Table:
    return ["code", "count", "share of requests"], [[e.code, count(e.count), pct(e.share)] for e in report.top_errors]


def low_use(report: Report) -> Table:
    return ["alias", "requests", "share"], [[r.alias, count(r.requests), pct(r.share, 1)] for r in report.low_use]


def per_day(report: Report) -> Table:
    head = ["day", "requests", "5xx", "4xx", "P50", "P95", "P99", "spend"]
    return head, [
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
    ]


RECONCILIATION_NEEDS_PROMETHEUS = (
    "Needs reports.prometheus_url: the costs upstreams report (usage.cost) are Prometheus counters."
)
NO_RECONCILIATION = "No upstream reported its own cost in this period."


def reconciliation(report: Report) -> Table:
    """Upstream-reported cost against the gateway's, per provider and alias."""
    beyond = f"beyond ±{pct(report.drift_alert_share, 1)}"
    head = ["provider", "alias", "upstream reported", "gateway", "drift", beyond]
    return head, [
        [
            r.provider,
            r.alias,
            usd(r.reported_usd),
            usd(r.gateway_usd),
            "n/a" if r.drift is None else f"{r.drift * 100:+.2f} %",
            "DRIFT" if r.flagged else "ok",
        ]
        for r in report.reconciliation or []
    ]


def reconciliation_empty(report: Report) -> str:
    """The sentence shown instead of the table when it has no rows."""
    return RECONCILIATION_NEEDS_PROMETHEUS if report.reconciliation is None else NO_RECONCILIATION


NO_FEEDBACK_SOURCE = "Not available: this report was built without the feedback records."


def satisfaction_title(report: Report) -> str:
    s = report.satisfaction
    return "User satisfaction" if s is None else f"User satisfaction, 7 days {s.start} to {s.end}"


def satisfaction(report: Report) -> Table:
    """The 7-day average score against the target, the count and the distribution: in all, then
    by alias (the verdict is the bare text; each renderer styles it)."""
    s = report.satisfaction
    if s is None or not s.total.count:
        return [], []
    head = ["scope", "feedback", "average", "target", "verdict", "1", "2", "3", "4", "5"]
    rows: list[list[object]] = []
    for r in [s.total, *s.by_alias]:
        average = "n/a" if r.average is None else f"{r.average:.2f}"
        rows.append([r.name, count(r.count), average, f"≥ {s.target:g}", r.met, *(count(n) for n in r.distribution)])
    return head, rows


def satisfaction_empty(report: Report) -> str:
    return NO_FEEDBACK_SOURCE if report.satisfaction is None else "No feedback in these 7 days."
