"""OpenAI and every OpenAI-compatible upstream (Novita, vLLM, Ollama, Groq, ...).

The canonical model *is* OpenAI's shape, so this translator mostly renames the
model, asks for usage on streams, drops parameters a server refuses
(``Target.drop_params``) and smooths over known quirks of compatible servers:
usage sent on every chunk or without being asked (Novita), ``content: ""``
on tool calls (Ollama), numeric error codes (OpenRouter).
"""

from __future__ import annotations

from collections.abc import Mapping

import orjson

from gateway.canonical import JSON, WIRE_OPENAI_CHAT, make_chunk
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


class OpenAICompatProvider:
    kind = "openai_compatible"
    wire = WIRE_OPENAI_CHAT

    def chat_request(self, req: JSON, target: Target, *, stream: bool) -> WireRequest:
        body = {k: v for k, v in req.items() if k not in target.drop_params}
        body["model"] = target.model
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
            if isinstance(msg, dict) and msg.get("tool_calls") and msg.get("content") == "":
                msg["content"] = None
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
        return [chunk]

    def finish(self) -> list[JSON]:
        if not self._done and not self._finished:
            raise UpstreamBadResponse("upstream stream ended before it was complete (truncated)")
        if self._usage is None:
            return []
        return [make_chunk(id=self._id, model=self._model, created=self._created, usage=self._usage)]
