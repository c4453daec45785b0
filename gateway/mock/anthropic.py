"""Anthropic Messages wire format: ``/v1/messages`` (and the model list on ``/v1/models``)."""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from gateway.mock.content import (
    Prompt,
    Reply,
    ToolMode,
    ToolSpec,
    as_dict,
    chunks,
    count_words,
    fragments,
    generate,
    random_id,
    text_of,
)
from gateway.mock.errors import BadRequest, json_response
from gateway.mock.pipeline import (
    Call,
    ModelRoute,
    guard_listing,
    handle,
    json_or_truncated,
    model_names,
    state_of,
    stream_flag,
)
from gateway.mock.streaming import SSEResponse, StreamPlan, sse

DEFAULT_MODELS = ("claude-sonnet-4-5", "claude-haiku-4-5")
_STOP: Mapping[str, str] = MappingProxyType({"stop": "end_turn", "length": "max_tokens", "tool": "tool_use"})
_TOOL_MODES: Mapping[str, ToolMode] = MappingProxyType({"auto": "auto", "any": "required", "none": "none"})


def parse_messages(body: dict[str, Any], model: str) -> Prompt:
    """The :class:`Prompt` of a Messages request; ``max_tokens`` is required, as Anthropic requires it."""
    limit = body.get("max_tokens")
    if not isinstance(limit, int) or isinstance(limit, bool):
        raise BadRequest("max_tokens: Field required", "max_tokens")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise BadRequest("messages: Field required", "messages")
    mode, forced = _tool_choice(as_dict(body.get("tool_choice")))
    schema = _output_schema(body)
    return Prompt(
        model=model,
        prompt_tokens=count_words(text_of(body.get("system"))) + count_words(text_of(messages)),
        last_user=_last_user_text(messages),
        tools=_tools(body.get("tools")),
        tool_mode=mode,
        forced_tool=forced,
        after_tool_result=_ends_in_tool_result(messages),
        json_mode=schema is not None,
        json_schema=schema,
        max_tokens=limit,
    )


def _last_user_text(messages: list[Any]) -> str:
    """The text blocks of the last user turn that has any (tool results are not the user speaking)."""
    for message in reversed(messages):
        if not isinstance(message, dict) or message.get("role") != "user":
            continue
        content = message.get("content")
        if isinstance(content, list):
            content = [b for b in content if isinstance(b, dict) and b.get("type") == "text"]
        text = text_of(content)
        if text:
            return text
    return ""


def _ends_in_tool_result(messages: list[Any]) -> bool:
    content = as_dict(messages[-1]).get("content")
    return isinstance(content, list) and any(as_dict(b).get("type") == "tool_result" for b in content)


def _tools(raw: Any) -> tuple[ToolSpec, ...]:
    """Client tools (``{name, input_schema}``); server tools (typed, no schema) are skipped."""
    if not isinstance(raw, list):
        return ()
    return tuple(
        ToolSpec(t["name"], as_dict(t.get("input_schema")))
        for t in raw
        if isinstance(t, dict) and isinstance(t.get("name"), str) and t.get("type") in (None, "custom")
    )


def _tool_choice(choice: dict[str, Any]) -> tuple[ToolMode, str | None]:
    if choice.get("type") == "tool":
        return "required", choice.get("name")
    return _TOOL_MODES.get(str(choice.get("type", "auto")), "auto"), None


def _output_schema(body: dict[str, Any]) -> dict[str, Any] | None:
    """``output_config.format`` (or the older ``output_format``) of type ``json_schema``."""
    fmt = as_dict(as_dict(body.get("output_config")).get("format")) or as_dict(body.get("output_format"))
    if fmt.get("type") != "json_schema":
        return None
    return as_dict(fmt.get("schema"))


def usage(reply: Reply) -> dict[str, Any]:
    return {
        "input_tokens": reply.prompt_tokens,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 0,
        "cache_creation": {"ephemeral_5m_input_tokens": 0, "ephemeral_1h_input_tokens": 0},
        "output_tokens": reply.completion_tokens,
        "service_tier": "standard",
    }


def _block(reply: Reply, streaming: bool) -> dict[str, Any]:
    call = reply.tool_call
    if call is None:
        return {"type": "text", "text": "" if streaming else reply.text}
    return {
        "type": "tool_use",
        "id": random_id("toolu_01", 22),
        "name": call.name,
        "input": {} if streaming else call.arguments,
    }


def message(reply: Reply, model: str, streaming: bool = False) -> dict[str, Any]:
    """A ``message`` object (the ``message_start`` form when ``streaming``)."""
    if streaming:
        start_usage = {**usage(reply), "output_tokens": 1}
        content: list[Any] = []
        stop: str | None = None
    else:
        start_usage, content, stop = usage(reply), [_block(reply, False)], _STOP[reply.finish]
    return {
        "id": random_id("msg_01", 22),
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": stop,
        "stop_sequence": None,
        "usage": start_usage,
    }


def _event(kind: str, data: dict[str, Any]) -> bytes:
    return sse(orjson.dumps({"type": kind, **data}), kind)


def stream_plan(reply: Reply, model: str, complete: bool) -> StreamPlan:
    """message_start, content_block_start, ping, content_block_delta..., then (when
    ``complete``) content_block_stop, message_delta (cumulative usage), message_stop."""
    head = [
        _event("message_start", {"message": message(reply, model, streaming=True)}),
        _event("content_block_start", {"index": 0, "content_block": _block(reply, True)}),
        _event("ping", {}),
    ]
    if reply.tool_call is None:
        deltas = [{"type": "text_delta", "text": piece} for piece in chunks(reply.text)]
    else:
        deltas = [{"type": "input_json_delta", "partial_json": p} for p in fragments(reply.tool_call.arguments_json)]
    content = [_event("content_block_delta", {"index": 0, "delta": d}) for d in deltas]
    if not complete:
        return StreamPlan(head, content, [])
    final_usage = {k: v for k, v in usage(reply).items() if k not in ("cache_creation", "service_tier")}
    tail = [
        _event("content_block_stop", {"index": 0}),
        _event(
            "message_delta",
            {"delta": {"stop_reason": _STOP[reply.finish], "stop_sequence": None}, "usage": final_usage},
        ),
        _event("message_stop", {}),
    ]
    return StreamPlan(head, content, tail)


def respond_messages(call: Call) -> Response:
    reply = generate(parse_messages(call.body, call.model), call.behaviour)
    if not stream_flag(call.body):
        return json_or_truncated(call, message(reply, call.model))
    complete = call.behaviour.garbage != "truncate"
    return SSEResponse(stream_plan(reply, call.model, complete), call.behaviour)


MESSAGES = ModelRoute("anthropic", "anthropic.messages", respond_messages, stream_flag)


async def messages(request: Request) -> Response:
    return await handle(request, MESSAGES)


def list_models(request: Request) -> Response:
    """Anthropic's model list (served on ``GET /v1/models`` with an ``anthropic-version`` header)."""
    refusal = guard_listing(request, "anthropic")
    if refusal is not None:
        return refusal
    names = model_names(state_of(request).config, DEFAULT_MODELS)
    data = [{"type": "model", "id": n, "display_name": n, "created_at": "2025-09-29T00:00:00Z"} for n in names]
    return json_response({"data": data, "has_more": False, "first_id": names[0], "last_id": names[-1]})


def routes() -> list[Route]:
    return [Route("/v1/messages", messages, methods=["POST"])]
