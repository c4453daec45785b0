"""The KPIs as Prometheus computes them (``reports.prometheus_url``).

Each number of a period is one PromQL expression evaluated once, at the end
of the period (or now, for a period not over), over a range as long as the
period: ``increase()`` over the range counts every replica's requests across
restarts (counter resets are handled by Prometheus), which the gateway's own
records also do. Percentiles come from the request-duration histogram
(``histogram_quantile`` over the increase of its buckets, so interpolated
within Prometheus's buckets). The answer is compared with the same targets.

Only the HTTP API's ``/api/v1/query`` is used (one evaluation per number: a
``query_range`` would repeat the same evaluation at each step).
"""

from __future__ import annotations

import asyncio
import math
from dataclasses import dataclass, replace
from datetime import datetime

import aiohttp
import orjson

from gateway.reports.kpis import Kpi, Targets, kpis_of, usage_row
from gateway.reports.reconciliation import ReconciliationRow, VectorError, reconcile, vector_of
from gateway.reports.reconciliation import queries as reconciliation_queries
from gateway.reports.stats import Cell

REQUESTS = "gateway_requests_total"
DURATION = "gen_ai_server_request_duration_seconds_bucket"
COST = "gateway_cost_usd_total"


class PrometheusError(Exception):
    """Prometheus could not be asked or gave an unusable answer."""


def range_of(seconds: float) -> str:
    """A PromQL range for a duration, whole seconds, at least one."""
    return f"{max(1, round(seconds))}s"


@dataclass(frozen=True)
class Queries:
    requests: str
    client_errors: str
    server_errors: str
    cost_usd: str
    p50: str
    p95: str
    p99: str


def queries(seconds: float, selector: str = "") -> Queries:
    """The expressions for a period ``seconds`` long; ``selector`` is added to
    every metric's label matchers (e.g. ``job="gateway"``)."""
    rng = range_of(seconds)
    extra = f",{selector}" if selector else ""
    plain = f"{{{selector}}}" if selector else ""

    def count(status_class: str | None) -> str:
        match = f'{{status_class="{status_class}"{extra}}}' if status_class else plain
        return f"sum(increase({REQUESTS}{match}[{rng}]))"

    def quantile(q: float) -> str:
        return f"histogram_quantile({q}, sum by (le) (increase({DURATION}{plain}[{rng}])))"

    return Queries(
        requests=count(None),
        client_errors=count("4xx"),
        server_errors=count("5xx"),
        cost_usd=f"sum(increase({COST}{plain}[{rng}]))",
        p50=quantile(0.5),
        p95=quantile(0.95),
        p99=quantile(0.99),
    )


def scalar_of(body: bytes) -> float | None:
    """The one value of an instant query's answer; None for an empty vector
    (no series: nothing was recorded) or NaN (a quantile of no requests)."""
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise PrometheusError("Prometheus answered something that is not JSON") from None
    if not isinstance(data, dict) or data.get("status") != "success":
        error = data.get("error") if isinstance(data, dict) else None
        raise PrometheusError(f"Prometheus refused the query: {error or 'unexpected answer'}")
    result = data.get("data", {}).get("result")
    if not isinstance(result, list):
        raise PrometheusError("Prometheus answered without a result")
    if not result:
        return None
    try:
        value = float(result[0]["value"][1])
    except (KeyError, IndexError, TypeError, ValueError):
        raise PrometheusError("Prometheus answered a sample without a value") from None
    return None if math.isnan(value) else value


class PrometheusSource:
    def __init__(self, url: str, *, timeout_s: float = 10.0, selector: str = "") -> None:
        self.url = url.rstrip("/")
        self.timeout_s = timeout_s
        self.selector = selector

    async def _get(self, session: aiohttp.ClientSession, expr: str, at: datetime) -> bytes:
        params = {"query": expr, "time": f"{at.timestamp():.3f}"}
        try:
            async with session.get(f"{self.url}/api/v1/query", params=params) as resp:
                body = await resp.read()
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise PrometheusError(f"cannot reach Prometheus at {self.url}: {exc or type(exc).__name__}") from None
        if resp.status >= 500:
            raise PrometheusError(f"Prometheus answered HTTP {resp.status}")
        return body

    async def query(self, session: aiohttp.ClientSession, expr: str, at: datetime) -> float | None:
        return scalar_of(await self._get(session, expr, at))

    async def reconciliation(self, start: datetime, end: datetime, share: float) -> list[ReconciliationRow]:
        """The cost reconciliation of ``[start, end)`` (:mod:`gateway.reports.reconciliation`);
        raises :class:`PrometheusError`."""
        exprs = reconciliation_queries(range_of((end - start).total_seconds()), self.selector)
        timeout = aiohttp.ClientTimeout(total=self.timeout_s)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            bodies = await asyncio.gather(*(self._get(session, e, end) for e in exprs))
        try:
            reported, gateway = (vector_of(body) for body in bodies)
        except VectorError as exc:
            raise PrometheusError(str(exc)) from None
        return reconcile(reported, gateway, share)

    async def kpis(self, start: datetime, end: datetime, targets: Targets) -> list[Kpi]:
        """The KPIs of the period ``[start, end)``; raises :class:`PrometheusError`."""
        q = queries((end - start).total_seconds(), self.selector)
        timeout = aiohttp.ClientTimeout(total=self.timeout_s)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            exprs = [q.requests, q.client_errors, q.server_errors, q.cost_usd, q.p50, q.p95, q.p99]
            values = await asyncio.gather(*(self.query(session, e, end) for e in exprs))
        requests, c4, c5, cost, p50, p95, p99 = values
        cell = Cell(
            requests=round(requests or 0),
            client_errors=round(c4 or 0),
            server_errors=round(c5 or 0),
            cost_usd=cost or 0.0,
        )
        row = usage_row("prometheus", cell, cell.requests)
        latency_s = {"p50_ms": p50, "p95_ms": p95, "p99_ms": p99}
        out = []
        for kpi in kpis_of(row, targets):
            if kpi.name not in latency_s:
                out.append(kpi)
                continue
            seconds = latency_s[kpi.name]
            value = None if seconds is None else seconds * 1000
            out.append(replace(kpi, value=value, met=None if value is None else value <= kpi.target))
        return out
