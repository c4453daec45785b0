"""The OpenAI Responses API's wire shapes, as recorded in ``shared/fixtures/responses``:
the ``response`` object (request settings echoed), its output items (``reasoning``,
``message``, ``function_call``), ``usage`` and the SSE event sequence.

Stream: ``response.created``, ``response.in_progress``; per output item
``response.output_item.added`` ... ``response.output_item.done`` (reasoning summaries as
``reasoning_summary_part``/``reasoning_summary_text`` events, text as ``content_part`` +
``output_text.delta``/``.done``, a call as ``function_call_arguments.delta``/``.done``);
then ``response.completed`` (``response.incomplete`` when ``max_output_tokens`` cut the
text). Every event carries ``sequence_number`` (0, 1, ...); deltas carry ``obfuscation``
unless ``stream_options.include_obfuscation`` is false. No ``[DONE]``.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from typing import Any

import orjson

from gateway.mock.content import Reply, ToolCall, as_dict, chunks, count_words, fragments, random_id
from gateway.mock.reasoning import encrypted_content
from gateway.mock.streaming import EventLog, StreamPlan, sse


@dataclass(frozen=True, slots=True)
class Reasoning:
    """A request's ``reasoning`` setting: the echoed effort and summary, and whether the
    reasoning item carries ``encrypted_content`` (``include: ["reasoning.encrypted_content"]``)."""

    effort: str | None
    summary: str | None
    encrypted: bool


@dataclass(frozen=True, slots=True)
class Outcome:
    """What the mock answers: the reply, the reasoning text (``None``: no reasoning item),
    the request's reasoning setting and its cached input tokens."""

    reply: Reply
    cached: int = 0
    thought: str | None = None
    reasoning: Reasoning | None = None

    @property
    def incomplete(self) -> bool:
        return self.reply.finish == "length"


def hex_id(prefix: str) -> str:
    return prefix + os.urandom(24).hex()


@dataclass(frozen=True, slots=True)
class Ids:
    """The identifiers (and creation time) of one response and its output items."""

    response: str = field(default_factory=lambda: hex_id("resp_"))
    reasoning: str = field(default_factory=lambda: hex_id("rs_"))
    message: str = field(default_factory=lambda: hex_id("msg_"))
    function_call: str = field(default_factory=lambda: hex_id("fc_"))
    call: str = field(default_factory=lambda: random_id("call_"))
    created: int = field(default_factory=lambda: int(time.time()))


def usage(outcome: Outcome) -> dict[str, Any]:
    reply = outcome.reply
    reasoning = count_words(outcome.thought or "")
    output = reply.completion_tokens + reasoning
    return {
        "input_tokens": reply.prompt_tokens,
        "input_tokens_details": {"cached_tokens": outcome.cached},
        "output_tokens": output,
        "output_tokens_details": {"reasoning_tokens": reasoning},
        "total_tokens": reply.prompt_tokens + output,
    }


def output_text(text: str) -> dict[str, Any]:
    return {"type": "output_text", "annotations": [], "logprobs": [], "text": text}


def reasoning_item(outcome: Outcome, ids: Ids) -> dict[str, Any]:
    """The finished ``reasoning`` item: a summary when one was asked for, ``encrypted_content`` when included."""
    setting = outcome.reasoning or Reasoning(None, None, False)
    summary = [{"type": "summary_text", "text": outcome.thought or ""}] if setting.summary else []
    item: dict[str, Any] = {"id": ids.reasoning, "type": "reasoning", "summary": summary}
    if setting.encrypted:
        item["encrypted_content"] = encrypted_content(ids.reasoning)
    return item


def message_item(text: str | None, ids: Ids, status: str) -> dict[str, Any]:
    """An assistant ``message`` item (no content parts yet when ``text`` is ``None``)."""
    content = [] if text is None else [output_text(text)]
    return {"id": ids.message, "type": "message", "status": status, "content": content, "role": "assistant"}


def function_call_item(call: ToolCall, ids: Ids, status: str, arguments: str) -> dict[str, Any]:
    return {
        "id": ids.function_call,
        "type": "function_call",
        "status": status,
        "arguments": arguments,
        "call_id": ids.call,
        "name": call.name,
    }


def output_items(outcome: Outcome, ids: Ids) -> list[dict[str, Any]]:
    """The finished output: the reasoning item (if any), then the message or the function call."""
    items = [] if outcome.thought is None else [reasoning_item(outcome, ids)]
    call = outcome.reply.tool_call
    if call is not None:
        items.append(function_call_item(call, ids, "completed", call.arguments_json))
    else:
        items.append(message_item(outcome.reply.text, ids, "incomplete" if outcome.incomplete else "completed"))
    return items


def response_object(body: dict[str, Any], model: str, outcome: Outcome, ids: Ids, final: bool) -> dict[str, Any]:
    """The ``response`` object; a non-``final`` one is ``in_progress`` with no output or usage."""
    status = ("incomplete" if outcome.incomplete else "completed") if final else "in_progress"
    text = as_dict(body.get("text"))
    setting = outcome.reasoning
    return {
        "background": False,
        "billing": {"payer": "developer"},
        "created_at": ids.created,
        "error": None,
        "id": ids.response,
        "incomplete_details": {"reason": "max_output_tokens"} if final and outcome.incomplete else None,
        "instructions": body.get("instructions"),
        "max_output_tokens": body.get("max_output_tokens"),
        "max_tool_calls": body.get("max_tool_calls"),
        "metadata": body.get("metadata") or {},
        "model": model,
        "object": "response",
        "output": output_items(outcome, ids) if final else [],
        "parallel_tool_calls": body.get("parallel_tool_calls", True),
        "previous_response_id": None,
        "prompt_cache_key": body.get("prompt_cache_key"),
        "reasoning": {"effort": setting.effort if setting else None, "summary": setting.summary if setting else None},
        "safety_identifier": body.get("safety_identifier"),
        "service_tier": body.get("service_tier") if body.get("service_tier") in ("flex", "priority") else "default",
        "status": status,
        "store": body.get("store", True),
        "temperature": body.get("temperature", 1.0),
        "text": {"format": text.get("format") or {"type": "text"}, "verbosity": text.get("verbosity", "medium")},
        "tool_choice": body.get("tool_choice", "auto"),
        "tools": [_echo_tool(t) for t in body.get("tools") or []],
        "top_logprobs": body.get("top_logprobs", 0),
        "top_p": body.get("top_p", 1.0),
        "truncation": body.get("truncation", "disabled"),
        "usage": usage(outcome) if final else None,
        "user": body.get("user"),
    }


def _echo_tool(tool: Any) -> Any:
    tool = as_dict(tool)
    if tool.get("type") != "function":
        return tool
    return {
        "type": "function",
        "name": tool.get("name"),
        "description": tool.get("description"),
        "parameters": tool.get("parameters"),
        "strict": tool.get("strict", True),
    }


class _Events:
    """Numbered Responses events, collected into an :class:`EventLog`."""

    def __init__(self, obfuscate: bool) -> None:
        self.log = EventLog()
        self.obfuscate = obfuscate

    def add(self, kind: str, data: dict[str, Any], delta: bool = False) -> None:
        event = {"type": kind, "sequence_number": self.log.count, **data}
        if delta and self.obfuscate:
            event["obfuscation"] = random_id("", 12)
        self.log.add(sse(orjson.dumps(event), kind), delta)


def stream_plan(body: dict[str, Any], model: str, outcome: Outcome, complete: bool) -> StreamPlan:
    """The SSE events of one response (see the module doc); the final item's ``.done``
    events and ``response.completed`` are the tail."""
    options = as_dict(body.get("stream_options"))
    ids, events = Ids(), _Events(options.get("include_obfuscation") is not False)
    started = response_object(body, model, outcome, ids, final=False)
    events.add("response.created", {"response": started})
    events.add("response.in_progress", {"response": started})
    index = 0
    if outcome.thought is not None:
        _stream_reasoning(events, reasoning_item(outcome, ids), index)
        index += 1
    call = outcome.reply.tool_call
    if call is not None:
        _stream_call(events, call, ids, index)
    else:
        _stream_message(events, outcome, ids, index)
    kind = "response.incomplete" if outcome.incomplete else "response.completed"
    events.add(kind, {"response": response_object(body, model, outcome, ids, final=True)})
    return events.log.plan(complete)


def _stream_reasoning(events: _Events, item: dict[str, Any], index: int) -> None:
    events.add("response.output_item.added", {"output_index": index, "item": {**item, "summary": []}})
    for number, part in enumerate(item["summary"]):
        base = {"item_id": item["id"], "output_index": index, "summary_index": number}
        events.add("response.reasoning_summary_part.added", {**base, "part": {"type": "summary_text", "text": ""}})
        for piece in chunks(part["text"]):
            events.add("response.reasoning_summary_text.delta", {**base, "delta": piece}, delta=True)
        events.add("response.reasoning_summary_text.done", {**base, "text": part["text"]})
        events.add("response.reasoning_summary_part.done", {**base, "part": part})
    events.add("response.output_item.done", {"output_index": index, "item": item})


def _stream_message(events: _Events, outcome: Outcome, ids: Ids, index: int) -> None:
    text = outcome.reply.text
    base = {"item_id": ids.message, "output_index": index, "content_index": 0}
    events.add("response.output_item.added", {"output_index": index, "item": message_item(None, ids, "in_progress")})
    events.add("response.content_part.added", {**base, "part": output_text("")})
    for piece in chunks(text):
        events.add("response.output_text.delta", {**base, "delta": piece, "logprobs": []}, delta=True)
    events.log.begin_tail()
    events.add("response.output_text.done", {**base, "text": text, "logprobs": []})
    events.add("response.content_part.done", {**base, "part": output_text(text)})
    status = "incomplete" if outcome.incomplete else "completed"
    events.add("response.output_item.done", {"output_index": index, "item": message_item(text, ids, status)})


def _stream_call(events: _Events, call: ToolCall, ids: Ids, index: int) -> None:
    opened = function_call_item(call, ids, "in_progress", "")
    events.add("response.output_item.added", {"output_index": index, "item": opened})
    base = {"item_id": ids.function_call, "output_index": index}
    for piece in fragments(call.arguments_json):
        events.add("response.function_call_arguments.delta", {**base, "delta": piece}, delta=True)
    events.log.begin_tail()
    events.add("response.function_call_arguments.done", {**base, "arguments": call.arguments_json})
    done = function_call_item(call, ids, "completed", call.arguments_json)
    events.add("response.output_item.done", {"output_index": index, "item": done})
