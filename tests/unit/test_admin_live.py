"""The live window behind GET /admin/live (gateway/admin/live.py): rates, error rate and
latency percentiles by bucket, the latest errors, and its bounded memory."""

from __future__ import annotations

from gateway.admin.live import MAX_ERRORS, WINDOW_S, LiveWindow, percentile
from gateway.observability.logs import RequestRecord

NOW = 1_800_000_005.0


def rec(ts: float, status: int = 200, latency: float = 100.0, rid: str = "r") -> RequestRecord:
    return RequestRecord(ts=ts, request_id=rid, route="chat", status=status, latency_ms=latency, alias="a")


def test_percentile_is_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 0.5) == 50.0
    assert percentile(values, 0.95) == 95.0
    assert percentile(values, 0.99) == 99.0
    assert percentile([], 0.5) is None


def test_summary_and_series_of_the_last_minute() -> None:
    live = LiveWindow(clock=lambda: NOW)
    for i in range(60):  # one a second over the last minute, every tenth an error
        live.record(rec(NOW - 59.5 + i, status=502 if i % 10 == 0 else 200, latency=float(i + 1), rid=f"r{i}"))
    live.record(rec(NOW - 200, latency=5000.0))  # older than the summary's minute
    snap = live.snapshot(300)
    s = snap["summary"]
    assert s["requests"] == 60 and s["errors"] == 6
    assert s["rps"] == 1.0 and s["error_rate"] == 0.1
    assert (s["p50_ms"], s["p95_ms"], s["p99_ms"]) == (30.0, 57.0, 60.0)
    series = snap["series"]
    assert len(series["t"]) == 30 and series["t"][1] - series["t"][0] == 10
    assert sum(r * 10 for r in series["rps"]) == 61  # every request in the span, once
    assert max(v for v in series["p99_ms"] if v is not None) == 5000.0
    errors = snap["recent_errors"]
    assert [e["request_id"] for e in errors[:2]] == ["r50", "r40"] and errors[0]["status"] == 502


def test_memory_is_bounded() -> None:
    now = [NOW]
    live = LiveWindow(clock=lambda: now[0])
    for i in range(MAX_ERRORS * 3):
        live.record(rec(NOW, status=500, rid=f"e{i}"))
    assert len(live.snapshot()["recent_errors"]) == MAX_ERRORS
    now[0] = NOW + WINDOW_S + 1  # everything has left the window
    assert live.snapshot()["summary"]["requests"] == 0
    assert len(live._seen) == 0


def test_a_request_is_found_by_id_with_its_cost() -> None:
    live = LiveWindow(clock=lambda: NOW)
    r = rec(NOW - 1, rid="abc")
    r.cost_usd, r.prompt_tokens, r.completion_tokens = 0.25, 10, 5
    live.record(r)
    live.record(rec(NOW, rid="later"))
    assert live.find("abc") == live.snapshot()["recent_requests"][1]
    assert live.find("abc") is not None and live.find("abc")["cost_usd"] == 0.25  # type: ignore[index]
    assert live.find("missing") is None
