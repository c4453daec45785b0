"""``GET /admin/live``: this replica's last minutes of traffic for the console's
live operations view: requests per second, error rate, p50/p95/p99 latency by
10-second bucket, and the most recent errors with their request ids.

:class:`LiveWindow` is an in-process request subscriber (``request_sinks``):
it keeps the last ``WINDOW_S`` seconds of finished requests, at most
``MAX_RECORDS`` of them, and the last ``MAX_ERRORS`` errors, so its memory is
bounded whatever the traffic. The numbers are this replica's only (spend and
usage across replicas come from ``GET /admin/usage``).

With ``reports.prometheus_url`` set, the answer also carries ``prometheus``:
the same last-minute figures over every replica, as that Prometheus computes
them from the gateway's metrics (or ``{"error": ...}`` when it cannot be
asked; at most ``PROMETHEUS_TIMEOUT_S`` is spent on it).

Query: ``span_s`` (60-900, default 300): how far back the series go;
``request_id``: also answer ``request``, that request's status, tokens and
cost (null while it is not finished or no longer among the last ``MAX_RECENT``):
the playground reads a streamed answer's cost here, since a stream's headers
leave before its cost is known.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import deque
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any, NamedTuple, Protocol

import aiohttp
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from gateway.admin.keys import AdminHost, guarded, json_response
from gateway.config.loader import LoadedConfig
from gateway.errors import InvalidRequest
from gateway.observability.logs import RequestRecord, iso_time
from gateway.reports.prometheus import PrometheusError, PrometheusSource, queries
from gateway.security.roles import Role

WINDOW_S = 900
MAX_RECORDS = 50_000
MAX_ERRORS = 20
MAX_RECENT = 200
"""Finished requests kept for ``request_id`` look-ups (the playground's cost); 20 are listed."""
BUCKET_S = 10
RATE_S = 60
"""The summary's rates and percentiles are over the last minute."""
PROMETHEUS_TIMEOUT_S = 3.0


class Seen(NamedTuple):
    ts: float
    error: bool
    latency_ms: float


def percentile(sorted_values: Sequence[float], q: float) -> float | None:
    """The nearest-rank ``q`` quantile (0 < q <= 1) of ascending values; None when empty."""
    if not sorted_values:
        return None
    rank = max(1, math.ceil(q * len(sorted_values)))
    return round(sorted_values[rank - 1], 1)


def summary(seen: Sequence[Seen], seconds: float) -> dict[str, Any]:
    """Requests per second, error rate and latency percentiles of ``seen`` over ``seconds``."""
    latencies = sorted(s.latency_ms for s in seen)
    errors = sum(1 for s in seen if s.error)
    return {
        "requests": len(seen),
        "errors": errors,
        "rps": round(len(seen) / seconds, 3),
        "error_rate": round(errors / len(seen), 4) if seen else 0.0,
        "p50_ms": percentile(latencies, 0.5),
        "p95_ms": percentile(latencies, 0.95),
        "p99_ms": percentile(latencies, 0.99),
    }


def row(rec: RequestRecord) -> dict[str, Any]:
    """A request as the live view shows it."""
    return {
        "ts": iso_time(rec.ts),
        "request_id": rec.request_id,
        "status": rec.status,
        "code": rec.error_code,
        "alias": rec.alias,
        "key_id": rec.key_id,
        "team": rec.team,
        "latency_ms": round(rec.latency_ms, 1),
        "prompt_tokens": rec.prompt_tokens,
        "completion_tokens": rec.completion_tokens,
        "cost_usd": rec.cost_usd,
    }


class LiveWindow:
    """The recent requests of this replica (bounded), fed by ``record``."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._seen: deque[Seen] = deque(maxlen=MAX_RECORDS)
        self._errors: deque[RequestRecord] = deque(maxlen=MAX_ERRORS)
        self._recent: deque[RequestRecord] = deque(maxlen=MAX_RECENT)

    def record(self, rec: RequestRecord) -> None:
        """Kept as it came: a row is drawn from it only when the view is read (:func:`row`)."""
        error = rec.status >= 400
        self._seen.append(Seen(rec.ts, error, rec.latency_ms))
        self._recent.append(rec)
        if error:
            self._errors.append(rec)

    def find(self, request_id: str) -> dict[str, Any] | None:
        """A recent request by its id (None when it is not among the last ``MAX_RECENT``)."""
        return next((row(r) for r in reversed(self._recent) if r.request_id == request_id), None)

    def snapshot(self, span_s: int = 300) -> dict[str, Any]:
        now = self._clock()
        seen = self._seen
        while seen and seen[0].ts < now - WINDOW_S:
            seen.popleft()
        end = math.floor(now / BUCKET_S) * BUCKET_S + BUCKET_S
        start = end - span_s
        buckets: list[list[Seen]] = [[] for _ in range(span_s // BUCKET_S)]
        last: list[Seen] = []
        for s in seen:
            if s.ts >= now - RATE_S:
                last.append(s)
            if start <= s.ts < end:
                buckets[int((s.ts - start) // BUCKET_S)].append(s)
        series = [summary(b, BUCKET_S) for b in buckets]
        return {
            "object": "live",
            "now": iso_time(now),
            "bucket_s": BUCKET_S,
            "summary_s": RATE_S,
            "summary": summary(last, RATE_S),
            "series": {
                "t": [start + i * BUCKET_S for i in range(len(buckets))],
                **{name: [row[name] for row in series] for name in ("rps", "error_rate", "p50_ms", "p95_ms", "p99_ms")},
            },
            "recent_errors": [row(r) for r in reversed(self._errors)],
            "recent_requests": [row(r) for r in list(reversed(self._recent))[:20]],
        }


async def from_prometheus(url: str, timeout_s: float) -> dict[str, Any]:
    """The last minute's rate, error rate and percentiles over every replica, from Prometheus."""
    q = queries(RATE_S)
    timeout = min(timeout_s, PROMETHEUS_TIMEOUT_S)
    source = PrometheusSource(url, timeout_s=timeout)
    now = datetime.now(UTC)
    exprs = [q.requests, q.client_errors, q.server_errors, q.p50, q.p95, q.p99]
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout)) as session:
            requests, c4, c5, p50, p95, p99 = await asyncio.gather(*(source.query(session, e, now) for e in exprs))
    except PrometheusError as exc:
        return {"url": url, "error": str(exc)}
    total = requests or 0.0
    errors = (c4 or 0.0) + (c5 or 0.0)

    def ms(seconds: float | None) -> float | None:
        return None if seconds is None else round(seconds * 1000, 1)

    return {
        "url": url,
        "rps": round(total / RATE_S, 3),
        "error_rate": round(errors / total, 4) if total else 0.0,
        "p50_ms": ms(p50),
        "p95_ms": ms(p95),
        "p99_ms": ms(p99),
    }


class LiveHost(AdminHost, Protocol):
    @property
    def live(self) -> LiveWindow: ...

    @property
    def file_config(self) -> LoadedConfig: ...


class LiveAPI:
    def __init__(self, host: LiveHost) -> None:
        self._host = host

    def routes(self) -> list[Route]:
        return [Route("/admin/live", guarded(self._host, self.live, role=Role.viewer), methods=["GET"])]

    async def live(self, request: Request) -> Response:
        text = request.query_params.get("span_s", "300")
        try:
            span = int(text)
        except ValueError:
            span = -1
        if not 60 <= span <= WINDOW_S or span % BUCKET_S:
            raise InvalidRequest(
                f"span_s must be a multiple of {BUCKET_S} from 60 to {WINDOW_S}, got {text!r}", param="span_s"
            )
        live = self._host.live
        body = live.snapshot(span)
        rid = request.query_params.get("request_id")
        if rid:
            body["request"] = live.find(rid)
        reports = self._host.file_config.settings.reports
        if reports.prometheus_url:
            body["prometheus"] = await from_prometheus(reports.prometheus_url, reports.prometheus_timeout_s)
        return json_response(body)
