"""Daily request statistics: what the reports are computed from.

One :class:`DayStats` holds a day's counts per (model alias, team) *cell*:
requests by status class, errors by code, tokens, cost, cache hits, streams
and a :class:`LatencyHistogram`. Every field adds, so the stats of several
replicas (or several days) merge by :meth:`DayStats.merge` into exact totals.

The input is the per-request record of the request log
(``gateway.observability.logs``); :class:`RequestRecord` names the fields used
here, so this module depends on the shape only.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol
from zoneinfo import ZoneInfo

from gateway.reports.histogram import LatencyHistogram

NO_TEAM = ""
"""The team of requests made without one (the master key, static keys)."""
UNKNOWN_ALIAS = "unknown"


class RequestRecord(Protocol):
    """The fields of one finished request that the statistics use."""

    @property
    def ts(self) -> object: ...  # epoch seconds, an aware datetime, or ISO 8601 text

    @property
    def alias(self) -> str | None: ...

    @property
    def team(self) -> str | None: ...

    @property
    def status(self) -> int: ...

    @property
    def latency_ms(self) -> float | None: ...

    @property
    def prompt_tokens(self) -> int | None: ...

    @property
    def completion_tokens(self) -> int | None: ...

    @property
    def cost_usd(self) -> float | None: ...

    @property
    def cache(self) -> str | None: ...

    @property
    def error_code(self) -> str | None: ...

    @property
    def stream(self) -> bool: ...


def to_datetime(ts: object) -> datetime:
    """A record's timestamp as an aware datetime (UTC when it carries no zone)."""
    if isinstance(ts, datetime):
        return ts if ts.tzinfo is not None else ts.replace(tzinfo=UTC)
    if isinstance(ts, (int, float)) and not isinstance(ts, bool):
        return datetime.fromtimestamp(float(ts), UTC)
    if isinstance(ts, str):
        parsed = datetime.fromisoformat(ts.replace("Z", "+00:00"))
        return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)
    raise ValueError(f"a record timestamp must be epoch seconds, a datetime or ISO 8601 text, got {ts!r}")


def day_of(ts: object, tz: ZoneInfo) -> str:
    """The local day (``2026-11-26``) of a record timestamp in ``tz``."""
    return f"{to_datetime(ts).astimezone(tz):%Y-%m-%d}"


def error_key(status: int, code: str | None) -> str:
    """How an error is counted: its stable code, else ``http_<status>``."""
    return code or f"http_{status}"


@dataclass
class Cell:
    """One alias and team's counts for a day."""

    requests: int = 0
    ok: int = 0
    client_errors: int = 0
    server_errors: int = 0
    errors: dict[str, int] = field(default_factory=dict)
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0
    cache_hits: int = 0
    streams: int = 0
    latency: LatencyHistogram = field(default_factory=LatencyHistogram)

    def add(self, rec: RequestRecord) -> None:
        self.requests += 1
        status = int(rec.status)
        if status < 400:
            self.ok += 1
        else:
            if status >= 500:
                self.server_errors += 1
            else:
                self.client_errors += 1
            key = error_key(status, rec.error_code)
            self.errors[key] = self.errors.get(key, 0) + 1
        self.prompt_tokens += int(rec.prompt_tokens or 0)
        self.completion_tokens += int(rec.completion_tokens or 0)
        cost = rec.cost_usd
        if cost is not None and cost > 0:
            self.cost_usd += float(cost)
        if rec.cache == "hit":
            self.cache_hits += 1
        if rec.stream:
            self.streams += 1
        if rec.latency_ms is not None:
            self.latency.observe(float(rec.latency_ms))

    def merge(self, other: Cell) -> None:
        for name in _COUNTS:
            setattr(self, name, getattr(self, name) + getattr(other, name))
        for code, n in other.errors.items():
            self.errors[code] = self.errors.get(code, 0) + n
        self.latency.merge(other.latency)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {name: getattr(self, name) for name in _COUNTS}
        out["errors"] = dict(self.errors)
        out["latency"] = self.latency.to_json()
        return out

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Cell:
        cell = cls()
        for name in _COUNTS:
            value = data.get(name)
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                setattr(cell, name, float(value) if name == "cost_usd" else int(value))
        errors = data.get("errors")
        if isinstance(errors, dict):
            cell.errors = {str(k): int(v) for k, v in errors.items() if isinstance(v, int)}
        latency = data.get("latency")
        if isinstance(latency, dict):
            cell.latency = LatencyHistogram.from_json(latency)
        return cell


_COUNTS = (
    "requests",
    "ok",
    "client_errors",
    "server_errors",
    "prompt_tokens",
    "completion_tokens",
    "cost_usd",
    "cache_hits",
    "streams",
)

CellKey = tuple[str, str]
"""(alias, team); team is :data:`NO_TEAM` for requests without one."""


@dataclass
class DayStats:
    day: str
    cells: dict[CellKey, Cell] = field(default_factory=dict)

    def cell(self, alias: str, team: str) -> Cell:
        key = (alias, team)
        found = self.cells.get(key)
        if found is None:
            found = self.cells[key] = Cell()
        return found

    def add(self, rec: RequestRecord) -> None:
        self.cell(rec.alias or UNKNOWN_ALIAS, rec.team or NO_TEAM).add(rec)

    def merge(self, other: DayStats) -> None:
        for (alias, team), cell in other.cells.items():
            self.cell(alias, team).merge(cell)

    def total(self) -> Cell:
        return merge_cells(self.cells.values())

    def to_json(self) -> dict[str, Any]:
        return {
            "day": self.day,
            "cells": [{"alias": a, "team": t, **c.to_json()} for (a, t), c in sorted(self.cells.items())],
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> DayStats:
        stats = cls(str(data.get("day", "")))
        cells = data.get("cells")
        for row in cells if isinstance(cells, list) else ():
            if isinstance(row, dict):
                stats.cell(str(row.get("alias", UNKNOWN_ALIAS)), str(row.get("team", NO_TEAM))).merge(
                    Cell.from_json(row)
                )
        return stats


def merge_cells(cells: Iterable[Cell]) -> Cell:
    out = Cell()
    for cell in cells:
        out.merge(cell)
    return out
