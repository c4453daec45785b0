"""A Responses upstream's event stream relayed to the client under the gateway's
response id (:class:`PassthroughEvents`): the same-format path of a streamed
``POST /v1/responses``.
"""

from __future__ import annotations

import orjson

from gateway.canonical import JSON
from gateway.dialects.responses_render import rewrite

LIFECYCLE = frozenset(
    {
        "response.created",
        "response.queued",
        "response.in_progress",
        "response.completed",
        "response.failed",
        "response.incomplete",
    }
)
FINAL = frozenset({"response.completed", "response.incomplete"})


def sse_frame(kind: str, data: bytes) -> bytes:
    """One server-sent event (a multi-line payload gets one ``data:`` line per line)."""
    lines = b"".join(b"data: " + line + b"\n" for line in data.split(b"\n"))
    return b"event: " + kind.encode() + b"\n" + lines + b"\n"


class PassthroughEvents:
    """A Responses upstream's events re-emitted under the gateway's response id.

    Only the lifecycle events (``response.created`` ... ``response.completed``)
    carry the response id; they are re-serialised with it, every other event is
    relayed byte for byte. With the client's ``body``, ``store`` and
    ``previous_response_id`` are echoed as the client sent them.
    """

    __slots__ = ("_body", "_id", "_response")

    def __init__(self, response_id: str, *, body: JSON | None = None) -> None:
        self._id = response_id
        self._body = body
        self._response: JSON | None = None

    @property
    def response(self) -> JSON | None:
        """The final Response (from ``response.completed``/``response.incomplete``), gateway id."""
        return self._response

    def event(self, name: str, data: str) -> bytes:
        kind = name
        if name in LIFECYCLE or name in ("", "message"):
            payload = _json_object(data)
            if payload is not None:
                if name in ("", "message") and isinstance(payload.get("type"), str):
                    kind = payload["type"]
                if kind in LIFECYCLE and isinstance(payload.get("response"), dict):
                    payload["response"] = rewrite(payload["response"], self._id, body=self._body)
                    if kind in FINAL:
                        self._response = payload["response"]
                    return sse_frame(kind, orjson.dumps(payload))
        return sse_frame(kind, data.encode())


def _json_object(data: str) -> JSON | None:
    try:
        payload = orjson.loads(data)
    except orjson.JSONDecodeError:
        return None
    return payload if isinstance(payload, dict) else None
