"""Error and misbehaviour responses, in each wire format's real shape.

- OpenAI: ``{"error": {"message", "type", "param", "code"}}``
- Anthropic: ``{"type": "error", "error": {"type", "message"}, "request_id"}`` (529 = ``overloaded_error``)
- Gemini: ``{"error": {"code", "message", "status"[, "details"]}}``; a wrong key is
  400 ``API_KEY_INVALID`` and a missing one 403 ``PERMISSION_DENIED``, as Google answers.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, Literal

import orjson
from starlette.requests import Request
from starlette.responses import Response

from gateway.mock.content import random_id

Format = Literal["openai", "anthropic", "gemini"]


class BadRequest(Exception):
    """An invalid request body; answered with the format's 400."""

    def __init__(self, message: str, param: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        self.code = code


def json_response(obj: Any, status: int = 200, headers: Mapping[str, str] | None = None) -> Response:
    return Response(orjson.dumps(obj), status, headers, media_type="application/json")


# status -> (type, code, message)
_OPENAI: Mapping[int, tuple[str, str | None, str]] = MappingProxyType(
    {
        400: ("invalid_request_error", None, "Invalid request (mock)."),
        401: ("invalid_request_error", "invalid_api_key", "Incorrect API key provided."),
        403: ("request_forbidden", "unsupported_country_region_territory", "Request forbidden (mock)."),
        404: ("invalid_request_error", "model_not_found", "The model does not exist or you do not have access."),
        429: ("requests", "rate_limit_exceeded", "Rate limit reached for requests (mock)."),
        500: ("server_error", None, "The server had an error while processing your request. Sorry about that!"),
        503: ("server_error", None, "The server is overloaded or not ready yet."),
    }
)
_ANTHROPIC: Mapping[int, tuple[str, str]] = MappingProxyType(
    {
        400: ("invalid_request_error", "Invalid request (mock)."),
        401: ("authentication_error", "invalid x-api-key"),
        403: ("permission_error", "Your API key does not have permission to use the specified resource."),
        404: ("not_found_error", "Not found (mock)."),
        413: ("request_too_large", "Request exceeds the maximum allowed number of bytes."),
        429: ("rate_limit_error", "This request would exceed your account's rate limit. Please try again later."),
        500: ("api_error", "Internal server error"),
        504: ("timeout_error", "Request timed out (mock)."),
        529: ("overloaded_error", "Overloaded"),
    }
)
_GEMINI: Mapping[int, tuple[str, str]] = MappingProxyType(
    {
        400: ("INVALID_ARGUMENT", "Request contains an invalid argument."),
        401: ("UNAUTHENTICATED", "Request had invalid authentication credentials."),
        403: ("PERMISSION_DENIED", "The caller does not have permission."),
        404: ("NOT_FOUND", "Requested entity was not found."),
        429: ("RESOURCE_EXHAUSTED", "Resource has been exhausted (e.g. check quota)."),
        499: ("CANCELLED", "The operation was cancelled."),
        500: ("INTERNAL", "An internal error has occurred. Please retry or report the issue."),
        503: ("UNAVAILABLE", "The model is overloaded. Please try again later."),
        504: ("DEADLINE_EXCEEDED", "The request timed out. Please try again."),
    }
)


def error_body(
    fmt: Format, status: int, message: str | None = None, param: str | None = None, code: str | None = None
) -> Any:
    """The JSON body ``fmt``'s API sends with ``status`` (``code`` overrides OpenAI's default code)."""
    server = status >= 500
    if fmt == "openai":
        default = ("server_error", None, "Upstream error (mock).") if server else _OPENAI[400]
        kind, default_code, text = _OPENAI.get(status, default)
        return {"error": {"message": message or text, "type": kind, "param": param, "code": code or default_code}}
    if fmt == "anthropic":
        kind, text = _ANTHROPIC.get(status, _ANTHROPIC[500 if server else 400])
        request_id = random_id("req_011C", 20)
        return {"type": "error", "error": {"type": kind, "message": message or text}, "request_id": request_id}
    kind, text = _GEMINI.get(status, _GEMINI[500 if server else 400])
    return {"error": {"code": status, "message": message or text, "status": kind}}


def error_response(
    fmt: Format,
    status: int,
    message: str | None = None,
    *,
    param: str | None = None,
    code: str | None = None,
    retry_after: float | None = None,
) -> Response:
    """An error in ``fmt``'s shape; ``retry_after`` adds ``Retry-After`` and ``retry-after-ms``."""
    body = error_body(fmt, status, message, param, code)
    headers: dict[str, str] = {}
    if retry_after is not None:
        headers["retry-after"] = f"{retry_after:g}"
        headers["retry-after-ms"] = str(round(retry_after * 1000))
        if fmt == "gemini" and status == 429:
            body["error"]["details"] = [
                {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": f"{retry_after:g}s"}
            ]
    if fmt == "anthropic":
        headers["request-id"] = body["request_id"]
    return json_response(body, status, headers)


def check_api_key(fmt: Format, request: Request, expected: str | None) -> Response | None:
    """``None`` when the request carries ``expected`` in ``fmt``'s auth header, else the real refusal."""
    if expected is None:
        return None
    given = _presented_key(fmt, request)
    if given == expected:
        return None
    if fmt == "openai":
        if not given:
            message = "You didn't provide an API key. You need to provide your API key in an Authorization header."
            return json_response(
                {"error": {"message": message, "type": "invalid_request_error", "param": None, "code": None}}, 401
            )
        return error_response(fmt, 401, f"Incorrect API key provided: {_mask(given)}.")
    if fmt == "anthropic":
        return error_response(fmt, 401, "invalid x-api-key" if given else "x-api-key header is required")
    return _gemini_key_error(given)


def _presented_key(fmt: Format, request: Request) -> str | None:
    headers = request.headers
    if fmt == "anthropic" and "x-api-key" in headers:
        return headers["x-api-key"]
    if fmt == "gemini":
        return headers.get("x-goog-api-key") or request.query_params.get("key")
    scheme, _, token = headers.get("authorization", "").partition(" ")
    return token.strip() if scheme.lower() == "bearer" else None


def _mask(key: str) -> str:
    return f"{key[:3]}***{key[-4:]}" if len(key) > 8 else "***"


def _gemini_key_error(given: str | None) -> Response:
    if not given:
        message = (
            "Method doesn't allow unregistered callers (callers without established identity). "
            "Please use API Key or other form of API consumer identity to call this API."
        )
        return error_response("gemini", 403, message)
    message = "API key not valid. Please pass a valid API key."
    info = {
        "@type": "type.googleapis.com/google.rpc.ErrorInfo",
        "reason": "API_KEY_INVALID",
        "domain": "googleapis.com",
        "metadata": {"service": "generativelanguage.googleapis.com"},
    }
    body = {"error": {"code": 400, "message": message, "status": "INVALID_ARGUMENT", "details": [info]}}
    return json_response(body, 400)


_GARBAGE_JSON = b'{"id": "mock-garbage", "object": "chat.completion", "choices": [{"message": {"content": "unterm'
_GARBAGE_HTML = b"<html><head><title>502 Bad Gateway</title></head><body><h1>Bad Gateway</h1></body></html>"


def garbage_response(kind: str, stream: bool) -> Response:
    """A 200 that is not what the client expects: invalid JSON (as a body or as an SSE event) or HTML."""
    if kind == "content_type":
        return Response(_GARBAGE_HTML, 200, media_type="text/html")
    if stream:
        return Response(b"data: " + _GARBAGE_JSON + b"\n\n", 200, media_type="text/event-stream")
    return Response(_GARBAGE_JSON, 200, media_type="application/json")


def truncated_json(obj: Any) -> Response:
    """A 200 JSON body cut in half (what ``garbage: truncate`` does to a non-streaming answer)."""
    body = orjson.dumps(obj)
    return Response(body[: len(body) // 2], 200, media_type="application/json")
