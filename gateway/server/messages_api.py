"""The Anthropic Messages API: ``POST /v1/messages`` (streaming or not) and
``POST /v1/messages/count_tokens``, in Anthropic's shapes and error envelope, so the
official SDK and Claude Code work unchanged (Anthropic's LLM-gateway contract).

Keys come as ``x-api-key`` or ``Authorization: Bearer``. To an Anthropic deployment
the client's body goes as it came (model and deployment policy aside) with its
``anthropic-version`` and ``anthropic-beta``; to any other it is translated
(gateway/dialects/anthropic.py).
"""

from __future__ import annotations

from gateway.canonical import JSON
from gateway.config.settings import Params
from gateway.dialects import anthropic
from gateway.dialects.base import ANTHROPIC, Native
from gateway.dialects.openai import estimate_prompt_tokens
from gateway.errors import Untranslatable
from gateway.providers.anthropic_native import FORWARDED_HEADERS
from gateway.server.asgi import Receive, Scope, Send, header
from gateway.server.dialect_flow import DialectFlow, Turn, carry_provider_options, opaque
from gateway.server.exchange import AppState, Exchange, Guard


def forwarded(scope: Scope) -> dict[str, str]:
    """The client's ``anthropic-version`` and ``anthropic-beta``, for an Anthropic upstream."""
    out = {}
    for name in FORWARDED_HEADERS:
        value = header(scope, name.encode())
        if value:
            out[name] = value.decode("latin-1")
    return out


def native(body: JSON, scope: Scope, untranslatable: Untranslatable | None = None) -> Native:
    def prepare(model: str, params: Params, drop: frozenset[str]) -> JSON:
        return anthropic.apply_native(body, model, params, drop)

    return Native(ANTHROPIC, prepare, forwarded(scope), untranslatable)


def parse(body: JSON, scope: Scope, count: bool = False) -> tuple[JSON, Native]:
    """The canonical request and the native body; one that only an Anthropic deployment
    can take (server tools, ...) gets a stand-in and goes nowhere else."""
    try:
        req = anthropic.parse_count_tokens(body) if count else anthropic.parse_messages(body)
        carry_provider_options(body, req)
    except Untranslatable as err:
        return opaque(body, stream=body.get("stream") is True), native(body, scope, err)
    return req, native(body, scope)


class MessagesAPI:
    def __init__(self, app: AppState, flow: DialectFlow) -> None:
        self._flow = flow
        self._guarded = Guard(app).run

    async def create(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self._guarded(scope, receive, send, self._create, "messages", anthropic.render_error)

    async def count_tokens(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self._guarded(scope, receive, send, self._count, "messages_count_tokens", anthropic.render_error)

    async def _create(self, scope: Scope, receive: Receive, ex: Exchange) -> None:
        body = await self._flow.body(scope, receive, ex)
        req, same = parse(body, scope)
        model = str(req["model"])
        turn = Turn(
            req,
            same,
            render=lambda completion: anthropic.render_message(completion, model),
            encoder=lambda: anthropic.MessagesStream(model, estimate_prompt_tokens(req)),
            headers=[(b"request-id", ex.rid)],
        )
        await self._flow.chat(scope, receive, ex, turn)

    async def _count(self, scope: Scope, receive: Receive, ex: Exchange) -> None:
        body = await self._flow.body(scope, receive, ex)
        req, same = parse(body, scope, count=True)
        await self._flow.count(ex, req, same, lambda n, estimated: anthropic.count_tokens_body(n, estimated=estimated))
