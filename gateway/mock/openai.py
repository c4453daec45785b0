"""OpenAI wire format: ``/v1/chat/completions``, ``/v1/embeddings``, ``/v1/models``
(the Responses API is :mod:`gateway.mock.responses`).

Automatic prompt caching (:mod:`gateway.mock.caching`): a prompt of >= 1024 tokens whose
prefix an earlier request sent reports ``prompt_tokens_details.cached_tokens``.

Reasoning models (by name, :mod:`gateway.mock.openai_reasoning`): ``reasoning_effort`` and
``temperature`` rules, ``completion_tokens_details.reasoning_tokens``, and for
DeepSeek-style models ``reasoning_content`` in the message and in stream deltas.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import replace
from types import MappingProxyType
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from gateway.mock import anthropic
from gateway.mock.caching import openai_cached_tokens, seed_key
from gateway.mock.content import (
    Prompt,
    Reply,
    ToolMode,
    ToolSpec,
    as_dict,
    chunks,
    count_words,
    embedding,
    embedding_base64,
    fragments,
    generate,
    random_id,
    text_of,
)
from gateway.mock.errors import BadRequest, json_response
from gateway.mock.openai_reasoning import ChatReasoning, chat_reasoning, check_reasoning
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

DEFAULT_MODELS = ("gpt-4o-mini", "gpt-4.1-mini", "text-embedding-3-small")
_FINISH: Mapping[str, str] = MappingProxyType({"stop": "stop", "length": "length", "tool": "tool_calls"})
_DONE = b"data: [DONE]\n\n"
_MAX_DIMS = 8192


def parse_chat(body: dict[str, Any], model: str) -> Prompt:
    """The :class:`Prompt` of a chat completions request."""
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise BadRequest("Missing required parameter: 'messages'.", "messages")
    users = [m for m in messages if isinstance(m, dict) and m.get("role") == "user"]
    mode, forced = _tool_choice(body.get("tool_choice"))
    fmt = as_dict(body.get("response_format"))
    schema = as_dict(fmt.get("json_schema")).get("schema")
    limit = body.get("max_completion_tokens") or body.get("max_tokens")
    return Prompt(
        model=model,
        prompt_tokens=count_words(text_of(messages)),
        last_user=text_of(users[-1].get("content")) if users else "",
        tools=_tools(body.get("tools")),
        tool_mode=mode,
        forced_tool=forced,
        after_tool_result=isinstance(messages[-1], dict) and messages[-1].get("role") == "tool",
        json_mode=fmt.get("type") in ("json_object", "json_schema"),
        json_schema=schema if isinstance(schema, dict) else None,
        max_tokens=limit if isinstance(limit, int) else None,
    )


def _tools(raw: Any) -> tuple[ToolSpec, ...]:
    if not isinstance(raw, list):
        return ()
    found = (t.get("function") for t in raw if isinstance(t, dict) and t.get("type") == "function")
    return tuple(ToolSpec(f["name"], f.get("parameters") or {}) for f in found if isinstance(f, dict))


def _tool_choice(raw: Any) -> tuple[ToolMode, str | None]:
    if raw in ("none", "required"):
        return raw, None
    if isinstance(raw, dict) and isinstance(raw.get("function"), dict):
        return "required", raw["function"].get("name")
    return "auto", None


def usage(reply: Reply, cached: int = 0, reasoning_tokens: int = 0) -> dict[str, Any]:
    return {
        "prompt_tokens": reply.prompt_tokens,
        "completion_tokens": reply.completion_tokens + reasoning_tokens,
        "total_tokens": reply.total_tokens + reasoning_tokens,
        "prompt_tokens_details": {"cached_tokens": cached, "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": reasoning_tokens,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    }


def completion(reply: Reply, model: str, cached: int = 0, reasoning: ChatReasoning | None = None) -> dict[str, Any]:
    """A ``chat.completion`` object."""
    reasoning = reasoning or ChatReasoning(0)
    message: dict[str, Any] = {"role": "assistant", "content": reply.text, "refusal": None, "annotations": []}
    if reasoning.text is not None:
        message["reasoning_content"] = reasoning.text
    if reply.tool_call is not None:
        message["content"] = None
        function = {"name": reply.tool_call.name, "arguments": reply.tool_call.arguments_json}
        message["tool_calls"] = [{"id": random_id("call_"), "type": "function", "function": function}]
    choice = {"index": 0, "message": message, "logprobs": None, "finish_reason": _FINISH[reply.finish]}
    return {
        **_envelope(model, "chat.completion"),
        "choices": [choice],
        "usage": usage(reply, cached, reasoning.tokens),
    }


def _envelope(model: str, obj: str) -> dict[str, Any]:
    return {
        "id": random_id("chatcmpl-", 29),
        "object": obj,
        "created": int(time.time()),
        "model": model,
        "service_tier": "default",
        "system_fingerprint": "fp_mock",
    }


def stream_plan(
    reply: Reply,
    model: str,
    include_usage: bool,
    complete: bool,
    cached: int = 0,
    reasoning: ChatReasoning | None = None,
) -> StreamPlan:
    """``chat.completion.chunk`` events (``reasoning_content`` deltas before the answer's);
    ``complete=False`` leaves out the finish chunk, the usage chunk and ``[DONE]``."""
    reasoning = reasoning or ChatReasoning(0)
    base = _envelope(model, "chat.completion.chunk")

    def chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
        obj = {**base, "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]}
        if include_usage:
            obj["usage"] = None
        return sse(orjson.dumps(obj))

    call = reply.tool_call
    if call is None:
        head = chunk({"role": "assistant", "content": "", "refusal": None})
        content = [chunk({"content": piece}) for piece in chunks(reply.text)]
    else:
        opening = {"index": 0, "id": random_id("call_"), "type": "function"}
        opening["function"] = {"name": call.name, "arguments": ""}
        head = chunk({"role": "assistant", "content": None, "tool_calls": [opening], "refusal": None})
        pieces = fragments(call.arguments_json)
        content = [chunk({"tool_calls": [{"index": 0, "function": {"arguments": p}}]}) for p in pieces]
    thoughts = [chunk({"content": None, "reasoning_content": piece}) for piece in chunks(reasoning.text or "")]
    if thoughts:  # the reasoning first: the answer's opening chunk follows it
        content = [*thoughts, head, *content]
        head = chunk({"role": "assistant", "content": None, "reasoning_content": ""})
    if not complete:
        return StreamPlan([head], content, [])
    tail = [chunk({}, _FINISH[reply.finish])]
    if include_usage:
        tail.append(sse(orjson.dumps({**base, "choices": [], "usage": usage(reply, cached, reasoning.tokens)})))
    tail.append(_DONE)
    return StreamPlan([head], content, tail)


def respond_chat(call: Call) -> Response:
    prompt = parse_chat(call.body, call.model)
    check_reasoning(call.body, call.model)
    wanted = call.behaviour.thinking_tokens
    reasoning = chat_reasoning(call.body, call.model, wanted, prompt.last_user, prompt.max_tokens)
    if reasoning.tokens and prompt.max_tokens is not None:
        prompt = replace(prompt, max_tokens=prompt.max_tokens - reasoning.tokens)
    reply = generate(prompt, call.behaviour)
    words = text_of(call.body["messages"]).split()
    cached = openai_cached_tokens(words, seed_key(call.model, call.body.get("tools")), call.prefixes)
    if not stream_flag(call.body):
        return json_or_truncated(call, completion(reply, call.model, cached, reasoning))
    options = call.body.get("stream_options")
    include_usage = isinstance(options, dict) and options.get("include_usage") is True
    complete = call.behaviour.garbage != "truncate"
    plan = stream_plan(reply, call.model, include_usage, complete, cached, reasoning)
    return SSEResponse(plan, call.behaviour)


def respond_embeddings(call: Call) -> Response:
    """Float lists, or base64 little-endian float32 for ``encoding_format: base64``."""
    texts = _embedding_inputs(call.body.get("input"))
    dims = call.body.get("dimensions", call.config.embedding_dims)
    if not isinstance(dims, int) or not 1 <= dims <= _MAX_DIMS:
        raise BadRequest(f"Invalid 'dimensions': must be an integer from 1 to {_MAX_DIMS}.", "dimensions")
    as_base64 = call.body.get("encoding_format") == "base64"
    data = []
    for index, text in enumerate(texts):
        vector = embedding(text, dims)
        data.append(
            {"object": "embedding", "index": index, "embedding": embedding_base64(vector) if as_base64 else vector}
        )
    tokens = sum(count_words(t) for t in texts)
    body = {
        "object": "list",
        "data": data,
        "model": call.model,
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }
    return json_or_truncated(call, body)


def _embedding_inputs(raw: Any) -> list[str]:
    """``input`` as texts: a string, strings, a token array or token arrays (hashed by value)."""
    if isinstance(raw, str):
        return [raw]
    if isinstance(raw, list) and raw:
        if all(isinstance(x, int) for x in raw):
            return [" ".join(map(str, raw))]
        if all(isinstance(x, str) for x in raw):
            return list(raw)
        if all(isinstance(x, list) for x in raw):
            return [" ".join(map(str, x)) for x in raw]
    raise BadRequest("'input' must be a non-empty string or array.", "input")


CHAT = ModelRoute("openai", "openai.chat", respond_chat, stream_flag)
EMBEDDINGS = ModelRoute("openai", "openai.embeddings", respond_embeddings)


async def chat_completions(request: Request) -> Response:
    return await handle(request, CHAT)


async def embeddings(request: Request) -> Response:
    return await handle(request, EMBEDDINGS)


async def list_models(request: Request) -> Response:
    """OpenAI's list, or Anthropic's when the request has an ``anthropic-version`` header."""
    if "anthropic-version" in request.headers:
        return anthropic.list_models(request)
    refusal = guard_listing(request, "openai")
    if refusal is not None:
        return refusal
    names = model_names(state_of(request).config, DEFAULT_MODELS)
    data = [{"id": n, "object": "model", "created": 1700000000, "owned_by": "mock"} for n in names]
    return json_response({"object": "list", "data": data})


def routes() -> list[Route]:
    return [
        Route("/v1/chat/completions", chat_completions, methods=["POST"]),
        Route("/v1/embeddings", embeddings, methods=["POST"]),
        Route("/v1/models", list_models, methods=["GET"]),
    ]
