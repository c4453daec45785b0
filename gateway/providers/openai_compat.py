"""OpenAI and every OpenAI-compatible upstream (Novita, vLLM, Ollama, Groq, ...).

The canonical model *is* OpenAI's shape, so this translator mostly renames the
model, asks for usage on streams, drops parameters a server refuses
(``Target.drop_params``) and smooths over known quirks of compatible servers:
usage sent on every chunk or without being asked (Novita), ``content: ""``
on tool calls (Ollama), numeric error codes (OpenRouter).

Reasoning: ``reasoning_effort`` is sent as it is (one another dialect's setting was
translated into goes only to a :func:`reasoning_model`); ``reasoning_budget`` and
``include_reasoning`` never are (an exact budget and a "show it" flag have no
OpenAI-compatible form, and OpenRouter's own ``include_reasoning`` differs), and
neither are the ``reasoning_content`` / ``thinking_blocks`` of earlier answers in
the history (DeepSeek refuses a request carrying them; the canonical contract drops
both for every provider but Anthropic). In answers an upstream's
``reasoning_content`` (DeepSeek, vLLM, Novita's reasoning models) is already
canonical, and its ``reasoning`` text (Ollama, OpenRouter, newer vLLM) becomes
``reasoning_content``, in messages and in stream deltas.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import orjson

from gateway.canonical import JSON, REASONING_TRANSLATED, WIRE_OPENAI_CHAT, make_chunk
from gateway.errors import UpstreamBadResponse, UpstreamError
from gateway.providers.base import (
    SSEEvent,
    Target,
    WireRequest,
    auth_headers,
    error_member,
    join_url,
    opaque_error,
    parse_event_json,
    parse_retry_after,
)

NEVER_SENT = frozenset({"reasoning_budget", "include_reasoning", REASONING_TRANSLATED, "cache_control"})
"""Canonical request keys no OpenAI-compatible upstream gets: ``reasoning_effort`` says it
(a translated one only to a :func:`reasoning_model`), and OpenAI caches prompts itself."""
_REASONING_NAMES = re.compile(
    r"(^|[/:])(o\d|gpt-5(?!(\.\d+)?-chat))|reason|thinking|(^|[-/_])r1([-_.]|$)|qwq|gpt-oss|magistral|grok-[34]-mini",
    re.IGNORECASE,
)


def reasoning_model(model: str) -> bool:
    """Whether an OpenAI-format model name is one that takes ``reasoning_effort``: OpenAI's
    o-series and GPT-5 family (not its ``-chat`` models), and open models named for it
    (``*reasoner*``, ``*thinking*``, ``*r1*``, QwQ, gpt-oss, Magistral, Grok mini). A
    translated effort (:data:`gateway.canonical.REASONING_TRANSLATED`) goes only to these:
    the others refuse the field (OpenAI: "Unsupported parameter: 'reasoning_effort'")."""
    return bool(_REASONING_NAMES.search(model))


def strip_cache_control(req: JSON) -> JSON:
    """``req`` without Anthropic's ``cache_control`` markers on tools, messages and content
    parts (the top-level one is in :data:`NEVER_SENT`): an OpenAI-format upstream has no such
    field and caches prompt prefixes by itself. A new dict only when there was one."""
    tools, messages = req.get("tools"), req.get("messages")
    marked_tools = isinstance(tools, list) and any(isinstance(t, dict) and "cache_control" in t for t in tools)
    marked_messages = isinstance(messages, list) and any(_marked(m) for m in messages)
    if not marked_tools and not marked_messages:
        return req
    out = dict(req)
    if marked_tools:
        out["tools"] = [_unmarked(t) for t in req["tools"]]
    if marked_messages:
        out["messages"] = [_unmarked_message(m) for m in req["messages"]]
    return out


def _marked(message: Any) -> bool:
    if not isinstance(message, dict):
        return False
    content = message.get("content")
    parts = isinstance(content, list) and any(isinstance(p, dict) and "cache_control" in p for p in content)
    return "cache_control" in message or parts


def _unmarked(value: Any) -> Any:
    return {k: v for k, v in value.items() if k != "cache_control"} if isinstance(value, dict) else value


def _unmarked_message(message: Any) -> Any:
    if not _marked(message):
        return message
    out = _unmarked(message)
    if isinstance(out.get("content"), list):
        out["content"] = [_unmarked(p) for p in out["content"]]
    return out


HISTORY_ONLY = ("reasoning_content", "thinking_blocks")
"""Assistant message keys of an earlier answer's reasoning, dropped (module docstring)."""


def without_reasoning(messages: list[Any]) -> list[Any]:
    """``messages`` less the reasoning of earlier answers (a new list when there was some)."""
    if not any(isinstance(m, dict) and ("reasoning_content" in m or "thinking_blocks" in m) for m in messages):
        return messages
    return [{k: v for k, v in m.items() if k not in HISTORY_ONLY} if isinstance(m, dict) else m for m in messages]


def canonical_reasoning(message: JSON) -> None:
    """An upstream's ``reasoning`` text (Ollama, OpenRouter, newer vLLM) as the canonical
    ``reasoning_content`` of a message or delta, in place; ``reasoning_content`` wins."""
    reasoning = message.get("reasoning")
    if isinstance(reasoning, str):
        del message["reasoning"]
        if reasoning and not message.get("reasoning_content"):
            message["reasoning_content"] = reasoning


class OpenAICompatProvider:
    kind = "openai_compatible"
    wire = WIRE_OPENAI_CHAT

    def chat_request(self, req: JSON, target: Target, *, stream: bool) -> WireRequest:
        sent = strip_cache_control(req)
        body = {k: v for k, v in sent.items() if k not in target.drop_params and k not in NEVER_SENT}
        if req.get(REASONING_TRANSLATED) and not reasoning_model(target.model):
            body.pop("reasoning_effort", None)
        body["model"] = target.model
        messages = body.get("messages")
        if isinstance(messages, list):
            body["messages"] = without_reasoning(messages)
        if stream:
            body["stream"] = True
            if "stream_options" not in target.drop_params:
                # Always ask for usage: cost and token metrics need it. The
                # gateway strips it again if the client did not ask.
                body["stream_options"] = {**(req.get("stream_options") or {}), "include_usage": True}
        else:
            body.pop("stream", None)
            body.pop("stream_options", None)
        return WireRequest(
            "POST", join_url(target.base_url, "/chat/completions"), auth_headers(target), orjson.dumps(body)
        )

    def chat_response(self, body: JSON, target: Target) -> JSON:
        choices = body.get("choices")
        if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
            raise UpstreamBadResponse("upstream chat response has no choices")
        for choice in choices:
            msg = choice.get("message")
            if isinstance(msg, dict):
                if msg.get("tool_calls") and msg.get("content") == "":
                    msg["content"] = None
                canonical_reasoning(msg)
        body.setdefault("object", "chat.completion")
        return body

    def stream_decoder(self, target: Target) -> OpenAIStreamDecoder:
        return OpenAIStreamDecoder()

    def embed_request(self, req: JSON, target: Target) -> WireRequest:
        body = {k: v for k, v in req.items() if k not in target.drop_params}
        body["model"] = target.model
        return WireRequest("POST", join_url(target.base_url, "/embeddings"), auth_headers(target), orjson.dumps(body))

    def embed_response(self, body: JSON, target: Target, req: JSON) -> JSON:
        data = body.get("data")
        if not isinstance(data, list):
            raise UpstreamBadResponse("upstream embeddings response has no data list")
        body.setdefault("object", "list")
        return body

    def error(self, status: int, headers: Mapping[str, str], body: bytes) -> UpstreamError:
        return openai_error(status, headers, body)


def openai_error(status: int, headers: Mapping[str, str], body: bytes) -> UpstreamError:
    """An OpenAI-style error envelope (or anything else) -> UpstreamError."""
    retry_after = parse_retry_after(headers)
    err = error_member(body)
    if isinstance(err, dict):
        message = str(err.get("message") or f"upstream answered HTTP {status}")
        code = err.get("code")
        param = err.get("param")
        return UpstreamError(
            message,
            upstream_status=status,
            retry_after=retry_after,
            code=str(code) if code not in (None, "") else None,
            param=str(param) if param is not None else None,
            error_type=err.get("type") if isinstance(err.get("type"), str) else None,
        )
    if isinstance(err, str):
        return UpstreamError(err, upstream_status=status, retry_after=retry_after)
    return opaque_error(status, body, retry_after)


class OpenAIStreamDecoder:
    """OpenAI chunks are already canonical; usage is held back for one final chunk."""

    __slots__ = ("_created", "_done", "_finished", "_id", "_model", "_usage")

    def __init__(self) -> None:
        self._done = False
        self._finished = False
        self._usage: JSON | None = None
        self._id = ""
        self._model = ""
        self._created = 0

    @property
    def done(self) -> bool:
        return self._done

    @property
    def usage(self) -> JSON | None:
        return self._usage

    def on_event(self, event: SSEEvent) -> list[JSON]:
        data = event.data
        if data == "[DONE]":
            self._done = True
            return []
        chunk = parse_event_json(data)
        if "error" in chunk:
            err = chunk["error"]
            msg = err.get("message") if isinstance(err, dict) else str(err)
            raise UpstreamError(f"upstream stream error: {msg}", upstream_status=502, retryable=True)
        usage = chunk.pop("usage", None)
        if usage:
            self._usage = usage
        choices = chunk.get("choices")
        if not isinstance(choices, list):
            raise UpstreamBadResponse("upstream stream chunk has no choices list")
        self._id = chunk.get("id", self._id)
        self._model = chunk.get("model", self._model)
        self._created = chunk.get("created", self._created)
        if not choices:
            return []
        for choice in choices:
            if choice.get("finish_reason"):
                self._finished = True
            delta = choice.get("delta")
            if isinstance(delta, dict) and "reasoning" in delta:
                canonical_reasoning(delta)
        return [chunk]

    def finish(self) -> list[JSON]:
        if not self._done and not self._finished:
            raise UpstreamBadResponse("upstream stream ended before it was complete (truncated)")
        if self._usage is None:
            return []
        return [make_chunk(id=self._id, model=self._model, created=self._created, usage=self._usage)]
