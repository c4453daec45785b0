"""gateway.dialects.anthropic: Messages requests -> canonical, canonical answers and
streams -> Messages, errors, models and the pass-through policy.

Requests are the recorded ones in shared/fixtures; answers and streams are the
recorded OpenAI, Gemini and Anthropic ones, decoded by the providers' own
translators, and what the dialect renders is read back by the anthropic SDK
itself (its HTTP transport replaced by httpx2.MockTransport: a stand-in for the
network, not for the code under test).
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import anthropic
import httpx2
import orjson
import pytest
from anthropic.types import Message, MessageTokensCount, ModelInfo

from gateway.canonical import JSON, upstream_view
from gateway.config.settings import Params
from gateway.dialects.anthropic import (
    DROPPED,
    MessagesStream,
    apply_native,
    count_tokens_body,
    model_card,
    model_list,
    parse_count_tokens,
    parse_messages,
    render_error,
    render_message,
)
from gateway.dialects.anthropic_stream import sse
from gateway.dialects.openai import validate_chat
from gateway.errors import (
    AllDeploymentsFailed,
    AttemptFailure,
    AuthenticationFailed,
    BudgetExceeded,
    GatewayError,
    InvalidRequest,
    NoDeploymentAvailable,
    NotFound,
    PermissionDenied,
    RateLimited,
    RequestTooLarge,
    UpstreamBadResponse,
    UpstreamError,
    UpstreamTimeout,
)
from gateway.providers.anthropic import AnthropicProvider, messages_body
from gateway.providers.anthropic_stream import AnthropicStreamDecoder
from gateway.providers.base import SSEEvent, StreamDecoder, Target
from gateway.providers.gemini import GeminiProvider
from gateway.providers.gemini_stream import GeminiStreamDecoder
from gateway.providers.openai_compat import OpenAICompatProvider, OpenAIStreamDecoder
from gateway.providers.sse import SSEParser
from tests.unit.fixtures import FIXTURES, load_bytes, load_json, random_pieces, sse_events

ANTHROPIC = FIXTURES / "anthropic"
REQUESTS = sorted(ANTHROPIC.glob("*.request.json")) + sorted(
    (FIXTURES / "cross_provider").glob("**/anthropic*.request.json")
)
REFUSED = {
    # fixture -> the param a refusal names: server tools cannot be translated
    "stream_tool_use_with_server_tool_search.request.json": "tools.2.type",
    "stream_text_after_tool_result.request.json": "tools.2.type",
    "high_effort_web_search/anthropic.request.json": "tools.0.type",
}
CROSS_MODES = ["tool_choice_auto", "tool_choice_required", "tool_choice_none", "tool_choice_list_single"]


def fixture_key(path: Path) -> str:
    return path.name if path.parent == ANTHROPIC else f"{path.parent.name}/{path.name}"


def parse(body: JSON) -> JSON:
    """The parser a body's endpoint uses (count_tokens bodies have no max_tokens)."""
    return parse_messages(body) if "max_tokens" in body else parse_count_tokens(body)


def target(provider: str, model: str) -> Target:
    return Target(provider=provider, model=model, base_url="https://upstream.test/v1")


def sdk(handler: Callable[[httpx2.Request], httpx2.Response]) -> anthropic.Anthropic:
    transport = httpx2.MockTransport(handler)
    return anthropic.Anthropic(
        api_key="sk-test", base_url="http://gateway.test", max_retries=0, http_client=httpx2.Client(transport=transport)
    )


def sdk_stream(raw: bytes) -> Message:
    """The Message the anthropic SDK's stream accumulator makes of ``raw``."""
    headers = {"content-type": "text/event-stream"}
    client = sdk(lambda request: httpx2.Response(200, headers=headers, content=raw))
    user: Any = [{"role": "user", "content": "hi"}]
    with client.messages.stream(model="claude-test", max_tokens=100, messages=user) as stream:
        return stream.get_final_message()


# --- requests: every recorded one ----------------------------------------------------


@pytest.mark.parametrize("path", REQUESTS, ids=fixture_key)
def test_every_recorded_request_parses_or_is_refused_by_name(path: Path) -> None:
    body = json.loads(path.read_text(encoding="utf-8"))
    original = copy.deepcopy(body)
    refused = REFUSED.get(fixture_key(path))
    if refused is not None:
        with pytest.raises(InvalidRequest) as info:
            parse(body)
        assert (info.value.param, info.value.code) == (refused, "unsupported_value")
        assert str(body["tools"][int(refused.split(".")[1])]["type"]) in info.value.message
        return
    req = parse(body)
    assert body == original, "the client's body must not be modified"
    assert req["model"] == body["model"] and req["stream"] is bool(body.get("stream"))
    assert req.get("max_tokens") == body.get("max_tokens")
    validate_chat(copy.deepcopy(upstream_view(req)))  # what providers get is a valid canonical request
    # cache_control travels where the contract puts it (issue 12); the providers decide what to drop
    assert (b"cache_control" in orjson.dumps(upstream_view(req))) == (b"cache_control" in orjson.dumps(body))


def test_server_tool_blocks_in_a_turn_are_refused_by_name() -> None:
    body = load_json("anthropic/stream_text_after_tool_result.request.json")
    body["tools"] = body["tools"][:2]  # without the server tool, its blocks in the history are the problem
    with pytest.raises(InvalidRequest) as info:
        parse_messages(body)
    assert (info.value.param, info.value.code) == ("messages.1.content.1.type", "unsupported_value")
    assert "server_tool_use" in info.value.message


@pytest.mark.parametrize(
    "name",
    [
        "messages_tool_use",
        "messages_parallel_tool_use",
        "messages_image_url",
        "messages_document_pdf_base64",
        "messages_text_with_sampling",
        "stream_text",
    ],
)
def test_the_anthropic_provider_turns_the_canonical_request_back_into_the_recorded_one(name: str) -> None:
    body = load_json(f"anthropic/{name}.request.json")
    wire = messages_body(upstream_view(parse_messages(body)), body["model"])
    for key in ("messages", "system", "tools", "tool_choice", "temperature", "top_k", "max_tokens"):
        assert wire.get(key) == body.get(key), key


@pytest.mark.parametrize("mode", CROSS_MODES)
def test_tool_choice_and_tools_match_the_same_request_recorded_for_openai(mode: str) -> None:
    req = parse_messages(load_json(f"cross_provider/{mode}/anthropic.request.json"))
    openai = load_json(f"cross_provider/{mode}/openai_chat.request.json")
    assert req["tool_choice"] == openai["tool_choice"]
    assert [t["function"]["name"] for t in req["tools"]] == [t["function"]["name"] for t in openai["tools"]]
    for ours, theirs in zip(req["tools"], openai["tools"], strict=True):
        # pydantic-ai makes OpenAI schemas strict (additionalProperties: false); the rest is the same
        schema = {k: v for k, v in theirs["function"]["parameters"].items() if k != "additionalProperties"}
        assert {k: v for k, v in ours["function"]["parameters"].items() if k != "additionalProperties"} == schema
        assert ours["function"].get("description") == theirs["function"].get("description")


def test_system_prompt_and_a_system_turn_keep_their_places() -> None:
    req = parse_messages(load_json("anthropic/messages_system_role_in_messages.request.json"))
    roles = [m["role"] for m in req["messages"]]
    assert roles == ["system", "user", "assistant", "user", "system"]
    assert req["messages"][0]["content"] == "You are a code reviewer."
    assert req["messages"][2]["content"] == "Looks fine."
    assert req["messages"][-1]["content"] == [
        {"type": "text", "text": "From now on, every suggestion must include explicit type annotations."}
    ]


def test_system_text_blocks_become_text_parts_with_their_cache_control() -> None:
    body = load_json("anthropic/messages_cache_control_block_turn1.request.json")
    block = {**body["messages"][0]["content"][0]}
    body["system"] = [{"type": "text", "text": "You are terse."}, block]
    req = parse_messages(body)
    assert req["messages"][0] == {
        "role": "system",
        "content": [
            {"type": "text", "text": "You are terse."},
            {"type": "text", "text": block["text"], "cache_control": block["cache_control"]},
        ],
    }


def test_image_and_pdf_blocks_become_image_url_and_file_parts() -> None:
    body = load_json("anthropic/messages_image_url.request.json")
    parts = parse_messages(body)["messages"][0]["content"]
    assert parts[1] == {"type": "image_url", "image_url": {"url": body["messages"][0]["content"][1]["source"]["url"]}}
    body = load_json("anthropic/messages_document_pdf_base64.request.json")
    source = body["messages"][0]["content"][1]["source"]
    parts = parse_messages(body)["messages"][0]["content"]
    assert parts[1] == {
        "type": "file",
        "file": {"file_data": "data:application/pdf;base64," + source["data"], "filename": "document.pdf"},
    }


def test_text_and_content_documents_become_parts_and_a_title_names_the_file() -> None:
    body = load_json("anthropic/messages_document_pdf_base64.request.json")
    document = body["messages"][0]["content"][1]
    body["messages"][0]["content"] += [
        {**document, "title": "report.pdf"},
        {"type": "document", "source": {"type": "text", "media_type": "text/plain", "data": "plain words"}},
        {"type": "document", "source": {"type": "content", "content": [{"type": "text", "text": "a chunk"}]}},
        {"type": "document", "source": {"type": "content", "content": "a string"}},
    ]
    parts = parse_messages(body)["messages"][0]["content"]
    assert parts[2]["file"]["filename"] == "report.pdf"
    assert parts[3:] == [
        {"type": "text", "text": "plain words"},
        {"type": "text", "text": "a chunk"},
        {"type": "text", "text": "a string"},
    ]


def test_tool_use_and_tool_result_pair_up_and_thinking_is_kept_byte_for_byte() -> None:
    body = load_json("anthropic/messages_thinking_signature_replay_tool_result.request.json")
    thinking, text, use = body["messages"][1]["content"]
    messages = parse_messages(body)["messages"]
    assistant, tool = messages[1], messages[2]
    assert assistant["content"] == text["text"]
    assert assistant["tool_calls"] == [
        {"id": use["id"], "type": "function", "function": {"name": use["name"], "arguments": "{}"}}
    ]
    assert orjson.dumps(assistant["thinking_blocks"]) == orjson.dumps([thinking])
    assert tool == {"role": "tool", "tool_call_id": use["id"], "content": "Mexico"}


def test_tool_use_input_becomes_the_arguments_string() -> None:
    body = load_json("anthropic/stream_text_after_tool_result.request.json")
    body["tools"] = body["tools"][:2]
    blocks = body["messages"][1]["content"]
    body["messages"][1]["content"] = [blocks[0], blocks[3], blocks[4]]  # without the server-tool blocks
    messages = parse_messages(body)["messages"]
    call = messages[1]["tool_calls"][0]
    assert json.loads(call["function"]["arguments"]) == blocks[4]["input"]
    assert messages[1]["content"] == [
        {"type": "text", "text": blocks[0]["text"]},
        {"type": "text", "text": blocks[3]["text"]},
    ]
    assert messages[2] == {"role": "tool", "tool_call_id": blocks[4]["id"], "content": "1 USD = 0.92 EUR"}


def test_redacted_thinking_is_kept_verbatim() -> None:
    body = load_json("anthropic/messages_redacted_thinking_replay.request.json")
    assistant = parse_messages(body)["messages"][1]
    assert assistant["thinking_blocks"] == [body["messages"][1]["content"][0]]
    assert upstream_view({"messages": [assistant]})["messages"][0]["thinking_blocks"] == assistant["thinking_blocks"]


def test_images_in_a_tool_result_follow_it_as_a_user_message() -> None:
    body = load_json("anthropic/messages_tool_result_with_image_base64.request.json")
    result = body["messages"][2]["content"][0]
    source = result["content"][0]["source"]
    messages = parse_messages(body)["messages"]
    assert messages[2] == {"role": "tool", "tool_call_id": result["tool_use_id"], "content": ""}
    assert messages[3] == {
        "role": "user",
        "content": [
            {"type": "image_url", "image_url": {"url": f"data:{source['media_type']};base64,{source['data']}"}}
        ],
    }


def test_an_error_result_says_so_and_user_blocks_after_results_come_after_them() -> None:
    body = load_json("anthropic/messages_thinking_signature_replay_tool_result.request.json")
    result = body["messages"][2]["content"][0]
    result["is_error"] = True
    result["content"] = [{"type": "text", "text": "no such country"}, {"type": "text", "text": "try again"}]
    body["messages"][2]["content"].append({"type": "text", "text": "Please go on."})
    messages = parse_messages(body)["messages"]
    assert messages[2]["content"] == [
        {"type": "text", "text": "Error: no such country"},
        {"type": "text", "text": "try again"},
    ]
    assert messages[3] == {"role": "user", "content": [{"type": "text", "text": "Please go on."}]}


@pytest.mark.parametrize(
    ("thinking", "effort"),
    [  # EFFORT_BUDGETS (gateway/canonical.py): the largest effort whose budget fits
        ({"type": "enabled", "budget_tokens": 1023}, "minimal"),
        ({"type": "enabled", "budget_tokens": 1024}, "minimal"),
        ({"type": "enabled", "budget_tokens": 2047}, "minimal"),
        ({"type": "enabled", "budget_tokens": 2048}, "low"),
        ({"type": "enabled", "budget_tokens": 8191}, "low"),
        ({"type": "enabled", "budget_tokens": 8192}, "medium"),
        ({"type": "enabled", "budget_tokens": 16384}, "high"),
        ({"type": "enabled", "budget_tokens": 32768}, "xhigh"),
        ({"type": "adaptive"}, "high"),
        ({"type": "adaptive", "display": "summarized"}, "high"),
        ({"type": "disabled"}, "none"),
    ],
)
def test_thinking_becomes_reasoning_effort_and_is_kept(thinking: JSON, effort: str | None) -> None:
    body = load_json("anthropic/messages_redacted_thinking.request.json")
    body["thinking"] = thinking
    req = parse_messages(body)
    assert req.get("reasoning_effort") == effort
    assert req.get("reasoning_budget") == thinking.get("budget_tokens")
    assert req["thinking"] == thinking
    assert "thinking" not in upstream_view(req)


def test_output_config_effort_wins_and_its_format_becomes_response_format() -> None:
    body = load_json("anthropic/messages_adaptive_thinking_effort_xhigh.request.json")
    schema = {"type": "object", "properties": {"answer": {"type": "integer"}}, "required": ["answer"]}
    body["output_config"]["format"] = {"type": "json_schema", "schema": schema}
    req = parse_messages(body)
    assert req["reasoning_effort"] == "xhigh"
    assert req["response_format"] == {"type": "json_schema", "json_schema": {"name": "output", "schema": schema}}
    assert (
        parse_messages(load_json("anthropic/messages_effort_low_without_thinking.request.json"))["reasoning_effort"]
        == "low"
    )


def test_sampling_stop_user_parallel_and_dropped_fields() -> None:
    body = load_json("anthropic/messages_tool_use.request.json")
    body.update(
        top_p=0.9,
        stop_sequences=["END", "STOP"],
        metadata={"user_id": "user-42"},
        tool_choice={"type": "auto", "disable_parallel_tool_use": True},
        **{name: {"any": "thing"} for name in DROPPED},
    )
    req = parse_messages(body)
    assert (req["top_p"], req["stop"], req["user"]) == (0.9, ["END", "STOP"], "user-42")
    assert (req["tool_choice"], req["parallel_tool_calls"]) == ("auto", False)
    assert not DROPPED & req.keys()


def test_strict_tools_the_beta_output_format_and_plain_assistant_text() -> None:
    body = load_json("anthropic/messages_tool_use.request.json")
    body["tools"][0]["strict"] = True
    schema = body["tools"][0]["input_schema"]
    body["output_format"] = {"type": "json_schema", "schema": schema}
    body["messages"] += [{"role": "assistant", "content": "Let me look."}, {"role": "user", "content": "Go on."}]
    req = parse_messages(body)
    assert req["tools"][0]["function"]["strict"] is True
    assert req["response_format"] == {"type": "json_schema", "json_schema": {"name": "output", "schema": schema}}
    assert req["messages"][1:] == [
        {"role": "assistant", "content": "Let me look."},
        {"role": "user", "content": "Go on."},
    ]


def test_tool_choice_without_tools_is_dropped_when_harmless() -> None:
    body = load_json("anthropic/messages_text_with_sampling.request.json")
    for choice in ({"type": "auto"}, {"type": "none", "disable_parallel_tool_use": True}):
        req = parse_messages({**body, "tool_choice": choice, "tools": []})
        assert not {"tools", "tool_choice", "parallel_tool_calls"} & req.keys()


# --- requests: bad input -----------------------------------------------------------------

BASE: JSON = {"model": "claude-test", "max_tokens": 64, "messages": [{"role": "user", "content": "hi"}]}
TURNS: list[Any] = [
    {"role": "user", "content": "hi"},
    {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_1", "name": "f", "input": {}}]},
    {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "ok"}]},
]
TOOL: JSON = {"name": "f", "input_schema": {"type": "object"}}


def turns(path: str, value: Any) -> JSON:
    """BASE with the three TURNS, ``messages.<path>`` set to ``value``."""
    messages = copy.deepcopy(TURNS)
    keys = path.split(".")
    node: Any = messages
    for key in keys[:-1]:
        node = node[int(key)] if isinstance(node, list) else node[key]
    last = keys[-1]
    if isinstance(node, list):
        node[int(last)] = value
    elif value is ...:
        del node[last]
    else:
        node[last] = value
    return {**BASE, "messages": messages}


def block(value: Any) -> JSON:
    return {**BASE, "messages": [{"role": "user", "content": [value]}]}


TYPE, VALUE, MISSING, UNSUPPORTED = "invalid_type", "invalid_value", "missing_required_parameter", "unsupported_value"
C0, C1, C2 = "messages.0.content.0", "messages.1.content.0", "messages.2.content.0"
BAD: list[tuple[str, Any, str, str]] = [
    ("body", [], "body", TYPE),
    ("no model", {k: v for k, v in BASE.items() if k != "model"}, "model", MISSING),
    ("model not a string", {**BASE, "model": 5}, "model", TYPE),
    ("empty model", {**BASE, "model": ""}, "model", VALUE),
    ("no max_tokens", {k: v for k, v in BASE.items() if k != "max_tokens"}, "max_tokens", MISSING),
    ("max_tokens 0", {**BASE, "max_tokens": 0}, "max_tokens", VALUE),
    ("max_tokens string", {**BASE, "max_tokens": "64"}, "max_tokens", TYPE),
    ("max_tokens boolean", {**BASE, "max_tokens": True}, "max_tokens", TYPE),
    ("no messages", {**BASE, "messages": None}, "messages", MISSING),
    ("messages object", {**BASE, "messages": {}}, "messages", TYPE),
    ("no turns", {**BASE, "messages": []}, "messages", VALUE),
    ("turn not an object", {**BASE, "messages": ["hi"]}, "messages.0", TYPE),
    ("turn null", {**BASE, "messages": [None]}, "messages.0", TYPE),
    ("role tool", turns("0.role", "tool"), "messages.0.role", UNSUPPORTED),
    ("role developer", turns("2.role", "developer"), "messages.2.role", UNSUPPORTED),
    ("no role", turns("0.role", ...), "messages.0.role", MISSING),
    ("no content", turns("0.content", ...), "messages.0.content", MISSING),
    ("content number", turns("0.content", 5), "messages.0.content", TYPE),
    ("empty user text", turns("0.content", ""), "messages.0.content", VALUE),
    ("no user blocks", turns("0.content", []), "messages.0.content", VALUE),
    ("block not an object", block("hi"), C0, TYPE),
    ("unknown block", block({"type": "video", "url": "x"}), C0 + ".type", UNSUPPORTED),
    ("block without type", block({"text": "hi"}), C0 + ".type", MISSING),
    ("block type number", block({"type": 3}), C0 + ".type", TYPE),
    ("text not a string", block({"type": "text", "text": 3}), C0 + ".text", TYPE),
    ("tool_use from the user", block(TURNS[1]["content"][0]), C0 + ".type", UNSUPPORTED),
    ("thinking from the user", block({"type": "thinking", "thinking": "", "signature": ""}), C0 + ".type", UNSUPPORTED),
    (
        "search_result",
        block({"type": "search_result", "source": "s", "title": "t", "content": []}),
        C0 + ".type",
        UNSUPPORTED,
    ),
    ("tool_result from the assistant", turns("1.content.0", TURNS[2]["content"][0]), C1 + ".type", UNSUPPORTED),
    ("image from the assistant", turns("1.content.0", {"type": "image", "source": {}}), C1 + ".type", UNSUPPORTED),
    ("image without source", block({"type": "image"}), C0 + ".source", MISSING),
    (
        "image file id",
        block({"type": "image", "source": {"type": "file", "file_id": "file_1"}}),
        C0 + ".source.type",
        UNSUPPORTED,
    ),
    (
        "image ftp url",
        block({"type": "image", "source": {"type": "url", "url": "ftp://x/y.png"}}),
        C0 + ".source.url",
        VALUE,
    ),
    (
        "image without data",
        block({"type": "image", "source": {"type": "base64", "media_type": "image/png"}}),
        C0 + ".source.data",
        MISSING,
    ),
    (
        "document url",
        block({"type": "document", "source": {"type": "url", "url": "https://x/y.pdf"}}),
        C0 + ".source.type",
        UNSUPPORTED,
    ),
    (
        "document content block",
        block({"type": "document", "source": {"type": "content", "content": [{"type": "document"}]}}),
        C0 + ".source.content.0.type",
        UNSUPPORTED,
    ),
    ("tool_use input list", turns("1.content.0.input", []), C1 + ".input", TYPE),
    ("tool_use without id", turns("1.content.0.id", ...), C1 + ".id", MISSING),
    ("tool_use empty name", turns("1.content.0.name", ""), C1 + ".name", VALUE),
    ("tool_result without id", turns("2.content.0.tool_use_id", ...), C2 + ".tool_use_id", MISSING),
    ("tool_result is_error string", turns("2.content.0.is_error", "yes"), C2 + ".is_error", TYPE),
    ("tool_result content number", turns("2.content.0.content", 5), C2 + ".content", TYPE),
    (
        "tool_reference result",
        turns("2.content.0.content", [{"type": "tool_reference", "tool_name": "f"}]),
        C2 + ".content.0.type",
        UNSUPPORTED,
    ),
    (
        "thinking without signature",
        turns("1.content.0", {"type": "thinking", "thinking": "hm"}),
        C1 + ".signature",
        MISSING,
    ),
    ("redacted without data", turns("1.content.0", {"type": "redacted_thinking"}), C1 + ".data", MISSING),
    (
        "assistant server tool",
        turns("1.content.0", {"type": "web_search_tool_result", "tool_use_id": "s", "content": []}),
        C1 + ".type",
        UNSUPPORTED,
    ),
    ("system number", {**BASE, "system": 5}, "system", TYPE),
    ("system image", {**BASE, "system": [{"type": "image", "source": {}}]}, "system.0.type", UNSUPPORTED),
    ("system turn image", turns("0", {"role": "system", "content": [{"type": "image"}]}), C0 + ".type", UNSUPPORTED),
    ("temperature over 1", {**BASE, "temperature": 1.5}, "temperature", VALUE),
    ("temperature string", {**BASE, "temperature": "hot"}, "temperature", TYPE),
    ("top_p over 1", {**BASE, "top_p": 2}, "top_p", VALUE),
    ("top_k negative", {**BASE, "top_k": -1}, "top_k", VALUE),
    ("top_k fraction", {**BASE, "top_k": 1.5}, "top_k", TYPE),
    ("stop_sequences string", {**BASE, "stop_sequences": "END"}, "stop_sequences", TYPE),
    ("stop_sequences number", {**BASE, "stop_sequences": [1]}, "stop_sequences.0", TYPE),
    ("metadata list", {**BASE, "metadata": []}, "metadata", TYPE),
    ("user_id number", {**BASE, "metadata": {"user_id": 5}}, "metadata.user_id", TYPE),
    ("stream string", {**BASE, "stream": "yes"}, "stream", TYPE),
    ("thinking string", {**BASE, "thinking": "on"}, "thinking", TYPE),
    ("thinking without budget", {**BASE, "thinking": {"type": "enabled"}}, "thinking.budget_tokens", MISSING),
    (
        "thinking budget string",
        {**BASE, "thinking": {"type": "enabled", "budget_tokens": "x"}},
        "thinking.budget_tokens",
        TYPE,
    ),
    (
        "thinking budget 0",
        {**BASE, "thinking": {"type": "enabled", "budget_tokens": 0}},
        "thinking.budget_tokens",
        VALUE,
    ),
    ("thinking type", {**BASE, "thinking": {"type": "deep"}}, "thinking.type", UNSUPPORTED),
    ("output_config list", {**BASE, "output_config": []}, "output_config", TYPE),
    ("effort", {**BASE, "output_config": {"effort": "extreme"}}, "output_config.effort", UNSUPPORTED),
    ("format type", {**BASE, "output_config": {"format": {"type": "regex"}}}, "output_config.format.type", UNSUPPORTED),
    (
        "format schema",
        {**BASE, "output_config": {"format": {"type": "json_schema", "schema": []}}},
        "output_config.format.schema",
        TYPE,
    ),
    ("tools object", {**BASE, "tools": {}}, "tools", TYPE),
    ("tool not an object", {**BASE, "tools": ["f"]}, "tools.0", TYPE),
    ("tool without schema", {**BASE, "tools": [{"name": "f"}]}, "tools.0.input_schema", MISSING),
    ("tool schema list", {**BASE, "tools": [{"name": "f", "input_schema": []}]}, "tools.0.input_schema", TYPE),
    ("tool name", {**BASE, "tools": [{**TOOL, "name": "a b"}]}, "tools.0.name", VALUE),
    ("tool twice", {**BASE, "tools": [TOOL, TOOL]}, "tools.1.name", VALUE),
    ("tool description", {**BASE, "tools": [{**TOOL, "description": 5}]}, "tools.0.description", TYPE),
    ("tool strict", {**BASE, "tools": [{**TOOL, "strict": "yes"}]}, "tools.0.strict", TYPE),
    (
        "web search",
        {**BASE, "tools": [TOOL, {"type": "web_search_20250305", "name": "web_search"}]},
        "tools.1.type",
        UNSUPPORTED,
    ),
    ("bash", {**BASE, "tools": [{"type": "bash_20250124", "name": "bash"}]}, "tools.0.type", UNSUPPORTED),
    (
        "text editor",
        {**BASE, "tools": [{"type": "text_editor_20250728", "name": "str_replace_based_edit_tool"}]},
        "tools.0.type",
        UNSUPPORTED,
    ),
    ("tool_choice string", {**BASE, "tools": [TOOL], "tool_choice": "auto"}, "tool_choice", TYPE),
    (
        "tool_choice type",
        {**BASE, "tools": [TOOL], "tool_choice": {"type": "sometimes"}},
        "tool_choice.type",
        UNSUPPORTED,
    ),
    (
        "tool_choice name",
        {**BASE, "tools": [TOOL], "tool_choice": {"type": "tool", "name": "g"}},
        "tool_choice.name",
        VALUE,
    ),
    ("tool_choice any without tools", {**BASE, "tool_choice": {"type": "any"}}, "tool_choice.type", VALUE),
    (
        "parallel flag",
        {**BASE, "tools": [TOOL], "tool_choice": {"type": "auto", "disable_parallel_tool_use": "y"}},
        "tool_choice.disable_parallel_tool_use",
        TYPE,
    ),
]


@pytest.mark.parametrize(("body", "param", "code"), [case[1:] for case in BAD], ids=[case[0] for case in BAD])
def test_bad_input_is_refused_naming_the_field(body: Any, param: str, code: str) -> None:
    with pytest.raises(InvalidRequest) as info:
        parse_messages(body)
    err = info.value
    assert (err.param, err.code, err.http_status) == (param, code, 400), err.message


def test_a_server_tool_refusal_names_the_tool() -> None:
    with pytest.raises(InvalidRequest) as info:
        parse_messages({**BASE, "tools": [{"type": "web_search_20250305", "name": "web_search"}]})
    assert "web_search_20250305" in info.value.message and "'web_search'" in info.value.message


def test_count_tokens_needs_no_max_tokens_but_checks_one_given() -> None:
    body = load_json("anthropic/count_tokens_adaptive_thinking_tools.request.json")
    assert "max_tokens" not in parse_count_tokens(body)
    with pytest.raises(InvalidRequest) as info:
        parse_count_tokens({**body, "max_tokens": -1})
    assert info.value.param == "max_tokens"
    with pytest.raises(InvalidRequest) as info:
        parse_messages(body)
    assert (info.value.param, info.value.code) == ("max_tokens", "missing_required_parameter")


# --- non-stream answers ------------------------------------------------------------------

OPENAI = OpenAICompatProvider()
GEMINI = GeminiProvider()
CLAUDE = AnthropicProvider()


def text_of(message: Message) -> str:
    return "".join(b.text for b in message.content if b.type == "text")


def tool_uses(message: Message) -> list[tuple[str, str, object]]:
    return [(b.id, b.name, b.input) for b in message.content if b.type == "tool_use"]


@pytest.mark.parametrize("name", sorted(p.stem for p in ANTHROPIC.glob("messages_*.json") if ".request" not in p.stem))
def test_recorded_anthropic_messages_survive_the_canonical_round_trip(name: str) -> None:
    original = load_json(f"anthropic/{name}.json")
    completion = CLAUDE.chat_response(copy.deepcopy(original), target("anthropic", original["model"]))
    thinking = [b for b in original["content"] if b["type"] in ("thinking", "redacted_thinking")]
    if thinking:
        completion["choices"][0]["message"]["thinking_blocks"] = thinking
    rendered = render_message(completion, "claude-alias")
    message = Message.model_validate(rendered)
    assert rendered["id"] == original["id"] and message.model == "claude-alias"
    assert orjson.dumps(rendered["content"][: len(thinking)]) == orjson.dumps(thinking)
    assert text_of(message) == "".join(b["text"] for b in original["content"] if b["type"] == "text")
    uses = [(b["id"], b["name"], b["input"]) for b in original["content"] if b["type"] == "tool_use"]
    assert tool_uses(message) == uses
    assert message.stop_reason == original["stop_reason"]
    usage = original["usage"]
    assert message.usage.output_tokens == usage["output_tokens"]
    assert message.usage.cache_read_input_tokens == usage["cache_read_input_tokens"]
    assert message.usage.cache_creation_input_tokens == usage["cache_creation_input_tokens"]
    assert message.usage.input_tokens == usage["input_tokens"]


def test_cache_writes_in_the_canonical_usage_are_reported_apart() -> None:
    original = load_json("anthropic/messages_cache_control_top_level.json")
    completion = CLAUDE.chat_response(copy.deepcopy(original), target("anthropic", original["model"]))
    created = original["usage"]["cache_creation_input_tokens"]
    completion["usage"]["prompt_tokens_details"]["cache_write_tokens"] = created
    usage = Message.model_validate(render_message(completion, "claude")).usage
    assert (usage.input_tokens, usage.cache_read_input_tokens, usage.cache_creation_input_tokens) == (
        original["usage"]["input_tokens"],
        original["usage"]["cache_read_input_tokens"],
        created,
    )


@pytest.mark.parametrize(
    ("provider", "path"),
    [
        ("openai", "openai/chat_completion_tool_call.json"),
        ("openai", "openai/chat_completion_text_after_tool_result.json"),
        ("openai", "openai_compatible/ollama_cloud_tool_call.json"),
        ("gemini", "gemini/generate_content_text.json"),
        ("gemini", "gemini/generate_content_function_call.json"),
        ("gemini", "gemini/generate_content_thinking_budget_1024.json"),
    ],
)
def test_openai_and_gemini_answers_render_as_valid_messages(provider: str, path: str) -> None:
    if provider == "openai":
        completion = OPENAI.chat_response(load_json(path), target("openai", "gpt"))
    else:
        completion = GEMINI.chat_response(load_json(path), target("gemini", "gemini-2.5-flash"))
    choice = completion["choices"][0]
    message = Message.model_validate(render_message(completion, "alias"))
    assert text_of(message) == (choice["message"].get("content") or "")
    calls = choice["message"].get("tool_calls") or []
    expected = [(c["id"], c["function"]["name"], json.loads(c["function"]["arguments"])) for c in calls]
    assert tool_uses(message) == expected
    assert message.stop_reason == ("tool_use" if calls else "end_turn")
    reasoning = choice["message"].get("reasoning_content")
    thinking = [(b.thinking, b.signature) for b in message.content if b.type == "thinking"]
    assert thinking == ([(reasoning, "")] if reasoning else [])  # another provider's reasoning: unsigned
    if calls and not choice["message"].get("content"):
        assert [b.type for b in message.content] == ["thinking"] * len(thinking) + ["tool_use"] * len(calls)
    usage = completion["usage"]
    cached = (usage.get("prompt_tokens_details") or {}).get("cached_tokens") or 0
    assert (message.usage.input_tokens, message.usage.output_tokens) == (
        usage["prompt_tokens"] - cached,
        usage["completion_tokens"],
    )
    assert message.id.startswith("msg_")


@pytest.mark.parametrize(
    ("finish", "stop"),
    [("stop", "end_turn"), ("length", "max_tokens"), ("content_filter", "refusal"), (None, "end_turn")],
)
def test_finish_reasons_become_stop_reasons(finish: str | None, stop: str) -> None:
    completion = OPENAI.chat_response(
        load_json("openai/chat_completion_text_after_tool_result.json"), target("openai", "gpt")
    )
    completion["choices"][0]["finish_reason"] = finish
    assert render_message(completion, "m")["stop_reason"] == stop


def test_a_refusal_is_the_text_and_an_empty_answer_one_empty_text_block() -> None:
    completion = OPENAI.chat_response(
        load_json("openai/chat_completion_text_after_tool_result.json"), target("openai", "gpt")
    )
    message = completion["choices"][0]["message"]
    message.update(content=None, refusal="I can't help with that.")
    completion["choices"][0]["finish_reason"] = "content_filter"
    rendered = render_message(completion, "m")
    assert (rendered["content"], rendered["stop_reason"]) == (
        [{"type": "text", "text": "I can't help with that."}],
        "refusal",
    )
    message.update(content="", refusal=None)
    assert render_message(completion, "m")["content"] == [{"type": "text", "text": ""}]


@pytest.mark.parametrize("arguments", ["[1, 2]", "not json", "42"])
def test_tool_arguments_that_are_not_an_object_are_a_bad_upstream_answer(arguments: str) -> None:
    completion = OPENAI.chat_response(load_json("openai/chat_completion_tool_call.json"), target("openai", "gpt"))
    call = completion["choices"][0]["message"]["tool_calls"][0]
    call["function"]["arguments"] = arguments
    with pytest.raises(UpstreamBadResponse) as info:
        render_message(completion, "m")
    assert repr(call["function"]["name"]) in info.value.message


def test_empty_arguments_are_an_empty_input_and_a_call_needs_an_id() -> None:
    completion = OPENAI.chat_response(load_json("openai/chat_completion_tool_call.json"), target("openai", "gpt"))
    call = completion["choices"][0]["message"]["tool_calls"][0]
    call["function"]["arguments"] = ""
    assert render_message(completion, "m")["content"][-1]["input"] == {}
    call["id"] = None
    with pytest.raises(UpstreamBadResponse):
        render_message(completion, "m")


def test_an_answer_without_a_message_is_a_bad_upstream_answer() -> None:
    answers: list[JSON] = [{"choices": []}, {"choices": [{"message": None}]}, {}]
    for completion in answers:
        with pytest.raises(UpstreamBadResponse):
            render_message(completion, "m")


def test_message_ids() -> None:
    novita = load_bytes("openai_compatible/novita_stream_via_hf_router.sse").split(b"\n")[0]
    novita_id = json.loads(novita[len(b"data: ") :])["id"]
    gemini = GEMINI.chat_response(load_json("gemini/generate_content_text.json"), target("gemini", "g"))
    openai = OPENAI.chat_response(load_json("openai/chat_completion_tool_call.json"), target("openai", "gpt"))
    completion = {**openai, "id": novita_id}
    assert render_message(completion, "m")["id"] == "msg_" + novita_id
    hashed = render_message(gemini, "m")["id"]  # a Gemini responseId is not hex: a stable hash of it
    assert hashed == render_message(gemini, "m")["id"] and len(hashed) == len("msg_") + 32
    assert render_message({**gemini, "id": "chatcmpl-" + "00ff" * 3}, "m")["id"] == "msg_" + "00ff" * 3
    first, again = render_message(openai, "m")["id"], render_message(openai, "m")["id"]
    assert first == again and first.startswith("msg_") and openai["id"] not in first


# --- streams -------------------------------------------------------------------------------


def batches(decoder: StreamDecoder, raw: bytes, seed: int) -> list[list[JSON]]:
    """The canonical chunks of a recorded stream, one batch per network read."""
    parser = SSEParser()
    out = [[c for e in parser.feed(piece) for c in decoder.on_event(e)] for piece in random_pieces(raw, seed, 64)]
    out.append([c for e in parser.close() for c in decoder.on_event(e)] + decoder.finish())
    return out


def encode(chunk_batches: list[list[JSON]], input_tokens: int = 7) -> bytes:
    stream = MessagesStream("claude-alias", input_tokens)
    return b"".join(stream.chunks(batch) for batch in chunk_batches) + stream.finish()


def events(raw: bytes) -> list[SSEEvent]:
    parser = SSEParser()
    return [*parser.feed(raw), *parser.close()]


def shape(raw: bytes) -> list[str]:
    """Each event as ``name[:index][:block or delta type]``; checks ``type`` repeats the name."""
    out = []
    for event in events(raw):
        data = json.loads(event.data)
        assert data["type"] == event.event
        inner = data.get("content_block") or data.get("delta") or {}
        parts = [event.event, str(data["index"]) if "index" in data else "", inner.get("type", "")]
        out.append(":".join(p for p in parts if p))
    return out


def canonical_totals(chunk_batches: list[list[JSON]]) -> tuple[str, list[tuple[str, str, object]], JSON | None]:
    text, usage = "", None
    calls: dict[int, list[Any]] = {}
    for chunk in (c for batch in chunk_batches for c in batch):
        usage = chunk.get("usage") or usage
        for choice in chunk["choices"]:
            text += choice["delta"].get("content") or ""
            for call in choice["delta"].get("tool_calls") or ():
                entry = calls.setdefault(call["index"], [call.get("id"), call["function"].get("name"), ""])
                entry[2] += call["function"].get("arguments") or ""
    return text, [(i, n, json.loads(a or "{}")) for i, n, a in calls.values()], usage


STREAMS = [
    ("openai", "openai/chat_stream_text_include_usage.sse"),
    ("openai", "openai/chat_stream_tool_call_include_usage.sse"),
    ("openai", "openai_compatible/novita_stream_via_hf_router.sse"),
    ("gemini", "gemini/stream_text_three_chunks.sse"),
    ("gemini", "gemini/stream_function_call.sse"),
    ("gemini", "gemini/stream_function_call_thought_signature.sse"),
    ("gemini", "gemini/stream_text_multi_chunk_after_function_response.sse"),
]


@pytest.mark.parametrize(("provider", "path"), STREAMS)
@pytest.mark.parametrize("seed", [1, 2])
def test_recorded_openai_and_gemini_streams_read_back_through_the_sdk(provider: str, path: str, seed: int) -> None:
    decoder: StreamDecoder = OpenAIStreamDecoder() if provider == "openai" else GeminiStreamDecoder("gemini")
    chunk_batches = batches(decoder, load_bytes(path), seed)
    text, calls, usage = canonical_totals(chunk_batches)
    assert usage is not None
    message = sdk_stream(encode(chunk_batches))
    assert text_of(message) == text
    assert tool_uses(message) == calls
    assert message.stop_reason == ("tool_use" if calls else "end_turn")
    cached = (usage.get("prompt_tokens_details") or {}).get("cached_tokens") or 0
    assert (message.usage.input_tokens, message.usage.output_tokens) == (
        usage["prompt_tokens"] - cached,
        usage["completion_tokens"],
    )
    assert message.model == "claude-alias"


@pytest.mark.parametrize(("provider", "path"), STREAMS)
def test_every_event_is_the_bytes_its_dict_renders_to(provider: str, path: str) -> None:
    """Text deltas are rendered from fixed parts (the fast path): each event must be exactly
    what ``sse()`` makes of its parsed data, for the recorded streams and for pieces of text
    that need escaping (quotes, control characters, backslashes, non-ASCII)."""
    decoder: StreamDecoder = OpenAIStreamDecoder() if provider == "openai" else GeminiStreamDecoder("gemini")
    pieces = ['a "q"', "\n\t\\", "é ✓ 😀", "</script>"]
    tricky = [[{"choices": [{"index": 0, "delta": {"content": piece}}]}] for piece in pieces]
    for raw in (encode(batches(decoder, load_bytes(path), 1)), encode(tricky)):
        kinds = set()
        for event in events(raw):
            data = json.loads(event.data)
            kinds.add(f"{data['type']}:{data.get('delta', {}).get('type')}")
            assert sse(event.event, data) == b"event: %s\ndata: %s\n\n" % (event.event.encode(), event.data.encode())
        assert kinds & {"content_block_delta:text_delta", "content_block_delta:input_json_delta"}
    texts = [json.loads(e.data)["delta"]["text"] for e in events(encode(tricky)) if e.event == "content_block_delta"]
    assert texts == pieces


def test_a_tool_call_stream_has_the_exact_event_sequence() -> None:
    chunk_batches = batches(OpenAIStreamDecoder(), load_bytes("openai/chat_stream_tool_call_include_usage.sse"), 3)
    got = shape(encode(chunk_batches))
    deltas = [s for s in got if s.startswith("content_block_delta")]
    assert got == [
        "message_start",
        "ping",
        "content_block_start:0:tool_use",
        *deltas,
        "content_block_stop:0",
        "message_delta",
        "message_stop",
    ]
    assert deltas and set(deltas) == {"content_block_delta:0:input_json_delta"}


@pytest.mark.parametrize(
    "name",
    [
        "stream_text",
        "stream_tool_use_with_server_tool_search",
        "stream_text_after_tool_result",
        "stream_client_tool_use_vercel.derived",
        "stream_thinking_signature_delta",
        "stream_redacted_thinking",
    ],
)
def test_recorded_anthropic_streams_survive_the_canonical_round_trip(name: str) -> None:
    raw = load_bytes(f"anthropic/{name}.sse")
    original = sdk_stream(raw)
    ours = encode(batches(AnthropicStreamDecoder("claude"), raw, 5))
    message = sdk_stream(ours)
    assert text_of(message) == text_of(original)
    assert tool_uses(message) == [(i, n, x) for i, n, x in tool_uses(original) if not i.startswith("srvtoolu_")]
    assert message.stop_reason == original.stop_reason
    assert message.usage.output_tokens == original.usage.output_tokens
    assert message.usage.cache_read_input_tokens == (original.usage.cache_read_input_tokens or 0)
    assert message.usage.input_tokens == original.usage.input_tokens
    thinking = [b.model_dump() for b in message.content if b.type in ("thinking", "redacted_thinking")]
    assert thinking == [b.model_dump() for b in original.content if b.type in ("thinking", "redacted_thinking")]
    if name == "stream_tool_use_with_server_tool_search":  # text, then a tool call: two blocks
        assert [b.type for b in message.content] == ["text", "tool_use"]
        assert [s for s in shape(ours) if "start" in s or "stop:" in s][1:] == [
            "content_block_start:0:text",
            "content_block_stop:0",
            "content_block_start:1:tool_use",
            "content_block_stop:1",
        ]


def gemini_with_thoughts(raw: bytes) -> list[list[JSON]]:
    """The Gemini thinking stream as canonical chunks: its thought parts are ``reasoning_content``."""
    decoder = GeminiStreamDecoder("gemini-2.5-pro")
    out = [decoder.on_event(event) for event in sse_events([raw])]
    out.append(decoder.finish())
    return out


def test_reasoning_content_streams_as_a_thinking_block_without_a_signature() -> None:
    raw = load_bytes("gemini/stream_thinking_thought_parts.sse")
    chunk_batches = gemini_with_thoughts(raw)
    thoughts = "".join(
        p["text"]
        for e in sse_events([raw])
        for p in json.loads(e.data)["candidates"][0]["content"]["parts"]
        if p.get("thought")
    )
    message = sdk_stream(encode(chunk_batches))
    assert [b.type for b in message.content] == ["thinking", "text"]
    thinking = message.content[0]
    assert thinking.type == "thinking" and (thinking.thinking, thinking.signature) == (thoughts, "")
    assert text_of(message) == canonical_totals(chunk_batches)[0] != ""
    assert "signature_delta" not in "".join(shape(encode(chunk_batches)))


def test_a_stream_without_usage_reports_the_estimate_and_no_output() -> None:
    chunk_batches = batches(OpenAIStreamDecoder(), load_bytes("openai/chat_stream_text_include_usage.sse"), 4)
    without = [[c for c in batch if c["choices"]] for batch in chunk_batches]
    raw = encode(without, input_tokens=123)
    start = json.loads(events(raw)[0].data)
    assert start["message"]["usage"]["input_tokens"] == 123
    message = sdk_stream(raw)
    assert (message.usage.input_tokens, message.usage.output_tokens) == (123, 0)
    assert text_of(message) == canonical_totals(chunk_batches)[0]


def test_an_empty_stream_still_makes_a_whole_message() -> None:
    stream = MessagesStream("claude-alias", 3)
    raw = stream.finish()
    assert shape(raw) == [
        "message_start",
        "ping",
        "content_block_start:0:text",
        "content_block_stop:0",
        "message_delta",
        "message_stop",
    ]
    assert text_of(sdk_stream(raw)) == ""
    assert stream.finish() == b"" and stream.chunks([]) == b""


def test_a_broken_stream_ends_with_an_error_event_the_sdk_raises() -> None:
    chunk_batches = batches(OpenAIStreamDecoder(), load_bytes("openai/chat_stream_text_include_usage.sse"), 6)
    stream = MessagesStream("claude-alias", 3)
    raw = stream.chunks(chunk_batches[0] + chunk_batches[1]) + stream.error(
        UpstreamError("Overloaded", upstream_status=529)
    )
    assert stream.finish() == b"" and stream.error(UpstreamError("again", upstream_status=500)) == b""
    last = events(raw)[-1]
    assert last.event == "error"
    entries = load_json("anthropic/reported_error_bodies.json")["entries"]
    reported = next(e["sse_error_event"] for e in entries if "sse_error_event" in e)
    assert (f"event: {last.event}", json.loads(last.data)) == (
        reported.split("\n")[0],
        json.loads(reported.split("data: ", 1)[1]),
    )
    with pytest.raises(anthropic.APIStatusError) as info:
        sdk_stream(raw)
    assert isinstance(info.value.body, dict) and info.value.body["error"]["type"] == "overloaded_error"


# --- errors ---------------------------------------------------------------------------------------

ERRORS: list[tuple[GatewayError, int, str, type[anthropic.APIStatusError]]] = [
    (InvalidRequest("bad field", param="x"), 400, "invalid_request_error", anthropic.BadRequestError),
    (AuthenticationFailed("no key"), 401, "authentication_error", anthropic.AuthenticationError),
    (PermissionDenied("not yours"), 403, "permission_error", anthropic.PermissionDeniedError),
    (NotFound("no such model"), 404, "not_found_error", anthropic.NotFoundError),
    (RequestTooLarge("too big"), 413, "request_too_large", anthropic.ContentTooLargeError),
    (RateLimited("slow down", retry_after=2), 429, "rate_limit_error", anthropic.RateLimitError),
    (BudgetExceeded("budget spent"), 429, "rate_limit_error", anthropic.RateLimitError),
    (UpstreamError("Overloaded", upstream_status=529), 529, "overloaded_error", anthropic.OverloadedError),
    (
        UpstreamError("The engine is currently overloaded", upstream_status=503),
        529,
        "overloaded_error",
        anthropic.OverloadedError,
    ),
    (
        AllDeploymentsFailed([AttemptFailure("a", UpstreamError("Overloaded", upstream_status=529))]),
        529,
        "overloaded_error",
        anthropic.OverloadedError,
    ),
    (GatewayError("boom"), 500, "api_error", anthropic.InternalServerError),
    (UpstreamError("upstream broke", upstream_status=500), 500, "api_error", anthropic.InternalServerError),
    (UpstreamBadResponse("garbage"), 502, "api_error", anthropic.InternalServerError),
    (UpstreamError("bad deployment key", upstream_status=401), 502, "api_error", anthropic.InternalServerError),
    (NoDeploymentAvailable("none up"), 503, "api_error", anthropic.ServiceUnavailableError),
    (UpstreamError("unavailable", upstream_status=503), 503, "api_error", anthropic.ServiceUnavailableError),
    (UpstreamTimeout("too slow"), 504, "api_error", anthropic.InternalServerError),
]


@pytest.mark.parametrize(
    ("err", "status", "etype", "exc"), ERRORS, ids=[f"{e[1]}-{type(e[0]).__name__}" for e in ERRORS]
)
def test_errors_raise_the_sdks_typed_exceptions(
    err: GatewayError, status: int, etype: str, exc: type[anthropic.APIStatusError]
) -> None:
    code, body = render_error(err)
    assert code == status
    # Anthropic's envelope has no param: a field the message does not name goes first in it.
    message = f"{err.param}: {err.message}" if err.param and err.param not in err.message else err.message
    assert json.loads(body) == {"type": "error", "error": {"type": etype, "message": message}}
    client = sdk(lambda request: httpx2.Response(code, headers={"content-type": "application/json"}, content=body))
    with pytest.raises(exc) as info:
        client.messages.create(model="m", max_tokens=5, messages=[{"role": "user", "content": "hi"}])
    assert info.value.status_code == status
    if status == 529:
        assert isinstance(info.value, anthropic.OverloadedError)


def test_error_types_match_anthropics_table() -> None:
    entries = load_json("anthropic/reported_error_bodies.json")["entries"]
    table = next(e["status_type_table"] for e in entries if "status_type_table" in e)
    by_status = {status: etype for _, status, etype, _ in ERRORS}
    assert {str(s): t for s, t in by_status.items() if str(s) in table} == table


# --- same-format pass-through -----------------------------------------------------------------


def test_native_policy_fills_defaults_caps_and_leaves_the_rest_alone() -> None:
    body = load_json("anthropic/messages_thinking_signature_replay_tool_result.request.json")
    before = copy.deepcopy(body)
    params = Params(
        defaults={"temperature": 0.5, "stop": "END", "presence_penalty": 1, "max_tokens": 9},
        max_tokens_cap=1000,
    )
    out = apply_native(body, "claude-sonnet-4-0-upstream", params, frozenset())
    assert body == before and out is not body
    assert out["model"] == "claude-sonnet-4-0-upstream"
    assert (out["temperature"], out["stop_sequences"], out["max_tokens"]) == (0.5, ["END"], 1000)
    assert "presence_penalty" not in out and "stop" not in out
    assert orjson.dumps(out["messages"]) == orjson.dumps(before["messages"])  # signatures byte for byte
    assert {k: v for k, v in out.items() if k not in ("model", "temperature", "stop_sequences", "max_tokens")} == {
        k: v for k, v in before.items() if k not in ("model", "max_tokens")
    }


def test_native_policy_clamps_ranges_and_drops_by_canonical_name() -> None:
    body = load_json("anthropic/messages_text_with_sampling.request.json")
    body["stop_sequences"] = ["END"]
    params = Params(ranges={"temperature": [0.5, 1.0], "top_k": [1, 10], "max_completion_tokens": [1, 100]})
    out = apply_native(body, "m", params, frozenset())
    assert (out["temperature"], out["top_k"], out["max_tokens"]) == (0.5, 10, 100)
    assert isinstance(out["top_k"], int) and isinstance(out["max_tokens"], int)
    drop = frozenset({"stop", "temperature", "max_completion_tokens", "model", "messages"})
    out = apply_native(body, "m", Params(), drop)
    assert "stop_sequences" not in out and "temperature" not in out
    assert (out["model"], out["max_tokens"], out["messages"]) == ("m", body["max_tokens"], body["messages"])


def test_native_keeps_cache_control_and_the_clients_own_values() -> None:
    body = load_json("anthropic/messages_cache_control_top_level.request.json")
    body["temperature"] = 0.1
    out = apply_native(body, "m", Params(defaults={"temperature": 0.9}), frozenset({"top_k"}))
    assert out["cache_control"] == {"ttl": "5m", "type": "ephemeral"} and out["temperature"] == 0.1
    counted = load_json("anthropic/count_tokens_adaptive_thinking_tools.request.json")
    assert "max_tokens" not in apply_native(counted, "m", Params(max_tokens_cap=10), frozenset())


# --- models and token counts ------------------------------------------------------------------


def test_model_list_reads_back_through_the_sdk() -> None:
    created = 1_767_225_600
    listing = orjson.dumps(model_list(["claude-a", "claude-b"], created))
    client = sdk(lambda request: httpx2.Response(200, headers={"content-type": "application/json"}, content=listing))
    page = client.models.list()
    assert [m.id for m in page.data] == ["claude-a", "claude-b"]
    assert (page.first_id, page.last_id, page.has_more) == ("claude-a", "claude-b", False)
    card = ModelInfo.model_validate(model_card("claude-a", created))
    assert card.created_at == datetime.fromtimestamp(created, UTC) and card.display_name == "claude-a"
    assert model_list([], created) == {"data": [], "has_more": False, "first_id": None, "last_id": None}


def test_count_tokens_body() -> None:
    recorded = load_json("anthropic/count_tokens_adaptive_thinking_tools.json")
    assert count_tokens_body(recorded["input_tokens"], estimated=False) == recorded
    estimate = count_tokens_body(12, estimated=True)
    assert estimate == {"input_tokens": 12, "estimated": True}
    assert MessageTokensCount.model_validate(estimate).input_tokens == 12
