"""The client APIs the benchmark speaks: OpenAI chat completions, Anthropic Messages
and OpenAI Responses. Each one's route, request body and headers, and what a good
answer contains.

Every API carries the same payload (one user turn "Say hello", at most 16 output
tokens). ``wrk_post.lua`` sends the body, headers and marker :func:`wrk_env` gives
it, and the probes send the same bytes, so there is one request builder.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from typing import Any

PROMPT = "Say hello"
MAX_TOKENS = 16
ANTHROPIC_VERSION = "2023-06-01"


@dataclass(frozen=True)
class Api:
    """One client API: where it is posted and how its body and answers look."""

    name: str
    path: str
    turns_field: str
    """The list of conversation turns: ``messages``, or ``input`` for Responses."""
    tokens_field: str
    """The output-token cap: ``max_tokens``, or ``max_output_tokens`` for Responses."""
    json_marker: str
    """What a good non-streaming answer contains (compact JSON)."""
    sse_marker: str
    """What a good stream contains (its last event)."""
    key_header: str = "Authorization"
    key_prefix: str = "Bearer "
    extra_headers: tuple[tuple[str, str], ...] = ()
    usage_option: bool = False
    extra_body: tuple[tuple[str, Any], ...] = ()
    """Fields every request of this API adds (``store: false`` for stateless Responses)."""
    """Streams ask for the usage chunk (``stream_options.include_usage``)."""

    def marker(self, stream: bool) -> str:
        return self.sse_marker if stream else self.json_marker


CHAT = Api(
    "chat",
    "/v1/chat/completions",
    "messages",
    "max_tokens",
    '"chat.completion"',
    "data: [DONE]",
    usage_option=True,
)
MESSAGES = Api(
    "messages",
    "/v1/messages",
    "messages",
    "max_tokens",
    '"type":"message"',
    "event: message_stop",
    key_header="x-api-key",
    key_prefix="",
    extra_headers=(("anthropic-version", ANTHROPIC_VERSION),),
)
RESPONSES = Api(
    "responses",
    "/v1/responses",
    "input",
    "max_output_tokens",
    '"object":"response"',
    "event: response.completed",
)
RESPONSES_STATELESS = replace(RESPONSES, extra_body=(("store", False),))
"""Responses as Codex sends them: ``store: false``, nothing kept by the gateway."""


def request_body(api: Api, model: str, *, stream: bool, temperature: int | None = None) -> bytes:
    """The request body (compact JSON); ``temperature`` is left out when None."""
    body: dict[str, Any] = {
        "model": model,
        api.turns_field: [{"role": "user", "content": PROMPT}],
        api.tokens_field: MAX_TOKENS,
    }
    body.update(api.extra_body)
    if temperature is not None:
        body["temperature"] = temperature
    if stream:
        body["stream"] = True
        if api.usage_option:
            body["stream_options"] = {"include_usage": True}
    return json.dumps(body, separators=(",", ":")).encode()


def request_headers(api: Api, key: str, *, stream: bool) -> dict[str, str]:
    """The request headers; no key header when ``key`` is empty (nginx direct)."""
    headers = {"Content-Type": "application/json", "Accept": "text/event-stream" if stream else "application/json"}
    headers.update(api.extra_headers)
    if key:
        headers[api.key_header] = api.key_prefix + key
    return headers


def wrk_env(api: Api, model: str, *, stream: bool, key: str, temperature: int | None = None) -> dict[str, str]:
    """What ``wrk_post.lua`` reads: the body, the headers (one ``name: value`` a line)
    and the marker of a good answer."""
    headers = request_headers(api, key, stream=stream)
    return {
        "BENCH_BODY": request_body(api, model, stream=stream, temperature=temperature).decode(),
        "BENCH_HEADERS": "\n".join(f"{name}: {value}" for name, value in headers.items()),
        "BENCH_MARKER": api.marker(stream),
    }
