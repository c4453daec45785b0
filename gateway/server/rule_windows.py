"""The clock of the ``time_window`` routing rules: a background task that puts the
windows in force on the live deployments when one starts or ends
(:func:`gateway.routing.rules.apply_windows`).

A new :class:`~gateway.server.service.Service` (start-up, reload, stored models or
rules changed) applies the windows of its own rules when it is built; the task then
sleeps until the next boundary of the service in force
(:meth:`~gateway.routing.rules.RuleBook.next_change`), at most ``max_sleep_s`` (so a
wall clock set forward or back is caught up with), or until :meth:`RuleWindows.poke`
says the service changed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from datetime import UTC, datetime

from gateway.routing.rules import apply_windows
from gateway.server.service import Service

log = logging.getLogger("gateway.rules")

MAX_SLEEP_S = 60.0
PAST_BOUNDARY_S = 0.01
"""Wake this long after a boundary, so the window's minute has begun on every clock."""


def _utc_now() -> datetime:
    return datetime.now(UTC)


def tick(service: Service, now: datetime, max_sleep_s: float = MAX_SLEEP_S) -> tuple[list[str], float]:
    """Apply the windows of ``service`` at ``now``: (the windows in force, seconds to sleep)."""
    active = apply_windows(service.routes, service.rules, now)
    upcoming = service.rules.next_change(now)
    if upcoming is None:
        return active, max_sleep_s
    return active, min(max_sleep_s, (upcoming - now).total_seconds() + PAST_BOUNDARY_S)


async def run_windows(
    service: Callable[[], Service | None],
    wake: asyncio.Event,
    *,
    clock: Callable[[], datetime] = _utc_now,
    max_sleep_s: float = MAX_SLEEP_S,
) -> None:
    """Keep the windows of the service in force applied (runs until cancelled)."""
    active: list[str] = []
    while True:
        wake.clear()  # before reading the service: a change from here on wakes the wait below
        current = service()
        delay = max_sleep_s
        if current is not None:
            try:
                now, before = clock(), active
                active, delay = tick(current, now, max_sleep_s)
                if active != before:
                    log.info("routing time windows in force: %s", ", ".join(active) or "none")
            except Exception:  # the loop must outlive any one bad tick
                log.exception("applying the routing time windows failed; retrying")
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(delay):
                await wake.wait()


class RuleWindows:
    """The task of :func:`run_windows` (one per app)."""

    def __init__(self, service: Callable[[], Service | None], *, max_sleep_s: float = MAX_SLEEP_S) -> None:
        self._service = service
        self._max_sleep_s = max_sleep_s
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._task is None:
            work = run_windows(self._service, self._wake, max_sleep_s=self._max_sleep_s)
            self._task = asyncio.get_running_loop().create_task(work, name="routing-rule-windows")

    def poke(self) -> None:
        """The service in force changed: look at its windows now."""
        self._wake.set()

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
