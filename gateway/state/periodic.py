"""A background task that runs an async step every ``interval_s`` until stopped."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

log = logging.getLogger("gateway")


class Periodic:
    """Runs ``step`` every ``interval_s``. :meth:`stop` waits for a step in
    progress (it never interrupts one); a step that raises is logged with
    ``failure`` and the next one runs on time."""

    def __init__(self, name: str, interval_s: float, step: Callable[[], Awaitable[object]], failure: str) -> None:
        self._name = name
        self.interval_s = interval_s
        self._step = step
        self._failure = failure
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._task is None:
            self._stop.clear()
            self._task = asyncio.create_task(self._run(), name=self._name)

    async def stop(self) -> None:
        if self._task is not None:
            self._stop.set()
            await self._task
            self._task = None

    async def _run(self) -> None:
        while not self._stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), self.interval_s)
            if self._stop.is_set():
                return
            try:
                await self._step()
            except Exception:
                log.exception("%s", self._failure)
