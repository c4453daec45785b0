"""Converting between a ``chat.completion`` and its stream of canonical chunks.

The response cache stores completions. A streamed answer is rebuilt into a
completion with :class:`ChunkAssembler` so it can be stored, and a cached
completion is replayed to a stream client with :func:`completion_to_chunks`;
so an entry stored by either kind of client serves both.

Replayed chunks have the shape the stream handler already renders: per choice
a role chunk, the content in one chunk, one chunk per tool call (index, id,
type, name and the whole arguments), a finish chunk; then one usage-only chunk
(``choices: []``) so ``stream_options.include_usage`` filtering works
unchanged. Top-level fields other than the chunk's own (``system_fingerprint``,
``service_tier``, ...) are repeated on every chunk, as OpenAI does.

The assembler merges deltas generically, so fields it does not know survive
a round trip: strings are concatenated (``content``, ``refusal``,
``reasoning_content``), lists extended (``annotations``), other values
replaced, and ``null`` only recorded when the field is not there yet. Reasoning
is the exception: ``reasoning_signature`` closes a thinking block and
``redacted_reasoning`` is one, so the assembler rebuilds ``thinking_blocks`` from
them, and a replay gives a message's reasoning first, block by block.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from gateway.canonical import JSON

# Top-level chunk keys that are not carried onto the completion: the chunk's
# own framing, and OpenAI's per-chunk random padding.
_CHUNK_OWN = frozenset({"id", "object", "created", "model", "choices", "usage", "obfuscation"})
# Top-level completion keys that are not repeated on every replayed chunk.
_COMPLETION_OWN = frozenset({"id", "object", "created", "model", "choices", "usage"})
# Message keys replayed in chunks of their own (the rest ride on the role chunk).
_MESSAGE_OWN = frozenset({"role", "content", "tool_calls"})
# Reasoning, replayed first (:func:`_reasoning_deltas`), as a stream gives it.
_REASONING_OWN = frozenset({"reasoning_content", "thinking_blocks"})
# Deltas that close a thinking block (its signature) or carry a redacted one: the
# assembler rebuilds ``thinking_blocks`` from them instead of concatenating them.
_BLOCK_DELTAS = frozenset({"reasoning_signature", "redacted_reasoning"})


def completion_to_chunks(completion: JSON) -> list[JSON]:
    """A cached ``chat.completion`` as the canonical chunks of a stream."""
    head: JSON = {
        "id": completion.get("id", ""),
        "object": "chat.completion.chunk",
        "created": completion.get("created", 0),
        "model": completion.get("model", ""),
    }
    extras = {k: v for k, v in completion.items() if k not in _COMPLETION_OWN}

    def chunk(index: int, delta: JSON, finish_reason: str | None = None, logprobs: Any = None) -> JSON:
        choice = {"index": index, "delta": delta, "finish_reason": finish_reason, "logprobs": logprobs}
        return {**head, **extras, "choices": [choice]}

    chunks: list[JSON] = []
    for position, choice in enumerate(completion.get("choices") or []):
        index = choice.get("index", position)
        message: JSON = choice.get("message") or {}
        content = message.get("content")
        # The role chunk: role, the opening of the content, and every field
        # that is not streamed in pieces (nulls, lists, objects).
        first: JSON = {"role": message.get("role", "assistant")}
        first["content"] = "" if isinstance(content, str) else None
        later: list[JSON] = []
        for key, value in message.items():
            if key in _MESSAGE_OWN or key in _REASONING_OWN:
                continue
            if isinstance(value, str) and value:
                later.append({key: value})
            else:
                first[key] = value
        chunks.append(chunk(index, first))
        chunks.extend(chunk(index, delta) for delta in _reasoning_deltas(message))
        logprobs = choice.get("logprobs")
        if isinstance(content, str) and content:
            chunks.append(chunk(index, {"content": content}, logprobs=logprobs))
            logprobs = None
        for j, call in enumerate(message.get("tool_calls") or []):
            function = call.get("function") or {}
            delta_call = {
                "index": j,
                "id": call.get("id"),
                "type": call.get("type", "function"),
                "function": {"name": function.get("name", ""), "arguments": function.get("arguments", "")},
            }
            chunks.append(chunk(index, {"tool_calls": [delta_call]}))
        chunks.extend(chunk(index, delta) for delta in later)
        chunks.append(chunk(index, {}, choice.get("finish_reason"), logprobs))
    usage = completion.get("usage")
    if usage is not None:
        chunks.append({**head, **extras, "choices": [], "usage": usage})
    return chunks


def _reasoning_deltas(message: JSON) -> list[JSON]:
    """A message's reasoning as the deltas a stream would carry, before its content: each
    thinking block's text then its signature, a redacted block's data (the blocks' texts
    make the reasoning text: a separator between them would change what was signed);
    without blocks, ``reasoning_content`` in one piece."""
    blocks = message.get("thinking_blocks")
    if not isinstance(blocks, list) or not blocks:
        text = message.get("reasoning_content")
        return [{"reasoning_content": text}] if isinstance(text, str) and text else []
    deltas: list[JSON] = []
    for block in blocks:
        if not isinstance(block, dict):
            continue
        if block.get("type") == "redacted_thinking" and isinstance(block.get("data"), str):
            deltas.append({"redacted_reasoning": block["data"]})
        elif block.get("type") == "thinking" and isinstance(block.get("signature"), str):
            if isinstance(block.get("thinking"), str) and block["thinking"]:
                deltas.append({"reasoning_content": block["thinking"]})
            deltas.append({"reasoning_signature": block["signature"]})
    return deltas


class _Choice:
    __slots__ = ("blocks", "finish_reason", "logprobs", "message", "thinking", "tool_calls")

    def __init__(self) -> None:
        self.message: JSON = {"role": "assistant", "content": None}
        self.tool_calls: dict[int, JSON] = {}
        self.finish_reason: str | None = None
        self.logprobs: JSON | None = None
        self.blocks: list[JSON] = []
        """``thinking_blocks`` rebuilt from the reasoning deltas."""
        self.thinking: list[str] = []
        """The reasoning text since the last thinking block closed."""

    def add(self, choice: JSON) -> int:
        """Merge one chunk's choice; the number of text characters it added."""
        added = 0
        delta = choice.get("delta") or {}
        for key, value in delta.items():
            if key == "tool_calls":
                added += self._tool_calls(value or [])
            elif key == "role":
                self.message["role"] = value or self.message["role"]
            elif key in _BLOCK_DELTAS and isinstance(value, str):
                added += self._block(key, value)
            else:
                if key == "reasoning_content" and isinstance(value, str):
                    self.thinking.append(value)
                added += _merge(self.message, key, value)
        logprobs = choice.get("logprobs")
        if isinstance(logprobs, dict):
            if self.logprobs is None:
                self.logprobs = {}
            for key, value in logprobs.items():
                _merge(self.logprobs, key, value)
        if choice.get("finish_reason"):
            self.finish_reason = choice["finish_reason"]
        return added

    def _block(self, key: str, value: str) -> int:
        """A signature closes the thinking block of the text since the last one; a redacted
        block stands alone."""
        if key == "reasoning_signature":
            self.blocks.append({"type": "thinking", "thinking": "".join(self.thinking), "signature": value})
            self.thinking = []
        else:
            self.blocks.append({"type": "redacted_thinking", "data": value})
        return len(value)

    def _tool_calls(self, calls: list[JSON]) -> int:
        added = 0
        for position, call in enumerate(calls):
            index = call.get("index", position)
            slot = self.tool_calls.setdefault(index, {"id": "", "type": "function", "function": {}})
            if call.get("id"):
                slot["id"] = call["id"]
            if call.get("type"):
                slot["type"] = call["type"]
            function = call.get("function") or {}
            if function.get("name"):
                # Sent whole (some servers repeat it on every chunk): replace.
                slot["function"]["name"] = function["name"]
            arguments = function.get("arguments")
            if isinstance(arguments, str):
                slot["function"]["arguments"] = slot["function"].get("arguments", "") + arguments
                added += len(arguments)
        return added

    def build(self, index: int) -> JSON:
        message = dict(self.message)
        if self.blocks:
            message["thinking_blocks"] = list(self.blocks)
        if self.tool_calls:
            calls = []
            for i in sorted(self.tool_calls):
                call = self.tool_calls[i]
                function = {
                    "name": call["function"].get("name", ""),
                    "arguments": call["function"].get("arguments", ""),
                }
                calls.append({"id": call["id"], "type": call["type"], "function": function})
            message["tool_calls"] = calls
        return {"index": index, "message": message, "finish_reason": self.finish_reason, "logprobs": self.logprobs}


def _merge(target: JSON, key: str, value: Any) -> int:
    """Merge a delta field: strings concatenate, lists extend, nulls never
    overwrite, anything else replaces. Returns the characters added."""
    if value is None:
        target.setdefault(key, None)
        return 0
    current = target.get(key)
    if isinstance(value, str):
        target[key] = current + value if isinstance(current, str) else value
        return len(value)
    if isinstance(value, list):
        target[key] = [*current, *value] if isinstance(current, list) else list(value)
        return len(value)
    target[key] = value
    return 0


class ChunkAssembler:
    """Rebuilds a ``chat.completion`` from the canonical chunks of a stream.

    Feed every chunk the client is sent (before ``include_usage`` filtering, so
    the usage chunk is seen). ``max_chars`` bounds what is kept: a stream
    whose text grows beyond it is marked :attr:`overflowed` and stops being
    accumulated, since it could not be cached anyway.
    """

    __slots__ = ("_chars", "_choices", "_created", "_extras", "_id", "_max_chars", "_model", "_usage", "overflowed")

    def __init__(self, max_chars: int | None = None) -> None:
        self._choices: dict[int, _Choice] = {}
        self._id = ""
        self._model = ""
        self._created = 0
        self._usage: JSON | None = None
        self._extras: JSON = {}
        self._chars = 0
        self._max_chars = max_chars
        self.overflowed = False

    def add(self, chunk: JSON) -> None:
        if self.overflowed:
            return
        self._id = chunk.get("id") or self._id
        self._model = chunk.get("model") or self._model
        self._created = chunk.get("created") or self._created
        if chunk.get("usage"):
            self._usage = chunk["usage"]
        for key, value in chunk.items():
            if key not in _CHUNK_OWN and (value is not None or key not in self._extras):
                self._extras[key] = value
        for position, choice in enumerate(chunk.get("choices") or []):
            index = choice.get("index", position)
            self._chars += self._choices.setdefault(index, _Choice()).add(choice)
        if self._max_chars is not None and self._chars > self._max_chars:
            self.overflowed = True
            self._choices.clear()

    def extend(self, chunks: Iterable[JSON]) -> None:
        for chunk in chunks:
            self.add(chunk)

    @property
    def finished(self) -> bool:
        """Every choice seen has a finish_reason (a stream cut short has not)."""
        return bool(self._choices) and all(c.finish_reason for c in self._choices.values())

    def build(self) -> JSON:
        """The completion as assembled so far (finished or not)."""
        return {
            "id": self._id,
            "object": "chat.completion",
            "created": self._created,
            "model": self._model,
            **self._extras,
            "choices": [self._choices[i].build(i) for i in sorted(self._choices)],
            "usage": self._usage,
        }

    def completion(self) -> JSON | None:
        """The completion when the stream finished whole, else None."""
        if self.overflowed or not self.finished:
            return None
        return self.build()
