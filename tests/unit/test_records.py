"""RecordBatch (gateway/server/records.py): when a finished request's record step runs."""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Callable, Coroutine
from typing import Any

import pytest

from gateway.server.records import RecordBatch


def run(main: Callable[[], Coroutine[Any, Any, None]]) -> None:
    asyncio.run(main())


def test_a_request_that_ends_alone_is_recorded_at_once() -> None:
    done: list[str] = []

    async def main() -> None:
        batch = RecordBatch(delay_s=0.005)
        batch.began()
        batch.ended(lambda: done.append("a"))
        assert done == ["a"] and batch.held == 0

    run(main)


def test_requests_that_end_while_others_are_in_flight_wait_for_the_last_in_order() -> None:
    done: list[str] = []

    async def main() -> None:
        batch = RecordBatch(delay_s=60)
        for _ in range(3):
            batch.began()
        batch.ended(lambda: done.append("a"))
        batch.ended(lambda: done.append("b"))
        assert done == [] and batch.held == 2
        batch.ended(lambda: done.append("c"))  # the last in flight: all of them, itself too
        assert done == ["a", "b", "c"] and batch.held == 0

    run(main)


def test_held_requests_are_recorded_after_the_delay_though_others_stay_in_flight() -> None:
    done: list[str] = []

    async def main() -> None:
        batch = RecordBatch(delay_s=0.01)
        batch.began()
        batch.began()  # stays in flight (a long stream)
        batch.ended(lambda: done.append("a"))
        assert done == []
        await asyncio.sleep(0.1)
        assert done == ["a"] and batch.held == 0
        batch.began()
        batch.ended(lambda: done.append("b"))  # a new batch, a new timer
        await asyncio.sleep(0.1)
        assert done == ["a", "b"]

    run(main)


def test_drain_records_what_is_held_once_and_the_timer_then_does_nothing() -> None:
    done: list[str] = []

    async def main() -> None:
        batch = RecordBatch(delay_s=0.01)
        batch.began()
        batch.began()
        batch.ended(lambda: done.append("a"))
        batch.drain()
        assert done == ["a"]
        await asyncio.sleep(0.05)  # the cancelled timer: nothing recorded twice
        batch.drain()
        assert done == ["a"]

    run(main)


def test_without_a_delay_every_request_is_recorded_as_it_ends() -> None:
    done: list[str] = []

    async def main() -> None:
        batch = RecordBatch(delay_s=0)
        batch.began()
        batch.began()
        batch.ended(lambda: done.append("a"))
        assert done == ["a"]

    run(main)


def test_a_record_that_fails_is_logged_and_the_others_are_still_recorded(caplog: pytest.LogCaptureFixture) -> None:
    done: list[str] = []

    def broken() -> None:
        raise RuntimeError("sink broke")

    async def main() -> None:
        batch = RecordBatch(delay_s=60)
        for _ in range(3):
            batch.began()
        batch.ended(lambda: done.append("a"))
        batch.ended(broken)
        batch.ended(lambda: done.append("c"))

    with caplog.at_level(logging.ERROR, logger="gateway.server"):
        run(main)
    assert done == ["a", "c"]
    assert "recording a finished request failed" in caplog.text and "sink broke" in caplog.text


def test_after_close_every_request_is_recorded_as_it_ends() -> None:
    done: list[str] = []

    async def main() -> None:
        batch = RecordBatch(delay_s=60)
        for _ in range(3):
            batch.began()
        batch.ended(lambda: done.append("a"))
        batch.close()  # shutdown: what is held, at once
        assert done == ["a"]
        batch.ended(lambda: done.append("b"))  # one still in flight, yet no longer held
        assert done == ["a", "b"] and batch.held == 0

    run(main)


def test_the_request_over_max_held_writes_them_all() -> None:
    from gateway.server.records import MAX_HELD

    done: list[int] = []

    async def main() -> None:
        batch = RecordBatch(delay_s=60)
        for _ in range(MAX_HELD + 2):
            batch.began()
        for i in range(MAX_HELD):
            batch.ended(functools.partial(done.append, i))
        assert done == [] and batch.held == MAX_HELD
        batch.ended(lambda: done.append(MAX_HELD))  # the one over: it and all held, at once, in order
        assert done == list(range(MAX_HELD + 1)) and batch.held == 0

    run(main)
