"""The report's "User satisfaction" section: the feedback scores (``POST /v1/feedback``,
gateway/server/feedback.py) of the 7 days that end with the report's last day (or today,
for a period not over), their average against ``reports.targets.satisfaction`` (4.5 by
default: met, MISSED, or no data without a score), count and distribution, in all and by
the alias that served each scored request.

The window is 7 days whatever the period, as the alert's (``GatewaySatisfactionBelowTarget``):
a daily report shows the week up to its day, a monthly one the month's last week. Scores are
read from the tables ``feedback:<day>`` (the day each score was given, ``budgets.timezone``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import date, timedelta

from gateway.config.feedback import table_of
from gateway.state.base import Record, StateBackend

WINDOW_DAYS = 7
SCORES = (1, 2, 3, 4, 5)

FeedbackReader = Callable[[Sequence[str]], Awaitable[list[Record]]]
"""The feedback records of the given days (``2026-11-26`` ...)."""


@dataclass(frozen=True)
class SatisfactionRow:
    name: str
    """``all``, or the model alias."""
    count: int
    average: float | None
    """None without a score."""
    distribution: list[int]
    """How many scores of 1, 2, 3, 4 and 5."""
    met: bool | None
    """``average >= target``; None without a score."""


@dataclass(frozen=True)
class Satisfaction:
    start: str
    end: str
    """The window's first and last day."""
    target: float
    total: SatisfactionRow
    by_alias: list[SatisfactionRow]


def window_days(end: date) -> list[str]:
    """The 7 days that end with ``end``, oldest first."""
    return [(end - timedelta(days=n)).isoformat() for n in range(WINDOW_DAYS - 1, -1, -1)]


def _row(name: str, scores: Sequence[int], target: float) -> SatisfactionRow:
    average = sum(scores) / len(scores) if scores else None
    met = None if average is None else average >= target
    return SatisfactionRow(name, len(scores), average, [scores.count(s) for s in SCORES], met)


def build_satisfaction(records: Iterable[Record], end: date, target: float) -> Satisfaction:
    """The section from the window's feedback records (one that is not a readable score
    is left out)."""
    days = window_days(end)
    everything: list[int] = []
    by_alias: dict[str, list[int]] = {}
    for record in records:
        score = record.get("score")
        if not isinstance(score, int) or isinstance(score, bool) or score not in SCORES:
            continue
        everything.append(score)
        by_alias.setdefault(str(record.get("alias") or "unknown"), []).append(score)
    rows = sorted((_row(alias, scores, target) for alias, scores in by_alias.items()), key=lambda r: (-r.count, r.name))
    return Satisfaction(days[0], days[-1], target, _row("all", everything, target), rows)


def feedback_reader(backend: StateBackend) -> FeedbackReader:
    """Reads the ``feedback:<day>`` tables of ``backend``."""

    async def read(days: Sequence[str]) -> list[Record]:
        tables = await asyncio.gather(*(backend.scan(table_of(day)) for day in days))
        return [record for table in tables for record in table]

    return read
