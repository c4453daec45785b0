"""The chat path of the non-OpenAI dialects (Anthropic Messages, OpenAI Responses,
Gemini), shared: the same steps as the chat-completions handler (authenticate,
read, validate, model allowed?, traffic control, cache, router, charge) with the
dialect's parse and render around them.

A dialect's handler describes one request as a :class:`Turn`: the canonical
request, the client's own body for a deployment of its format (:class:`Native`),
how to render a canonical answer, a stream encoder, and how to relay an upstream
answer of the client's own format. Model names go through ``model_aliases``
(gateway/routing/names.py) first; metrics, logs and spans only ever see the alias.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import orjson

from gateway.canonical import JSON
from gateway.dialects.base import Native, StreamEncoder
from gateway.dialects.openai import parse_json_body
from gateway.errors import InvalidRequest, Starting
from gateway.policies.auth import Principal
from gateway.policies.replay import completion_to_chunks
from gateway.providers.base import SSEEvent
from gateway.providers.options import FIELD as PROVIDER_OPTIONS
from gateway.routing.deployment import Route
from gateway.server.asgi import DisconnectWatch, Receive, Scope, read_body, send_bytes
from gateway.server.dialect_stream import DialectStreamWriter
from gateway.server.exchange import AppState, Exchange
from gateway.server.handlers import client_headers
from gateway.server.relay import Relayed, count_tokens, relay
from gateway.server.rule_facts import route_by_rules, shadow
from gateway.server.service import Service
from gateway.server.traffic import Ticket


def sse_events(events: list[SSEEvent]) -> bytes:
    """Upstream events relayed as they came (same-format pass-through)."""
    out = []
    for event in events:
        if event.event != "message":
            out.append(b"event: " + event.event.encode() + b"\n")
        out.append(b"data: " + event.data.encode() + b"\n\n")
    return b"".join(out)


def carry_provider_options(body: JSON, req: JSON) -> None:
    """The client's ``provider_options`` on its canonical request (a dialect's parser keeps
    only its own fields): the service checks and applies them (gateway/providers/options.py)."""
    if PROVIDER_OPTIONS in body:
        req[PROVIDER_OPTIONS] = body[PROVIDER_OPTIONS]


def opaque(body: JSON, *, stream: bool = False) -> JSON:
    """The canonical stand-in of a body that cannot be translated (only a deployment of
    its own format may take it): enough for routing, limits, the token estimate and the
    cache key (the whole body is part of it, as ``native_body``)."""
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise InvalidRequest("model must be a non-empty string", param="model", code="invalid_type")
    text = orjson.dumps(body.get("messages", body.get("input", body.get("contents")))).decode()
    req: JSON = {"model": model, "messages": [{"role": "user", "content": text}], "native_body": body}
    if stream:
        req["stream"] = True
    if isinstance(body.get("max_tokens"), int):
        req["max_tokens"] = body["max_tokens"]
    return req


@dataclass(slots=True)
class Turn:
    """One chat request of a dialect, as its handler describes it (module docstring)."""

    req: JSON
    """The canonical request; its ``model`` is the client's name until :meth:`DialectFlow.admit` resolves it."""
    native: Native
    render: Callable[[JSON], JSON]
    """Canonical ``chat.completion`` -> the client's answer."""
    encoder: Callable[[], StreamEncoder]
    relayed: Callable[[Relayed], JSON | bytes] = field(default=lambda r: r.raw or b"")
    """A same-format upstream answer -> what the client gets (by default: the bytes as they came)."""
    events: Callable[[list[SSEEvent]], bytes] = sse_events
    """Same-format upstream events -> the bytes the client gets."""
    done: Callable[[JSON | None], Awaitable[None]] | None = None
    """Called with the client's final answer (None when a stream broke): the Responses store."""
    final: Callable[[], JSON | None] = field(default=lambda: None)
    """For a stream: the client's final answer once it ended (the Responses object)."""
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)


class DialectFlow:
    """Admission and answering for the dialect handlers; one per app."""

    def __init__(self, app: AppState) -> None:
        self._app = app
        self._writer = DialectStreamWriter(app)

    def service(self) -> Service:
        service = self._app.service
        if service is None:
            raise Starting()
        return service

    async def authenticate(self, scope: Scope) -> Principal:
        return await self._app.authenticate(scope)

    async def body(self, scope: Scope, receive: Receive, ex: Exchange) -> JSON:
        """Authenticate, then read the body within the server's caps."""
        ex.principal = await self._app.authenticate(scope)
        server = self.service().settings.server
        return parse_json_body(await read_body(scope, receive, server.max_body_bytes), server.max_json_depth)

    def route(self, ex: Exchange, name: str, kind: str, req: JSON | None = None, scope: Scope | None = None) -> Route:
        """The route of the client's model name, once the key may use it (for a chat
        request, ``req`` and ``scope`` given, after the routing rules)."""
        service = self.service()
        alias = service.names.resolve(name) or name
        assert ex.principal is not None
        ex.principal.check_model(alias)
        if req is not None and scope is not None:
            shaping = self._app.metrics.shaping
            alias = route_by_rules(service, shaping, ex.trace, ex.principal, alias, req, scope)
        route = service.route_for(alias, kind)
        ex.alias = route.alias
        return route

    async def _admit(
        self, scope: Scope, receive: Receive, ex: Exchange, req: JSON, kind: str
    ) -> tuple[Service, Ticket]:
        """The model's route (``req["model"]`` becomes the alias), then traffic control's
        admission: rate limits, cache lookup, budgets."""
        service = self.service()
        route = self.route(ex, req["model"], kind, req if kind == "chat" else None, scope)
        req["model"] = route.alias
        ex.req = req
        ex.traffic = service.traffic
        assert ex.principal is not None
        embedding = kind == "embedding"
        ex.watch = DisconnectWatch(receive)  # before admission: a client that leaves the queue ends its wait
        ticket = ex.ticket = await service.traffic.begin(
            ex.principal, route, req, client_headers(scope), embedding=embedding
        )
        return service, ticket

    async def chat(self, scope: Scope, receive: Receive, ex: Exchange, turn: Turn) -> None:
        req = turn.req
        service, ticket = await self._admit(scope, receive, ex, req, "chat")
        traffic = service.traffic
        ex.stream = bool(req.get("stream"))
        if ticket.hit is not None:
            ex.answer = ticket.hit
            if ex.stream:
                await self._writer.replay(ex, completion_to_chunks(ticket.hit), turn)
            else:
                await self.send_json(ex, turn.render(ticket.hit), turn)
            return
        shadow(self._app.shadows, service, req, ticket.route.alias)
        if ex.stream:
            wait = traffic.capacity_wait(ticket.principal, ticket.route, client_headers(scope))
            stream = await service.open_stream(req, ex.trace, traffic.gate(ticket), native=turn.native, wait=wait)
            await self._writer.stream(ex, stream, turn, traffic)
            return
        wait = traffic.capacity_wait(ticket.principal, ticket.route, client_headers(scope))
        result = await relay(service, req, turn.native, ex.trace, traffic.gate(ticket), wait)
        ex.answer = result.completion
        usage = ex.usage = result.completion.get("usage")
        traffic.charge(ticket, ex.trace.deployment, usage)
        answer = turn.relayed(result) if result.answer is not None else turn.render(result.completion)
        body = answer if isinstance(answer, bytes) else orjson.dumps(answer)
        if turn.done is not None:  # stored before it is answered: the client may continue at once
            await turn.done(orjson.loads(body) if isinstance(answer, bytes) else answer)
        await self.send_bytes(ex, body, turn)
        await traffic.end(ticket, usage=usage, answer=result.completion)

    async def embed(self, scope: Scope, receive: Receive, ex: Exchange, req: JSON, render: Render) -> None:
        """An embeddings request of a dialect (canonical ``req``; ``render`` draws the answer)."""
        service, ticket = await self._admit(scope, receive, ex, req, "embedding")
        traffic = service.traffic
        if ticket.hit is not None:
            await self.send_bytes(ex, orjson.dumps(render(ticket.hit)), NO_TURN)
            return
        wait = traffic.capacity_wait(ticket.principal, ticket.route, client_headers(scope))
        result = await service.embed(req, ex.trace, traffic.gate(ticket), wait)
        usage = ex.usage = result.get("usage")
        traffic.charge(ticket, ex.trace.deployment, usage)
        await self.send_bytes(ex, orjson.dumps(render(result)), NO_TURN)
        await traffic.end(ticket, usage=usage, answer=result)

    async def count(self, ex: Exchange, req: JSON, native: Native, render: Callable[[int, bool], JSON]) -> None:
        """A token count (relay.py ``count_tokens``): rate-limited as a request, no model called."""
        service = self.service()
        route = self.route(ex, req["model"], "chat")
        req["model"] = route.alias
        ex.req = req
        traffic = ex.traffic = service.traffic
        assert ex.principal is not None
        ticket = ex.ticket = await traffic.admit(ex.principal, route, {})
        tokens, estimated = await count_tokens(service, route, req, native)
        how = (b"x-gateway-token-count", b"estimated" if estimated else b"upstream")
        await self.send_bytes(ex, orjson.dumps(render(tokens, estimated)), Headers([how]))
        await traffic.end(ticket, usage=None, answer=None)

    async def send_json(self, ex: Exchange, body: JSON, turn: Turn) -> None:
        if turn.done is not None:
            await turn.done(body)
        await self.send_bytes(ex, orjson.dumps(body), turn)

    @staticmethod
    async def send_bytes(ex: Exchange, body: bytes, turn: Turn | Headers) -> None:
        ex.stop_watch()
        ex.started = True
        await send_bytes(ex.send, 200, body, ex.headers() + turn.headers)


@dataclass(slots=True)
class Headers:
    """Extra answer headers where there is no :class:`Turn`."""

    headers: list[tuple[bytes, bytes]]


NO_TURN = Headers([])
Render = Callable[[JSON], JSON]
