"""The client API's routes: exact (method, path) pairs dispatched by one dict lookup,
and the few with an id or a model in the path (``/v1/models/{id}``,
``/v1/responses/{id}``, ``/v1beta/models/{model}:{method}``).

Every dialect answers its own misses in its own envelope where the path says which
dialect it is; anything else under ``/v1`` is an OpenAI-shaped 404 or 405.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Protocol

from gateway.dialects import anthropic, gemini
from gateway.errors import GatewayError, MethodNotAllowed, NotFound
from gateway.server.asgi import Receive, Scope, Send, header, send_error
from gateway.server.dialect_flow import DialectFlow
from gateway.server.exchange import AppState
from gateway.server.feedback import FeedbackAPI, FeedbackHost
from gateway.server.gemini_api import PREFIX as GEMINI_PREFIX
from gateway.server.gemini_api import GeminiAPI
from gateway.server.handlers import Handlers
from gateway.server.messages_api import MessagesAPI
from gateway.server.responses_api import ResponsesAPI
from gateway.state.response_store import ResponseStore

API_PREFIXES = ("/v1/", "/v1beta/")
API_ROUTES = {
    "/v1/chat/completions": "POST",
    "/v1/embeddings": "POST",
    "/v1/feedback": "POST",
    "/v1/models": "GET",
    "/v1/messages": "POST",
    "/v1/messages/count_tokens": "POST",
    "/v1/responses": "POST",
    "/v1/responses/input_tokens": "POST",
    "/v1beta/models": "GET",
}
"""Each exact path and its method, for the ``405`` and its ``Allow``."""
RESPONSE_PATH = "/v1/responses/"
V1_MODELS = "/v1/models/"
MODEL_PATHS = (GEMINI_PREFIX, V1_MODELS)
"""Where ``{model}:{method}`` paths live: POST only."""


def google_client(scope: Scope) -> bool:
    return header(scope, b"x-goog-api-key") is not None or header(scope, b"x-goog-api-client") is not None


Handler = Callable[[Scope, Receive, Send], Awaitable[None]]


class ClientHost(AppState, FeedbackHost, Protocol):
    """What the client API needs of the app."""


class ClientAPI:
    def __init__(self, app: ClientHost, store: Callable[[], ResponseStore]) -> None:
        self.handlers = handlers = Handlers(app)
        flow = DialectFlow(app)
        messages = MessagesAPI(app, flow)
        self.responses = responses = ResponsesAPI(app, flow, store)
        self.gemini = gemini_api = GeminiAPI(app, flow)
        self.feedback = FeedbackAPI(app)
        self.exact: dict[tuple[str, str], Handler] = {
            ("POST", "/v1/chat/completions"): handlers.chat,
            ("POST", "/v1/embeddings"): handlers.embeddings,
            ("POST", "/v1/feedback"): self.feedback.post,
            ("GET", "/v1/models"): self.models,
            ("POST", "/v1/messages"): messages.create,
            ("POST", "/v1/messages/count_tokens"): messages.count_tokens,
            ("POST", "/v1/responses"): responses.create,
            ("POST", "/v1/responses/input_tokens"): responses.input_tokens,
            ("GET", "/v1beta/models"): gemini_api.models,
        }

    async def models(self, scope: Scope, receive: Receive, send: Send) -> None:
        """``GET /v1/models``: Gemini's shape for google-genai (it sends ``x-goog-api-*``
        headers), else OpenAI's or Anthropic's (handlers.py)."""
        if google_client(scope):
            await self.gemini.models(scope, receive, send)
        else:
            await self.handlers.list_models(scope, receive, send)

    async def other(self, scope: Scope, receive: Receive, send: Send, path: str) -> None:
        """A path under :data:`API_PREFIXES` that is not in :attr:`exact`."""
        method = scope["method"]
        if path.startswith(V1_MODELS) and method == "POST" and ":" in path:
            await self.gemini.post(scope, receive, send)
            return
        if path.startswith(V1_MODELS) and method == "GET" and google_client(scope):
            await self.gemini.models(scope, receive, send)
            return
        if path.startswith(V1_MODELS) and method == "GET":
            await self.handlers.get_model(scope, receive, send, path[len(V1_MODELS) :])
            return
        response_id = path[len(RESPONSE_PATH) :]
        stored = response_id and "/" not in response_id and path not in API_ROUTES
        if path.startswith(RESPONSE_PATH) and method in ("GET", "DELETE") and stored:
            await self.responses.stored(scope, receive, send, response_id)
            return
        gemini_path = path.startswith(GEMINI_PREFIX)
        if gemini_path and method == "POST" and ":" in path:
            await self.gemini.post(scope, receive, send)
            return
        if gemini_path and method == "GET" and ":" not in path:
            await self.gemini.models(scope, receive, send)
            return
        render = None
        if path.startswith("/v1beta/") or google_client(scope):
            render = gemini.render_error
        elif path.startswith("/v1/messages") or header(scope, b"anthropic-version") is not None:
            render = anthropic.render_error
        allowed = API_ROUTES.get(path) or ("POST" if ":" in path and path.startswith(MODEL_PATHS) else None)
        err: GatewayError
        if allowed is not None:
            err = MethodNotAllowed(f"{method} is not allowed on {path}; use {allowed}")
            extra = [(b"allow", allowed.encode())]
        else:
            err, extra = NotFound(f"unknown API route {method} {path}", code="unknown_route"), []
        if render is None:
            await send_error(send, err, extra)
        else:
            await send_error(send, err, extra, render)
