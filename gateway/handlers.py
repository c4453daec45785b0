"""Client API handlers (OpenAI dialect): chat completions, streams,
embeddings and the model list, as plain ASGI callables.

Every failure reaches the client as an OpenAI-shaped error with a stable
``code``; an unexpected exception is logged with its traceback and answered
with a generic 500 that leaks nothing. A stream that fails after its first
byte cannot change its status any more: it ends with an error event (which the
openai SDK raises as an ``APIError``) and no ``[DONE]``.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Protocol

import orjson

from gateway.asgi import (
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
from gateway.canonical import JSON
from gateway.dialects.openai import (
    SSE_DONE,
    encode_embeddings,
    parse_json_body,
    validate_chat,
    validate_embeddings,
)
from gateway.errors import GatewayError, NotFound, UpstreamError
from gateway.routing.router import RequestTrace
from gateway.service import OpenStream, Service

log = logging.getLogger("gateway.requests")

Headers = list[tuple[bytes, bytes]]


class _Principal(Protocol):
    def may_use(self, alias: str) -> bool: ...

    def check_model(self, alias: str) -> None: ...


class AppState(Protocol):
    @property
    def service(self) -> Service | None: ...

    def authenticate(self, scope: Scope) -> _Principal: ...


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


class Handlers:
    def __init__(self, app: AppState) -> None:
        self._app = app

    def _service(self) -> Service:
        service = self._app.service
        if service is None:
            raise GatewayError("the gateway is still starting", code="starting")
        return service

    async def chat(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self._guarded(scope, receive, send, self._chat)

    async def embeddings(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self._guarded(scope, receive, send, self._embeddings)

    async def _guarded(self, scope: Scope, receive: Receive, send: Send, work: _Work) -> None:
        rid = request_id(scope).encode()
        trace = RequestTrace()
        state = _Exchange(send)
        try:
            await work(scope, receive, state, rid, trace)
        except GatewayError as err:
            state.stop_watch()
            if not state.started:
                await send_error(send, err, trace_headers(rid, trace))
        except asyncio.CancelledError:
            if state.watch is None or not state.watch.disconnected:
                raise
            task = asyncio.current_task()
            if task is not None:
                task.uncancel()
            log.info("client disconnected; upstream call cancelled (request %s)", rid.decode())
        except Exception:
            state.stop_watch()
            log.exception("unexpected error handling request %s", rid.decode())
            if not state.started:
                await send_error(send, GatewayError("internal error; see the gateway log"), trace_headers(rid, trace))
        finally:
            state.stop_watch()

    async def _chat(self, scope: Scope, receive: Receive, ex: _Exchange, rid: bytes, trace: RequestTrace) -> None:
        principal = self._app.authenticate(scope)
        service = self._service()
        req = validate_chat(parse_json_body(await read_body(scope, receive, service.settings.server.max_body_bytes)))
        principal.check_model(req["model"])
        ex.watch = DisconnectWatch(receive)
        if req.get("stream"):
            stream = await service.open_stream(req, trace)
            await self._stream(ex, stream, req, rid, trace)
            return
        result = await service.chat(req, trace)
        ex.stop_watch()
        await send_bytes(ex.send, 200, orjson.dumps(result), trace_headers(rid, trace))

    async def _stream(self, ex: _Exchange, stream: OpenStream, req: JSON, rid: bytes, trace: RequestTrace) -> None:
        include_usage = bool((req.get("stream_options") or {}).get("include_usage"))
        send = ex.send
        ex.started = True
        await send({"type": "http.response.start", "status": 200, "headers": SSE_HEADERS + trace_headers(rid, trace)})
        await send(
            {"type": "http.response.body", "body": render_chunks(stream.first, include_usage), "more_body": True}
        )
        tail = SSE_DONE
        try:
            async for batch in stream.rest():
                data = render_chunks(batch, include_usage)
                if data:
                    await send({"type": "http.response.body", "body": data, "more_body": True})
        except UpstreamError as err:
            log.warning("stream %s broke after its first byte: %s", rid.decode(), err.message)
            tail = b"data: " + orjson.dumps(err.to_body()) + b"\n\n"
        ex.stop_watch()
        await send({"type": "http.response.body", "body": tail, "more_body": False})

    async def _embeddings(self, scope: Scope, receive: Receive, ex: _Exchange, rid: bytes, trace: RequestTrace) -> None:
        principal = self._app.authenticate(scope)
        service = self._service()
        req = validate_embeddings(
            parse_json_body(await read_body(scope, receive, service.settings.server.max_body_bytes))
        )
        principal.check_model(req["model"])
        ex.watch = DisconnectWatch(receive)
        result = await service.embed(req, trace)
        result = encode_embeddings(result, req.get("encoding_format") or "float")
        ex.stop_watch()
        await send_bytes(ex.send, 200, orjson.dumps(result), trace_headers(rid, trace))

    async def list_models(self, scope: Scope, receive: Receive, send: Send) -> None:
        rid = request_id(scope).encode()
        try:
            principal = self._app.authenticate(scope)
            service = self._service()
        except GatewayError as err:
            await send_error(send, err, [(b"x-request-id", rid)])
            return
        data = [_model_card(alias, service.created) for alias in service.routes if principal.may_use(alias)]
        await send_bytes(send, 200, orjson.dumps({"object": "list", "data": data}), [(b"x-request-id", rid)])

    async def get_model(self, scope: Scope, receive: Receive, send: Send, model_id: str) -> None:
        rid = request_id(scope).encode()
        try:
            principal = self._app.authenticate(scope)
            service = self._service()
            if model_id not in service.routes or not principal.may_use(model_id):
                raise NotFound(f"The model '{model_id}' does not exist", code="model_not_found", param="model")
        except GatewayError as err:
            await send_error(send, err, [(b"x-request-id", rid)])
            return
        await send_bytes(send, 200, orjson.dumps(_model_card(model_id, service.created)), [(b"x-request-id", rid)])


def _model_card(alias: str, created: int) -> JSON:
    return {"id": alias, "object": "model", "created": created, "owned_by": "llm-gateway"}


class _Exchange:
    """Per-request response state shared between a handler and its guard."""

    __slots__ = ("send", "started", "watch")

    def __init__(self, send: Send) -> None:
        self.send = send
        self.started = False
        self.watch: DisconnectWatch | None = None

    def stop_watch(self) -> None:
        if self.watch is not None:
            self.watch.stop()


class _Work(Protocol):
    async def __call__(
        self, scope: Scope, receive: Receive, ex: _Exchange, rid: bytes, trace: RequestTrace
    ) -> None: ...
