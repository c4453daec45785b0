"""The steps every model route shares, in order:

1. read the JSON body and find the model; count the request in the stats;
2. resolve the behaviour (config, runtime overrides, ``x-mock-*`` headers);
3. ``latency_ms``; 4. ``require_api_key``; 5. body/model present;
6. ``fail_times`` / ``error_rate`` / ``error_status``; 7. ``garbage`` json / content_type;
8. the format's responder (which may still refuse a body with a 400);
9. ``headers`` added to whatever steps 6-8 answered.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

import orjson
from starlette.requests import Request
from starlette.responses import Response

from gateway.mock.behaviour import Behaviour, MockConfig
from gateway.mock.caching import PrefixMemory
from gateway.mock.errors import (
    BadRequest,
    Format,
    check_api_key,
    error_response,
    garbage_response,
    json_response,
    truncated_json,
)
from gateway.mock.state import MockState


@dataclass(frozen=True, slots=True)
class Call:
    """One accepted request, handed to a format's responder (``prefixes``: the mock's
    prompt-cache memory)."""

    body: dict[str, Any]
    model: str
    behaviour: Behaviour
    config: MockConfig
    prefixes: PrefixMemory


def _never(body: dict[str, Any]) -> bool:
    return False


def stream_flag(body: dict[str, Any]) -> bool:
    """OpenAI and Anthropic: ``"stream": true`` in the body."""
    return body.get("stream") is True


@dataclass(frozen=True, slots=True)
class ModelRoute:
    """A route that serves a model: its format, its stats name and its responder."""

    fmt: Format
    name: str
    respond: Callable[[Call], Response]
    is_stream: Callable[[dict[str, Any]], bool] = _never


def state_of(request: Request) -> MockState:
    return cast(MockState, request.app.state.mock)


async def read_object(request: Request) -> dict[str, Any] | None:
    """The JSON object body, or ``None`` when absent or not an object."""
    try:
        body = orjson.loads(await request.body())
    except orjson.JSONDecodeError:
        return None
    return body if isinstance(body, dict) else None


async def handle(request: Request, route: ModelRoute, model: str | None = None) -> Response:
    """Run the shared steps, then ``route.respond``; ``model`` comes from the path (Gemini)
    or, when ``None``, from the body's ``model`` field."""
    state = state_of(request)
    body = await read_object(request)
    if model is None and body is not None and isinstance(body.get("model"), str):
        model = body["model"]
    state.stats.record(route.name, model)
    try:
        behaviour = state.resolve(model or "", request.headers.items())
    except ValueError as exc:
        return error_response(route.fmt, 400, str(exc))
    if behaviour.latency_ms:
        await asyncio.sleep(behaviour.latency_ms / 1000)
    refusal = check_api_key(route.fmt, request, behaviour.require_api_key)
    if refusal is not None:
        return refusal
    if body is None:
        return error_response(route.fmt, 400, "The request body is not a valid JSON object.")
    if model is None:
        return error_response(route.fmt, 400, "model: Field required", param="model")
    return _respond(route, Call(body, model, behaviour, state.config, state.prefixes), state)


def _respond(route: ModelRoute, call: Call, state: MockState) -> Response:
    response = _answer(route, call, state)
    if call.behaviour.headers:
        response.headers.update(call.behaviour.headers)
    return response


def _answer(route: ModelRoute, call: Call, state: MockState) -> Response:
    behaviour = call.behaviour
    status = state.fault_status(call.model, behaviour)
    if status is not None:
        return error_response(route.fmt, status, retry_after=behaviour.retry_after)
    if behaviour.garbage in ("json", "content_type"):
        return garbage_response(behaviour.garbage, route.is_stream(call.body))
    try:
        return route.respond(call)
    except BadRequest as exc:
        return error_response(route.fmt, 400, exc.message, param=exc.param, code=exc.code)


def json_or_truncated(call: Call, obj: Any) -> Response:
    """``obj`` as JSON, or cut in half under ``garbage: truncate``."""
    if call.behaviour.garbage == "truncate":
        return truncated_json(obj)
    return json_response(obj)


def guard_listing(request: Request, fmt: Format) -> Response | None:
    """Model listings are not counted; only ``require_api_key`` (config default,
    runtime ``*`` or header) applies to them. ``None`` means: answer."""
    try:
        behaviour = state_of(request).resolve("", request.headers.items())
    except ValueError as exc:
        return error_response(fmt, 400, str(exc))
    return check_api_key(fmt, request, behaviour.require_api_key)


def model_names(config: MockConfig, defaults: tuple[str, ...]) -> list[str]:
    """A format's default model names, then the configured ones."""
    return [*defaults, *(name for name in config.models if name not in defaults)]
