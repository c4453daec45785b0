"""Prompt caching on the Anthropic provider (issue 12, item 2): canonical ``cache_control``
-> Anthropic breakpoints, and cache reads and writes in the usage, on the recorded fixtures
in shared/fixtures (hand-made requests where no recording exists, README "Not found")."""

from __future__ import annotations

import copy
from typing import Any

import orjson
import pytest

from gateway.canonical import JSON
from gateway.errors import InvalidRequest
from gateway.providers.anthropic_stream import canonical_usage
from gateway.providers.base import SSEEvent
from tests.unit.fixtures import decode_events, load_json, user, without
from tests.unit.test_provider_anthropic import PROVIDER, make_target, openai_tool, wire

EPHEMERAL = {"type": "ephemeral"}
FIVE_MINUTES = {"type": "ephemeral", "ttl": "5m"}
ONE_HOUR = {"type": "ephemeral", "ttl": "1h"}
CACHE_FIXTURES = [
    "messages_cache_control_top_level",
    "messages_cache_control_block_turn1",
    "messages_cache_control_block_turn2",
]


def canonical_messages(recorded: JSON) -> list[JSON]:
    """A recorded request's system and text turns as canonical messages; each text block's
    ``cache_control`` stays on its part."""
    messages: list[JSON] = [{"role": "system", "content": recorded["system"]}]
    for turn in recorded["messages"]:
        parts = [{k: v for k, v in b.items() if k in ("type", "text", "cache_control")} for b in turn["content"]]
        messages.append({"role": turn["role"], "content": parts})
    return messages


def tools(n: int) -> list[JSON]:
    return [openai_tool({"name": f"t{i}", "input_schema": {"type": "object"}}) for i in range(n)]


# --- requests: recorded ground truth ---------------------------------------------


@pytest.mark.parametrize("name", CACHE_FIXTURES)
def test_recorded_cache_requests_are_reproduced(name: str) -> None:
    recorded = load_json(f"anthropic/{name}.request.json")
    req: JSON = {"messages": canonical_messages(recorded)}
    if "cache_control" in recorded:
        req["cache_control"] = recorded["cache_control"]
    assert wire(req, model=recorded["model"]) == without(recorded, "stream")


@pytest.mark.parametrize("name", ["messages_cache_control_block_turn1", "messages_cache_control_block_turn2"])
def test_a_message_level_marker_lands_on_the_last_block(name: str) -> None:
    recorded = load_json(f"anthropic/{name}.request.json")
    messages = canonical_messages(recorded)
    last = messages[-1]
    marker = last["content"][-1].pop("cache_control")
    messages[-1] = {"role": "user", "content": last["content"][0]["text"], "cache_control": marker}
    assert wire({"messages": messages}, model=recorded["model"]) == without(recorded, "stream")


# --- requests: where breakpoints come from -----------------------------------------


def test_every_part_type_carries_its_marker() -> None:
    parts = [
        {"type": "text", "text": "look", "cache_control": ONE_HOUR},
        {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg"}, "cache_control": EPHEMERAL},
        {"type": "file", "file": {"file_data": "data:application/pdf;base64,JVBERi0x"}, "cache_control": FIVE_MINUTES},
        {"type": "text", "text": "", "cache_control": EPHEMERAL},  # empty: no block, no marker
    ]
    blocks = wire({"messages": [{"role": "user", "content": parts}]})["messages"][0]["content"]
    assert [b["type"] for b in blocks] == ["text", "image", "document"]
    assert [b["cache_control"] for b in blocks] == [ONE_HOUR, EPHEMERAL, FIVE_MINUTES]


def test_tool_definitions_and_tool_results_carry_markers() -> None:
    defined = tools(2)
    defined[0]["cache_control"] = ONE_HOUR
    call = {"id": "c1", "type": "function", "function": {"name": "t0", "arguments": "{}"}}
    messages = [
        user("q"),
        {"role": "assistant", "content": "calling", "tool_calls": [call], "cache_control": EPHEMERAL},
        {"role": "tool", "tool_call_id": "c1", "content": "result", "cache_control": EPHEMERAL},
        {"role": "tool", "tool_call_id": "c1", "content": [{"type": "text", "text": "r", "cache_control": EPHEMERAL}]},
    ]
    body = wire({"messages": messages, "tools": defined})
    assert [t.get("cache_control") for t in body["tools"]] == [ONE_HOUR, None]
    assistant, results = body["messages"][1]["content"], body["messages"][2]["content"]
    assert "cache_control" not in assistant[0] and assistant[1]["cache_control"] == EPHEMERAL  # the tool_use
    assert results[0] == {"type": "tool_result", "tool_use_id": "c1", "content": "result", "cache_control": EPHEMERAL}
    assert results[1]["content"] == [{"type": "text", "text": "r", "cache_control": EPHEMERAL}]


def test_a_system_message_marker_keeps_the_system_as_blocks() -> None:
    body = wire({"messages": [{"role": "system", "content": "Be brief.", "cache_control": ONE_HOUR}, user("q")]})
    assert body["system"] == [{"type": "text", "text": "Be brief.", "cache_control": ONE_HOUR}]


def test_a_part_marker_wins_over_its_message_marker() -> None:
    parts = [{"type": "text", "text": "a"}, {"type": "text", "text": "b", "cache_control": ONE_HOUR}]
    body = wire({"messages": [{"role": "user", "content": parts, "cache_control": FIVE_MINUTES}]})
    assert [b.get("cache_control") for b in body["messages"][0]["content"]] == [None, ONE_HOUR]


def test_thinking_blocks_never_get_a_marker() -> None:
    thinking = {"type": "thinking", "thinking": "t", "signature": "sig"}
    only_thinking = {"role": "assistant", "content": None, "thinking_blocks": [thinking], "cache_control": EPHEMERAL}
    body = wire({"messages": [user("q"), only_thinking, user("again")]})
    assert body["messages"][1]["content"] == [thinking]
    assert "cache_control" not in body


def test_markers_are_rebuilt_with_their_known_keys_only() -> None:
    part = {"type": "text", "text": "a", "cache_control": {"type": "ephemeral", "ttl": "1h", "scope": "x"}}
    assert wire({"messages": [{"role": "user", "content": [part]}]})["messages"][0]["content"][0] == {
        "type": "text",
        "text": "a",
        "cache_control": ONE_HOUR,
    }
    assert part["cache_control"] == {"type": "ephemeral", "ttl": "1h", "scope": "x"}  # the request is not modified


def test_drop_params_can_remove_the_top_level_marker() -> None:
    req = {"messages": [user("q")], "cache_control": EPHEMERAL}
    assert wire(req)["cache_control"] == EPHEMERAL
    assert "cache_control" not in wire(req, drop_params=frozenset({"cache_control"}))


# --- requests: what Anthropic accepts ---------------------------------------------


def test_beyond_four_breakpoints_the_earliest_are_dropped() -> None:
    defined = tools(3)
    for tool in defined:
        tool["cache_control"] = EPHEMERAL
    messages = [
        {"role": "system", "content": "S", "cache_control": EPHEMERAL},
        {"role": "user", "content": "one", "cache_control": EPHEMERAL},
        {"role": "assistant", "content": "two"},
        {"role": "user", "content": "three", "cache_control": EPHEMERAL},
    ]
    body = wire({"messages": messages, "tools": defined, "cache_control": EPHEMERAL})
    # 7 asked for, in prefix order: t0 t1 t2 system one three top-level -> the last four stay
    assert [t.get("cache_control") for t in body["tools"]] == [None, None, None]
    assert body["system"] == [{"type": "text", "text": "S", "cache_control": EPHEMERAL}]
    turns = body["messages"]
    assert [turns[0]["content"][0].get("cache_control"), turns[2]["content"][0].get("cache_control")] == [EPHEMERAL] * 2
    assert body["cache_control"] == EPHEMERAL
    exactly_four = wire({"messages": messages[1:], "tools": defined[:2]})
    assert all("cache_control" in t for t in exactly_four["tools"])


def test_an_hour_breakpoint_after_a_five_minute_one_becomes_five_minutes() -> None:
    defined = tools(1)
    defined[0]["cache_control"] = EPHEMERAL  # 5 minutes, the default
    messages = [{"role": "system", "content": "S", "cache_control": ONE_HOUR}, user("q")]
    body = wire({"messages": messages, "tools": defined, "cache_control": ONE_HOUR})
    assert body["system"][0]["cache_control"] == FIVE_MINUTES
    assert body["cache_control"] == FIVE_MINUTES
    in_order = copy.deepcopy(defined)
    in_order[0]["cache_control"] = ONE_HOUR
    body = wire({"messages": messages, "tools": in_order, "cache_control": EPHEMERAL})
    assert (body["tools"][0]["cache_control"], body["system"][0]["cache_control"]) == (ONE_HOUR, ONE_HOUR)
    assert body["cache_control"] == EPHEMERAL


def test_automatic_breakpoints_are_off_by_default() -> None:
    req = {"messages": [{"role": "system", "content": "S"}, user("q")], "tools": tools(2)}
    body = wire(req)
    assert body["system"] == "S" and all("cache_control" not in t for t in body["tools"])


def test_automatic_breakpoints_mark_the_system_prompt_and_the_last_tool() -> None:
    req = {"messages": [{"role": "system", "content": "S"}, {"role": "system", "content": "T"}, user("q")]}
    body = wire(req | {"tools": tools(2)}, auto_cache=True)
    assert body["system"] == [{"type": "text", "text": "S"}, {"type": "text", "text": "T", "cache_control": EPHEMERAL}]
    assert [t.get("cache_control") for t in body["tools"]] == [None, EPHEMERAL]
    assert "cache_control" not in body["messages"][0]["content"][0]
    assert wire({"messages": [user("q")]}, auto_cache=True) == wire({"messages": [user("q")]})  # nothing to mark


@pytest.mark.parametrize(
    "marked",
    [
        {"cache_control": EPHEMERAL},
        {"messages": [{"role": "system", "content": "S"}, {"role": "user", "content": "q", "cache_control": ONE_HOUR}]},
    ],
)
def test_automatic_breakpoints_stand_down_for_a_request_that_marks_its_own(marked: JSON) -> None:
    req = {"messages": [{"role": "system", "content": "S"}, user("q")], "tools": tools(1)} | marked
    assert wire(req, auto_cache=True) == wire(req)


@pytest.mark.parametrize(
    ("where", "param", "code"),
    [
        ("top", "cache_control", "invalid_type"),
        ("part", "messages[0].content[0].cache_control.type", "invalid_value"),
        ("message", "messages[0].cache_control.ttl", "invalid_value"),
        ("tool", "tools[0].cache_control", "invalid_type"),
    ],
)
def test_invalid_markers_are_refused_by_path(where: str, param: str, code: str) -> None:
    bad: dict[str, Any] = {
        "top": "ephemeral",
        "part": {"type": "persistent"},
        "message": {"type": "ephemeral", "ttl": "24h"},
        "tool": ["ephemeral"],
    }
    req: JSON = {"messages": [{"role": "user", "content": [{"type": "text", "text": "q"}]}], "tools": tools(1)}
    if where == "top":
        req["cache_control"] = bad[where]
    elif where == "part":
        req["messages"][0]["content"][0]["cache_control"] = bad[where]
    elif where == "message":
        req["messages"][0]["cache_control"] = bad[where]
    else:
        req["tools"][0]["cache_control"] = bad[where]
    with pytest.raises(InvalidRequest) as exc:
        wire(req)
    assert (exc.value.param, exc.value.code, exc.value.http_status) == (param, code, 400)


# --- usage ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", CACHE_FIXTURES)
def test_recorded_cache_usage(name: str) -> None:
    raw = load_json(f"anthropic/{name}.json")
    recorded = raw["usage"]
    usage = PROVIDER.chat_response(copy.deepcopy(raw), make_target())["usage"]
    reads, writes = recorded["cache_read_input_tokens"], recorded["cache_creation_input_tokens"]
    assert writes == recorded["cache_creation"]["ephemeral_5m_input_tokens"] > 0
    assert usage["prompt_tokens"] == recorded["input_tokens"] + reads + writes
    assert usage["prompt_tokens_details"] == {
        "cached_tokens": reads,
        "cache_write_tokens": writes,
        "cache_write_1h_tokens": 0,
    }
    assert usage["total_tokens"] == usage["prompt_tokens"] + recorded["output_tokens"]


def test_one_hour_writes_are_reported_apart() -> None:
    raw = {
        "input_tokens": 3,
        "cache_read_input_tokens": 100,
        "cache_creation_input_tokens": 700,
        "cache_creation": {"ephemeral_5m_input_tokens": 200, "ephemeral_1h_input_tokens": 500},
        "output_tokens": 9,
    }
    usage = canonical_usage(raw)
    assert usage["prompt_tokens"] == 803
    assert usage["prompt_tokens_details"] == {
        "cached_tokens": 100,
        "cache_write_tokens": 700,
        "cache_write_1h_tokens": 500,
    }
    breakdown_only = without(raw, "cache_creation_input_tokens")
    assert canonical_usage(breakdown_only)["prompt_tokens_details"]["cache_write_tokens"] == 700
    assert "prompt_tokens_details" not in canonical_usage({"input_tokens": 3, "output_tokens": 1})


def test_stream_usage_carries_cache_writes() -> None:
    # the recorded answer's usage, as a stream would bring it (message_start, then message_delta)
    decoder = PROVIDER.stream_decoder(make_target())
    usage = load_json("anthropic/messages_cache_control_top_level.json")["usage"]
    payloads: list[JSON] = [
        {"type": "message_start", "message": {"id": "msg_1", "model": "claude-sonnet-4-5", "usage": usage}},
        {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": "Python."}},
        {"type": "content_block_stop", "index": 0},
        {"type": "message_delta", "delta": {"stop_reason": "end_turn"}, "usage": {"output_tokens": 33}},
        {"type": "message_stop"},
    ]
    chunks = decode_events(decoder, [SSEEvent(orjson.dumps(p).decode(), p["type"]) for p in payloads])
    assert chunks[-1]["usage"] == decoder.usage
    assert decoder.usage is not None
    assert decoder.usage["prompt_tokens"] == 3 + 1111 + 418
    assert decoder.usage["prompt_tokens_details"] == {
        "cached_tokens": 1111,
        "cache_write_tokens": 418,
        "cache_write_1h_tokens": 0,
    }
