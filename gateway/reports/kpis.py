"""The report's numbers, computed from merged daily statistics, spend
counters and budgets; pure functions, no I/O.

Definitions (docs/reports.md has them for readers):

- error rate: requests answered with a 5xx / all requests (the alert rules'
  ``job:gateway_requests_errors:ratio_rate5m``);
- availability: requests answered without a 5xx / requests that were not the
  client's own error (4xx excluded: a bad key or an exhausted budget is not
  the gateway being down);
- p50/p95/p99: of every request's latency as the client saw it (streams: to
  the last chunk), from the merged histogram (never below the true value,
  at most 4.4 % above);
- budget adherence: per team with a budget, and for the gateway: the highest
  daily spend and the days at or over the daily budget (or over
  ``warn_ratio`` of it); the month's spend against the monthly budget;
- teams are grouped by id; a team's display name (free text from the admin
  API, ``ReportInputs.team_names``) rides along as ``display_name``;
- aliases under ``low_use_ratio`` (10 %) of the period's requests, configured
  aliases with no request included.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any, Literal

from gateway.policies.budget import BudgetLimits, spend_key
from gateway.reports.periods import Period
from gateway.reports.reconciliation import ReconciliationRow
from gateway.reports.satisfaction import Satisfaction
from gateway.reports.stats import UNKNOWN_ALIAS, Cell, DayStats, merge_cells

NO_TEAM_LABEL = "(no team)"


@dataclass(frozen=True)
class Targets:
    """The operations manual's targets."""

    availability: float = 0.999
    p50_ms: float = 1000.0
    p95_ms: float = 2000.0
    p99_ms: float = 5000.0
    error_rate: float = 0.01
    satisfaction: float = 4.5


@dataclass(frozen=True)
class Kpi:
    name: str
    label: str
    value: float | None
    target: float
    comparison: Literal[">=", "<="]
    unit: Literal["ratio", "ms"]
    met: bool | None
    """None when there is no data to judge."""


@dataclass(frozen=True)
class UsageRow:
    name: str
    """The team id (``(no team)`` for requests without a team) or the model alias."""
    display_name: str | None
    """The team's display name, if it has one; None for aliases."""
    requests: int
    ok: int
    client_errors: int
    server_errors: int
    error_rate: float | None
    availability: float | None
    prompt_tokens: int
    completion_tokens: int
    cost_usd: float
    cache_hits: int
    share: float
    p50_ms: float | None
    p95_ms: float | None
    p99_ms: float | None


@dataclass(frozen=True)
class DayRow:
    day: str
    requests: int
    server_errors: int
    client_errors: int
    p50_ms: float | None
    p95_ms: float | None
    p99_ms: float | None
    cost_usd: float


@dataclass(frozen=True)
class BudgetRow:
    scope: str
    """``team`` or ``gateway``."""
    id: str
    display_name: str | None
    """The team's display name, if it has one."""
    period: Literal["daily", "monthly"]
    when: str
    """The day with the highest spend (daily) or the month (monthly)."""
    limit_usd: float
    spent_usd: float
    ratio: float
    breaches: int
    """Days (daily) or months (monthly) at or over the budget."""
    warnings: int
    """Days or months at or over ``warn_ratio`` of it (breaches included)."""
    status: Literal["ok", "warning", "exceeded"]


@dataclass(frozen=True)
class ErrorRow:
    code: str
    count: int
    share: float
    """Of all requests."""


@dataclass(frozen=True)
class LowUseRow:
    alias: str
    requests: int
    share: float


@dataclass
class Report:
    kind: str
    label: str
    start: str
    end: str
    timezone: str
    generated_at: str
    complete: bool
    total: UsageRow
    kpis: list[Kpi]
    by_team: list[UsageRow]
    by_alias: list[UsageRow]
    budgets: list[BudgetRow]
    top_errors: list[ErrorRow]
    low_use: list[LowUseRow]
    low_use_ratio: float
    days: list[DayRow]
    sources: list[str]
    notes: list[str] = field(default_factory=list)
    prometheus: list[Kpi] | None = None
    """The same KPIs as Prometheus computes them, when one is configured and answered."""
    reconciliation: list[ReconciliationRow] | None = None
    """Upstream-reported cost against the gateway's (from Prometheus; None without it)."""
    drift_alert_share: float = 0.05
    """``pricing.drift_alert_share``: the drift beyond which a reconciliation row is flagged."""
    satisfaction: Satisfaction | None = None
    """User satisfaction (gateway/reports/satisfaction.py); None where no feedback source was given."""

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


# --- building -----------------------------------------------------------------------


def ratio(part: float, whole: float) -> float | None:
    return part / whole if whole else None


def usage_row(name: str, cell: Cell, total_requests: int, display_name: str | None = None) -> UsageRow:
    valid = cell.requests - cell.client_errors
    return UsageRow(
        name=name,
        display_name=display_name,
        requests=cell.requests,
        ok=cell.ok,
        client_errors=cell.client_errors,
        server_errors=cell.server_errors,
        error_rate=ratio(cell.server_errors, cell.requests),
        availability=None if not valid else 1 - cell.server_errors / valid,
        prompt_tokens=cell.prompt_tokens,
        completion_tokens=cell.completion_tokens,
        cost_usd=round(cell.cost_usd, 9),
        cache_hits=cell.cache_hits,
        share=ratio(cell.requests, total_requests) or 0.0,
        p50_ms=cell.latency.quantile(0.5),
        p95_ms=cell.latency.quantile(0.95),
        p99_ms=cell.latency.quantile(0.99),
    )


def kpis_of(total: UsageRow, targets: Targets) -> list[Kpi]:
    def kpi(name: str, label: str, value: float | None, target: float, cmp: Literal[">=", "<="], unit: Any) -> Kpi:
        met = None if value is None else (value >= target if cmp == ">=" else value <= target)
        return Kpi(name, label, value, target, cmp, unit, met)

    return [
        kpi("availability", "Availability", total.availability, targets.availability, ">=", "ratio"),
        kpi("p50_ms", "Latency P50", total.p50_ms, targets.p50_ms, "<=", "ms"),
        kpi("p95_ms", "Latency P95", total.p95_ms, targets.p95_ms, "<=", "ms"),
        kpi("p99_ms", "Latency P99", total.p99_ms, targets.p99_ms, "<=", "ms"),
        kpi("error_rate", "Error rate (5xx)", total.error_rate, targets.error_rate, "<=", "ratio"),
    ]


def group(cells: Iterable[tuple[tuple[str, str], Cell]], by: Literal["alias", "team"]) -> dict[str, Cell]:
    out: dict[str, list[Cell]] = {}
    for (alias, team), cell in cells:
        name = alias if by == "alias" else (team or NO_TEAM_LABEL)
        out.setdefault(name, []).append(cell)
    return {name: merge_cells(parts) for name, parts in out.items()}


def budget_spend_keys(period: Period, budgets: Sequence[BudgetLimits]) -> list[str]:
    """The spend counters :func:`budget_rows` reads."""
    keys: list[str] = []
    for lim in budgets:
        if lim.daily_usd is not None:
            keys += [spend_key(lim.scope, lim.id, day) for day in period.days]
        if lim.monthly_usd is not None:
            keys += [spend_key(lim.scope, lim.id, month) for month in period.months]
    return keys


def _budget_row(
    lim: BudgetLimits,
    period: Literal["daily", "monthly"],
    spent: Mapping[str, float],
    limit: float,
    warn: float,
    names: Mapping[str, str],
) -> BudgetRow:
    when, top = max(spent.items(), key=lambda kv: (kv[1], kv[0]))
    breaches = sum(1 for v in spent.values() if v >= limit)
    warnings = sum(1 for v in spent.values() if v >= limit * warn)
    status: Literal["ok", "warning", "exceeded"] = "exceeded" if breaches else ("warning" if warnings else "ok")
    scope = "gateway" if lim.scope == "global" else lim.scope
    name = names.get(lim.id) if lim.scope == "team" else None
    return BudgetRow(scope, lim.id, name, period, when, limit, round(top, 9), top / limit, breaches, warnings, status)


def budget_rows(
    period: Period,
    budgets: Sequence[BudgetLimits],
    spend: Mapping[str, float],
    warn_ratio: float,
    team_names: Mapping[str, str] | None = None,
) -> list[BudgetRow]:
    names = team_names or {}
    rows = []
    for lim in budgets:
        if lim.daily_usd is not None:
            daily = {day: spend.get(spend_key(lim.scope, lim.id, day), 0.0) for day in period.days}
            rows.append(_budget_row(lim, "daily", daily, lim.daily_usd, warn_ratio, names))
        if lim.monthly_usd is not None:
            monthly = {m: spend.get(spend_key(lim.scope, lim.id, m), 0.0) for m in period.months}
            rows.append(_budget_row(lim, "monthly", monthly, lim.monthly_usd, warn_ratio, names))
    return rows


def top_errors(total: Cell, limit: int) -> list[ErrorRow]:
    ranked = sorted(total.errors.items(), key=lambda kv: (-kv[1], kv[0]))[:limit]
    return [ErrorRow(code, n, n / total.requests) for code, n in ranked]


def low_use(by_alias: Mapping[str, Cell], aliases: Iterable[str], total: int, threshold: float) -> list[LowUseRow]:
    names = (set(aliases) | set(by_alias)) - {UNKNOWN_ALIAS}
    rows = []
    for alias in names:
        n = by_alias[alias].requests if alias in by_alias else 0
        share = n / total if total else 0.0
        if share < threshold:
            rows.append(LowUseRow(alias, n, share))
    return sorted(rows, key=lambda r: (r.share, r.alias))


def day_rows(period: Period, stats: Mapping[str, DayStats]) -> list[DayRow]:
    rows = []
    for day in period.days:
        cell = stats[day].total() if day in stats else Cell()
        lat = cell.latency
        rows.append(
            DayRow(
                day,
                cell.requests,
                cell.server_errors,
                cell.client_errors,
                lat.quantile(0.5),
                lat.quantile(0.95),
                lat.quantile(0.99),
                round(cell.cost_usd, 9),
            )
        )
    return rows


@dataclass(frozen=True)
class ReportInputs:
    """Everything a report is computed from."""

    period: Period
    stats: Mapping[str, DayStats]
    budgets: Sequence[BudgetLimits]
    spend: Mapping[str, float]
    aliases: Iterable[str]
    timezone: str
    now: datetime
    today: str
    targets: Targets = Targets()
    low_use_ratio: float = 0.10
    warn_ratio: float = 0.8
    top_errors: int = 10
    sources: Sequence[str] = ("gateway request records",)
    team_names: Mapping[str, str] = field(default_factory=dict)
    """Team id -> display name, for the teams that have one."""


def build_report(inputs: ReportInputs) -> Report:
    period = inputs.period
    cells = [item for day in period.days if day in inputs.stats for item in inputs.stats[day].cells.items()]
    total_cell = merge_cells(c for _, c in cells)
    n = total_cell.requests
    total = usage_row("all", total_cell, n)
    by_alias = group(cells, "alias")
    by_team = group(cells, "team")

    def rows(groups: Mapping[str, Cell], names: Mapping[str, str]) -> list[UsageRow]:
        unsorted = (usage_row(k, c, n, names.get(k)) for k, c in groups.items())
        return sorted(unsorted, key=lambda r: (-r.cost_usd, -r.requests, r.name))

    notes = []
    if period.end.isoformat() >= inputs.today:
        notes.append(f"The period is not over: figures up to {inputs.now:%Y-%m-%d %H:%M %Z}.")
    if n == 0:
        notes.append("No requests were recorded in this period.")
    return Report(
        kind=period.kind,
        label=period.label,
        start=period.start.isoformat(),
        end=period.end.isoformat(),
        timezone=inputs.timezone,
        generated_at=inputs.now.isoformat(timespec="seconds"),
        complete=period.end.isoformat() < inputs.today,
        total=total,
        kpis=kpis_of(total, inputs.targets),
        by_team=rows(by_team, inputs.team_names),
        by_alias=rows(by_alias, {}),
        budgets=budget_rows(period, inputs.budgets, inputs.spend, inputs.warn_ratio, inputs.team_names),
        top_errors=top_errors(total_cell, inputs.top_errors),
        low_use=low_use(by_alias, inputs.aliases, n, inputs.low_use_ratio),
        low_use_ratio=inputs.low_use_ratio,
        days=day_rows(period, inputs.stats),
        sources=list(inputs.sources),
        notes=notes,
    )
