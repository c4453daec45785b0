"""Report statistics: the latency histogram's percentiles, the per-day cells,
and the store that writes them behind and merges replicas."""

from __future__ import annotations

import math
from datetime import date
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from gateway.observability.logs import RequestRecord
from gateway.reports.histogram import LatencyHistogram, bucket_of, upper_bound
from gateway.reports.stats import NO_TEAM, DayStats, day_of
from gateway.reports.store import OpenDays, StatsStore, table_of
from gateway.state.base import BackendUnavailable
from gateway.state.embedded import EmbeddedBackend

UTC = ZoneInfo("UTC")
NOON = 1_795_694_400.0  # 2026-11-26 12:00:00 UTC


def rec(
    alias: str = "chat",
    team: str | None = "red",
    status: int = 200,
    latency_ms: float = 100.0,
    ts: float = NOON,
    **kw: Any,
) -> RequestRecord:
    return RequestRecord(
        ts=ts, request_id="r", route="chat", status=status, latency_ms=latency_ms, alias=alias, team=team, **kw
    )


# --- histogram -------------------------------------------------------------------------


def test_bucket_bounds_are_within_4_5_percent() -> None:
    for ms in (1.5, 7.0, 99.0, 1000.0, 1234.5, 60_000.0):
        bound = upper_bound(bucket_of(ms))
        assert ms <= bound < ms * 1.045


def test_percentiles_of_1_to_100_ms() -> None:
    h = LatencyHistogram()
    for ms in range(1, 101):
        h.observe(float(ms))
    for q, true in ((0.5, 50), (0.95, 95), (0.99, 99)):
        got = h.quantile(q)
        assert got is not None and true <= got < true * 1.045, (q, got)
    assert h.quantile(1.0) == 100.0  # capped at the largest latency seen
    assert h.mean() == 50.5
    assert h.total == 100


def test_all_equal_latencies_give_that_latency() -> None:
    h = LatencyHistogram()
    for _ in range(10):
        h.observe(1500.0)
    assert h.quantile(0.5) == h.quantile(0.99) == 1500.0


def test_empty_histogram_and_bad_input() -> None:
    h = LatencyHistogram()
    assert h.quantile(0.5) is None and h.mean() is None and h.share_over(10) is None
    h.observe(math.nan)
    h.observe(-5.0)
    assert h.total == 0
    with pytest.raises(ValueError, match="quantile"):
        h.quantile(0.0)


def test_merged_histograms_give_the_percentile_of_all_observations() -> None:
    a, b = LatencyHistogram(), LatencyHistogram()
    for _ in range(90):
        a.observe(100.0)
    for _ in range(10):
        b.observe(3000.0)
    a.merge(b)
    assert a.total == 100
    assert a.quantile(0.5) is not None and 100 <= a.quantile(0.5) < 105  # type: ignore[operator]
    assert a.quantile(0.95) == 3000.0
    assert a.share_over(2000.0) == pytest.approx(0.10)
    assert LatencyHistogram.from_json(a.to_json()) == a


# --- cells -----------------------------------------------------------------------------


def test_cells_count_status_classes_errors_tokens_cost_and_cache() -> None:
    day = DayStats("2026-11-26")
    day.add(rec(prompt_tokens=10, completion_tokens=5, cost_usd=0.25, cache="miss"))
    day.add(rec(prompt_tokens=10, completion_tokens=5, cost_usd=0.25, cache="hit", stream=True))
    day.add(rec(status=502, error_code="upstream_http_error"))
    day.add(rec(status=429, error_code=None))
    day.add(rec(alias="embed", team=None))
    cell = day.cells[("chat", "red")]
    assert (cell.requests, cell.ok, cell.client_errors, cell.server_errors) == (4, 2, 1, 1)
    assert cell.errors == {"upstream_http_error": 1, "http_429": 1}
    assert (cell.prompt_tokens, cell.completion_tokens, cell.cost_usd) == (20, 10, 0.5)
    assert (cell.cache_hits, cell.streams) == (1, 1)
    assert ("embed", NO_TEAM) in day.cells
    total = day.total()
    assert total.requests == 5 and total.latency.total == 5
    again = DayStats.from_json(day.to_json())
    assert again.to_json() == day.to_json()


def test_day_of_uses_the_budget_timezone() -> None:
    late = NOON + 11.5 * 3600  # 23:30 UTC
    assert day_of(late, UTC) == "2026-11-26"
    assert day_of(late, ZoneInfo("Europe/Berlin")) == "2026-11-27"
    assert day_of("2026-11-26T23:30:00Z", ZoneInfo("Asia/Tokyo")) == "2026-11-27"


# --- the store -------------------------------------------------------------------------


def test_open_days_count_each_day_in_its_own_segment_and_forget_written_old_days() -> None:
    days = OpenDays("a", ZoneInfo("Asia/Tokyo"))
    days.record(rec())  # 21:00 in Tokyo
    days.record(rec(ts=NOON + 4 * 3600))  # the next day there
    days.record(rec(ts=NOON + 4 * 3600 + 1))
    assert sorted(days.days) == ["2026-11-26", "2026-11-27"] == sorted(days.dirty)
    assert days.segments == {"2026-11-26": "a.1", "2026-11-27": "a.2"}
    assert days.days["2026-11-27"].total().requests == 2
    days.evict(date(2026, 11, 29))
    assert sorted(days.days) == ["2026-11-26", "2026-11-27"]  # not written yet: kept
    days.dirty.clear()
    days.evict(date(2026, 11, 28))  # keeps today and yesterday
    assert list(days.days) == ["2026-11-27"] and list(days.segments) == ["2026-11-27"]
    days.record(rec())  # a late record of a forgotten day opens a new segment
    assert days.segments["2026-11-26"] == "a.3"


class DownBackend(EmbeddedBackend):
    """The real embedded backend whose record writes fail while ``down``."""

    down = False

    async def put(self, table: str, id: str, record: dict[str, object]) -> None:
        if self.down:
            raise BackendUnavailable("down (test)")
        await super().put(table, id, record)


async def test_two_replicas_write_their_own_segments_and_reads_add_them(tmp_path: Path) -> None:
    backend = EmbeddedBackend(str(tmp_path / "s.db"))
    a = StatsStore(backend, tz=UTC, replica_id="a", clock=lambda: NOON)
    b = StatsStore(backend, tz=UTC, replica_id="b", clock=lambda: NOON)
    for _ in range(3):
        a.record(rec(cost_usd=0.1))
    b.record(rec(status=503, error_code="upstream_unavailable"))
    assert await a.flush() and await b.flush()
    a.record(rec())  # not flushed yet: a's reads see it from memory, b's do not
    seen_by_a = (await a.read_days(["2026-11-26"]))["2026-11-26"].total()
    seen_by_b = (await b.read_days(["2026-11-26"]))["2026-11-26"].total()
    assert (seen_by_a.requests, seen_by_a.server_errors) == (5, 1)
    assert seen_by_a.cost_usd == pytest.approx(0.3)
    assert seen_by_b.requests == 4
    # flushing again overwrites a's segment with its new totals: nothing counted twice
    assert await a.flush()
    assert (await b.read_days(["2026-11-26"]))["2026-11-26"].total().requests == 5
    assert len(await backend.scan(table_of("2026-11-26"))) == 2
    await backend.aclose()


async def test_close_flushes_and_a_new_process_reads_it(tmp_path: Path) -> None:
    path = str(tmp_path / "s.db")
    backend = EmbeddedBackend(path)
    store = StatsStore(backend, tz=UTC, flush_interval_s=3600, clock=lambda: NOON)
    await store.start()
    store.record(rec(prompt_tokens=7))
    assert await store.close()
    await backend.aclose()
    reopened = EmbeddedBackend(path)
    reader = StatsStore(reopened, tz=UTC)
    day = await reader.read_days(["2026-11-26", "2026-11-27"])
    assert day["2026-11-26"].total().prompt_tokens == 7
    assert day["2026-11-27"].total().requests == 0
    await reopened.aclose()


async def test_a_failed_flush_keeps_the_counts_for_the_next(tmp_path: Path) -> None:
    backend = DownBackend(str(tmp_path / "s.db"))
    store = StatsStore(backend, tz=UTC, replica_id="a", clock=lambda: NOON)
    store.record(rec())
    backend.down = True
    assert not await store.flush()
    assert store.flush_failures == 1
    store.record(rec())
    backend.down = False
    assert await store.flush()
    other = StatsStore(backend, tz=UTC, replica_id="b")
    assert (await other.read_days(["2026-11-26"]))["2026-11-26"].total().requests == 2
    await backend.aclose()


async def test_old_days_leave_memory_and_a_late_record_gets_a_new_segment(tmp_path: Path) -> None:
    backend = EmbeddedBackend(str(tmp_path / "s.db"))
    now = [NOON]
    store = StatsStore(backend, tz=UTC, replica_id="a", clock=lambda: now[0])
    store.record(rec())
    assert await store.flush()
    now[0] = NOON + 3 * 86400
    assert await store.flush()
    assert store.local("2026-11-26") is None
    store.record(rec())  # a very late record of that day
    assert await store.flush()
    assert len(await backend.scan(table_of("2026-11-26"))) == 2
    assert (await store.read_days(["2026-11-26"]))["2026-11-26"].total().requests == 2
    await backend.aclose()


async def test_segments_past_retention_are_deleted(tmp_path: Path) -> None:
    backend = EmbeddedBackend(str(tmp_path / "s.db"))
    now = [NOON]
    store = StatsStore(backend, tz=UTC, replica_id="a", retention_days=3, clock=lambda: now[0])
    store.record(rec())
    assert await store.flush()
    now[0] = NOON + 4 * 86400  # 2026-11-30: 2026-11-26 is 4 days old, past 3 days' retention
    assert await store.flush()
    assert await backend.scan(table_of("2026-11-26")) == []
    await backend.aclose()


def test_a_record_that_cannot_be_read_is_dropped_not_raised(tmp_path: Path) -> None:
    store = StatsStore(EmbeddedBackend(str(tmp_path / "s.db")), tz=UTC)
    store.record(rec(ts="not a time"))  # type: ignore[arg-type]
    assert store.dropped == 1
