"""gateway.policies.budget: periods in a local timezone, spend keys, check, record and events."""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest

from gateway.config.settings import BudgetSettings
from gateway.errors import BudgetExceeded
from gateway.policies.budget import (
    BudgetEvent,
    BudgetLimits,
    BudgetPolicy,
    Ledger,
    model_spend_key,
    period_ids,
    seconds_until_reset,
    spend_key,
    team_model_spend_key,
)
from gateway.state.base import BackendUnavailable

SEOUL = ZoneInfo("Asia/Seoul")
LA = ZoneInfo("America/Los_Angeles")


class FakeLedger:
    """The SpendLedger contract, in memory: add, known, refresh, reservations."""

    def __init__(self) -> None:
        self.totals: dict[str, float] = {}
        self.adds: list[dict[str, float]] = []
        self.refreshed: list[list[str]] = []
        self.held: dict[str, float] = {}
        self.down = False

    def reserve(self, keys: Sequence[str], usd: float) -> None:
        for key in keys:
            self.held[key] = self.held.get(key, 0.0) + usd

    def release(self, keys: Sequence[str], usd: float) -> None:
        for key in keys:
            self.held[key] -= usd

    def reserved(self, keys: Sequence[str]) -> dict[str, float]:
        return {k: self.held.get(k, 0.0) for k in keys}

    def add(self, increments: Mapping[str, float]) -> None:
        self.adds.append(dict(increments))
        for key, amount in increments.items():
            self.totals[key] = self.totals.get(key, 0.0) + amount

    def known(self, keys: Sequence[str]) -> dict[str, float]:
        return {k: self.totals.get(k, 0.0) for k in keys}

    def tally(self, group: Hashable, keys: Sequence[Sequence[str]], amounts: Sequence[float]) -> None:
        self.add({key: amount for counters, amount in zip(keys, amounts, strict=True) for key in counters})

    async def refresh(self, keys: Sequence[str]) -> None:
        self.refreshed.append(list(keys))
        if self.down:
            raise BackendUnavailable("redis is down")


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def local(tz: ZoneInfo, year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, second, tzinfo=tz)


def make(
    at: datetime, tz: str = "Asia/Seoul", **settings: float
) -> tuple[BudgetPolicy, FakeLedger, Clock, list[BudgetEvent]]:
    ledger, clock = FakeLedger(), Clock(at)
    events: list[BudgetEvent] = []
    typed: Ledger = ledger  # the fake satisfies the policy's ledger protocol
    budgets = BudgetSettings.model_validate({"timezone": tz, **settings})
    policy = BudgetPolicy(typed, budgets, clock=clock, on_event=events.append)
    return policy, ledger, clock, events


# --- periods -----------------------------------------------------------------------


def test_period_ids_follow_the_local_day_in_seoul() -> None:
    # 15:30 UTC on the 25th is already 00:30 on the 26th in Seoul (UTC+9)
    assert period_ids(datetime(2026, 11, 25, 15, 30, tzinfo=UTC), SEOUL) == ("2026-11-26", "2026-11")
    assert period_ids(datetime(2026, 11, 25, 14, 59, 59, tzinfo=UTC), SEOUL) == ("2026-11-25", "2026-11")
    # month end: 23:59:59 on Nov 30 in Seoul, then Dec 1
    assert period_ids(datetime(2026, 11, 30, 14, 59, 59, tzinfo=UTC), SEOUL) == ("2026-11-30", "2026-11")
    assert period_ids(datetime(2026, 11, 30, 15, 0, 0, tzinfo=UTC), SEOUL) == ("2026-12-01", "2026-12")


def test_period_ids_in_los_angeles_lag_utc() -> None:
    # 07:00 UTC on Jan 1 is still New Year's Eve (PST, UTC-8)
    assert period_ids(datetime(2027, 1, 1, 7, 0, tzinfo=UTC), LA) == ("2026-12-31", "2026-12")
    assert period_ids(datetime(2027, 1, 1, 8, 0, tzinfo=UTC), LA) == ("2027-01-01", "2027-01")
    # a local time in another zone is converted, not read as wall clock
    assert period_ids(local(SEOUL, 2026, 11, 26, 10, 0), LA) == ("2026-11-25", "2026-11")


def test_period_ids_need_an_aware_datetime() -> None:
    with pytest.raises(ValueError, match="aware"):
        period_ids(datetime(2026, 11, 26, 12, 0), SEOUL)


def test_seconds_until_daily_and_monthly_reset_in_seoul() -> None:
    now = local(SEOUL, 2026, 11, 26, 18, 56, 30)
    assert seconds_until_reset(now, SEOUL, "daily") == 5 * 3600 + 3 * 60 + 30
    assert seconds_until_reset(now, SEOUL, "monthly") == 4 * 86400 + 5 * 3600 + 3 * 60 + 30
    # exactly at midnight a whole new period lies ahead
    assert seconds_until_reset(local(SEOUL, 2026, 11, 26, 0, 0), SEOUL, "daily") == 86400
    # one second before the month ends; December rolls into the next year
    assert seconds_until_reset(local(SEOUL, 2026, 11, 30, 23, 59, 59), SEOUL, "monthly") == 1
    assert seconds_until_reset(local(SEOUL, 2026, 12, 31, 12, 0), SEOUL, "monthly") == 12 * 3600
    # the clock's own zone does not matter, only the instant
    utc_now = datetime(2026, 11, 26, 9, 56, 30, tzinfo=UTC)
    assert seconds_until_reset(utc_now, SEOUL, "daily") == 5 * 3600 + 3 * 60 + 30


def test_seconds_until_reset_across_dst_in_los_angeles() -> None:
    # 2026-03-08: clocks jump 02:00 PST -> 03:00 PDT, the day has 23 hours
    assert seconds_until_reset(local(LA, 2026, 3, 8, 0, 30), LA, "daily") == 22.5 * 3600
    # 2026-11-01: clocks fall back 02:00 PDT -> 01:00 PST, the day has 25 hours
    assert seconds_until_reset(local(LA, 2026, 11, 1, 0, 30), LA, "daily") == 24.5 * 3600
    # March has 31 days less the lost hour
    assert seconds_until_reset(local(LA, 2026, 3, 1, 0, 0), LA, "monthly") == 31 * 86400 - 3600
    assert seconds_until_reset(local(LA, 2026, 3, 31, 12, 0), LA, "monthly") == 12 * 3600
    assert seconds_until_reset(local(LA, 2026, 11, 1, 0, 0), LA, "monthly") == 30 * 86400 + 3600


# --- keys --------------------------------------------------------------------------


def test_spend_key_names() -> None:
    assert spend_key("key", "k1", "2026-11-26") == "spend:key:k1:2026-11-26"
    assert spend_key("team", "eng", "2026-11") == "spend:team:eng:2026-11"
    assert spend_key("global", "all", "2026-11") == "spend:global:all:2026-11"
    assert model_spend_key("demo-gpt", "2026-11-26") == "spend:model:demo-gpt:2026-11-26"
    assert team_model_spend_key("eng", "demo-gpt", "2026-11-26") == "spend:team_model:eng:demo-gpt:2026-11-26"


# --- record ---------------------------------------------------------------------------


def test_record_writes_every_counter_in_one_add() -> None:
    # 23:30 UTC on Nov 30 is already Dec 1 in Seoul
    policy, ledger, _, _ = make(datetime(2026, 11, 30, 23, 30, tzinfo=UTC))
    policy.record(0.25, key_id="k1", team="eng", alias="demo-gpt")
    assert ledger.adds == [
        {
            "spend:global:all:2026-12-01": 0.25,
            "spend:global:all:2026-12": 0.25,
            "spend:key:k1:2026-12-01": 0.25,
            "spend:key:k1:2026-12": 0.25,
            "spend:team:eng:2026-12-01": 0.25,
            "spend:team:eng:2026-12": 0.25,
            "spend:model:demo-gpt:2026-12-01": 0.25,
            "spend:team_model:eng:demo-gpt:2026-12-01": 0.25,
        }
    ]


def test_record_without_team_or_alias() -> None:
    policy, ledger, _, _ = make(local(SEOUL, 2026, 11, 26, 12, 0))
    policy.record(1.5, key_id="k1", team=None, alias=None)
    assert ledger.adds == [
        {
            "spend:global:all:2026-11-26": 1.5,
            "spend:global:all:2026-11": 1.5,
            "spend:key:k1:2026-11-26": 1.5,
            "spend:key:k1:2026-11": 1.5,
        }
    ]
    policy.record(0.0, key_id="k1", team=None, alias=None)
    policy.record(float("nan"), key_id="k1", team=None, alias=None)
    assert len(ledger.adds) == 1


# --- check ---------------------------------------------------------------------------


async def test_check_passes_below_limit_and_refreshes_the_keys() -> None:
    policy, ledger, _, _ = make(local(SEOUL, 2026, 11, 26, 12, 0))
    limits = [BudgetLimits("key", "k1", daily_usd=1.0, monthly_usd=20.0), BudgetLimits("team", "eng", daily_usd=10.0)]
    policy.record(0.99, key_id="k1", team="eng", alias="a", limits=limits)
    await policy.check(limits)
    assert ledger.refreshed == [["spend:key:k1:2026-11-26", "spend:key:k1:2026-11", "spend:team:eng:2026-11-26"]]


async def test_check_without_limits_does_no_io() -> None:
    policy, ledger, _, _ = make(local(SEOUL, 2026, 11, 26, 12, 0))
    await policy.check([BudgetLimits("key", "k1")])
    await policy.check([])
    assert ledger.refreshed == []


async def test_backend_unavailable_propagates() -> None:
    policy, ledger, _, _ = make(local(SEOUL, 2026, 11, 26, 12, 0))
    ledger.down = True
    with pytest.raises(BackendUnavailable):
        await policy.check([BudgetLimits("key", "k1", daily_usd=1.0)])


async def test_key_budget_spent_at_exactly_the_limit() -> None:
    policy, _, _, _ = make(local(SEOUL, 2026, 11, 26, 18, 56, 30))
    limits = [BudgetLimits("key", "k1", daily_usd=2.0)]
    policy.record(2.0, key_id="k1", team=None, alias=None, limits=limits)
    with pytest.raises(BudgetExceeded) as info:
        await policy.check(limits)
    err = info.value
    assert err.http_status == 429
    assert err.code == "insufficient_quota"
    assert err.to_body()["error"]["type"] == "insufficient_quota"
    assert err.retry_after == 18210.0
    assert err.headers == {"retry-after": "18210"}
    assert err.message == "the daily budget of key 'k1' (2.00 USD) is spent; it resets in 5h 3m"


async def test_team_budget_over_limit() -> None:
    policy, _, _, _ = make(local(SEOUL, 2026, 11, 26, 18, 56, 30))
    limits = [BudgetLimits("key", "k1", daily_usd=100.0), BudgetLimits("team", "eng", daily_usd=10.0)]
    # another key of the team spent it
    policy.record(10.5, key_id="k2", team="eng", alias="demo-gpt")
    with pytest.raises(BudgetExceeded) as info:
        await policy.check(limits)
    assert info.value.message == "the daily budget of team 'eng' (10.00 USD) is spent; it resets in 5h 3m"
    assert info.value.headers["retry-after"] == "18210"
    # a key of another team passes
    await policy.check([BudgetLimits("team", "ops", daily_usd=10.0)])


async def test_global_budget_from_settings() -> None:
    policy, ledger, _, _ = make(local(LA, 2026, 11, 30, 22, 0), tz="America/Los_Angeles", monthly_usd=100.0)
    await policy.check([])
    assert ledger.refreshed == [["spend:global:all:2026-11"]]
    ledger.totals["spend:global:all:2026-11"] = 100.01  # e.g. another replica's spend
    with pytest.raises(BudgetExceeded) as info:
        await policy.check([BudgetLimits("key", "k1")])
    assert info.value.message == "the monthly budget of the gateway (100.00 USD) is spent; it resets in 2h 0m"
    assert info.value.headers["retry-after"] == "7200"
    # an explicit global entry replaces the settings' limits
    await policy.check([BudgetLimits("global", "all", monthly_usd=200.0)])


async def test_the_budget_resetting_last_is_reported() -> None:
    now = local(SEOUL, 2026, 11, 26, 12, 0)
    policy, _, _, _ = make(now)
    limits = [BudgetLimits("key", "k1", daily_usd=1.0, monthly_usd=5.0)]
    policy.record(6.0, key_id="k1", team=None, alias=None)
    with pytest.raises(BudgetExceeded) as info:
        await policy.check(limits)
    wait = seconds_until_reset(now, SEOUL, "monthly")
    assert wait == 4 * 86400 + 12 * 3600
    assert info.value.retry_after == wait
    assert info.value.headers["retry-after"] == str(round(wait))
    assert info.value.message == "the monthly budget of key 'k1' (5.00 USD) is spent; it resets in 4d 12h"


async def test_a_spent_day_passes_again_after_local_midnight() -> None:
    policy, _, clock, _ = make(local(SEOUL, 2026, 11, 26, 23, 59, 30))
    limits = [BudgetLimits("key", "k1", daily_usd=1.0)]
    policy.record(1.0, key_id="k1", team=None, alias=None)
    with pytest.raises(BudgetExceeded) as info:
        await policy.check(limits)
    assert info.value.message.endswith("it resets in 30s")
    assert info.value.headers["retry-after"] == "30"
    clock.now = local(SEOUL, 2026, 11, 27, 0, 0, 0)
    await policy.check(limits)


# --- events -----------------------------------------------------------------------------


def test_threshold_and_exhausted_fire_once_per_period() -> None:
    policy, _, clock, events = make(local(SEOUL, 2026, 11, 26, 12, 0))
    limits = [BudgetLimits("team", "eng", daily_usd=10.0)]

    def spend(amount: float) -> None:
        policy.record(amount, key_id="k1", team="eng", alias="a", limits=limits)

    spend(5.0)
    assert events == []
    spend(3.5)  # 8.5 >= 80 %
    assert events == [BudgetEvent("threshold", "team", "eng", "daily", 8.5, 10.0, "2026-11-26")]
    spend(0.5)  # 9.0: still only the one threshold event
    assert len(events) == 1
    spend(2.0)  # 11.0 >= 100 %
    assert events[1:] == [BudgetEvent("exhausted", "team", "eng", "daily", 11.0, 10.0, "2026-11-26")]
    spend(1.0)
    assert len(events) == 2
    # next day in Seoul: the same events may fire again, once each
    clock.now = local(SEOUL, 2026, 11, 27, 0, 0, 1)
    spend(9.0)
    spend(0.5)
    assert events[2:] == [BudgetEvent("threshold", "team", "eng", "daily", 9.0, 10.0, "2026-11-27")]


def test_one_jump_past_both_fires_both_in_order() -> None:
    policy, _, _, events = make(local(SEOUL, 2026, 11, 26, 12, 0), monthly_usd=50.0)
    policy.record(
        12.0, key_id="k1", team=None, alias=None, limits=[BudgetLimits("key", "k1", daily_usd=10.0, monthly_usd=100.0)]
    )
    assert [(e.kind, e.scope, e.period, e.spent, e.limit) for e in events] == [
        ("threshold", "key", "daily", 12.0, 10.0),
        ("exhausted", "key", "daily", 12.0, 10.0),
    ]
    policy.record(30.0, key_id="k1", team=None, alias=None, limits=[])  # global: 42 of 50
    assert events[2:] == [BudgetEvent("threshold", "global", "all", "monthly", 42.0, 50.0, "2026-11")]


def test_monthly_events_repeat_in_the_next_month_across_dst() -> None:
    # Los Angeles, the end of October (PDT) into November, whose first day has 25 hours
    policy, _, clock, events = make(local(LA, 2026, 10, 31, 23, 0), tz="America/Los_Angeles")
    limits = [BudgetLimits("key", "k1", monthly_usd=1.0)]
    policy.record(1.0, key_id="k1", team=None, alias=None, limits=limits)
    assert [(e.kind, e.period_id) for e in events] == [("threshold", "2026-10"), ("exhausted", "2026-10")]
    clock.now = local(LA, 2026, 11, 1, 23, 30)  # 25 hours later: still Nov 1 locally
    assert period_ids(clock.now, LA) == ("2026-11-01", "2026-11")
    policy.record(1.0, key_id="k1", team=None, alias=None, limits=limits)
    policy.record(1.0, key_id="k1", team=None, alias=None, limits=limits)
    assert [(e.kind, e.period_id, e.spent) for e in events[2:]] == [
        ("threshold", "2026-11", 1.0),
        ("exhausted", "2026-11", 1.0),
    ]


def test_remembered_events_of_past_periods_are_dropped() -> None:
    policy, _, clock, events = make(local(SEOUL, 2026, 11, 26, 12, 0))
    for day in range(26, 31):
        clock.now = local(SEOUL, 2026, 11, day, 12, 0)
        for key in ("k1", "k2", "k3"):
            policy.record(1.0, key_id=key, team=None, alias=None, limits=[BudgetLimits("key", key, daily_usd=1.0)])
    assert len(events) == 5 * 3 * 2
    # only today's marks are kept: 3 keys x 2 kinds
    assert policy.alerts.fired == {
        (s, k, "2026-11-30", kind) for s in ("key",) for k in ("k1", "k2", "k3") for kind in ("threshold", "exhausted")
    }


def test_a_failing_event_handler_does_not_break_record(caplog: pytest.LogCaptureFixture) -> None:
    ledger = FakeLedger()

    def boom(event: BudgetEvent) -> None:
        raise RuntimeError("alert sink down")

    policy = BudgetPolicy(
        ledger, BudgetSettings(), clock=lambda: datetime(2026, 11, 26, 12, 0, tzinfo=UTC), on_event=boom
    )
    policy.record(5.0, key_id="k1", team=None, alias=None, limits=[BudgetLimits("key", "k1", daily_usd=1.0)])
    assert ledger.totals["spend:key:k1:2026-11-26"] == 5.0
    assert "budget event handler failed" in caplog.text


def test_events_need_a_limit() -> None:
    policy, _, _, events = make(local(SEOUL, 2026, 11, 26, 12, 0))
    policy.record(1000.0, key_id="k1", team="eng", alias="a", limits=[BudgetLimits("key", "k1")])
    assert events == []


def test_events_do_not_fire_again_after_a_reload() -> None:
    policy, ledger, clock, events = make(local(SEOUL, 2026, 11, 26, 12, 0))
    limits = [BudgetLimits("team", "eng", daily_usd=10.0)]
    policy.record(9.0, key_id="k1", team="eng", alias="a", limits=limits)
    assert [e.kind for e in events] == ["threshold"]
    # a config reload builds a new policy over the same ledger
    reloaded = BudgetPolicy(ledger, BudgetSettings(timezone="Asia/Seoul"), clock=clock, on_event=events.append)
    reloaded.carry_over(policy)
    reloaded.record(0.5, key_id="k1", team="eng", alias="a", limits=limits)
    assert [e.kind for e in events] == ["threshold"], "the threshold event is not emitted twice in one period"
    reloaded.record(1.0, key_id="k1", team="eng", alias="a", limits=limits)
    assert [e.kind for e in events] == ["threshold", "exhausted"]


def test_levels_are_published_on_demand_for_team_and_global_budgets_of_this_period() -> None:
    ledger, clock = FakeLedger(), Clock(local(SEOUL, 2026, 11, 26, 12, 0))
    levels: list[tuple[str, str, str, float, float]] = []
    policy = BudgetPolicy(
        ledger,
        BudgetSettings(timezone="Asia/Seoul", daily_usd=100.0),
        clock=clock,
        on_level=lambda lim, period, spent, limit: levels.append((lim.scope, lim.id, period, spent, limit)),
    )
    limits = [BudgetLimits("key", "k1", daily_usd=5.0), BudgetLimits("team", "eng", daily_usd=10.0)]
    policy.publish_levels()
    assert levels == [], "nothing seen yet"
    policy.record(2.0, key_id="k1", team="eng", alias="a", limits=limits)
    policy.record(1.0, key_id="k1", team="eng", alias="a", limits=limits)
    assert levels == [], "recording sets no gauge"
    policy.publish_levels()
    assert sorted(levels) == [("global", "all", "daily", 3.0, 100.0), ("team", "eng", "daily", 3.0, 10.0)]
    levels.clear()
    clock.now = local(SEOUL, 2026, 11, 27, 0, 0, 1)  # a new day: yesterday's budgets are no longer watched
    policy.record(0.5, key_id="k1", team=None, alias="a", limits=limits[:1])
    policy.publish_levels()
    assert levels == [("global", "all", "daily", 0.5, 100.0)]


# --- reservations ----------------------------------------------------------------------------------


async def test_check_reserves_the_estimate_and_release_gives_it_back() -> None:
    policy, ledger, _, _ = make(local(SEOUL, 2026, 11, 26, 12, 0))
    limits = [BudgetLimits("key", "k1", daily_usd=1.0)]
    day = spend_key("key", "k1", "2026-11-26")
    first = await policy.check(limits, 0.4)
    second = await policy.check(limits, 0.4)
    assert first is not None and second is not None
    assert ledger.held == {day: pytest.approx(0.8)}
    with pytest.raises(BudgetExceeded) as err:  # 0.8 reserved + 0.4 > 1.0
        await policy.check(limits, 0.4)
    assert err.value.message == (
        "the daily budget of key 'k1' (1.00 USD) has 1.00 USD left, of which requests in flight have reserved"
        " 0.80 USD: too little remains for this request (estimated 0.40 USD: its prompt and max_tokens at its"
        " deployments' prices); retry shortly"
    )
    assert err.value.headers["retry-after"] == "1"
    assert await policy.check(limits, 0.2) is not None, "a smaller one still fits"
    policy.release(first)
    assert ledger.held[day] == pytest.approx(0.6)
    assert await policy.check(limits, 0.0) is None, "nothing to reserve"


async def test_a_request_alone_is_admitted_while_the_budget_is_not_spent() -> None:
    policy, ledger, _, _ = make(local(SEOUL, 2026, 11, 26, 12, 0))
    limits = [BudgetLimits("key", "k1", daily_usd=1.0)]
    ledger.totals[spend_key("key", "k1", "2026-11-26")] = 0.9
    alone = await policy.check(limits, 5.0)  # more than is left, but nothing else in flight
    assert alone is not None
    with pytest.raises(BudgetExceeded):
        await policy.check(limits, 0.01)  # the second must fit beside the first
    policy.release(alone)
    ledger.totals[spend_key("key", "k1", "2026-11-26")] = 1.0
    with pytest.raises(BudgetExceeded) as err:
        await policy.check(limits, 0.0)
    assert "is spent" in err.value.message and float(err.value.headers["retry-after"]) > 1


async def test_other_replicas_reservations_count_too() -> None:
    policy, ledger, _, _ = make(local(SEOUL, 2026, 11, 26, 12, 0))
    limits = [BudgetLimits("team", "eng", monthly_usd=10.0)]
    ledger.held[spend_key("team", "eng", "2026-11")] = 9.5  # as fetched from the shared backend
    with pytest.raises(BudgetExceeded):
        await policy.check(limits, 1.0)
    assert await policy.check(limits, 0.5) is not None
