"""Gathering a report: statistics, spend counters, budgets and (optionally)
Prometheus, for the admin API and the ``gateway report`` command alike."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Literal, Protocol
from zoneinfo import ZoneInfo

import orjson

from gateway.config.settings import Settings
from gateway.policies.budget import GLOBAL_ID, BudgetLimits
from gateway.reports.html import HtmlRenderer
from gateway.reports.kpis import Report, ReportInputs, Targets, budget_spend_keys, build_report
from gateway.reports.markdown import render_markdown
from gateway.reports.periods import Kind, Period, period_for
from gateway.reports.prometheus import PrometheusError, PrometheusSource
from gateway.reports.satisfaction import FeedbackReader, build_satisfaction, window_days
from gateway.reports.stats import DayStats
from gateway.state.base import Record

log = logging.getLogger("gateway.reports")

Format = Literal["md", "html", "json"]
FORMATS: tuple[Format, ...] = ("md", "html", "json")
MEDIA_TYPES = {"md": "text/markdown; charset=utf-8", "html": "text/html; charset=utf-8", "json": "application/json"}


class StatsReader(Protocol):
    async def read_days(self, days: Iterable[str]) -> dict[str, DayStats]: ...


@dataclass(frozen=True)
class ReportSources:
    stats: StatsReader
    read_spend: Callable[[Sequence[str]], Awaitable[dict[str, float]]]
    """Spend counter totals (``spend:team:t:2026-11-26`` ...)."""
    teams: Callable[[], Awaitable[list[Record]]]
    aliases: Callable[[], Iterable[str]]
    feedback: FeedbackReader | None = None
    """User satisfaction scores by day (gateway/reports/satisfaction.py); None: no such section."""


def parse_format(text: str) -> Format:
    if text not in FORMATS:
        raise ValueError(f"unknown report format {text!r}; use one of: md, html, json")
    return text


def budgets_of(settings: Settings, teams: Iterable[Record]) -> list[BudgetLimits]:
    """The gateway-wide budget (if set) and every team's that has one."""
    out = []
    b = settings.budgets
    if b.daily_usd is not None or b.monthly_usd is not None:
        out.append(BudgetLimits("global", GLOBAL_ID, b.daily_usd, b.monthly_usd))
    for team in sorted(teams, key=lambda t: str(t.get("id"))):
        daily, monthly = team.get("budget_daily_usd"), team.get("budget_monthly_usd")
        if daily is not None or monthly is not None:
            out.append(BudgetLimits("team", str(team.get("id")), daily, monthly))
    return out


def team_names_of(teams: Iterable[Record]) -> dict[str, str]:
    """Team id -> display name, for the teams that have one (``name`` is free
    text set through the admin API: the renderers escape it, never trust it)."""
    return {str(t["id"]): str(t["name"]) for t in teams if t.get("id") is not None and t.get("name")}


def bounds(period: Period, tz: ZoneInfo, now: datetime) -> tuple[datetime, datetime]:
    """The period as UTC instants: its first local midnight, and its end
    (the local midnight after its last day) or ``now`` if that is earlier."""
    start = datetime.combine(period.start, time(0), tzinfo=tz).astimezone(UTC)
    end = datetime.combine(period.end + timedelta(days=1), time(0), tzinfo=tz).astimezone(UTC)
    return start, min(end, now.astimezone(UTC))


def targets_of(settings: Settings) -> Targets:
    t = settings.reports.targets
    return Targets(t.availability, t.p50_ms, t.p95_ms, t.p99_ms, t.error_rate, t.satisfaction)


async def make_report(
    kind: Kind,
    on: date | None,
    settings: Settings,
    sources: ReportSources,
    *,
    now: datetime | None = None,
) -> Report:
    """The report of the ``kind`` period containing ``on`` (default: today in
    ``budgets.timezone``). Raises ``BackendUnavailable`` when the state
    backend cannot be read; a Prometheus failure only adds a note."""
    tz = ZoneInfo(settings.budgets.timezone)
    now = now or datetime.now(UTC)
    today = now.astimezone(tz).date()
    period = period_for(kind, on or today)
    stats = await sources.stats.read_days(period.days)
    teams = await sources.teams()
    budgets = budgets_of(settings, teams)
    spend = await sources.read_spend(budget_spend_keys(period, budgets))
    cfg = settings.reports
    targets = targets_of(settings)
    report = build_report(
        ReportInputs(
            period=period,
            stats=stats,
            budgets=budgets,
            spend=spend,
            aliases=list(sources.aliases()),
            timezone=settings.budgets.timezone,
            now=now.astimezone(tz),
            today=today.isoformat(),
            targets=targets,
            low_use_ratio=cfg.low_use_ratio,
            warn_ratio=settings.budgets.warn_ratio,
            top_errors=cfg.top_errors,
            team_names=team_names_of(teams),
        )
    )
    report.drift_alert_share = settings.pricing.drift_alert_share
    if sources.feedback is not None:
        last = min(period.end, today)
        report.satisfaction = build_satisfaction(await sources.feedback(window_days(last)), last, targets.satisfaction)
    if cfg.prometheus_url and period.start <= today:
        start, end = bounds(period, tz, now)
        source = PrometheusSource(cfg.prometheus_url, timeout_s=cfg.prometheus_timeout_s)
        try:
            report.prometheus = await source.kpis(start, end, targets)
            report.sources.append(f"Prometheus at {cfg.prometheus_url}")
        except PrometheusError as exc:
            log.warning("report: %s", exc)
            report.notes.append(f"Prometheus was not used: {exc}")
        else:
            try:
                report.reconciliation = await source.reconciliation(start, end, report.drift_alert_share)
            except PrometheusError as exc:
                log.warning("report: cost reconciliation: %s", exc)
                report.notes.append(f"The cost reconciliation could not be read from Prometheus: {exc}")
    return report


class Renderer:
    """A report in each format. It holds the HTML renderer (and so the
    Jinja2 environment with its compiled templates): build one per app or
    command run and keep it."""

    def __init__(self) -> None:
        self.html = HtmlRenderer()

    def render(self, report: Report, fmt: Format) -> str:
        if fmt == "md":
            return render_markdown(report)
        if fmt == "html":
            return self.html.render(report)
        return orjson.dumps(report.to_json(), option=orjson.OPT_INDENT_2).decode()
