"""What a budget is counted in: periods in the budget timezone, the names of the
spend and usage counters (the table in :mod:`gateway.policies.budget`), and the
checks of a set of limits for the current day and month.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from typing import Literal
from zoneinfo import ZoneInfo

Scope = Literal["key", "team", "global"]
Period = Literal["daily", "monthly"]
GLOBAL_ID = "all"
USAGE_METRICS = ("requests", "prompt_tokens", "completion_tokens")


# --- periods ---------------------------------------------------------------------


def _local(now: datetime, tz: ZoneInfo) -> datetime:
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError("budget periods need an aware datetime (a clock with a timezone)")
    return now.astimezone(tz)


def period_ids(now: datetime, tz: ZoneInfo) -> tuple[str, str]:
    """``("2026-11-26", "2026-11")``: the day and month of ``now`` in ``tz``."""
    local = _local(now, tz)
    return f"{local:%Y-%m-%d}", f"{local:%Y-%m}"


def period_end(now: datetime, tz: ZoneInfo, period: Period) -> datetime:
    """The instant (UTC) the period containing ``now`` ends: the next local
    midnight, or local midnight of the next month's 1st."""
    day = _local(now, tz).date()
    month_later = (day.replace(day=1) + timedelta(days=32)).replace(day=1)
    nxt = day + timedelta(days=1) if period == "daily" else month_later
    # Aware datetimes sharing a tzinfo subtract as wall clocks: compare in UTC.
    return datetime.combine(nxt, time(0), tzinfo=tz).astimezone(UTC)


def seconds_until_reset(now: datetime, tz: ZoneInfo, period: Period) -> float:
    """Real seconds from ``now`` until the period resets (always > 0)."""
    return (period_end(now, tz, period) - now.astimezone(UTC)).total_seconds()


# --- counter names ---------------------------------------------------------------


def spend_key(scope: Scope, id: str, period_id: str) -> str:
    """``spend:{scope}:{id}:{period_id}``; the global scope's id is ``all``."""
    return f"spend:{scope}:{id}:{period_id}"


def usage_key(metric: str, scope: str, id: str, day: str) -> str:
    """``usage:{metric}:{scope}:{id}:{day}``: requests and tokens per day."""
    return f"usage:{metric}:{scope}:{id}:{day}"


def model_spend_key(alias: str, day: str) -> str:
    return f"spend:model:{alias}:{day}"


def team_model_spend_key(team: str, alias: str, day: str) -> str:
    return f"spend:team_model:{team}:{alias}:{day}"


def spend_keys(key_id: str | None, team: str | None, alias: str | None, day: str, month: str) -> list[str]:
    """Every spend counter one request's cost is added to, today and this month."""
    keys: list[str] = [spend_key("global", GLOBAL_ID, day), spend_key("global", GLOBAL_ID, month)]
    if key_id is not None:
        keys += [spend_key("key", key_id, day), spend_key("key", key_id, month)]
    if team is not None:
        keys += [spend_key("team", team, day), spend_key("team", team, month)]
    if alias is not None:
        keys.append(model_spend_key(alias, day))
        if team is not None:
            keys.append(team_model_spend_key(team, alias, day))
    return keys


def usage_keys(key_id: str | None, team: str | None, alias: str, day: str) -> list[list[str]]:
    """The usage counters of one key, team and alias today, per metric (in ``USAGE_METRICS`` order)."""
    scopes = [("global", GLOBAL_ID), ("model", alias)]
    if key_id is not None:
        scopes.append(("key", key_id))
    if team is not None:
        scopes.append(("team", team))
    return [[usage_key(m, s, i, day) for s, i in scopes] for m in USAGE_METRICS]


# --- limits and their checks -----------------------------------------------------


@dataclass(frozen=True)
class BudgetLimits:
    """The limits of one scope; None is unlimited."""

    scope: Scope
    id: str
    daily_usd: float | None = None
    monthly_usd: float | None = None


@dataclass(frozen=True)
class BudgetCheck:
    """One limit of one scope in the current period, and the counter it reads."""

    limits: BudgetLimits
    period: Period
    period_id: str
    key: str
    limit: float


def checks_of(limits: Sequence[BudgetLimits], global_limits: BudgetLimits, day: str, month: str) -> list[BudgetCheck]:
    """The checks of ``limits`` today; ``global_limits`` apply unless ``limits``
    has a ``global`` entry of its own."""
    all_limits = list(limits)
    if not any(lim.scope == "global" for lim in all_limits):
        all_limits.append(global_limits)
    checks = []
    for lim in all_limits:
        if lim.daily_usd is not None:
            checks.append(BudgetCheck(lim, "daily", day, spend_key(lim.scope, lim.id, day), lim.daily_usd))
        if lim.monthly_usd is not None:
            checks.append(BudgetCheck(lim, "monthly", month, spend_key(lim.scope, lim.id, month), lim.monthly_usd))
    return checks
