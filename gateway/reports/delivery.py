"""The weekly and monthly reports delivered on schedule: the period that just ended (last
ISO week, last calendar month, in ``budgets.timezone``) built with :func:`make_report` and
sent through the notifier to the receivers of ``notifications.routes.reports`` (HTML for
e-mail, Markdown for the webhook and Slack). The weekly_report and monthly_report jobs run
:func:`deliver_report`."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, date, datetime, timedelta
from typing import Literal
from zoneinfo import ZoneInfo

from gateway.config.settings import Settings
from gateway.notify import DeliveryResult, Message
from gateway.reports.builder import Renderer, ReportSources, make_report
from gateway.reports.kpis import Report

DeliveredKind = Literal["weekly", "monthly"]
Send = Callable[[Message], Awaitable[DeliveryResult]]
"""``Notifier.send``."""


class DeliveryFailed(Exception):
    """No receiver took the report (the job counts as failed); the message says why."""


def last_period_day(kind: DeliveredKind, today: date) -> date:
    """A day of the period that ended before ``today``: last week's Monday, last month's 1st."""
    if kind == "weekly":
        return today - timedelta(days=today.weekday() + 7)
    return (today.replace(day=1) - timedelta(days=1)).replace(day=1)


def report_subject(report: Report) -> str:
    """``Gateway weekly report 2026-W48 (...): 1,234 requests, 4 of 5 KPIs met``."""
    judged = [k for k in report.kpis if k.met is not None]
    met = sum(1 for k in judged if k.met)
    kpis = f"{met} of {len(judged)} KPIs met" if judged else "no KPI judged (no traffic)"
    return f"Gateway {report.kind} report {report.label}: {report.total.requests:,} requests, {kpis}"


def report_message(report: Report, renderer: Renderer) -> Message:
    return Message(
        subject=report_subject(report),
        text=renderer.render(report, "md"),
        html=renderer.render(report, "html"),
        kind="reports",
    )


async def deliver_report(
    kind: DeliveredKind,
    settings: Settings,
    sources: ReportSources,
    notifier: Send,
    *,
    now: datetime | None = None,
    renderer: Renderer | None = None,
) -> str:
    """Build the report of the ``kind`` period that just ended and send it; a one-line
    summary for the job. Raises :class:`DeliveryFailed` when receivers are routed and none
    took it, and whatever :func:`make_report` raises (``BackendUnavailable``)."""
    if not settings.notifications.routes.reports:
        return f"{kind} report not sent: notifications.routes.reports names no receiver"
    now = now or datetime.now(UTC)
    today = now.astimezone(ZoneInfo(settings.budgets.timezone)).date()
    report = await make_report(kind, last_period_day(kind, today), settings, sources, now=now)
    result = await notifier(report_message(report, renderer or Renderer()))
    line = f"{kind} report {report.label} {result.summary()}"
    if result.receivers and not result.delivered:
        raise DeliveryFailed(line)
    return line
