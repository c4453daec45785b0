"""Reasoning and prompt caching in the Anthropic Messages dialect (issue 12).

Requests: the recorded Messages bodies of shared/fixtures parse into the contract's
canonical keys (``reasoning_effort``, ``reasoning_budget``, ``include_reasoning``,
``cache_control`` where the contract puts it, assistant ``thinking_blocks`` and
``reasoning_content``). Answers: the recorded Messages and streams, read into the
canonical form the contract describes, render back into the recorded bodies and
event sequences, and the anthropic SDK reads what is rendered.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest

from gateway.canonical import JSON, upstream_view
from gateway.dialects.anthropic import parse_count_tokens, parse_messages
from gateway.errors import InvalidRequest
from tests.unit.fixtures import load_json

CROSS = "cross_provider/reasoning"
MARKER = load_json("anthropic/messages_cache_control_block_turn2.request.json")["messages"][2]["content"][0][
    "cache_control"
]
"""The recorded ``cache_control`` ({"type": "ephemeral", "ttl": "5m"})."""
THINKING = ("thinking", "redacted_thinking")


# --- requests: reasoning -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "effort", "budget", "include"),
    [
        ("anthropic/messages_thinking_enabled_tool_use.request.json", "low", 3000, None),
        ("anthropic/messages_redacted_thinking.request.json", "minimal", 1024, None),
        ("anthropic/stream_thinking_signature_delta.request.json", "minimal", 1024, None),
        ("anthropic/messages_adaptive_thinking.request.json", "high", None, None),
        ("anthropic/messages_adaptive_thinking_effort_xhigh.request.json", "xhigh", None, True),
        ("anthropic/messages_effort_low_without_thinking.request.json", "low", None, None),
        ("anthropic/count_tokens_adaptive_thinking_tools.request.json", "high", None, None),
        (f"{CROSS}/cross_the_street/anthropic.request.json", "minimal", 1024, None),
        (f"{CROSS}/cross_the_street/anthropic_turn2.request.json", "minimal", 1024, None),
    ],
)
def test_recorded_reasoning_settings_become_the_canonical_keys(
    path: str, effort: str, budget: int | None, include: bool | None
) -> None:
    body = load_json(path)
    req = (parse_messages if "max_tokens" in body else parse_count_tokens)(body)
    assert (req["reasoning_effort"], req.get("reasoning_budget"), req.get("include_reasoning")) == (
        effort,
        budget,
        include,
    )
    assert req.get("thinking") == body.get("thinking")  # the extension stays for the same-format path
    sent = upstream_view(req)
    assert "thinking" not in sent and sent["reasoning_effort"] == effort


def test_the_high_effort_recording_maps_to_high_once_its_server_tool_is_gone() -> None:
    body = load_json(f"{CROSS}/high_effort_web_search/anthropic.request.json")
    del body["tools"]
    req = parse_messages(body)
    assert (req["reasoning_effort"], req["reasoning_budget"]) == ("high", 16384)


@pytest.mark.parametrize(
    ("thinking", "effort", "expected"),
    [
        ({"type": "adaptive"}, "max", {"reasoning_effort": "xhigh"}),
        ({"type": "adaptive"}, "medium", {"reasoning_effort": "medium"}),
        ({"type": "adaptive", "display": "omitted"}, None, {"reasoning_effort": "high", "include_reasoning": False}),
        ({"type": "disabled"}, None, {"reasoning_effort": "none"}),
        ({"type": "disabled"}, "high", {"reasoning_effort": "none"}),
        ({"type": "disabled", "display": "summarized"}, None, {"reasoning_effort": "none"}),
        ({"type": "between_tools"}, "low", {"reasoning_effort": "low"}),
        (None, "max", {"reasoning_effort": "xhigh"}),
        ({"type": "enabled", "budget_tokens": 500}, None, {"reasoning_effort": "minimal", "reasoning_budget": 500}),
        ({"type": "enabled", "budget_tokens": 40000}, "low", {"reasoning_effort": "xhigh", "reasoning_budget": 40000}),
        (
            {"type": "enabled", "budget_tokens": 8192, "display": "summarized"},
            None,
            {"reasoning_effort": "medium", "reasoning_budget": 8192, "include_reasoning": True},
        ),
    ],
)
def test_thinking_and_effort_rules(thinking: JSON | None, effort: str | None, expected: JSON) -> None:
    body = load_json("anthropic/messages_adaptive_thinking_effort_xhigh.request.json")
    body.pop("thinking")
    body.pop("output_config")
    if thinking is not None:
        body["thinking"] = thinking
    if effort is not None:
        body["output_config"] = {"effort": effort}
    req = parse_messages(body)
    assert {k: req[k] for k in ("reasoning_effort", "reasoning_budget", "include_reasoning") if k in req} == expected


def test_assistant_thinking_becomes_thinking_blocks_and_reasoning_content() -> None:
    body = load_json("anthropic/messages_thinking_signature_replay_tool_result.request.json")
    thinking = body["messages"][1]["content"][0]
    assistant = parse_messages(body)["messages"][1]
    assert assistant["thinking_blocks"] == [thinking]
    assert assistant["reasoning_content"] == thinking["thinking"]
    sent = upstream_view({"messages": [assistant]})["messages"][0]
    assert (
        sent["thinking_blocks"] == [thinking] and sent["reasoning_content"] == thinking["thinking"]
    )  # providers decide


def test_redacted_thinking_alone_gives_no_reasoning_text() -> None:
    body = load_json("anthropic/messages_redacted_thinking_replay.request.json")
    assistant = parse_messages(body)["messages"][1]
    assert assistant["thinking_blocks"][0]["type"] == "redacted_thinking"
    assert "reasoning_content" not in assistant


def test_several_thinking_blocks_join_with_a_blank_line() -> None:
    body = load_json(f"{CROSS}/cross_the_street/anthropic_turn2.request.json")
    thinking = body["messages"][1]["content"][0]
    redacted = load_json("anthropic/messages_redacted_thinking_replay.request.json")["messages"][1]["content"][0]
    body["messages"][1]["content"][1:1] = [redacted, {**thinking, "thinking": "second"}]
    assistant = parse_messages(body)["messages"][1]
    assert assistant["reasoning_content"] == thinking["thinking"] + "\n\nsecond"
    assert [b["type"] for b in assistant["thinking_blocks"]] == ["thinking", "redacted_thinking", "thinking"]


# --- requests: cache_control ------------------------------------------------------------------


def test_recorded_top_level_and_block_markers_reach_the_canonical_request() -> None:
    top = parse_messages(load_json("anthropic/messages_cache_control_top_level.request.json"))
    assert top["cache_control"] == {"type": "ephemeral", "ttl": "5m"} == upstream_view(top)["cache_control"]
    block = parse_messages(load_json("anthropic/messages_cache_control_block_turn2.request.json"))
    assert block["messages"][-1]["content"] == [
        {"type": "text", "text": "Can you summarize that in one sentence?", "cache_control": MARKER}
    ]
    assert "cache_control" not in block


def test_every_block_type_keeps_its_marker() -> None:
    body = load_json("anthropic/messages_thinking_signature_replay_tool_result.request.json")
    image = load_json("anthropic/messages_image_url.request.json")["messages"][0]["content"][1]
    pdf = load_json("anthropic/messages_document_pdf_base64.request.json")["messages"][0]["content"][1]
    body["system"] = [{"type": "text", "text": "Be brief.", "cache_control": MARKER}]
    body["tools"][0]["cache_control"] = MARKER
    _, text, use = body["messages"][1]["content"]
    text["cache_control"] = use["cache_control"] = MARKER
    body["messages"][2]["content"][0]["cache_control"] = {"type": "ephemeral", "ttl": "1h"}
    body["messages"][2]["content"] += [{**image, "cache_control": MARKER}, {**pdf, "cache_control": MARKER}]
    req = parse_messages(body)
    system, _, assistant, tool, user = req["messages"]
    assert system["content"] == [{"type": "text", "text": "Be brief.", "cache_control": MARKER}]
    assert req["tools"][0]["cache_control"] == MARKER
    assert assistant["content"] == [{"type": "text", "text": text["text"], "cache_control": MARKER}]
    assert assistant["cache_control"] == MARKER  # the tool_use block's: the message's end
    assert tool["cache_control"] == {"type": "ephemeral", "ttl": "1h"} and tool["content"] == "Mexico"
    assert [p["cache_control"] for p in user["content"]] == [MARKER, MARKER]
    assert [p["type"] for p in user["content"]] == ["image_url", "file"]


def test_markers_inside_a_tool_result_and_a_content_document() -> None:
    body = load_json("anthropic/messages_tool_result_with_image_base64.request.json")
    result = body["messages"][2]["content"][0]
    result["content"] = [{"type": "text", "text": "a photo", "cache_control": MARKER}, result["content"][0]]
    result["content"][1]["cache_control"] = MARKER
    body["messages"][2]["content"].append(
        {
            "type": "document",
            "source": {"type": "content", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]},
            "cache_control": MARKER,
        }
    )
    messages = parse_messages(body)["messages"]
    assert messages[2] == {"role": "tool", "tool_call_id": result["tool_use_id"], "content": "a photo"} | {
        "cache_control": MARKER
    }
    assert messages[3]["content"][0]["cache_control"] == MARKER  # the image, after the result
    assert messages[4]["content"] == [
        {"type": "text", "text": "a"},
        {"type": "text", "text": "b", "cache_control": MARKER},
    ]


# --- requests: every refusal -------------------------------------------------------------------

BASE: JSON = load_json("anthropic/messages_cache_control_block_turn2.request.json")
TOOL_BODY: JSON = load_json("anthropic/messages_thinking_signature_replay_tool_result.request.json")


def with_marker(where: str, marker: Any) -> JSON:
    """The recorded tool-use replay with ``marker`` as the cache_control at ``where``."""
    body: JSON = copy.deepcopy(TOOL_BODY)
    if where == "":
        body["cache_control"] = marker
        return body
    node: Any = body
    for key in where.split("."):
        node = node[int(key)] if isinstance(node, list) else node[key]
    node["cache_control"] = marker
    return body


@pytest.mark.parametrize(
    ("body", "param", "code"),
    [
        ({**BASE, "thinking": {"type": "adaptive", "display": "full"}}, "thinking.display", "unsupported_value"),
        ({**BASE, "thinking": {"type": "adaptive", "display": 1}}, "thinking.display", "invalid_type"),
        ({**BASE, "thinking": {"budget_tokens": 1024}}, "thinking.type", "missing_required_parameter"),
        ({**BASE, "thinking": {"type": 1}}, "thinking.type", "invalid_type"),
        ({**BASE, "output_config": {"effort": "extreme"}}, "output_config.effort", "unsupported_value"),
        ({**BASE, "output_config": {"effort": 3}}, "output_config.effort", "invalid_type"),
        ({**BASE, "output_config": "high"}, "output_config", "invalid_type"),
        (with_marker("", "ephemeral"), "cache_control", "invalid_type"),
        (with_marker("", {"type": "persistent"}), "cache_control.type", "unsupported_value"),
        (with_marker("", {"ttl": "5m"}), "cache_control.type", "missing_required_parameter"),
        (with_marker("", {"type": "ephemeral", "ttl": "10m"}), "cache_control.ttl", "unsupported_value"),
        (with_marker("", {"type": "ephemeral", "ttl": 300}), "cache_control.ttl", "invalid_type"),
        (with_marker("", {"type": "ephemeral", "scope": "x"}), "cache_control.scope", "unsupported_value"),
        (with_marker("tools.0", {"type": "x"}), "tools.0.cache_control.type", "unsupported_value"),
        (with_marker("messages.0.content.0", []), "messages.0.content.0.cache_control", "invalid_type"),
        (
            with_marker("messages.1.content.2", {"type": "x"}),
            "messages.1.content.2.cache_control.type",
            "unsupported_value",
        ),
        (
            with_marker("messages.2.content.0", {"ttl": "1h"}),
            "messages.2.content.0.cache_control.type",
            "missing_required_parameter",
        ),
    ],
)
def test_bad_reasoning_and_cache_fields_are_refused_by_name(body: JSON, param: str, code: str) -> None:
    with pytest.raises(InvalidRequest) as info:
        parse_messages(body)
    assert (info.value.param, info.value.code) == (param, code)
