"""Anthropic Messages wire format: ``/v1/messages``, ``/v1/messages/count_tokens`` (and the
model list on ``/v1/models``).

Extended thinking (:mod:`gateway.mock.thinking`): the answer starts with a signed
``thinking`` block, streamed as ``thinking_delta`` events and one ``signature_delta``;
``output_tokens`` includes the thinking. Which ``thinking`` types, efforts and sampling
settings a model takes depends on its name (:mod:`gateway.mock.models`); adaptive-only
models omit the thinking text unless asked (``display: "summarized"``) and report
``output_tokens_details.thinking_tokens``. Prompt caching (:mod:`gateway.mock.caching`):
``cache_control`` blocks give ``cache_creation_input_tokens`` / ``cache_read_input_tokens``
and ``input_tokens`` is the uncached rest. ``count_tokens`` answers the total input tokens
a generation with the same body reports (uncached + written + read).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from types import MappingProxyType
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from gateway.mock.caching import CacheUsage, Segment, anthropic_cache, anthropic_segments
from gateway.mock.content import (
    Prompt,
    Reply,
    ToolMode,
    ToolSpec,
    as_dict,
    chunks,
    fragments,
    generate,
    random_id,
    text_of,
)
from gateway.mock.errors import BadRequest, json_response
from gateway.mock.models import claude_thinking
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
from gateway.mock.reasoning import sign_thinking, thinking_budget, thinking_words
from gateway.mock.streaming import EventLog, SSEResponse, StreamPlan, sse
from gateway.mock.thinking import Thinking, check_history, check_model_rules, thinking_setting

DEFAULT_MODELS = ("claude-sonnet-4-5", "claude-haiku-4-5")
_STOP: Mapping[str, str] = MappingProxyType({"stop": "end_turn", "length": "max_tokens", "tool": "tool_use"})
_TOOL_MODES: Mapping[str, ToolMode] = MappingProxyType({"auto": "auto", "any": "required", "none": "none"})


@dataclass(frozen=True, slots=True)
class Parsed:
    """A checked Messages request: the generator's prompt, the cache segments, the thinking setting."""

    prompt: Prompt
    segments: tuple[Segment, ...]
    thinking: Thinking | None


def parse_messages(body: dict[str, Any], model: str, counting: bool = False) -> Parsed:
    """Check and read a Messages request. ``max_tokens`` is required, as Anthropic requires
    it, except for token counting (``counting``)."""
    limit = body.get("max_tokens")
    if counting:
        limit = None
    elif not isinstance(limit, int) or isinstance(limit, bool):
        raise BadRequest("max_tokens: Field required", "max_tokens")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise BadRequest("messages: Field required", "messages")
    check_model_rules(body, model)
    thinking = thinking_setting(body, limit, model)
    check_history(messages, thinking)
    segments = anthropic_segments(body, model)
    mode, forced = _tool_choice(as_dict(body.get("tool_choice")))
    schema = _output_schema(body)
    prompt = Prompt(
        model=model,
        prompt_tokens=sum(s.tokens for s in segments),
        last_user=_last_user_text(messages),
        tools=_tools(body.get("tools")),
        tool_mode=mode,
        forced_tool=forced,
        after_tool_result=_ends_in_tool_result(messages),
        json_mode=schema is not None,
        json_schema=schema,
        max_tokens=limit,
    )
    return Parsed(prompt, segments, thinking)


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


@dataclass(frozen=True, slots=True)
class Answer:
    """What the mock answers: the reply, the thinking text shown (``None`` without thinking,
    ``""`` when omitted), the request's cache usage, the thinking tokens and whether usage
    reports them apart (``output_tokens_details``, newest models)."""

    reply: Reply
    thought: str | None
    cache: CacheUsage
    thinking_tokens: int = 0
    details: bool = False

    @property
    def output_tokens(self) -> int:
        return self.reply.completion_tokens + self.thinking_tokens


def answer(call: Call) -> Answer:
    """Generate the answer to ``call`` (thinking takes its words out of ``max_tokens``)."""
    parsed = parse_messages(call.body, call.model)
    prompt, thought, count = parsed.prompt, None, 0
    if parsed.thinking is not None:
        count = thinking_budget(call.behaviour.thinking_tokens, parsed.thinking.budget, prompt.max_tokens)
        thought = " ".join(thinking_words(prompt.last_user, count)) if parsed.thinking.shown else ""
        if prompt.max_tokens is not None:
            prompt = replace(prompt, max_tokens=prompt.max_tokens - count)
    reply = generate(prompt, call.behaviour)
    details = claude_thinking(call.model) == "adaptive_only"
    return Answer(reply, thought, anthropic_cache(parsed.segments, call.prefixes), count, details)


def usage(answer: Answer) -> dict[str, Any]:
    cache, reply = answer.cache, answer.reply
    result: dict[str, Any] = {
        "input_tokens": reply.prompt_tokens - cache.read - cache.written,
        "cache_creation_input_tokens": cache.written,
        "cache_read_input_tokens": cache.read,
        "cache_creation": {
            "ephemeral_5m_input_tokens": cache.written_5m,
            "ephemeral_1h_input_tokens": cache.written_1h,
        },
        "output_tokens": answer.output_tokens,
    }
    if answer.details:
        result["output_tokens_details"] = {"thinking_tokens": answer.thinking_tokens}
    result["service_tier"] = "standard"
    return result


def _thinking_block(thought: str, streaming: bool) -> dict[str, Any]:
    if streaming:
        return {"type": "thinking", "thinking": "", "signature": ""}
    return {"type": "thinking", "thinking": thought, "signature": sign_thinking(thought)}


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


def message(answer: Answer, model: str, streaming: bool = False) -> dict[str, Any]:
    """A ``message`` object (the ``message_start`` form when ``streaming``)."""
    if streaming:
        start_usage = {k: v for k, v in usage(answer).items() if k != "output_tokens_details"} | {"output_tokens": 1}
        content: list[Any] = []
        stop: str | None = None
    else:
        start_usage, stop = usage(answer), _STOP[answer.reply.finish]
        content = [] if answer.thought is None else [_thinking_block(answer.thought, False)]
        content.append(_block(answer.reply, False))
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


def _delta(index: int, delta: dict[str, Any]) -> bytes:
    return _event("content_block_delta", {"index": index, "delta": delta})


def stream_plan(answer: Answer, model: str, complete: bool) -> StreamPlan:
    """message_start, content_block_start, ping, content_block_delta... (with thinking: the
    thinking block's thinking_delta events, one signature_delta, its content_block_stop and
    the next content_block_start come first), then (when ``complete``) content_block_stop,
    message_delta (cumulative usage), message_stop."""
    reply, log, index = answer.reply, EventLog(), 0
    log.add(_event("message_start", {"message": message(answer, model, streaming=True)}))
    if answer.thought is not None:
        log.add(_event("content_block_start", {"index": 0, "content_block": _thinking_block("", True)}))
        log.add(_event("ping", {}))
        for piece in chunks(answer.thought):
            log.add(_delta(0, {"type": "thinking_delta", "thinking": piece}), delta=True)
        log.add(_delta(0, {"type": "signature_delta", "signature": sign_thinking(answer.thought)}), delta=True)
        log.add(_event("content_block_stop", {"index": 0}))
        index = 1
        log.add(_event("content_block_start", {"index": 1, "content_block": _block(reply, True)}))
    else:
        log.add(_event("content_block_start", {"index": 0, "content_block": _block(reply, True)}))
        log.add(_event("ping", {}))
    if reply.tool_call is None:
        deltas = [{"type": "text_delta", "text": piece} for piece in chunks(reply.text)]
    else:
        deltas = [{"type": "input_json_delta", "partial_json": p} for p in fragments(reply.tool_call.arguments_json)]
    for delta in deltas:
        log.add(_delta(index, delta), delta=True)
    log.begin_tail()
    extras = ("cache_creation", "output_tokens_details", "service_tier")
    final_usage = {k: v for k, v in usage(answer).items() if k not in extras}
    log.add(_event("content_block_stop", {"index": index}))
    stop = {"stop_reason": _STOP[reply.finish], "stop_sequence": None}
    log.add(_event("message_delta", {"delta": stop, "usage": final_usage}))
    log.add(_event("message_stop", {}))
    return log.plan(complete)


def respond_messages(call: Call) -> Response:
    result = answer(call)
    if not stream_flag(call.body):
        return json_or_truncated(call, message(result, call.model))
    complete = call.behaviour.garbage != "truncate"
    return SSEResponse(stream_plan(result, call.model, complete), call.behaviour)


def respond_count_tokens(call: Call) -> Response:
    """``{"input_tokens": n}``: what a generation with this body reports as its total input."""
    parsed = parse_messages(call.body, call.model, counting=True)
    return json_or_truncated(call, {"input_tokens": parsed.prompt.prompt_tokens})


MESSAGES = ModelRoute("anthropic", "anthropic.messages", respond_messages, stream_flag)
COUNT_TOKENS = ModelRoute("anthropic", "anthropic.count_tokens", respond_count_tokens)


async def messages(request: Request) -> Response:
    return await handle(request, MESSAGES)


async def count_tokens(request: Request) -> Response:
    return await handle(request, COUNT_TOKENS)


def list_models(request: Request) -> Response:
    """Anthropic's model list (served on ``GET /v1/models`` with an ``anthropic-version`` header)."""
    refusal = guard_listing(request, "anthropic")
    if refusal is not None:
        return refusal
    names = model_names(state_of(request).config, DEFAULT_MODELS)
    data = [{"type": "model", "id": n, "display_name": n, "created_at": "2025-09-29T00:00:00Z"} for n in names]
    return json_response({"data": data, "has_more": False, "first_id": names[0], "last_id": names[-1]})


def routes() -> list[Route]:
    return [
        Route("/v1/messages", messages, methods=["POST"]),
        Route("/v1/messages/count_tokens", count_tokens, methods=["POST"]),
    ]
