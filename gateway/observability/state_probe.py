"""Whether the state backend answers, probed every few seconds (``ping()``), and the metric
that says so: ``gateway_state_backend_up{backend}``. While it is 0 the admin API is read-only
(every write answers 503 ``state_backend_unavailable`` with ``Retry-After``), client traffic
follows each policy's failure mode, and the console shows a banner (it reads
``GET /admin/status``). Part of the metrics catalog (:mod:`gateway.observability.metrics`)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from typing import NamedTuple

from prometheus_client.core import GaugeMetricFamily

from gateway.state.base import StateBackend
from gateway.state.periodic import Periodic

PROBE_INTERVAL_S = 5.0
PROBE_TIMEOUT_S = 5.0


class StateFacts(NamedTuple):
    backend: str
    up: bool
    since: float
    """When ``up`` last changed (epoch seconds; the start when it never did)."""


class StateProbe:
    """Pings ``backend`` every :data:`PROBE_INTERVAL_S` (see the module docstring)."""

    def __init__(self, backend: StateBackend, interval_s: float = PROBE_INTERVAL_S) -> None:
        self._backend = backend
        self.up = True
        self.since = time.time()
        self._periodic = Periodic("state-probe", interval_s, self.probe, "state backend probe")

    async def probe(self) -> bool:
        try:
            up = bool(await asyncio.wait_for(self._backend.ping(), PROBE_TIMEOUT_S))
        except Exception:  # any failure to answer is "down": BackendUnavailable, a timeout, a closed client
            up = False
        if up != self.up:
            self.up, self.since = up, time.time()
        return up

    def facts(self) -> StateFacts:
        return StateFacts(self._backend.kind, self.up, self.since)

    def start(self) -> None:
        self._periodic.start()

    async def stop(self) -> None:
        await self._periodic.stop()


class StateCollector:
    def __init__(self, read: Callable[[], StateFacts | None]) -> None:
        self._read = read

    def describe(self) -> list[GaugeMetricFamily]:
        return list(self._families(StateFacts("embedded", True, 0.0)))

    def collect(self) -> Iterator[GaugeMetricFamily]:
        facts = self._read()
        if facts is not None:
            yield from self._families(facts)

    @staticmethod
    def _families(facts: StateFacts) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily(
            "gateway_state_backend_up",
            "1 when the state backend answered its last probe (every 5 s), else 0: the admin API is read-only then.",
            labels=["backend"],
        )
        family.add_metric([facts.backend], 1.0 if facts.up else 0.0)
        yield family
