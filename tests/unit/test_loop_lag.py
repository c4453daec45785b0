"""The event-loop lag monitor sees a loop that was kept busy."""

from __future__ import annotations

import asyncio
import time

from gateway.observability.loop_lag import LoopLagMonitor


async def test_a_blocked_loop_is_seen_as_lag_and_an_idle_one_is_not() -> None:
    seen: list[float] = []
    monitor = LoopLagMonitor(seen.append, interval_s=0.02)
    monitor.start()
    await asyncio.sleep(0.1)
    idle = list(seen)
    time.sleep(0.6)  # noqa: ASYNC251  (on purpose: a blocking call, nothing else runs meanwhile)
    await asyncio.sleep(0.05)
    await monitor.stop()
    # idle: only what a loaded machine's scheduling adds; blocked: the 0.6 s it was kept busy
    assert idle and max(idle) < 0.3, idle
    assert max(seen) >= 0.55, seen
    count = len(seen)
    await asyncio.sleep(0.05)
    assert len(seen) == count, "stopped: no more samples"
