"""Event-loop lag: how late the loop runs a timer.

Every ``interval_s`` a task sleeps and measures how much later than asked it
woke up. That delay is time in which the one event loop served nobody (a long
synchronous step, a blocking call, garbage collection, CPU starvation): the
first thing to look at when latency rises with no upstream to blame. One
timer every half second costs nothing measurable.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable


class LoopLagMonitor:
    def __init__(self, observe: Callable[[float], None], *, interval_s: float = 0.5) -> None:
        self._observe = observe
        self._interval_s = interval_s
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="event-loop-lag")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            asked = loop.time() + self._interval_s
            await asyncio.sleep(self._interval_s)
            self._observe(max(0.0, loop.time() - asked))
