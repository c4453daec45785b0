"""Reasoning in the OpenAI Responses dialect: reasoning items, the gateway's own
``encrypted_content``, and the reasoning item of a streamed answer.

A canonical answer's ``reasoning_content`` is rendered as a ``reasoning`` output item
placed before the message and function-call items, in the recorded API's shape:
``{"id": "rs_...", "type": "reasoning", "summary": [{"type": "summary_text", "text"}]}``
(one summary part holding the whole text; ``summary: []`` when there is none).

Thinking blocks (Anthropic's, verbatim, signatures included: the canonical message's
``thinking_blocks``) travel in the item's ``encrypted_content`` as ``gwr1.`` + the
URL-safe base64 of their JSON. It is opaque, **not encrypted**: the signatures are the
provider's own, so a client that alters a block is refused by the provider. The item
carries it when the request's ``include`` holds ``reasoning.encrypted_content``; the
store always keeps it (``output_items`` with the blocks, gateway/dialects/responses_render.py),
so a ``previous_response_id`` continuation replays the thinking. On input, an item whose
``encrypted_content`` opens with ``gwr1.`` is decoded back into the assistant message's
``thinking_blocks``, its summary texts into ``reasoning_content``; OpenAI's own
encrypted reasoning means something to a Responses upstream only.
"""

from __future__ import annotations

import base64
import binascii
import secrets
from typing import Any, Protocol

import orjson

from gateway.canonical import JSON
from gateway.dialects.checks import bad, expect

PREFIX = "gwr1."
"""Opens every ``encrypted_content`` the gateway makes."""
ENCRYPTED_REASONING = "reasoning.encrypted_content"
SUMMARIES = ("auto", "concise", "detailed")
_DELTA_TAIL = b',"sequence_number":'


def encode_blocks(blocks: list[JSON]) -> str:
    """Thinking blocks -> the gateway's ``encrypted_content``."""
    return PREFIX + base64.urlsafe_b64encode(orjson.dumps(blocks)).decode("ascii")


def is_gateway_content(value: Any) -> bool:
    """Whether an ``encrypted_content`` is one the gateway made."""
    return isinstance(value, str) and value.startswith(PREFIX)


def decode_blocks(value: str, param: str) -> list[JSON]:
    """The thinking blocks of a gateway ``encrypted_content``, checked; ``param`` names it."""
    try:
        blocks = orjson.loads(base64.urlsafe_b64decode(value[len(PREFIX) :].encode("ascii")))
    except (binascii.Error, ValueError, UnicodeEncodeError):
        raise bad(f"{param} is not reasoning content this gateway made", param) from None
    expect(blocks, list, param, "an array of thinking blocks")
    for i, block in enumerate(blocks):
        check_block(block, f"{param}.{i}")
    return list(blocks)


def check_block(block: Any, param: str) -> None:
    """A thinking block as the canonical model carries it (gateway/canonical.py); an
    unsigned one is let through (the Anthropic provider drops it, others drop all)."""
    expect(block, dict, param, "a thinking block")
    kind = block.get("type")
    if kind == "thinking":
        expect(block.get("thinking"), str, f"{param}.thinking", "a string")
        if block.get("signature") is not None:
            expect(block["signature"], str, f"{param}.signature", "a string")
    elif kind == "redacted_thinking":
        expect(block.get("data"), str, f"{param}.data", "a string")
    else:
        raise bad(f"{param}.type must be thinking or redacted_thinking, got {kind!r}", f"{param}.type")


def summary_texts(item: JSON) -> list[str]:
    """The texts of a (checked) reasoning item's summary parts."""
    summary = item.get("summary") or ()
    return [p["text"] for p in summary if p.get("type") == "summary_text"]


def wants_encrypted(body: JSON) -> bool:
    """Whether the request's ``include`` asks for ``reasoning.encrypted_content``."""
    include = body.get("include")
    return isinstance(include, list) and ENCRYPTED_REASONING in include


def message_reasoning(message: JSON) -> tuple[str, list[JSON]]:
    """(reasoning text, thinking blocks) of a canonical answer's message."""
    text = message.get("reasoning_content")
    blocks = message.get("thinking_blocks")
    return (
        text if isinstance(text, str) else "",
        [b for b in blocks if isinstance(b, dict)] if isinstance(blocks, list) else [],
    )


def reasoning_item(item_id: str, text: str, blocks: list[JSON], *, encrypted: bool) -> JSON:
    """A finished reasoning output item; ``encrypted``: with the blocks as ``encrypted_content``."""
    item: JSON = {"id": item_id, "type": "reasoning", "summary": [summary_part(text)] if text else []}
    if encrypted and blocks:
        item["encrypted_content"] = encode_blocks(blocks)
    return item


def summary_part(text: str) -> JSON:
    return {"type": "summary_text", "text": text}


class Emitter(Protocol):
    """Where a stream's events go (``_Events`` of gateway/dialects/responses_stream.py)."""

    def emit(self, kind: str, fields: JSON) -> None: ...

    def emit_rendered(self, head: bytes, value: Any, tail: bytes) -> None: ...


class StreamedReasoning:
    """The reasoning items of one streamed response, each opened, fed and closed with
    its events: ``response.output_item.added``, ``response.reasoning_summary_part.added``,
    ``response.reasoning_summary_text.delta``..., ``.done``,
    ``response.reasoning_summary_part.done``, ``response.output_item.done``.

    Canonical deltas: ``reasoning_content`` (text; it also fills the open thinking
    block), ``reasoning_signature`` (closes that block), ``redacted_reasoning`` (one
    redacted block) and a whole ``thinking_blocks`` list (a cached answer replayed)."""

    __slots__ = ("_block", "_blocks", "_encrypted", "_events", "_head", "_index", "_items", "_text", "by_item")

    def __init__(self, events: Emitter, items: list[JSON], *, encrypted: bool) -> None:
        self._events = events
        self._items = items
        self._encrypted = encrypted
        self._index: int | None = None
        """output_index of the open reasoning item."""
        self._text: list[str] = []
        self._block: list[str] = []
        """The text of the open thinking block (since the last signature)."""
        self._blocks: list[JSON] = []
        self._head: bytes | None = None
        """The summary part's delta events up to the delta's value, once the part is open."""
        self.by_item: dict[str, list[JSON]] = {}
        """Item id -> its thinking blocks (for the store)."""

    @property
    def is_open(self) -> bool:
        return self._index is not None

    def text(self, delta: str) -> None:
        """A piece of reasoning text (the caller opened the item when needed)."""
        head = self._head
        if head is None:
            head = self._open_part()
        self._text.append(delta)
        self._block.append(delta)
        self._events.emit_rendered(head, delta, _DELTA_TAIL)

    def extra(self, delta: JSON) -> None:
        """The delta's block keys: ``reasoning_signature``, ``redacted_reasoning``, ``thinking_blocks``."""
        signature = delta.get("reasoning_signature")
        if isinstance(signature, str):
            self._open()
            self._blocks.append({"type": "thinking", "thinking": "".join(self._block), "signature": signature})
            self._block = []
        redacted = delta.get("redacted_reasoning")
        if isinstance(redacted, str):
            self._open()
            self._blocks.append({"type": "redacted_thinking", "data": redacted})
            self._block = []
        blocks = delta.get("thinking_blocks")
        if isinstance(blocks, list) and blocks:
            self._open()
            self._blocks.extend(b for b in blocks if isinstance(b, dict))

    def close(self, status: str = "completed") -> None:
        """Close the open reasoning item, if any (``status`` incomplete: the answer was cut,
        which the summary part's done event says, as the API does)."""
        index = self._index
        if index is None:
            return
        item = self._items[index]
        if self._head is not None:
            text = "".join(self._text)
            where = {"item_id": item["id"], "output_index": index, "summary_index": 0}
            self._events.emit("response.reasoning_summary_text.done", {**where, "text": text})
            done: JSON = {**where, "part": summary_part(text)}
            if status == "incomplete":
                done["status"] = status
            self._events.emit("response.reasoning_summary_part.done", done)
            item["summary"] = [summary_part(text)]
        if self._blocks:
            self.by_item[item["id"]] = self._blocks
            if self._encrypted:
                item["encrypted_content"] = encode_blocks(self._blocks)
        self._events.emit("response.output_item.done", {"item": item, "output_index": index})
        self._index, self._head, self._text, self._block, self._blocks = None, None, [], [], []

    def _open(self) -> int:
        if self._index is None:
            self._index = len(self._items)
            item = {"id": _new_id(), "type": "reasoning", "summary": []}
            self._items.append(item)
            self._events.emit("response.output_item.added", {"item": item, "output_index": self._index})
        return self._index

    def _open_part(self) -> bytes:
        index = self._open()
        where = {"item_id": self._items[index]["id"], "output_index": index, "summary_index": 0}
        self._events.emit("response.reasoning_summary_part.added", {**where, "part": summary_part("")})
        name = "response.reasoning_summary_text.delta"
        fields = orjson.dumps({"type": name, **where})
        self._head = b"event: " + name.encode() + b"\ndata: " + fields[:-1] + b',"delta":'
        return self._head


def _new_id() -> str:
    """A reasoning item id in OpenAI's style (as ``new_id`` of responses_render.py)."""
    return "rs_" + secrets.token_hex(24)
