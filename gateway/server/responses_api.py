"""The OpenAI Responses API: ``POST /v1/responses`` (streaming or not), ``GET`` and
``DELETE /v1/responses/{id}`` and ``POST /v1/responses/input_tokens``.

The gateway issues the response ids and keeps stored responses itself
(gateway/state/response_store.py, per key), so ``previous_response_id`` works in
front of any provider and on any replica: the continuation is rebuilt from the
store. A deployment configured with ``api: responses`` gets the client's body (with
the history expanded, ``store: false``, reasoning kept as encrypted content);
every other deployment gets a translation (gateway/dialects/responses.py).
"""

from __future__ import annotations

import time
from collections.abc import Callable

import orjson

from gateway.canonical import JSON
from gateway.config.settings import Params
from gateway.dialects import responses
from gateway.dialects.base import OPENAI_RESPONSES, Native
from gateway.dialects.responses_stream import PassthroughEvents, ResponsesStream
from gateway.errors import InvalidRequest, NotFound, Untranslatable
from gateway.server.asgi import Receive, Scope, Send, header
from gateway.server.dialect_flow import NO_TURN, DialectFlow, Turn, carry_provider_options, opaque
from gateway.server.exchange import AppState, Exchange, Guard
from gateway.server.relay import Relayed
from gateway.state.response_store import BrokenConversation, Conversation, ResponseStore

COUNT_DROPS = ("store", "include", "stream", "stream_options", "background")
"""Create-only fields, not sent to an upstream's ``/responses/input_tokens``."""


class ResponsesAPI:
    def __init__(self, app: AppState, flow: DialectFlow, store: Callable[[], ResponseStore]) -> None:
        """``store()``: the store as the app's state backend and settings make it now."""
        self._flow = flow
        self._store = store
        self._guarded = Guard(app).run

    async def create(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self._guarded(scope, receive, send, self._create, "responses")

    async def input_tokens(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self._guarded(scope, receive, send, self._input_tokens, "responses_input_tokens")

    async def stored(self, scope: Scope, receive: Receive, send: Send, response_id: str) -> None:
        async def work(scope: Scope, receive: Receive, ex: Exchange) -> None:
            await self._stored(scope, receive, ex, response_id)

        await self._guarded(scope, receive, send, work, "responses_stored")

    async def _previous(self, ex: Exchange, body: JSON) -> Conversation | None:
        """The stored conversation ``previous_response_id`` continues (None: a new one)."""
        previous = body.get("previous_response_id")
        if previous is None:
            return None
        if not isinstance(previous, str) or not previous:
            raise InvalidRequest("previous_response_id must be a response id string", param="previous_response_id")
        assert ex.principal is not None
        try:
            found = await self._store().conversation(ex.principal.key_id, previous)
        except BrokenConversation as err:
            raise NotFound(
                f"Previous response with id '{previous}' cannot be continued: an earlier response of its "
                f"conversation ('{err.missing}') is no longer stored (deleted or expired).",
                code="previous_response_not_found",
                param="previous_response_id",
            ) from None
        if found is None:
            raise NotFound(
                f"Previous response with id '{previous}' not found.",
                code="previous_response_not_found",
                param="previous_response_id",
            )
        return found

    async def _create(self, scope: Scope, receive: Receive, ex: Exchange) -> None:
        body = await self._flow.body(scope, receive, ex)
        previous = await self._previous(ex, body)
        history = previous.items if previous is not None else []
        untranslatable = None
        try:
            req = responses.parse_responses(body, history)
        except Untranslatable as err:
            req, untranslatable = opaque(body, stream=body.get("stream") is True), err
        carry_provider_options(body, req)
        model, created = str(req["model"]), int(time.time())
        rid = responses.response_id()
        passthrough = PassthroughEvents(rid, body=body)
        streams: list[ResponsesStream] = []
        key_id = ex.principal.key_id if ex.principal is not None else ""

        def encoder() -> ResponsesStream:
            streams.append(ResponsesStream(rid, model, body, created))
            return streams[-1]

        def prepare(upstream_model: str, params: Params, drop: frozenset[str]) -> JSON:
            return responses.apply_native(body, upstream_model, params, drop, history)

        def relayed(result: Relayed) -> JSON:
            assert result.answer is not None
            return responses.rewrite(result.answer, rid, body=body)

        rendered: list[JSON] = []  # the canonical answer a plain Response was drawn from

        def render(completion: JSON) -> JSON:
            rendered.append(completion)
            return responses.render_response(completion, response_id=rid, model=model, body=body, created_at=created)

        async def done(response: JSON | None) -> None:
            if response is None:
                return
            # The store keeps the thinking of reasoning items whether the client asked for it or not.
            if streams:
                blocks = streams[-1].reasoning_blocks
            else:
                blocks = responses.reasoning_blocks(response, rendered[-1]) if rendered else {}
            turn_items = responses.input_items(body, lenient=True) + responses.output_items(response, blocks)
            await self._store().save(key_id, response, turn_items, previous)

        turn = Turn(
            req,
            Native(OPENAI_RESPONSES, prepare, forwarded(scope), untranslatable),
            render=render,
            encoder=encoder,
            relayed=relayed,
            events=lambda events: b"".join(passthrough.event(e.event, e.data) for e in events),
            done=None if body.get("store") is False else done,  # not stored: nothing to do at the end
            final=lambda: streams[-1].response if streams else passthrough.response,
        )
        await self._flow.chat(scope, receive, ex, turn)

    async def _input_tokens(self, scope: Scope, receive: Receive, ex: Exchange) -> None:
        body = await self._flow.body(scope, receive, ex)
        previous = await self._previous(ex, body)
        history = previous.items if previous is not None else []
        untranslatable = None
        try:
            req = responses.parse_responses({**body, "stream": False}, history)
        except Untranslatable as err:
            req, untranslatable = opaque(body), err

        def prepare(upstream_model: str, params: Params, drop: frozenset[str]) -> JSON:
            full = responses.apply_native(body, upstream_model, params, drop, history)
            return {k: v for k, v in full.items() if k not in COUNT_DROPS}

        await self._flow.count(
            ex,
            req,
            Native(OPENAI_RESPONSES, prepare, untranslatable=untranslatable),
            lambda n, est: responses.input_tokens_body(n, estimated=est),
        )

    async def _stored(self, scope: Scope, receive: Receive, ex: Exchange, response_id: str) -> None:
        ex.principal = principal = await self._flow.authenticate(scope)
        store = self._store()
        if scope["method"] == "DELETE":
            if not await store.delete(principal.key_id, response_id):
                raise _missing(response_id)
            answer: JSON = {"id": response_id, "object": "response", "deleted": True}
        else:
            found = await store.load(principal.key_id, response_id)
            if found is None:
                raise _missing(response_id)
            answer = found.response
        await DialectFlow.send_bytes(ex, orjson.dumps(answer), NO_TURN)


def forwarded(scope: Scope) -> dict[str, str]:
    """The client's ``openai-beta``, for an upstream speaking the Responses API."""
    beta = header(scope, b"openai-beta")
    return {"openai-beta": beta.decode("latin-1")} if beta else {}


def _missing(response_id: str) -> NotFound:
    return NotFound(f"Response with id '{response_id}' not found.", code="response_not_found", param="response_id")
