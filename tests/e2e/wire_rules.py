"""The tool-loop rules the real upstream APIs enforce on a replayed history, checked on
the bodies the mock upstream received (the mock answers them without checking):

- Anthropic Messages: the turn after an assistant turn with ``tool_use`` blocks is a user
  turn with a ``tool_result`` for each of their ids, and every ``tool_result`` answers a
  ``tool_use`` of the turn just before;
- OpenAI chat: an assistant message with ``tool_calls`` is followed by one ``tool`` message
  per call id, and every ``tool`` message answers a call of that assistant message;
- Gemini: a ``model`` content with ``functionCall`` parts is followed by a ``user`` content
  with a ``functionResponse`` of the same name (and id, when the call has one) for each,
  and every ``functionResponse`` answers a call of the content just before;
- OpenAI Responses: every ``function_call_output`` answers an earlier ``function_call``.

:func:`problems` returns what is wrong (an empty list: the body follows the rules).
"""

from __future__ import annotations

from collections import Counter
from typing import Any


def _blocks(message: Any, kind: str) -> list[dict[str, Any]]:
    content = message.get("content") if isinstance(message, dict) else None
    return [b for b in content if isinstance(b, dict) and b.get("type") == kind] if isinstance(content, list) else []


def anthropic_problems(body: dict[str, Any]) -> list[str]:
    messages = body.get("messages") or []
    found = []
    for i, message in enumerate(messages):
        uses = sorted(str(b.get("id")) for b in _blocks(message, "tool_use"))
        if uses and i + 1 < len(messages):
            answered = sorted(str(b.get("tool_use_id")) for b in _blocks(messages[i + 1], "tool_result"))
            if messages[i + 1].get("role") != "user" or answered != uses:
                found.append(f"messages.{i}: tool_use ids {uses} are answered by {answered} in the next turn")
        results = [b.get("tool_use_id") for b in _blocks(message, "tool_result")]
        asked = {b.get("id") for b in _blocks(messages[i - 1], "tool_use")} if i else set()
        if any(r not in asked for r in results):
            found.append(f"messages.{i}: tool_result ids {results} answer no tool_use of the turn before")
    return found


def chat_problems(body: dict[str, Any]) -> list[str]:
    messages = body.get("messages") or []
    found = []
    for i, message in enumerate(messages):
        calls = [c.get("id") for c in message.get("tool_calls") or []] if message.get("role") == "assistant" else []
        if calls:
            answers = []
            for after in messages[i + 1 :]:
                if after.get("role") != "tool":
                    break
                answers.append(after.get("tool_call_id"))
            if sorted(answers) != sorted(calls):
                found.append(f"messages.{i}: tool_calls {calls} are followed by tool messages for {answers}")
        if message.get("role") == "tool":
            j = i - 1
            while j >= 0 and messages[j].get("role") == "tool":
                j -= 1
            asked = {c.get("id") for c in messages[j].get("tool_calls") or []} if j >= 0 else set()
            if message.get("tool_call_id") not in asked:
                found.append(f"messages.{i}: tool message {message.get('tool_call_id')} follows no such tool call")
    return found


def _parts(content: Any, kind: str) -> list[dict[str, Any]]:
    parts = content.get("parts") if isinstance(content, dict) else None
    return [p[kind] for p in parts if isinstance(p, dict) and kind in p] if isinstance(parts, list) else []


def _ids_given(calls: list[dict[str, Any]]) -> bool:
    """Whether the calls carry ids (then each response must repeat its call's id)."""
    return any(c.get("id") is not None for c in calls)


def _signature(call: dict[str, Any]) -> tuple[Any, Any]:
    return call.get("name"), call.get("id")


def gemini_problems(body: dict[str, Any]) -> list[str]:
    contents = body.get("contents") or []
    found = []
    for i, content in enumerate(contents):
        calls = _parts(content, "functionCall")
        if calls and i + 1 < len(contents):
            answers = _parts(contents[i + 1], "functionResponse")
            wanted = Counter(_signature(c) for c in calls)
            got = Counter((a.get("name"), a.get("id") if _ids_given(calls) else None) for a in answers)
            if contents[i + 1].get("role", "user") != "user" or got != wanted:
                found.append(f"contents.{i}: functionCalls {dict(wanted)} are answered by {dict(got)}")
        responses = _parts(content, "functionResponse")
        asked = {c.get("name") for c in _parts(contents[i - 1], "functionCall")} if i else set()
        if any(r.get("name") not in asked for r in responses):
            found.append(f"contents.{i}: functionResponses answer no functionCall of the content before")
    return found


def responses_problems(body: dict[str, Any]) -> list[str]:
    items = body.get("input")
    if not isinstance(items, list):
        return []
    calls: set[Any] = set()
    found = []
    for i, item in enumerate(items):
        if isinstance(item, dict) and item.get("type") == "function_call":
            calls.add(item.get("call_id"))
        if isinstance(item, dict) and item.get("type") == "function_call_output" and item.get("call_id") not in calls:
            found.append(f"input.{i}: function_call_output {item.get('call_id')} answers no earlier function_call")
    return found


def problems(path: str, body: dict[str, Any]) -> list[str]:
    """The rule breaks of one recorded upstream request (by its path's wire format)."""
    if path.endswith("/messages"):
        return anthropic_problems(body)
    if path.endswith("/chat/completions"):
        return chat_problems(body)
    if "generateContent" in path or "GenerateContent" in path:
        return gemini_problems(body)
    if path.endswith("/responses"):
        return responses_problems(body)
    raise AssertionError(f"no rules for {path}")
