"""Report periods: a day, an ISO week (Monday to Sunday) or a calendar month,
as local days in ``budgets.timezone`` (the days the spend counters use)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from typing import Literal

Kind = Literal["daily", "weekly", "monthly"]
KINDS: tuple[Kind, ...] = ("daily", "weekly", "monthly")


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
        year, week, _ = self.start.isocalendar()
        return f"{year}-W{week:02d} ({self.start:%Y-%m-%d} to {self.end:%Y-%m-%d})"

    def complete_on(self, today: date) -> bool:
        """Whether the period has ended by ``today``."""
        return self.end < today


def parse_kind(text: str) -> Kind:
    if text not in KINDS:
        raise ValueError(f"unknown report period {text!r}; use one of: daily, weekly, monthly")
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
    start = on.replace(day=1)
    nxt = (start + timedelta(days=32)).replace(day=1)
    return Period(kind, start, nxt - timedelta(days=1))
