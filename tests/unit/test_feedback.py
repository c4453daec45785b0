"""User satisfaction, piece by piece: the feedback body's checks, the records of who made each
request (on a real embedded state backend), and the report's section (its numbers and renderings).
End to end through a gateway: tests/e2e/test_feedback.py."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from gateway.config.feedback import FeedbackSettings
from gateway.errors import InvalidRequest
from gateway.observability.feedback_metrics import FeedbackMetrics
from gateway.observability.logs import RequestRecord
from gateway.reports.markdown import render_markdown
from gateway.reports.satisfaction import build_satisfaction, feedback_reader, window_days
from gateway.server.feedback import parse_feedback
from gateway.server.feedback_owners import DAY_S, OwnerRecords, owner_key
from gateway.state.base import BackendUnavailable
from gateway.state.embedded import EmbeddedBackend
from tests.unit.test_reports_render import known_report

NOW = 1_800_000_000.0


def test_parse_feedback_takes_a_good_body_and_names_each_bad_field() -> None:
    assert parse_feedback({"request_id": "req_1-a", "score": 5}, 10) == ("req_1-a", 5, None)
    assert parse_feedback({"request_id": "r", "score": 1, "comment": "ok"}, 10) == ("r", 1, "ok")
    assert parse_feedback({"request_id": "r", "score": 1, "comment": ""}, 10) == ("r", 1, None)
    cases: list[tuple[dict[str, Any], str, str]] = [
        ({"score": 1}, "request_id", "missing_required_parameter"),
        ({"request_id": "r" * 129, "score": 1}, "request_id", "invalid_value"),
        ({"request_id": "r:1", "score": 1}, "request_id", "invalid_value"),
        ({"request_id": ["r"], "score": 1}, "request_id", "invalid_type"),
        ({"request_id": "r"}, "score", "missing_required_parameter"),
        ({"request_id": "r", "score": False}, "score", "invalid_type"),
        ({"request_id": "r", "score": 5.0}, "score", "invalid_type"),
        ({"request_id": "r", "score": -1}, "score", "invalid_value"),
        ({"request_id": "r", "score": 3, "comment": "x" * 11}, "comment", "invalid_value"),
        ({"request_id": "r", "score": 3, "comment": {"text": "x"}}, "comment", "invalid_type"),
        ({"request_id": "r", "score": 3, "model": "m"}, "model", "unknown_parameter"),
    ]
    for body, param, code in cases:
        with pytest.raises(InvalidRequest) as caught:
            parse_feedback(body, 10)
        assert (caught.value.param, caught.value.code) == (param, code), body


# --- who made each request ---------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> float:
        return self.now


class Flaky:
    """A real backend whose blob writes can be made to fail, as an unreachable Redis does."""

    def __init__(self, backend: EmbeddedBackend) -> None:
        self.backend = backend
        self.down = False

    def __getattr__(self, name: str) -> Any:
        return getattr(self.backend, name)

    async def blob_put_many(self, items: list[tuple[str, bytes, float]]) -> None:
        if self.down:
            raise BackendUnavailable("connection refused")
        await self.backend.blob_put_many(items)


@pytest.fixture
async def backend(tmp_path: Path) -> AsyncIterator[EmbeddedBackend]:
    b = EmbeddedBackend(str(tmp_path / "state.db"))
    yield b
    await b.aclose()


def finished(rid: str, key_id: str | None = "key_a", alias: str = "chat", ts: float = NOW) -> RequestRecord:
    return RequestRecord(ts=ts, request_id=rid, route="chat", status=200, latency_ms=5.0, key_id=key_id, alias=alias)


def owners_on(backend: Any, settings: FeedbackSettings, clock: Clock) -> tuple[OwnerRecords, FeedbackMetrics]:
    metrics = FeedbackMetrics(CollectorRegistry())
    return OwnerRecords(lambda: backend, lambda: settings, metrics, clock=clock), metrics


async def test_a_request_is_found_by_its_key_only_before_and_after_it_is_written(backend: EmbeddedBackend) -> None:
    clock = Clock()
    owners, _ = owners_on(backend, FeedbackSettings(), clock)
    owners.record(finished("req_1"))
    owners.record(finished("req_2", key_id=None))  # no key: refused before it was read
    owners.record(finished("req_3", alias="unknown"))  # never reached an alias
    found = await owners.find("key_a", "req_1")
    assert found is not None and (found.alias, found.ts) == ("chat", NOW)  # still pending
    assert await owners.flush()
    assert owners.pending == 0
    assert await backend.blob_get(owner_key("key_a", "req_1")) is not None
    assert await backend.blob_get(owner_key("key_a", "req_3")) is None
    assert await owners.find("key_a", "req_1") == found
    assert await owners.find("key_b", "req_1") is None  # another key's request
    assert await owners.find("key_a", "req_2") is None
    clock.now = NOW + 7 * DAY_S - 1
    assert await owners.find("key_a", "req_1") is not None
    clock.now = NOW + 7 * DAY_S + 1
    assert await owners.find("key_a", "req_1") is None  # past accept_days
    await owners.close()


async def test_scored_requests_are_remembered(backend: EmbeddedBackend) -> None:
    owners, _ = owners_on(backend, FeedbackSettings(), Clock())
    owners.record(finished("req_1"))
    owner = await owners.find("key_a", "req_1")
    assert owner is not None and await owners.scored_on("key_a", "req_1") is None
    await owners.mark_scored(owner, "feedback:2027-01-15", 7)
    assert await owners.scored_on("key_a", "req_1") == "feedback:2027-01-15"
    await owners.flush()  # the owner's record written after the score leaves the score alone
    assert await owners.scored_on("key_a", "req_1") == "feedback:2027-01-15"
    await owners.close()


async def test_nothing_is_recorded_when_feedback_is_off(backend: EmbeddedBackend) -> None:
    owners, _ = owners_on(backend, FeedbackSettings(enabled=False), Clock())
    owners.record(finished("req_1"))
    assert owners.pending == 0
    await owners.close()


async def test_a_failed_write_keeps_its_records_and_the_bound_drops_the_oldest(backend: EmbeddedBackend) -> None:
    flaky = Flaky(backend)
    owners, metrics = owners_on(flaky, FeedbackSettings(max_pending=100), Clock())
    flaky.down = True
    for i in range(60):
        owners.record(finished(f"req_{i}"))
    assert not await owners.flush()
    assert owners.pending == 60 and metrics.owner_write_failures._value.get() == 1
    for i in range(60, 120):
        owners.record(finished(f"req_{i}"))
    assert owners.pending == 100 and metrics.owner_dropped._value.get() == 20
    assert await owners.find("key_a", "req_19") is None  # the oldest went
    assert await owners.find("key_a", "req_20") is not None
    flaky.down = False
    assert await owners.flush()
    assert await backend.blob_get(owner_key("key_a", "req_20")) is not None
    assert await backend.blob_get(owner_key("key_a", "req_119")) is not None
    await owners.close()


async def test_close_writes_what_is_pending(backend: EmbeddedBackend) -> None:
    owners, _ = owners_on(backend, FeedbackSettings(flush_interval_s=10), Clock())
    owners.record(finished("req_1"))
    await owners.close()
    assert await backend.blob_get(owner_key("key_a", "req_1")) is not None
    owners.record(finished("req_2"))  # after close: ignored
    assert owners.pending == 0


# --- the report's section ----------------------------------------------------------------


def test_satisfaction_averages_counts_and_distribution_by_alias() -> None:
    records: list[dict[str, Any]] = [
        {"alias": "chat", "score": 5},
        {"alias": "chat", "score": 4},
        {"alias": "claude", "score": 2},
        {"alias": "claude", "score": 5},
        {"alias": "chat", "score": 5},
        {"alias": "chat", "score": True},  # not a score: left out
        {"alias": "chat", "score": 9},
        {"alias": "chat"},
    ]
    s = build_satisfaction(records, date(2027, 1, 15), 4.5)
    assert (s.start, s.end, s.target) == ("2027-01-09", "2027-01-15", 4.5)
    assert (s.total.count, s.total.average, s.total.distribution, s.total.met) == (5, 4.2, [0, 1, 0, 1, 3], False)
    chat, claude = s.by_alias
    assert (chat.name, chat.count, chat.met) == ("chat", 3, True)
    assert (claude.name, claude.average, claude.met) == ("claude", 3.5, False)
    empty = build_satisfaction([], date(2027, 1, 15), 4.5)
    assert (empty.total.count, empty.total.average, empty.total.met, empty.by_alias) == (0, None, None, [])


def test_window_days_are_the_seven_up_to_the_last() -> None:
    assert window_days(date(2027, 3, 2)) == [
        "2027-02-24",
        "2027-02-25",
        "2027-02-26",
        "2027-02-27",
        "2027-02-28",
        "2027-03-01",
        "2027-03-02",
    ]


async def test_feedback_reader_reads_the_day_tables(backend: EmbeddedBackend) -> None:
    await backend.put("feedback:2027-01-14", "k:r1", {"alias": "chat", "score": 5})
    await backend.put("feedback:2027-01-15", "k:r2", {"alias": "chat", "score": 3})
    await backend.put("feedback:2027-01-16", "k:r3", {"alias": "chat", "score": 1})
    read = feedback_reader(backend)
    records = await read(["2027-01-14", "2027-01-15"])
    assert sorted(r["score"] for r in records) == [3, 5]


def test_markdown_says_met_missed_or_why_there_is_nothing() -> None:
    report = known_report()
    assert "## User satisfaction\n\nNot available" in render_markdown(report)
    report.satisfaction = build_satisfaction([], date(2027, 1, 15), 4.5)
    assert "No feedback in these 7 days." in render_markdown(report)
    report.satisfaction = build_satisfaction(
        [{"alias": "chat", "score": 5}, {"alias": "a|b", "score": 3}], date(2027, 1, 15), 4.5
    )
    text = render_markdown(report)
    assert "## User satisfaction, 7 days 2027-01-09 to 2027-01-15" in text
    assert "| all | 2 | 4.00 | ≥ 4.5 | MISSED | 0 | 0 | 1 | 0 | 1 |" in text
    assert "| chat | 1 | 5.00 | ≥ 4.5 | met | 0 | 0 | 0 | 0 | 1 |" in text
    assert "| a\\|b | 1 | 3.00 | ≥ 4.5 | MISSED |" in text
    assert replace(report, satisfaction=None).to_json()["satisfaction"] is None
    assert report.to_json()["satisfaction"]["total"]["distribution"] == [0, 0, 1, 0, 1]
