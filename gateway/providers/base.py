"""The provider seam.

A provider is *sans-IO*: it turns a canonical request into a :class:`WireRequest`
for one :class:`Target` and turns the upstream's bytes back into canonical
objects. It never opens a socket, never sleeps, never looks at limits, caches or
metrics. The router owns the I/O (one pooled HTTP client for the whole app),
which is what lets every translator be tested with recorded real payloads and
nothing else.

Streams are decoded by a small state object per stream (:class:`StreamDecoder`)
fed one server-sent event at a time.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import orjson

from gateway.canonical import JSON
from gateway.errors import UpstreamBadResponse, UpstreamError, UpstreamErrorPage


@dataclass(frozen=True, slots=True)
class Target:
    """Everything a provider needs to address one deployment."""

    provider: str
    model: str
    base_url: str
    api_key: str | None = None
    auth_header: str = "authorization"
    auth_scheme: str = "Bearer"
    headers: Mapping[str, str] = field(default_factory=dict)
    api_version: str | None = None
    drop_params: frozenset[str] = frozenset()
    reasoning_style: str = "auto"
    """Anthropic: ``auto``, ``adaptive`` or ``budget`` (the deployment's ``reasoning_style``)."""
    auto_cache: bool = False
    """Anthropic: add cache breakpoints to requests that mark none (the deployment's ``auto_cache``)."""


@dataclass(frozen=True, slots=True)
class WireRequest:
    method: str
    url: str
    headers: dict[str, str]
    body: bytes | None = None


@dataclass(frozen=True, slots=True)
class SSEEvent:
    """One server-sent event: ``event`` is "message" unless the stream named it."""

    data: str
    event: str = "message"


class StreamDecoder(Protocol):
    """Per-stream state: feed events in, get canonical ``chat.completion.chunk`` dicts out.

    - ``on_event`` may raise :class:`UpstreamError` for an error the upstream
      sends inside a 200 stream (Anthropic's ``event: error``).
    - ``done`` turns true once the upstream's terminal marker was seen
      (OpenAI ``[DONE]``, Anthropic ``message_stop``, Gemini a ``finishReason``).
    - ``finish`` is called at the end of the upstream body; it returns any
      chunks still held back (the final usage-only chunk, always emitted when the
      upstream reported usage) and raises :class:`UpstreamBadResponse` if the
      stream ended before its terminal marker.
    - ``usage`` is the canonical usage once known, for cost and logs.
    """

    @property
    def done(self) -> bool: ...

    @property
    def usage(self) -> JSON | None: ...

    def on_event(self, event: SSEEvent) -> list[JSON]: ...

    def finish(self) -> list[JSON]: ...


class Provider(Protocol):
    """Translate between the canonical model and one upstream wire format."""

    kind: str

    def chat_request(self, req: JSON, target: Target, *, stream: bool) -> WireRequest:
        """Canonical chat request -> wire request. ``req['model']`` is the
        alias; the upstream model is ``target.model``. Raises
        :class:`InvalidRequest` for what the upstream cannot express."""
        ...

    def chat_response(self, body: JSON, target: Target) -> JSON:
        """Parsed wire response (HTTP 2xx) -> canonical ``chat.completion``.
        Raises :class:`UpstreamBadResponse` if the body is not of the expected shape."""
        ...

    def stream_decoder(self, target: Target) -> StreamDecoder: ...

    def embed_request(self, req: JSON, target: Target) -> WireRequest:
        """Canonical embeddings request -> wire request (InvalidRequest if unsupported)."""
        ...

    def embed_response(self, body: JSON, target: Target, req: JSON) -> JSON:
        """Parsed wire response -> canonical embeddings list (``data[].embedding``
        a list of floats, or a base64 string when the upstream was asked for it)."""
        ...

    def error(self, status: int, headers: Mapping[str, str], body: bytes) -> UpstreamError:
        """An upstream error answer -> :class:`UpstreamError` with the client's
        status, an OpenAI-style message/code, ``retryable`` and ``retry_after``."""
        ...


class NativeProvider(Provider, Protocol):
    """A provider that also forwards a client's body in its own wire format
    (same-format pass-through: gateway/dialects/base.py ``Native``)."""

    wire: str

    def native_request(self, body: JSON, target: Target, *, stream: bool, headers: Mapping[str, str]) -> WireRequest:
        """The client's body (model and policy already applied) as a wire request;
        ``headers`` are the client headers to forward."""
        ...

    def count_request(self, body: JSON, target: Target, headers: Mapping[str, str]) -> WireRequest:
        """The upstream's token-count request for a client's count body of this format."""
        ...


def join_url(base_url: str, path: str) -> str:
    return base_url.rstrip("/") + path


def auth_headers(target: Target) -> dict[str, str]:
    """The auth header of a target (none without a key) plus its extra headers."""
    headers = {"content-type": "application/json"}
    if target.api_key:
        scheme = target.auth_scheme
        headers[target.auth_header] = f"{scheme} {target.api_key}" if scheme else target.api_key
    headers.update(target.headers)
    return headers


def parse_retry_after(headers: Mapping[str, str]) -> float | None:
    """Seconds from ``Retry-After`` (delta-seconds only; HTTP dates are rare for
    LLM APIs) or ``retry-after-ms``."""
    ms = headers.get("retry-after-ms")
    if ms:
        try:
            return max(0.0, float(ms) / 1000.0)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if value:
        try:
            return max(0.0, float(value))
        except ValueError:
            return None
    return None


def error_member(body: bytes) -> Any:
    """The ``error`` member of a JSON error body, or None when the body is not a
    JSON object (a proxy's HTML page, an empty body)."""
    try:
        parsed = orjson.loads(body) if body else None
    except orjson.JSONDecodeError:
        return None
    return parsed.get("error") if isinstance(parsed, dict) else None


def opaque_error(status: int, body: bytes, retry_after: float | None, who: str = "upstream") -> UpstreamError:
    """An error answer with no recognisable envelope: status plus a short snippet."""
    snippet = body[:200].decode("utf-8", "replace").strip()
    return UpstreamErrorPage(f"{who} answered HTTP {status}", snippet, upstream_status=status, retry_after=retry_after)


def json_object(data: str | bytes, context: str) -> JSON:
    """Upstream data as a JSON object, or UpstreamBadResponse naming ``context``."""
    try:
        payload = orjson.loads(data)
    except orjson.JSONDecodeError:
        raise UpstreamBadResponse(f"{context} is not valid JSON") from None
    if not isinstance(payload, dict):
        raise UpstreamBadResponse(f"{context} is JSON but not an object")
    return payload


def parse_event_json(data: str, who: str = "upstream") -> JSON:
    """One stream event's data as a JSON object, or UpstreamBadResponse."""
    return json_object(data, f"an event of the {who} stream")
