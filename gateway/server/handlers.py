"""Client API handlers (OpenAI dialect): chat completions, streams,
embeddings and the model list, as plain ASGI callables.

The path of a chat request: authenticate -> read and validate -> model
allowed? -> traffic control admits it (rate limits, cache lookup, budgets) ->
a cache hit is answered at once, a miss goes through the router -> the real
usage is priced and recorded -> the answer is stored, slots released.

Every request runs inside a :class:`~gateway.server.exchange.Guard`, which
turns any failure into an OpenAI-shaped error with a stable ``code`` (an
unexpected exception: logged with its traceback, answered with a generic 500
that leaks nothing). Streams are written by
:class:`~gateway.server.streaming.StreamWriter`.
"""

from __future__ import annotations

import orjson

from gateway.canonical import JSON
from gateway.dialects import anthropic
from gateway.dialects.openai import encode_embeddings, parse_json_body, validate_chat, validate_embeddings
from gateway.errors import GatewayError, NotFound, Starting
from gateway.policies.replay import completion_to_chunks
from gateway.server.asgi import (
    DisconnectWatch,
    Receive,
    Scope,
    Send,
    header,
    openai_error,
    read_body,
    request_id,
    send_bytes,
    send_error,
)
from gateway.server.exchange import AppState, Exchange, Guard
from gateway.server.rule_facts import route_by_rules, shadow
from gateway.server.service import Service
from gateway.server.streaming import StreamWriter

CLIENT_CACHE_HEADERS = (b"cache-control", b"x-gateway-cache", b"x-gateway-max-wait")


def client_headers(scope: Scope) -> dict[str, str]:
    """The request headers traffic control reads (cache directives, the longest wait for a place)."""
    return {k.decode(): v.decode("latin-1") for k, v in scope["headers"] if k in CLIENT_CACHE_HEADERS}


class Handlers:
    """The client API's ASGI callables (``chat``, ``embeddings``, ``list_models``, ``get_model``); one per app."""

    def __init__(self, app: AppState) -> None:
        self._app = app
        self._guarded = Guard(app).run
        writer = StreamWriter(app)
        self._stream = writer.stream
        self._replay = writer.replay

    def _service(self) -> Service:
        service = self._app.service
        if service is None:
            raise Starting()
        return service

    async def chat(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self._guarded(scope, receive, send, self._chat, "chat")

    async def embeddings(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self._guarded(scope, receive, send, self._embeddings, "embeddings")

    async def _admit(self, scope: Scope, receive: Receive, ex: Exchange, *, embedding: bool) -> tuple[Service, JSON]:
        """Authenticate, read, validate, check the model and admit: the steps
        chat and embeddings share."""
        principal = ex.principal = await self._app.authenticate(scope)
        service = self._service()
        server = service.settings.server
        body = parse_json_body(await read_body(scope, receive, server.max_body_bytes), server.max_json_depth)
        req = validate_embeddings(body) if embedding else validate_chat(body)
        ex.req = req
        alias = req["model"] = service.names.resolve(req["model"]) or req["model"]
        principal.check_model(alias)
        if not embedding:
            alias = route_by_rules(service, self._app.metrics.shaping, ex.trace, principal, alias, req, scope)
        route = service.route_for(alias, "embedding" if embedding else "chat")
        ex.alias = route.alias
        ex.traffic = service.traffic
        ex.watch = DisconnectWatch(receive)  # before admission: a client that leaves the queue ends its wait
        ex.ticket = await service.traffic.begin(principal, route, req, client_headers(scope), embedding=embedding)
        return service, req

    async def _chat(self, scope: Scope, receive: Receive, ex: Exchange) -> None:
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
        shadow(self._app.shadows, service, req, ticket.route.alias)
        wait = traffic.capacity_wait(ticket.principal, ticket.route, client_headers(scope))
        if wants_stream:
            stream = await service.open_stream(req, ex.trace, traffic.gate(ticket), wait=wait)
            await self._stream(ex, stream, req, traffic)
            return
        result = ex.answer = await service.chat(req, ex.trace, traffic.gate(ticket), wait)
        ex.usage = result.get("usage")
        traffic.charge(ticket, ex.trace.deployment, result.get("usage"))
        await self._send_json(ex, result)
        await traffic.end(ticket, usage=result.get("usage"), answer=result)

    async def _embeddings(self, scope: Scope, receive: Receive, ex: Exchange) -> None:
        service, req = await self._admit(scope, receive, ex, embedding=True)
        ticket, traffic = ex.ticket, service.traffic
        assert ticket is not None
        fmt = req.get("encoding_format") or "float"
        if ticket.hit is not None:
            await self._send_json(ex, encode_embeddings(ticket.hit, fmt))
            return
        wait = traffic.capacity_wait(ticket.principal, ticket.route, client_headers(scope))
        result = await service.embed(req, ex.trace, traffic.gate(ticket), wait)
        ex.usage = result.get("usage")
        traffic.charge(ticket, ex.trace.deployment, result.get("usage"))
        await self._send_json(ex, encode_embeddings(result, fmt))
        await traffic.end(ticket, usage=result.get("usage"), answer=result)

    async def _send_json(self, ex: Exchange, body: JSON) -> None:
        ex.stop_watch()
        ex.started = True
        await send_bytes(ex.send, 200, orjson.dumps(body), ex.headers())

    async def list_models(self, scope: Scope, receive: Receive, send: Send) -> None:
        """The aliases the key may use; in Anthropic's shape when the request carries
        ``anthropic-version`` (Claude Code's model discovery)."""
        rid = request_id(scope).encode()
        claude = header(scope, b"anthropic-version") is not None
        try:
            principal = await self._app.authenticate(scope)
            service = self._service()
        except GatewayError as err:
            await send_error(send, err, [(b"x-request-id", rid)], anthropic.render_error if claude else openai_error)
            return
        aliases = [alias for alias, route in service.routes.items() if principal.may_use(alias)]
        if claude:
            chat = [alias for alias in aliases if service.routes[alias].spec.kind == "chat"]
            body = anthropic.model_list(chat, service.created)
        else:
            body = {"object": "list", "data": [_model_card(alias, service.created) for alias in aliases]}
        await send_bytes(send, 200, orjson.dumps(body), [(b"x-request-id", rid)])

    async def get_model(self, scope: Scope, receive: Receive, send: Send, model_id: str) -> None:
        rid = request_id(scope).encode()
        claude = header(scope, b"anthropic-version") is not None
        try:
            principal = await self._app.authenticate(scope)
            service = self._service()
            if model_id not in service.routes or not principal.may_use(model_id):
                raise NotFound(f"The model '{model_id}' does not exist", code="model_not_found", param="model")
        except GatewayError as err:
            await send_error(send, err, [(b"x-request-id", rid)], anthropic.render_error if claude else openai_error)
            return
        card = anthropic.model_card(model_id, service.created) if claude else _model_card(model_id, service.created)
        await send_bytes(send, 200, orjson.dumps(card), [(b"x-request-id", rid)])


def _model_card(alias: str, created: int) -> JSON:
    return {"id": alias, "object": "model", "created": created, "owned_by": "llm-gateway"}
