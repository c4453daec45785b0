"""The Gemini API (``v1beta``): ``POST /v1beta/models/{model}:generateContent``,
``:streamGenerateContent?alt=sse``, ``:countTokens``, ``:embedContent``,
``:batchEmbedContents``, and ``GET /v1beta/models[/{model}]``, in Google's shapes and
error envelope, so ``google-genai`` works with ``http_options.base_url`` pointed here.

Keys come as ``x-goog-api-key``, ``key=`` (never logged: logs and spans carry the
path only) or ``Authorization: Bearer``. To a Gemini deployment the client's body goes
as it came (deployment policy aside); to any other it is translated
(gateway/dialects/gemini.py).
"""

from __future__ import annotations

import orjson

from gateway.canonical import JSON
from gateway.config.settings import Params
from gateway.dialects import gemini
from gateway.dialects.base import GEMINI, Native
from gateway.errors import GatewayError, InvalidRequest, NotFound
from gateway.server.asgi import Receive, Scope, Send, request_id, send_bytes, send_error
from gateway.server.dialect_flow import DialectFlow, Turn
from gateway.server.exchange import AppState, Exchange, Guard

PREFIX = "/v1beta/models/"
V1_PREFIX = "/v1/models/"
"""google-genai with ``http_options.base_url`` set calls ``/v1/models/{model}:{method}`` unless
told ``api_version="v1beta"``: both are served (the ``:`` keeps them apart from OpenAI's routes)."""
ACTIONS = {
    "generateContent": "gemini_generate",
    "streamGenerateContent": "gemini_generate",
    "countTokens": "gemini_count_tokens",
    "embedContent": "gemini_embed",
    "batchEmbedContents": "gemini_embed",
}
"""Each action and its route label (a fixed set: metric labels stay bounded)."""


def native(body: JSON) -> Native:
    def prepare(model: str, params: Params, drop: frozenset[str]) -> JSON:
        return gemini.apply_native(body, params, drop)

    return Native(GEMINI, prepare)


class GeminiAPI:
    def __init__(self, app: AppState, flow: DialectFlow) -> None:
        self._app = app
        self._flow = flow
        self._guarded = Guard(app).run

    async def post(self, scope: Scope, receive: Receive, send: Send) -> None:
        """``POST /v1beta/models/{model}:{action}``."""
        path: str = scope["path"]
        model, _, action = path[path.index("/models/") + len("/models/") :].rpartition(":")
        route = ACTIONS.get(action)
        if route is None or not model:
            err = NotFound(f"unknown Gemini method {action or scope['path']!r}", code="unknown_route")
            await send_error(send, err, render=gemini.render_error)
            return

        async def work(scope: Scope, receive: Receive, ex: Exchange) -> None:
            await self._post(scope, receive, ex, model, action)

        await self._guarded(scope, receive, send, work, route, gemini.render_error)

    async def _post(self, scope: Scope, receive: Receive, ex: Exchange, model: str, action: str) -> None:
        body = await self._flow.body(scope, receive, ex)
        if action == "embedContent":
            await self._flow.embed(scope, receive, ex, gemini.parse_embed(body, model), gemini.render_embed)
        elif action == "batchEmbedContents":
            await self._flow.embed(scope, receive, ex, gemini.parse_batch_embed(body, model), gemini.render_batch_embed)
        elif action == "countTokens":
            req = gemini.parse_count_tokens(body, model)
            await self._flow.count(ex, req, native(body), lambda n, est: gemini.count_tokens_body(n, estimated=est))
        else:
            stream = action == "streamGenerateContent"
            if stream and b"alt=sse" not in scope.get("query_string", b""):
                raise InvalidRequest("streamGenerateContent is served as server-sent events: add alt=sse", param="alt")
            req = gemini.parse_generate(body, model, stream=stream)
            turn = Turn(
                req,
                native(body),
                render=lambda completion: gemini.render_generate(completion, model),
                encoder=lambda: gemini.GenerateStream(model),
            )
            await self._flow.chat(scope, receive, ex, turn)

    async def models(self, scope: Scope, receive: Receive, send: Send) -> None:
        """``GET /v1beta/models`` and ``GET /v1beta/models/{model}``: what the key may use."""
        rid = [(b"x-request-id", request_id(scope).encode())]
        try:
            principal = await self._flow.authenticate(scope)
            service = self._flow.service()
            usable: list[tuple[str, str]] = [
                (a, r.spec.kind) for a, r in service.routes.items() if principal.may_use(a)
            ]
            path: str = scope["path"]
            if path.rstrip("/") in ("/v1beta/models", "/v1/models"):
                answer = gemini.model_list(usable)
            else:
                name = path[path.index("/models/") + len("/models/") :]
                kind = dict(usable).get(service.names.resolve(name) or name)
                if kind is None:
                    raise NotFound(f"models/{name} is not found", code="model_not_found", param="model")
                answer = gemini.model_card(name, kind)
        except GatewayError as err:
            await send_error(send, err, rid, gemini.render_error)
            return
        await send_bytes(send, 200, orjson.dumps(answer), rid)
