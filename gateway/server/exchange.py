"""One client exchange (a request and its response) and the guard around it.

:class:`Exchange` is the per-request state a handler, its stream writer and its
guard share. :class:`Guard` runs a handler's work and ends every request the
same way: an OpenAI-shaped error with a stable ``code`` for a
:class:`~gateway.errors.GatewayError`, a generic 500 that leaks nothing (and the
traceback in the log) for anything else, 499 ``client_disconnected`` and no
answer for a client that went away (while its body was read, or later); then
the request's metrics, access-log line, subscribers and span.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Callable
from typing import Protocol

from gateway.canonical import JSON
from gateway.errors import AuthenticationFailed, ClientDisconnected, GatewayError
from gateway.observability.logs import AccessLog, RequestRecord, RequestSink, deliver
from gateway.observability.metric_labels import error_type
from gateway.observability.metrics import Metrics
from gateway.observability.tracing import RequestSpan, Tracing
from gateway.policies.auth import Principal
from gateway.routing.router import RequestTrace
from gateway.server.asgi import DisconnectWatch, Receive, Scope, Send, openai_error, request_id, send_error
from gateway.server.records import RecordBatch
from gateway.server.service import Service
from gateway.server.shadow import ShadowLauncher
from gateway.server.traffic import Ticket, TrafficControl

log = logging.getLogger("gateway.requests")

Headers = list[tuple[bytes, bytes]]


class AppState(Protocol):
    """What the client API handlers need of the app."""

    @property
    def service(self) -> Service | None: ...

    @property
    def metrics(self) -> Metrics: ...

    @property
    def tracing(self) -> Tracing: ...

    @property
    def access_log(self) -> AccessLog | None: ...

    @property
    def request_sinks(self) -> list[RequestSink]: ...

    @property
    def records(self) -> RecordBatch: ...

    @property
    def shadows(self) -> ShadowLauncher: ...

    async def authenticate(self, scope: Scope) -> Principal: ...


def trace_headers(rid: bytes, trace: RequestTrace) -> Headers:
    headers = [(b"x-request-id", rid)]
    if trace.attempts:
        headers.append((b"x-gateway-attempts", str(trace.attempts).encode()))
    if trace.deployment is not None:
        headers.append((b"x-gateway-deployment", trace.deployment.id.encode()))
    if trace.fallbacks:
        headers.append((b"x-gateway-fallback", ",".join(t for _, t, _ in trace.fallbacks).encode()))
    if trace.rule is not None:
        headers.append((b"x-gateway-route", trace.rule.encode()))
    return headers


class Exchange:
    """Per-request state shared between a handler and its guard."""

    __slots__ = (
        "alias",
        "answer",
        "began",
        "principal",
        "req",
        "rid",
        "send",
        "span",
        "started",
        "stream",
        "streamed",
        "ticket",
        "trace",
        "traffic",
        "ttft",
        "usage",
        "watch",
    )

    def __init__(self, send: Send, rid: bytes) -> None:
        self.send = send
        self.rid = rid
        self.trace = RequestTrace()
        self.began = time.perf_counter()
        self.alias = "unknown"
        """The configured alias once known: metric labels never carry client strings."""
        self.streamed = False
        self.started = False
        self.watch: DisconnectWatch | None = None
        self.ticket: Ticket | None = None
        self.traffic: TrafficControl | None = None
        # For the access log, subscribers and the span (observability/logs.py, tracing.py):
        self.span: RequestSpan | None = None
        self.principal: Principal | None = None
        self.req: JSON | None = None
        self.answer: JSON | None = None
        self.usage: JSON | None = None
        self.ttft: float | None = None
        self.stream = False

    def record(self, route: str, status: int, code: str, seconds: float, ended: float) -> RequestRecord:
        """What this request came to, from what the handler already holds (``ended``: when it
        ended, epoch seconds)."""
        trace, ticket, principal, dep = self.trace, self.ticket, self.principal, self.trace.deployment
        usage = self.usage or {}
        return RequestRecord(
            ts=ended - seconds,
            request_id=self.rid.decode(),
            route=route,
            status=status,
            latency_ms=round(seconds * 1000, 3),
            trace_id=self.span.trace_id if self.span is not None else None,
            key_id=principal.key_id if principal is not None else None,
            team=principal.team if principal is not None else None,
            alias=self.alias,
            deployment=dep.id if dep is not None else None,
            provider=dep.target.provider if dep is not None else None,
            model=dep.target.model if dep is not None else None,
            attempts=trace.attempts,
            ttft_ms=round(self.ttft * 1000, 3) if self.ttft is not None else None,
            prompt_tokens=usage.get("prompt_tokens"),
            completion_tokens=usage.get("completion_tokens"),
            cost_usd=ticket.cost_usd if ticket is not None else None,
            cache=ticket.cache_mode.header(hit=ticket.hit is not None) if ticket is not None else None,
            error_code=code or None,
            stream=self.stream,
        )

    def stop_watch(self) -> None:
        if self.watch is not None:
            self.watch.stop()

    def headers(self) -> Headers:
        extra = self.ticket.headers() if self.ticket is not None else []
        return trace_headers(self.rid, self.trace) + extra

    async def release(self) -> None:
        """Concurrency slots go back whatever happened (idempotent)."""
        if self.ticket is not None and self.traffic is not None:
            await self.traffic.release(self.ticket)


ErrorRender = Callable[[GatewayError], tuple[int, bytes]]


class Work(Protocol):
    async def __call__(self, scope: Scope, receive: Receive, ex: Exchange) -> None: ...


class Guard:
    """Runs a handler's work for one request and ends it (see the module docstring)."""

    def __init__(self, app: AppState) -> None:
        self._app = app

    async def run(
        self, scope: Scope, receive: Receive, send: Send, work: Work, route: str, render: ErrorRender = openai_error
    ) -> None:
        """``render`` draws an error in the client's dialect (its ``render_error``)."""
        ex = Exchange(send, request_id(scope).encode())
        tracing = self._app.tracing
        if tracing.enabled:
            ex.span = ex.trace.spans = tracing.request(scope, route)
        metrics = self._app.metrics
        inflight = metrics.child(metrics.inflight, route)
        inflight.inc()
        status, code = 200, ""
        records = self._app.records
        records.began()
        try:
            try:
                await work(scope, receive, ex)
            finally:
                await ex.release()
        except ClientDisconnected as err:  # while its body was read: no one to answer
            status, code = err.http_status, error_type(err)
            log.info("client disconnected before its request body was complete (request %s)", ex.rid.decode())
        except GatewayError as err:
            ex.stop_watch()
            status, code = err.http_status, error_type(err)
            if isinstance(err, AuthenticationFailed):
                metrics.auth_failures.labels(err.code).inc()
            if not ex.started:
                await send_error(send, err, ex.headers(), render)
        except asyncio.CancelledError:
            if ex.watch is None or not ex.watch.disconnected:
                raise
            task = asyncio.current_task()
            if task is not None:
                task.uncancel()
            status, code = ClientDisconnected.status, ClientDisconnected.default_code
            log.info("client disconnected; upstream call cancelled (request %s)", ex.rid.decode())
        except Exception:
            ex.stop_watch()
            status, code = 500, "internal_error"
            log.exception("unexpected error handling request %s", ex.rid.decode())
            if not ex.started:
                await send_error(send, GatewayError("internal error; see the gateway log"), ex.headers(), render)
        finally:
            seconds = time.perf_counter() - ex.began
            records.ended(functools.partial(self._record, ex, route, status, code, seconds, time.time()))
            inflight.dec()
            ex.stop_watch()

    def _record(self, ex: Exchange, route: str, status: int, code: str, seconds: float, ended: float) -> None:
        """The request's metrics, access log line, sinks and span (run by the app's
        :class:`~gateway.server.records.RecordBatch`, maybe with other requests')."""
        metrics, trace, span = self._app.metrics, ex.trace, ex.span
        provider = trace.deployment.target.provider if trace.deployment is not None else ""
        exemplar = span.exemplar if span is not None else None
        metrics.request_done(route, ex.alias, provider, status, seconds, code, trace.upstream_s, ex.streamed, exemplar)
        for from_alias, to_alias, reason in trace.fallbacks:
            metrics.fallbacks.labels(from_alias, to_alias, reason).inc()
        # The access log line, in-process subscribers and the span (observability/logs.py, tracing.py).
        access, sinks = self._app.access_log, self._app.request_sinks
        if access is None and not sinks and span is None:
            return
        record = ex.record(route, status, code, seconds, ended)
        if access is not None:
            access.emit(record, ex.req, ex.answer)
        if sinks:
            deliver(sinks, record)
        if span is not None:
            span.finish(record, ex.req, ended)
