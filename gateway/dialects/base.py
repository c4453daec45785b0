"""What every ingress dialect provides, so the server handles them all alike.

A dialect is *sans-IO*, like a provider: it turns a client's body into the
canonical chat request (gateway/canonical.py) and canonical answers back into
the client's format, and it renders errors in its own envelope. The server owns
authentication, limits, routing and the socket.

Streams: the server feeds a :class:`StreamEncoder` the canonical
``chat.completion.chunk`` batches of an upstream stream (translated), and calls
``finish`` once the upstream ended (the last batch held the usage-only chunk
when the upstream reported usage), or ``error`` when it broke after its first
byte. Each returns the bytes to write (possibly empty).

Same-format pass-through: when a client's dialect is a deployment's wire format,
the server forwards the client's own body (:class:`Native`) and relays the
upstream's answer; the canonical objects are still decoded beside it for usage,
cost, cache and telemetry.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from gateway.canonical import JSON, WIRE_ANTHROPIC, WIRE_GEMINI, WIRE_OPENAI_CHAT, WIRE_OPENAI_RESPONSES
from gateway.config.settings import Params
from gateway.errors import GatewayError, InvalidRequest

ANTHROPIC = WIRE_ANTHROPIC
"""Wire format names (gateway/canonical.py), for :attr:`Native.format`."""
OPENAI_CHAT = WIRE_OPENAI_CHAT
OPENAI_RESPONSES = WIRE_OPENAI_RESPONSES
GEMINI = WIRE_GEMINI


@dataclass(slots=True)
class Native:
    """The client's body in its own format, for a deployment that speaks it."""

    format: str
    prepare: Callable[[str, Params, frozenset[str]], JSON]
    """(upstream model, deployment params, drop_params) -> the body to send: the client's,
    with the model and the deployment's policy applied (each dialect's ``apply_native``)."""
    headers: dict[str, str] = field(default_factory=dict)
    """Client headers to forward to an upstream of the same format (``anthropic-version``, ``anthropic-beta``)."""
    untranslatable: InvalidRequest | None = None
    """Why the body cannot be translated (a server tool, ...): set, only deployments of
    the client's own format may serve it, and any other attempt is refused with it."""


class StreamEncoder(Protocol):
    def chunks(self, batch: list[JSON]) -> bytes: ...

    def finish(self) -> bytes: ...

    def error(self, err: GatewayError) -> bytes: ...


class ErrorRenderer(Protocol):
    def __call__(self, err: GatewayError) -> tuple[int, bytes]:
        """(HTTP status, body) of ``err`` in the dialect's error envelope."""
        ...
