"""Report periods: a day, an ISO week (Monday to Sunday), a calendar month or a
calendar year, as local days in ``budgets.timezone`` (the days the spend counters use).
Every period is read from the daily aggregates (``report_stats``, kept
``reports.retention_days``: 400 by default), never from request detail, so a year's
report needs no detail older than its tier keeps."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from typing import Literal

Kind = Literal["daily", "weekly", "monthly", "yearly"]
KINDS: tuple[Kind, ...] = ("daily", "weekly", "monthly", "yearly")


@dataclass(frozen=True)
class Period:
    kind: Kind
    start: date
    end: date
    """The last day, included."""

    @property
    def days(self) -> list[str]:
        count = (self.end - self.start).days + 1
        return [f"{self.start + timedelta(days=i):%Y-%m-%d}" for i in range(count)]

    @property
    def months(self) -> list[str]:
        return sorted({day[:7] for day in self.days})

    @property
    def label(self) -> str:
        if self.kind == "daily":
            return f"{self.start:%Y-%m-%d}"
        if self.kind == "monthly":
            return f"{self.start:%Y-%m}"
        if self.kind == "yearly":
            return f"{self.start:%Y}"
        year, week, _ = self.start.isocalendar()
        return f"{year}-W{week:02d} ({self.start:%Y-%m-%d} to {self.end:%Y-%m-%d})"

    def complete_on(self, today: date) -> bool:
        """Whether the period has ended by ``today``."""
        return self.end < today


def parse_kind(text: str) -> Kind:
    if text not in KINDS:
        raise ValueError(f"unknown report period {text!r}; use one of: daily, weekly, monthly, yearly")
    return text


def parse_date(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise ValueError(f"invalid date {text!r}; use YYYY-MM-DD") from None


def period_for(kind: Kind, on: date) -> Period:
    """The period of ``kind`` that contains the day ``on``."""
    if kind == "daily":
        return Period(kind, on, on)
    if kind == "weekly":
        start = on - timedelta(days=on.weekday())
        return Period(kind, start, start + timedelta(days=6))
    if kind == "yearly":
        return Period(kind, on.replace(month=1, day=1), on.replace(month=12, day=31))
    start = on.replace(day=1)
    nxt = (start + timedelta(days=32)).replace(day=1)
    return Period(kind, start, nxt - timedelta(days=1))
