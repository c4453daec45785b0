"""The periodic background step: on time, survives a failing step, stops cleanly."""

from __future__ import annotations

import asyncio

import pytest

from gateway.state.periodic import Periodic


async def test_a_failing_step_is_logged_and_the_next_runs(caplog: pytest.LogCaptureFixture) -> None:
    calls: list[int] = []

    async def step() -> None:
        calls.append(len(calls))
        if len(calls) == 1:
            raise RuntimeError("boom")

    periodic = Periodic("test-periodic", 0.01, step, "the test step failed")
    periodic.start()
    periodic.start()  # idempotent: one task
    await asyncio.sleep(0.1)
    await periodic.stop()
    assert len(calls) >= 2, "the step after the failure ran"
    assert "the test step failed" in caplog.text and "boom" in caplog.text
    count = len(calls)
    await asyncio.sleep(0.05)
    assert len(calls) == count, "stopped"


async def test_stop_waits_for_the_step_in_progress() -> None:
    finished: list[bool] = []

    async def slow() -> None:
        await asyncio.sleep(0.1)
        finished.append(True)

    periodic = Periodic("test-slow", 0.01, slow, "failed")
    periodic.start()
    await asyncio.sleep(0.05)  # the first step is under way
    await periodic.stop()
    assert finished == [True], "stop neither cut the step short nor returned before it ended"
