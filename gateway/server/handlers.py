"""Client API handlers (OpenAI dialect): chat completions, streams,
embeddings and the model list, as plain ASGI callables.

The path of a chat request: authenticate -> read and validate -> model
allowed? -> traffic control admits it (rate limits, cache lookup, budgets) ->
a cache hit is answered at once, a miss goes through the router -> the real
usage is priced and recorded -> the answer is stored, slots released.

Every failure reaches the client as an OpenAI-shaped error with a stable
``code``; an unexpected exception is logged with its traceback and answered
with a generic 500 that leaks nothing. A stream that fails after its first
byte cannot change its status any more: it ends with an error event (which the
openai SDK raises as an ``APIError``) and no ``[DONE]``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Protocol

import orjson

from gateway.canonical import JSON
from gateway.dialects.openai import SSE_DONE, encode_embeddings, parse_json_body, validate_chat, validate_embeddings
from gateway.errors import AuthenticationFailed, GatewayError, NotFound, Starting, UpstreamError
from gateway.observability.logs import AccessLog, RequestRecord, RequestSink, deliver
from gateway.observability.metrics import Metrics, error_type
from gateway.observability.tracing import RequestSpan, Tracing
from gateway.policies.auth import Principal
from gateway.policies.replay import ChunkAssembler, completion_to_chunks
from gateway.routing.router import RequestTrace
from gateway.server.asgi import (
    SSE_HEADERS,
    DisconnectWatch,
    Receive,
    Scope,
    Send,
    read_body,
    request_id,
    send_bytes,
    send_error,
)
from gateway.server.service import OpenStream, Service
from gateway.server.traffic import Ticket, TrafficControl

log = logging.getLogger("gateway.requests")

Headers = list[tuple[bytes, bytes]]
CLIENT_CACHE_HEADERS = (b"cache-control", b"x-gateway-cache")


class AppState(Protocol):
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

    async def authenticate(self, scope: Scope) -> Principal: ...


def client_headers(scope: Scope) -> dict[str, str]:
    """The request headers traffic control reads (cache directives)."""
    return {k.decode(): v.decode("latin-1") for k, v in scope["headers"] if k in CLIENT_CACHE_HEADERS}


def trace_headers(rid: bytes, trace: RequestTrace) -> Headers:
    headers = [(b"x-request-id", rid)]
    if trace.attempts:
        headers.append((b"x-gateway-attempts", str(trace.attempts).encode()))
    if trace.deployment is not None:
        headers.append((b"x-gateway-deployment", trace.deployment.id.encode()))
    if trace.fallbacks:
        headers.append((b"x-gateway-fallback", ",".join(t for _, t, _ in trace.fallbacks).encode()))
    return headers


def render_chunks(chunks: list[JSON], include_usage: bool) -> bytes:
    out = []
    for chunk in chunks:
        if not include_usage and not chunk.get("choices"):
            continue
        out.append(b"data: " + orjson.dumps(chunk) + b"\n\n")
    return b"".join(out)


class _Exchange:
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

    def record(self, route: str, status: int, code: str, seconds: float) -> RequestRecord:
        """What this request came to, from what the handler already holds."""
        trace, ticket, principal, dep = self.trace, self.ticket, self.principal, self.trace.deployment
        usage = self.usage or {}
        return RequestRecord(
            ts=time.time() - seconds,
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


class _Work(Protocol):
    async def __call__(self, scope: Scope, receive: Receive, ex: _Exchange) -> None: ...


class Handlers:
    def __init__(self, app: AppState) -> None:
        self._app = app

    def _service(self) -> Service:
        service = self._app.service
        if service is None:
            raise Starting()
        return service

    async def chat(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self._guarded(scope, receive, send, self._chat, "chat")

    async def embeddings(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self._guarded(scope, receive, send, self._embeddings, "embeddings")

    async def _guarded(self, scope: Scope, receive: Receive, send: Send, work: _Work, route: str) -> None:
        ex = _Exchange(send, request_id(scope).encode())
        tracing = self._app.tracing
        if tracing.enabled:
            ex.span = ex.trace.spans = tracing.request(scope, route)
        metrics = self._app.metrics
        inflight = metrics.child(metrics.inflight, route)
        inflight.inc()
        status, code = 200, ""
        try:
            try:
                await work(scope, receive, ex)
            finally:
                await ex.release()
        except GatewayError as err:
            ex.stop_watch()
            status, code = err.http_status, error_type(err)
            if isinstance(err, AuthenticationFailed):
                metrics.auth_failures.labels(err.code).inc()
            if not ex.started:
                await send_error(send, err, ex.headers())
        except asyncio.CancelledError:
            if ex.watch is None or not ex.watch.disconnected:
                raise
            task = asyncio.current_task()
            if task is not None:
                task.uncancel()
            status, code = 499, "client_disconnected"
            log.info("client disconnected; upstream call cancelled (request %s)", ex.rid.decode())
        except Exception:
            ex.stop_watch()
            status, code = 500, "internal_error"
            log.exception("unexpected error handling request %s", ex.rid.decode())
            if not ex.started:
                await send_error(send, GatewayError("internal error; see the gateway log"), ex.headers())
        finally:
            ex.stop_watch()
            inflight.dec()
            self._record(ex, route, status, code)

    def _record(self, ex: _Exchange, route: str, status: int, code: str) -> None:
        metrics, trace, span = self._app.metrics, ex.trace, ex.span
        provider = trace.deployment.target.provider if trace.deployment is not None else ""
        seconds = time.perf_counter() - ex.began
        exemplar = span.exemplar if span is not None else None
        metrics.request_done(route, ex.alias, provider, status, seconds, code, trace.upstream_s, ex.streamed, exemplar)
        for from_alias, to_alias, reason in trace.fallbacks:
            metrics.fallbacks.labels(from_alias, to_alias, reason).inc()
        # The access log line, in-process subscribers and the span (observability/logs.py, tracing.py).
        access, sinks = self._app.access_log, self._app.request_sinks
        if access is None and not sinks and span is None:
            return
        record = ex.record(route, status, code, seconds)
        if access is not None:
            access.emit(record, ex.req, ex.answer)
        if sinks:
            deliver(sinks, record)
        if span is not None:
            span.finish(record, ex.req)

    async def _admit(self, scope: Scope, receive: Receive, ex: _Exchange, *, embedding: bool) -> tuple[Service, JSON]:
        """Authenticate, read, validate, check the model and admit: the steps
        chat and embeddings share."""
        principal = ex.principal = await self._app.authenticate(scope)
        service = self._service()
        raw = await read_body(scope, receive, service.settings.server.max_body_bytes)
        req = validate_embeddings(parse_json_body(raw)) if embedding else validate_chat(parse_json_body(raw))
        ex.req = req
        principal.check_model(req["model"])
        route = service.route_for(req["model"], "embedding" if embedding else "chat")
        ex.alias = route.alias
        ex.traffic = service.traffic
        ex.ticket = await service.traffic.begin(principal, route, req, client_headers(scope), embedding=embedding)
        ex.watch = DisconnectWatch(receive)
        return service, req

    async def _chat(self, scope: Scope, receive: Receive, ex: _Exchange) -> None:
        service, req = await self._admit(scope, receive, ex, embedding=False)
        ticket, traffic = ex.ticket, service.traffic
        assert ticket is not None
        wants_stream = ex.stream = bool(req.get("stream"))
        ex.answer = ticket.hit
        if ticket.hit is not None:
            if wants_stream:
                await self._replay(ex, completion_to_chunks(ticket.hit), req)
            else:
                await self._send_json(ex, ticket.hit)
            return
        if wants_stream:
            await self._stream(ex, await service.open_stream(req, ex.trace, traffic.gate(ticket)), req, traffic)
            return
        result = ex.answer = await service.chat(req, ex.trace, traffic.gate(ticket))
        ex.usage = result.get("usage")
        traffic.charge(ticket, ex.trace.deployment, result.get("usage"))
        await self._send_json(ex, result)
        await traffic.end(ticket, usage=result.get("usage"), answer=result)

    async def _embeddings(self, scope: Scope, receive: Receive, ex: _Exchange) -> None:
        service, req = await self._admit(scope, receive, ex, embedding=True)
        ticket, traffic = ex.ticket, service.traffic
        assert ticket is not None
        fmt = req.get("encoding_format") or "float"
        if ticket.hit is not None:
            await self._send_json(ex, encode_embeddings(ticket.hit, fmt))
            return
        result = await service.embed(req, ex.trace, traffic.gate(ticket))
        ex.usage = result.get("usage")
        traffic.charge(ticket, ex.trace.deployment, result.get("usage"))
        await self._send_json(ex, encode_embeddings(result, fmt))
        await traffic.end(ticket, usage=result.get("usage"), answer=result)

    async def _send_json(self, ex: _Exchange, body: JSON) -> None:
        ex.stop_watch()
        ex.started = True
        await send_bytes(ex.send, 200, orjson.dumps(body), ex.headers())

    async def _replay(self, ex: _Exchange, chunks: list[JSON], req: JSON) -> None:
        """A whole stream at once: a cached answer replayed."""
        include_usage = bool((req.get("stream_options") or {}).get("include_usage"))
        ex.started = ex.streamed = True
        ex.stop_watch()
        await ex.send({"type": "http.response.start", "status": 200, "headers": SSE_HEADERS + ex.headers()})
        await ex.send({"type": "http.response.body", "body": render_chunks(chunks, include_usage) + SSE_DONE})
        self._first_chunk(ex)

    async def _stream(self, ex: _Exchange, stream: OpenStream, req: JSON, traffic: TrafficControl) -> None:
        include_usage = bool((req.get("stream_options") or {}).get("include_usage"))
        ticket = ex.ticket
        assert ticket is not None
        access = self._app.access_log
        keep = ChunkAssembler() if ticket.cache_mode.store or (access is not None and access.payloads) else None
        send = ex.send
        ex.started = ex.streamed = True
        await send({"type": "http.response.start", "status": 200, "headers": SSE_HEADERS + ex.headers()})
        await send(
            {"type": "http.response.body", "body": render_chunks(stream.first, include_usage), "more_body": True}
        )
        self._first_chunk(ex)
        if keep is not None:
            keep.extend(stream.first)
        tail, ok = SSE_DONE, True
        try:
            async for batch in stream.rest():
                if keep is not None:
                    keep.extend(batch)
                data = render_chunks(batch, include_usage)
                if data:
                    await send({"type": "http.response.body", "body": data, "more_body": True})
        except UpstreamError as err:
            log.warning("stream %s broke after its first byte: %s", ex.rid.decode(), err.message)
            tail, ok = b"data: " + orjson.dumps(err.to_body()) + b"\n\n", False
            self._app.metrics.truncated_streams.labels(ex.alias).inc()
        except asyncio.CancelledError:
            # The client went away: charge whatever usage the upstream reported.
            ex.usage = stream.decoder.usage
            traffic.charge(ticket, ex.trace.deployment, stream.decoder.usage)
            raise
        ex.stop_watch()
        await send({"type": "http.response.body", "body": tail, "more_body": False})
        usage = ex.usage = stream.decoder.usage
        traffic.charge(ticket, ex.trace.deployment, usage)
        ex.answer = keep.completion() if keep is not None and ok else None
        await traffic.end(ticket, usage=usage, answer=ex.answer)

    def _first_chunk(self, ex: _Exchange) -> None:
        metrics = self._app.metrics
        ex.ttft = time.perf_counter() - ex.began
        exemplar = ex.span.exemplar if ex.span is not None else None
        metrics.child(metrics.server_ttft, "chat", ex.alias).observe(ex.ttft, exemplar)

    async def list_models(self, scope: Scope, receive: Receive, send: Send) -> None:
        rid = request_id(scope).encode()
        try:
            principal = await self._app.authenticate(scope)
            service = self._service()
        except GatewayError as err:
            await send_error(send, err, [(b"x-request-id", rid)])
            return
        data = [_model_card(alias, service.created) for alias in service.routes if principal.may_use(alias)]
        await send_bytes(send, 200, orjson.dumps({"object": "list", "data": data}), [(b"x-request-id", rid)])

    async def get_model(self, scope: Scope, receive: Receive, send: Send, model_id: str) -> None:
        rid = request_id(scope).encode()
        try:
            principal = await self._app.authenticate(scope)
            service = self._service()
            if model_id not in service.routes or not principal.may_use(model_id):
                raise NotFound(f"The model '{model_id}' does not exist", code="model_not_found", param="model")
        except GatewayError as err:
            await send_error(send, err, [(b"x-request-id", rid)])
            return
        await send_bytes(send, 200, orjson.dumps(_model_card(model_id, service.created)), [(b"x-request-id", rid)])


def _model_card(alias: str, created: int) -> JSON:
    return {"id": alias, "object": "model", "created": created, "owned_by": "llm-gateway"}
