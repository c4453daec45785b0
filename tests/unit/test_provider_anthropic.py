"""The Anthropic translator, driven by the recorded fixtures in shared/fixtures.

The helpers at the top (fixture loading, SSE feeding in random splits, chunk
reassembly) are provider-neutral and may be copied for other providers.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import orjson
import pytest

from gateway.canonical import JSON
from gateway.errors import InvalidRequest, UpstreamBadResponse, UpstreamError
from gateway.providers.anthropic import AnthropicProvider
from gateway.providers.base import Provider, SSEEvent, StreamDecoder, Target, WireRequest
from tests.unit.fixtures import decode_events, load_bytes, load_json, random_pieces, sse_events, user, without

# --- provider-neutral helpers ------------------------------------------------


def without_created(chunks: list[JSON]) -> list[JSON]:
    return [{k: v for k, v in c.items() if k != "created"} for c in chunks]


@dataclass
class Assembled:
    """A canonical chunk stream put back together, the way a client would."""

    role: str | None = None
    text: str = ""
    calls: dict[int, JSON] = field(default_factory=dict)
    finish_reasons: list[str] = field(default_factory=list)
    usage: JSON | None = None


def reassemble(chunks: list[JSON]) -> Assembled:
    out = Assembled()
    for chunk in chunks:
        assert chunk["object"] == "chat.completion.chunk"
        if chunk.get("usage") is not None:
            assert chunk["choices"] == [], "usage must come in the final usage-only chunk"
            out.usage = chunk["usage"]
        for choice in chunk["choices"]:
            _absorb(out, choice)
    return out


def _absorb(out: Assembled, choice: JSON) -> None:
    delta = choice["delta"]
    out.role = delta.get("role", out.role)
    out.text += delta.get("content") or ""
    for call in delta.get("tool_calls", []):
        index = call["index"]
        if index not in out.calls:
            assert call["id"] and call["function"]["name"], "a new tool call must bring its id and name"
            out.calls[index] = {"id": call["id"], "name": call["function"]["name"], "arguments": ""}
        else:
            assert "id" not in call, "id only on a tool call's first chunk"
        out.calls[index]["arguments"] += call["function"].get("arguments", "")
    if choice["finish_reason"] is not None:
        out.finish_reasons.append(choice["finish_reason"])


# --- Anthropic ---------------------------------------------------------------

PROVIDER = AnthropicProvider()
CROSS_MODES = ["tool_choice_auto", "tool_choice_required", "tool_choice_none", "tool_choice_list_single"]


def make_target(model: str = "claude-sonnet-4-5", **kw: Any) -> Target:
    return Target(
        provider="anthropic",
        model=model,
        base_url="https://api.anthropic.com/v1",
        api_key="sk-ant-test",
        auth_header="x-api-key",
        auth_scheme="",
        **kw,
    )


def wire(req: JSON, *, stream: bool = False, **target_kw: Any) -> JSON:
    body = PROVIDER.chat_request(req, make_target(**target_kw), stream=stream).body
    assert body is not None
    parsed: JSON = orjson.loads(body)
    return parsed


def openai_tool(anthropic_tool: JSON) -> JSON:
    fn = {k: anthropic_tool[k] for k in ("name", "description") if k in anthropic_tool}
    return {"type": "function", "function": {**fn, "parameters": anthropic_tool["input_schema"]}}


def test_types_satisfy_the_provider_protocols() -> None:
    provider: Provider = PROVIDER
    decoder: StreamDecoder = provider.stream_decoder(make_target())
    assert provider.kind == "anthropic"
    assert not decoder.done


# --- request translation: recorded ground truth ------------------------------


@pytest.mark.parametrize("mode", CROSS_MODES)
def test_cross_provider_request_matches_recorded_anthropic_request(mode: str) -> None:
    openai_req = load_json(f"cross_provider/{mode}/openai_chat.request.json")
    recorded = load_json(f"cross_provider/{mode}/anthropic.request.json")
    body = wire(openai_req, model=recorded["model"])

    assert body["model"] == recorded["model"] == "claude-sonnet-4-5"
    assert body["max_tokens"] == recorded["max_tokens"] == 4096
    assert body["tool_choice"] == recorded["tool_choice"]
    assert "system" not in body and "system" not in recorded
    assert "stream" not in body  # recorded sends stream: false, Anthropic's default
    expected_messages = copy.deepcopy(recorded["messages"])
    if mode == "tool_choice_none":
        # pydantic-ai asked Anthropic "Say hello" in this mode, OpenAI the weather question.
        assert expected_messages[0]["content"][0]["text"] == "Say hello"
        expected_messages[0]["content"][0]["text"] = openai_req["messages"][0]["content"]
    assert body["messages"] == expected_messages
    assert len(body["tools"]) == len(recorded["tools"]) == len(openai_req["tools"])
    for ours, theirs, source in zip(body["tools"], recorded["tools"], openai_req["tools"], strict=True):
        assert without(ours, "input_schema") == without(theirs, "input_schema")
        # Schemas go through verbatim; pydantic-ai dropped additionalProperties
        # from some recorded Anthropic schemas (its own choice, Anthropic accepts it).
        assert ours["input_schema"] == source["function"]["parameters"]
        assert without(ours["input_schema"], "additionalProperties") == without(
            theirs["input_schema"], "additionalProperties"
        )
        assert "strict" not in ours


def test_tool_choice_table_from_the_cross_provider_readme() -> None:
    tools = [openai_tool({"name": "get_weather", "input_schema": {"type": "object"}})]
    cases = {
        "auto": {"type": "auto"},
        "required": {"type": "any"},
        "none": {"type": "none"},
    }
    for choice, expected in cases.items():
        assert wire({"messages": [user("hi")], "tools": tools, "tool_choice": choice})["tool_choice"] == expected
    forced = {"type": "function", "function": {"name": "get_weather"}}
    body = wire({"messages": [user("hi")], "tools": tools, "tool_choice": forced})
    assert body["tool_choice"] == {"type": "tool", "name": "get_weather"}


@pytest.mark.parametrize("name", ["messages_tool_use", "messages_text_with_sampling", "error_404_not_found_model"])
def test_simple_anthropic_requests_are_reproduced_exactly(name: str) -> None:
    recorded = load_json(f"anthropic/{name}.request.json")
    req: JSON = {"model": "alias", "messages": [user(recorded["messages"][0]["content"][0]["text"])]}
    if name == "messages_tool_use":
        req |= {"tools": [openai_tool(t) for t in recorded["tools"]], "tool_choice": "auto"}
    if name == "messages_text_with_sampling":
        req |= {"temperature": 0.2, "top_k": 40}
    assert wire(req, model=recorded["model"]) == without(recorded, "stream")


def test_parallel_tool_use_request_with_system_prompt() -> None:
    recorded = load_json("anthropic/messages_parallel_tool_use.request.json")
    req = {
        "messages": [
            {"role": "system", "content": recorded["system"]},
            user(recorded["messages"][0]["content"][0]["text"]),
        ],
        "tools": [openai_tool(t) for t in recorded["tools"]],
        "tool_choice": "auto",
    }
    assert wire(req, model="claude-haiku-4-5") == without(recorded, "stream")


def test_mid_conversation_system_message_is_hoisted() -> None:
    # Deliberate difference: the recording kept the late system message inline
    # (claude-opus-4-8 accepts that); most models do not, so it is hoisted.
    recorded = load_json("anthropic/messages_system_role_in_messages.request.json")
    msgs = recorded["messages"]
    req = {
        "messages": [
            {"role": "system", "content": recorded["system"]},
            *({"role": m["role"], "content": m["content"][0]["text"]} for m in msgs),
        ]
    }
    body = wire(req, model=recorded["model"])
    assert body["messages"] == msgs[:3]
    assert body["system"] == [
        {"type": "text", "text": "You are a code reviewer."},
        {"type": "text", "text": "From now on, every suggestion must include explicit type annotations."},
    ]
    assert body["max_tokens"] == recorded["max_tokens"]


def test_stream_text_request() -> None:
    recorded = load_json("anthropic/stream_text.request.json")
    req = {"messages": [user(recorded["messages"][0]["content"][0]["text"])], "max_completion_tokens": 32000}
    assert wire(req, stream=True, model=recorded["model"]) == recorded


@pytest.mark.parametrize("name", ["stream_tool_use_with_server_tool_search", "stream_text_after_tool_result"])
def test_tool_search_requests_without_the_server_tool(name: str) -> None:
    # Deliberate differences: OpenAI cannot express Anthropic's server tool
    # (tool_search_tool_bm25), its blocks in the assistant turn, or defer_loading.
    recorded = load_json(f"anthropic/{name}.request.json")
    function_tools = [t for t in recorded["tools"] if "input_schema" in t]
    req: JSON = {
        "messages": [user("What is the current USD to EUR exchange rate?")],
        "tools": [openai_tool(t) for t in function_tools],
        "tool_choice": "auto",
    }
    if name == "stream_text_after_tool_result":
        req["messages"] += _tool_round_trip(recorded["messages"][1]["content"])
    body = wire(req, stream=True, model=recorded["model"])
    assert body["tools"] == [without(t, "defer_loading") for t in function_tools]
    assert without(body, "tools", "messages") == without(recorded, "tools", "messages")
    expected = copy.deepcopy(recorded["messages"])
    if len(expected) > 1:
        expected[1]["content"] = [b for b in expected[1]["content"] if b["type"] in ("text", "tool_use")]
        expected[2]["content"][0].pop("is_error")
    assert body["messages"] == expected


def _tool_round_trip(assistant_blocks: list[JSON]) -> list[JSON]:
    texts = [{"type": "text", "text": b["text"]} for b in assistant_blocks if b["type"] == "text"]
    uses = [b for b in assistant_blocks if b["type"] == "tool_use"]
    calls = [
        {"id": b["id"], "type": "function", "function": {"name": b["name"], "arguments": json.dumps(b["input"])}}
        for b in uses
    ]
    result = {"role": "tool", "tool_call_id": uses[0]["id"], "content": [{"type": "text", "text": "1 USD = 0.92 EUR"}]}
    return [{"role": "assistant", "content": texts, "tool_calls": calls}, result]


@pytest.mark.parametrize("name", ["error_400_invalid_request", "error_404_not_found_model"])
def test_error_fixture_requests(name: str) -> None:
    recorded = load_json(f"anthropic/{name}.request.json")
    parts = recorded["messages"][0]["content"]
    # output_config.effort without thinking has no canonical source (reasoning: test_anthropic_reasoning.py).
    body = wire({"messages": [{"role": "user", "content": parts}]}, model=recorded["model"])
    assert body == without(recorded, "stream", "output_config")


def test_temperature_dropped_by_drop_params() -> None:
    live = load_json("anthropic/opus_4_7_temperature_unsupported_live_vercel.json")
    sent = live["requestBody"]
    req = {"messages": [{"role": "user", "content": sent["messages"][0]["content"]}], "max_tokens": 16}
    req["temperature"] = live["inputTemperature"]
    # claude-opus-4-7 never gets one (test_anthropic_reasoning.py); drop_params does it for any model
    assert wire(req, model="claude-opus-4-6", drop_params=frozenset({"temperature"})) == sent | {
        "model": "claude-opus-4-6"
    }
    assert wire(req, model="claude-opus-4-6")["temperature"] == 0.7


# --- request translation: the rules ------------------------------------------


def test_url_and_headers() -> None:
    wreq: WireRequest = PROVIDER.chat_request({"messages": [user("hi")]}, make_target(), stream=False)
    assert (wreq.method, wreq.url) == ("POST", "https://api.anthropic.com/v1/messages")
    assert wreq.headers == {
        "content-type": "application/json",
        "x-api-key": "sk-ant-test",
        "anthropic-version": "2023-06-01",
    }
    dated = PROVIDER.chat_request({"messages": [user("hi")]}, make_target(api_version="2024-10-22"), stream=False)
    assert dated.headers["anthropic-version"] == "2024-10-22"
    extra = make_target(headers={"anthropic-version": "2025-01-01", "anthropic-beta": "x"})
    headers = PROVIDER.chat_request({"messages": [user("hi")]}, extra, stream=False).headers
    assert headers["anthropic-version"] == "2025-01-01" and headers["anthropic-beta"] == "x"


def test_system_forms() -> None:
    body = wire({"messages": [{"role": "developer", "content": "Be brief."}, user("hi")]})
    assert body["system"] == "Be brief."
    parts = [{"type": "text", "text": "A"}, {"type": "text", "text": "B", "cache_control": {"type": "ephemeral"}}]
    body = wire({"messages": [{"role": "system", "content": parts}, user("hi")]})
    assert body["system"] == [{"type": "text", "text": "A"}, parts[1]]
    image = {"type": "image_url", "image_url": {"url": "https://x/y.png"}}
    with pytest.raises(InvalidRequest) as exc:
        wire({"messages": [{"role": "system", "content": [image]}, user("hi")]})
    assert exc.value.param == "messages[0].content"


def test_consecutive_turns_merge_and_tool_results_share_one_user_turn() -> None:
    calls = [
        {"id": "call_1", "type": "function", "function": {"name": "f", "arguments": '{"a": 1}'}},
        {"id": "call_2", "type": "function", "function": {"name": "g", "arguments": ""}},
    ]
    body = wire(
        {
            "messages": [
                user("one"),
                user("two"),
                {"role": "assistant", "content": None, "tool_calls": calls},
                {"role": "tool", "tool_call_id": "call_1", "content": "r1"},
                {"role": "tool", "tool_call_id": "call_2", "content": ""},
                user("next"),
            ]
        }
    )
    assert body["messages"] == [
        {"role": "user", "content": [{"type": "text", "text": "one"}, {"type": "text", "text": "two"}]},
        {
            "role": "assistant",
            "content": [
                {"type": "tool_use", "id": "call_1", "name": "f", "input": {"a": 1}},
                {"type": "tool_use", "id": "call_2", "name": "g", "input": {}},
            ],
        },
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": "call_1", "content": "r1"},
                {"type": "tool_result", "tool_use_id": "call_2"},
                {"type": "text", "text": "next"},
            ],
        },
    ]


@pytest.mark.parametrize("arguments", ["{not json", "[1, 2]", "3"])
def test_invalid_tool_call_arguments_name_the_param(arguments: str) -> None:
    call = {"id": "c", "type": "function", "function": {"name": "f", "arguments": arguments}}
    with pytest.raises(InvalidRequest) as exc:
        wire({"messages": [user("q"), {"role": "assistant", "tool_calls": [call]}]})
    assert exc.value.param == "messages[1].tool_calls[0].function.arguments"
    assert (exc.value.http_status, exc.value.code) == (400, "invalid_value")


def test_content_parts() -> None:
    parts = [
        {"type": "text", "text": "look"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
        {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg", "detail": "high"}},
        {"type": "file", "file": {"file_data": "data:application/pdf;base64,JVBERi0x", "filename": "a.pdf"}},
    ]
    assert wire({"messages": [{"role": "user", "content": parts}]})["messages"][0]["content"] == [
        {"type": "text", "text": "look"},
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}},
        {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.jpg"}},
        {"type": "document", "source": {"type": "base64", "media_type": "application/pdf", "data": "JVBERi0x"}},
    ]


@pytest.mark.parametrize(
    ("part", "param", "code"),
    [
        (
            {"type": "image_url", "image_url": {"url": "ftp://x/y.png"}},
            "messages[0].content[0].image_url",
            "invalid_value",
        ),
        (
            {"type": "image_url", "image_url": {"url": "data:image/png,abc"}},
            "messages[0].content[0].image_url",
            "invalid_value",
        ),
        ({"type": "image_url", "image_url": {}}, "messages[0].content[0].image_url", "missing_required_parameter"),
        (
            {"type": "input_audio", "input_audio": {"data": "x", "format": "wav"}},
            "messages[0].content[0]",
            "unsupported_value",
        ),
        ({"type": "file", "file": {"file_id": "file-1"}}, "messages[0].content[0].file", "unsupported_value"),
        ({"type": "text", "text": 3}, "messages[0].content[0]", "invalid_type"),
    ],
)
def test_unsupported_parts_are_invalid_requests(part: JSON, param: str, code: str) -> None:
    with pytest.raises(InvalidRequest) as exc:
        wire({"messages": [{"role": "user", "content": [part]}]})
    assert (exc.value.param, exc.value.code) == (param, code)


def test_sampling_parameters() -> None:
    body = wire(
        {
            "messages": [user("hi")],
            "max_tokens": 100,
            "max_completion_tokens": 200,
            "temperature": 1.7,
            "top_p": 0.9,
            "top_k": 5,
            "stop": "END",
            "user": "user-42",
        }
    )
    assert body["max_tokens"] == 200
    assert body["temperature"] == 1.0
    assert (body["top_p"], body["top_k"]) == (0.9, 5)
    assert body["stop_sequences"] == ["END"]
    assert body["metadata"] == {"user_id": "user-42"}
    body = wire({"messages": [user("hi")], "temperature": -0.5, "stop": ["a", "b"], "max_tokens": 9})
    assert (body["temperature"], body["stop_sequences"], body["max_tokens"]) == (0.0, ["a", "b"], 9)


@pytest.mark.parametrize(
    ("extra", "param", "code"),
    [
        ({"max_tokens": 0}, "max_tokens", "invalid_value"),
        ({"temperature": "hot"}, "temperature", "invalid_type"),
        ({"stop": [1]}, "stop", "invalid_type"),
        ({"tools": "f"}, "tools", "invalid_type"),
        ({"tools": [{"type": "web_search"}]}, "tools[0]", "unsupported_value"),
        ({"response_format": {"type": "yaml"}}, "response_format", "invalid_value"),
    ],
)
def test_invalid_sampling_values(extra: JSON, param: str, code: str) -> None:
    with pytest.raises(InvalidRequest) as exc:
        wire({"messages": [user("hi")], **extra})
    assert (exc.value.param, exc.value.code) == (param, code)


def test_n_greater_than_one_is_refused() -> None:
    with pytest.raises(InvalidRequest) as exc:
        wire({"messages": [user("hi")], "n": 2})
    assert (exc.value.message, exc.value.param) == ("n > 1 is not supported by anthropic", "n")
    assert "n" not in wire({"messages": [user("hi")], "n": 1})


def test_openai_only_params_are_dropped_silently() -> None:
    req = {
        "model": "alias",
        "messages": [user("hi")],
        "stream": True,
        "stream_options": {"include_usage": True},
        "seed": 1,
        "logit_bias": {"50256": -100},
        "frequency_penalty": 0.5,
        "presence_penalty": 0.5,
        "logprobs": True,
        "top_logprobs": 3,
        "service_tier": "auto",
        "metadata": {"k": "v"},
    }
    assert wire(req) == {"model": "claude-sonnet-4-5", "max_tokens": 4096, "messages": wire(req)["messages"]}
    assert wire(req, stream=True)["stream"] is True


def test_parallel_tool_calls_false() -> None:
    tools = [openai_tool({"name": "f", "input_schema": {"type": "object"}})]
    base = {"messages": [user("hi")], "tools": tools, "parallel_tool_calls": False}
    assert wire(base)["tool_choice"] == {"type": "auto", "disable_parallel_tool_use": True}
    assert wire(base | {"tool_choice": "required"})["tool_choice"] == {"type": "any", "disable_parallel_tool_use": True}
    assert wire(base | {"tool_choice": "none"})["tool_choice"] == {"type": "none"}
    assert "tool_choice" not in wire({"messages": [user("hi")], "tool_choice": "auto"})  # no tools
    with pytest.raises(InvalidRequest) as exc:
        wire(base | {"tool_choice": "sometimes"})
    assert exc.value.param == "tool_choice"


def test_response_format() -> None:
    schema = {"type": "object", "properties": {"a": {"type": "string"}}, "required": ["a"]}
    rf = {"type": "json_schema", "json_schema": {"name": "x", "schema": schema, "strict": True}}
    body = wire({"messages": [user("hi")], "response_format": rf})
    assert body["output_config"] == {"format": {"type": "json_schema", "schema": schema}}
    body = wire(
        {"messages": [{"role": "system", "content": "S"}, user("hi")], "response_format": {"type": "json_object"}}
    )
    assert body["system"][0] == {"type": "text", "text": "S"}
    assert "JSON object" in body["system"][1]["text"] and "output_config" not in body
    assert "output_config" not in wire({"messages": [user("hi")], "response_format": {"type": "text"}})
    with pytest.raises(InvalidRequest) as exc:
        wire({"messages": [user("hi")], "response_format": {"type": "json_schema", "json_schema": {"name": "x"}}})
    assert exc.value.param == "response_format"


def test_drop_params_apply_to_canonical_and_wire_names() -> None:
    req = {"messages": [user("hi")], "temperature": 0.5, "stop": "x", "max_tokens": 50, "top_k": 3}
    body = wire(req, drop_params=frozenset({"temperature", "stop_sequences", "max_tokens", "messages"}))
    # model, messages and max_tokens are required by Anthropic: never dropped.
    assert body == {"model": "claude-sonnet-4-5", "max_tokens": 50, "messages": body["messages"], "top_k": 3}
    assert body["messages"] == [{"role": "user", "content": [{"type": "text", "text": "hi"}]}]


@pytest.mark.parametrize(
    ("messages", "param", "code"),
    [
        ([], "messages", "invalid_value"),
        ([{"role": "function", "content": "x"}], "messages[0].role", "unsupported_value"),
        (["x"], "messages[0]", "invalid_type"),
        ([{"role": "user", "content": 5}], "messages[0].content", "invalid_type"),
        ([{"role": "tool", "content": "r"}], "messages[0].tool_call_id", "missing_required_parameter"),
        ([{"role": "assistant", "tool_calls": "f"}], "messages[0].tool_calls", "invalid_type"),
        (
            [{"role": "assistant", "tool_calls": [{"function": {}}]}],
            "messages[0].tool_calls[0].function",
            "missing_required_parameter",
        ),
        (
            [{"role": "assistant", "tool_calls": [{"function": {"name": "f"}}]}],
            "messages[0].tool_calls[0].id",
            "missing_required_parameter",
        ),
    ],
)
def test_invalid_messages(messages: list[Any], param: str, code: str) -> None:
    with pytest.raises(InvalidRequest) as exc:
        wire({"messages": messages})
    assert (exc.value.param, exc.value.code) == (param, code)


def test_no_embeddings() -> None:
    with pytest.raises(InvalidRequest) as exc:
        PROVIDER.embed_request({"model": "m", "input": "x"}, make_target())
    assert (exc.value.message, exc.value.param) == ("anthropic has no embeddings API", "model")


# --- response translation ----------------------------------------------------

# fixture -> (finish_reason, prompt_tokens, completion_tokens, tool calls)
RESPONSES: dict[str, tuple[str, int, int, int]] = {
    "anthropic/messages_text_with_sampling.json": ("stop", 8, 16, 0),
    "anthropic/messages_tool_use.json": ("tool_calls", 572, 53, 1),
    "anthropic/messages_parallel_tool_use.json": ("tool_calls", 423, 202, 4),
    "anthropic/messages_system_role_in_messages.json": ("stop", 68, 355, 0),
    "anthropic/opus_4_7_temperature_unsupported_live_vercel.json": ("stop", 21, 6, 0),
    "cross_provider/tool_choice_auto/anthropic.json": ("tool_calls", 572, 53, 1),
    "cross_provider/tool_choice_required/anthropic.json": ("tool_calls", 655, 38, 1),
    "cross_provider/tool_choice_none/anthropic.json": ("stop", 567, 16, 0),
    "cross_provider/tool_choice_list_single/anthropic.json": ("tool_calls", 713, 33, 1),
}


def _response_fixture(rel: str) -> JSON:
    raw: JSON = load_json(rel)
    return raw["response"]["body"] if "requestBody" in raw else raw


@pytest.mark.parametrize("rel", sorted(RESPONSES))
def test_recorded_responses(rel: str) -> None:
    raw = _response_fixture(rel)
    finish, prompt, completion, n_calls = RESPONSES[rel]
    out = PROVIDER.chat_response(copy.deepcopy(raw), make_target())
    assert (out["id"], out["model"], out["object"]) == (raw["id"], raw["model"], "chat.completion")
    choice = out["choices"][0]
    assert choice["finish_reason"] == finish
    message = choice["message"]
    text = "".join(b["text"] for b in raw["content"] if b["type"] == "text")
    assert message["content"] == (text or None)
    uses = [b for b in raw["content"] if b["type"] == "tool_use"]
    calls = message.get("tool_calls", [])
    assert len(calls) == len(uses) == n_calls
    for call, use in zip(calls, uses, strict=True):
        assert (call["id"], call["type"], call["function"]["name"]) == (use["id"], "function", use["name"])
        assert json.loads(call["function"]["arguments"]) == use["input"]
        compact = json.dumps(use["input"], separators=(",", ":"), ensure_ascii=False)
        assert call["function"]["arguments"] == compact
    usage = out["usage"]
    assert (usage["prompt_tokens"], usage["completion_tokens"]) == (prompt, completion)
    assert usage["total_tokens"] == prompt + completion
    details = {"cached_tokens": 0, "cache_write_tokens": 0}
    if "cache_creation" in raw["usage"]:
        details["cache_write_1h_tokens"] = 0
    assert usage["prompt_tokens_details"] == details


def test_parallel_tool_calls_in_order() -> None:
    out = PROVIDER.chat_response(load_json("anthropic/messages_parallel_tool_use.json"), make_target())
    calls = out["choices"][0]["message"]["tool_calls"]
    assert [c["function"]["arguments"] for c in calls] == [
        '{"name":"Alice"}',
        '{"name":"Bob"}',
        '{"name":"Charlie"}',
        '{"name":"Daisy"}',
    ]


def test_thinking_tokens_become_reasoning_tokens() -> None:
    raw = load_json("anthropic/messages_system_role_in_messages.json")
    usage = PROVIDER.chat_response(raw, make_target())["usage"]
    assert usage["completion_tokens_details"] == {"reasoning_tokens": 0}


def test_cache_tokens_count_as_prompt_and_server_tool_blocks_are_skipped() -> None:
    thinking = {"type": "thinking", "thinking": "hmm", "signature": "s"}
    raw = {
        "id": "msg_1",
        "model": "claude-x",
        "content": [
            thinking,
            {"type": "server_tool_use", "id": "srvtoolu_1", "name": "web_search", "input": {"q": 1}},
            {"type": "text", "text": "Hello "},
            {"type": "text", "text": "world"},
        ],
        "stop_reason": "max_tokens",
        "usage": {
            "input_tokens": 10,
            "cache_read_input_tokens": 100,
            "cache_creation_input_tokens": 5,
            "output_tokens": 7,
        },
    }
    out = PROVIDER.chat_response(raw, make_target())
    assert out["choices"][0]["message"] == {
        "role": "assistant",
        "content": "Hello world",
        "reasoning_content": "hmm",
        "thinking_blocks": [thinking],
    }
    assert out["choices"][0]["finish_reason"] == "length"
    assert out["usage"] == {
        "prompt_tokens": 115,
        "completion_tokens": 7,
        "total_tokens": 122,
        "prompt_tokens_details": {"cached_tokens": 100, "cache_write_tokens": 5},
    }


@pytest.mark.parametrize(
    ("stop_reason", "finish"),
    [
        ("end_turn", "stop"),
        ("stop_sequence", "stop"),
        ("pause_turn", "stop"),
        ("max_tokens", "length"),
        ("tool_use", "tool_calls"),
        ("refusal", "content_filter"),
    ],
)
def test_stop_reasons(stop_reason: str, finish: str) -> None:
    raw = {"id": "m", "model": "c", "content": [], "stop_reason": stop_reason, "usage": {}}
    out = PROVIDER.chat_response(raw, make_target())
    assert out["choices"][0]["finish_reason"] == finish
    assert out["choices"][0]["message"]["content"] is None


@pytest.mark.parametrize(
    "body",
    [
        {"id": "m"},
        {"content": "text"},
        {"content": ["text"]},
        {"content": [{"type": "tool_use", "id": "t", "name": "f", "input": "not an object"}]},
    ],
)
def test_bad_response_shapes(body: JSON) -> None:
    with pytest.raises(UpstreamBadResponse):
        PROVIDER.chat_response(body, make_target())


# --- streams -----------------------------------------------------------------


@dataclass(frozen=True)
class StreamExpect:
    id: str
    model: str
    text: str
    calls: list[tuple[str, str, JSON]]
    finish: str
    prompt: int
    completion: int


STREAMS: dict[str, StreamExpect] = {
    "stream_text.sse": StreamExpect(
        "msg_018E1hg8GoVTGEKQY3ovMcSJ", "claude-sonnet-4-5-20250929", "2", [], "stop", 20, 5
    ),
    "stream_text_after_tool_result.sse": StreamExpect(
        "msg_011oC3yivUSFxqbo3krQu9Nt",
        "claude-sonnet-4-6",
        "The current exchange rate is **1 USD = 0.92 EUR**. This means that for every US Dollar, "
        "you get approximately **92 Euro cents**. Keep in mind that exchange rates fluctuate "
        "constantly, so this rate may change throughout the day.",
        [],
        "stop",
        1007,
        59,
    ),
    "stream_tool_use_with_server_tool_search.sse": StreamExpect(
        "msg_01E3Wn1NynZw9FALZ68znj9S",
        "claude-sonnet-4-6",
        "Let me search for a tool that can provide current exchange rate information."
        "I found the right tool! Let me fetch the current USD to EUR exchange rate for you.",
        [("toolu_01EFn5wTNBYA8Reni8rbmnHT", "get_exchange_rate", {"from_currency": "USD", "to_currency": "EUR"})],
        "tool_calls",
        1591,  # message_delta's cumulative input, grown by the server tool round
        175,
    ),
    "stream_client_tool_use_vercel.derived.sse": StreamExpect(
        "msg_01K2JbSUMYhez5RHoK9ZCj9U",
        "claude-haiku-4-5-20251001",
        "",
        [
            (
                "toolu_01KFbKqPYSuAKujiL6mTfzYA",
                "json",
                {"elements": [{"location": "San Francisco", "temperature": 58, "condition": "sunny"}]},
            )
        ],
        "tool_calls",
        849,
        47,
    ),
}


def decode_sse(raw: bytes, pieces: Iterable[bytes] | None = None) -> list[JSON]:
    decoder = PROVIDER.stream_decoder(make_target())
    chunks = decode_events(decoder, sse_events([raw] if pieces is None else pieces))
    assert decoder.done
    return chunks


@pytest.mark.parametrize("name", sorted(STREAMS))
def test_recorded_stream_reassembles(name: str) -> None:
    expect = STREAMS[name]
    chunks = decode_sse(load_bytes(f"anthropic/{name}"))
    assert {(c["id"], c["model"]) for c in chunks} == {(expect.id, expect.model)}
    assert len({c["created"] for c in chunks}) == 1
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    got = reassemble(chunks)
    assert got.role == "assistant"
    assert got.text == expect.text
    assert [(c["id"], c["name"], json.loads(c["arguments"])) for _, c in sorted(got.calls.items())] == expect.calls
    assert sorted(got.calls) == list(range(len(expect.calls)))
    assert got.finish_reasons == [expect.finish]
    assert got.usage == {
        "prompt_tokens": expect.prompt,
        "completion_tokens": expect.completion,
        "total_tokens": expect.prompt + expect.completion,
        "prompt_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0, "cache_write_1h_tokens": 0},
    }
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"] == got.usage


@pytest.mark.parametrize("name", sorted(STREAMS))
def test_recorded_stream_in_any_split_gives_the_same_chunks(name: str) -> None:
    raw = load_bytes(f"anthropic/{name}")
    whole = without_created(decode_sse(raw))
    byte_by_byte = [raw[i : i + 1] for i in range(len(raw))]
    assert without_created(decode_sse(raw, byte_by_byte)) == whole
    for seed in range(5):
        assert without_created(decode_sse(raw, random_pieces(raw, seed))) == whole


def test_server_tool_stream_arguments_match_the_recorded_follow_up_request() -> None:
    chunks = decode_sse(load_bytes("anthropic/stream_tool_use_with_server_tool_search.sse"))
    follow_up = load_json("anthropic/stream_text_after_tool_result.request.json")
    recorded_use = follow_up["messages"][1]["content"][-1]
    call = reassemble(chunks).calls[0]
    assert (call["id"], call["name"]) == (recorded_use["id"], recorded_use["name"])
    assert json.loads(call["arguments"]) == recorded_use["input"]


def test_jsonl_payloads_without_event_names_decode_like_the_sse_framing() -> None:
    lines = load_bytes("anthropic/stream_client_tool_use_vercel.jsonl").decode().splitlines()
    decoder = PROVIDER.stream_decoder(make_target())
    from_jsonl = decode_events(decoder, (SSEEvent(line) for line in lines if line))
    from_sse = decode_sse(load_bytes("anthropic/stream_client_tool_use_vercel.derived.sse"))
    assert without_created(from_jsonl) == without_created(from_sse)


@pytest.mark.parametrize("name", sorted(STREAMS))
def test_truncated_stream_raises(name: str) -> None:
    raw = load_bytes(f"anthropic/{name}")
    # Cut before message_stop, and mid-event (the parser's close() then hands
    # over half an event: bad JSON, the same error class).
    for cut in (raw.index(b"event: message_stop"), len(raw) // 2):
        decoder = PROVIDER.stream_decoder(make_target())
        with pytest.raises(UpstreamBadResponse) as exc:
            decode_events(decoder, sse_events([raw[:cut]]))
        assert not decoder.done
        assert exc.value.fallback and exc.value.http_status == 502
    decoder = PROVIDER.stream_decoder(make_target())
    with pytest.raises(UpstreamBadResponse, match="truncated"):
        decode_events(decoder, sse_events([raw[: raw.index(b"event: message_stop")]]))


def _reported(key: str) -> list[JSON]:
    return [e for e in load_json("anthropic/reported_error_bodies.json")["entries"] if key in e]


def test_error_event_inside_a_200_stream_is_retryable() -> None:
    raw = load_bytes("anthropic/stream_text.sse")
    head = raw[: raw.index(b"event: content_block_start")]
    error_event = _reported("sse_error_event")[0]["sse_error_event"].encode()
    decoder = PROVIDER.stream_decoder(make_target())
    events = sse_events([head + error_event])
    assert [e.event for e in events] == ["message_start", "error"]
    assert len(decoder.on_event(events[0])) == 1
    with pytest.raises(UpstreamError) as exc:
        decoder.on_event(events[1])
    err = exc.value
    assert (err.upstream_status, err.retryable, err.fallback, err.http_status) == (529, True, True, 503)
    assert err.code == "overloaded_error" and "Overloaded" in err.message


def test_stream_error_status_follows_the_documented_type_table() -> None:
    table = _reported("status_type_table")[0]["status_type_table"]
    assert len(table) == 8
    for status, error_type in table.items():
        data = json.dumps({"type": "error", "error": {"type": error_type, "message": "m"}})
        with pytest.raises(UpstreamError) as exc:
            PROVIDER.stream_decoder(make_target()).on_event(SSEEvent(data, "error"))
        assert exc.value.upstream_status == int(status), error_type
        assert exc.value.retryable == (int(status) in (429, 500, 529))
    with pytest.raises(UpstreamError) as unknown:
        PROVIDER.stream_decoder(make_target()).on_event(SSEEvent('{"type": "error", "error": {}}', "error"))
    assert unknown.value.upstream_status == 502 and unknown.value.retryable


def _events(*payloads: JSON) -> list[SSEEvent]:
    return [SSEEvent(json.dumps(p), str(p["type"])) for p in payloads]


def _start(usage: JSON | None = None) -> JSON:
    message = {"id": "msg_x", "model": "claude-x", "usage": usage or {"input_tokens": 3, "output_tokens": 1}}
    return {"type": "message_start", "message": message}


def _block(index: int, block: JSON) -> JSON:
    return {"type": "content_block_start", "index": index, "content_block": block}


def _delta(index: int, delta: JSON) -> JSON:
    return {"type": "content_block_delta", "index": index, "delta": delta}


def _end(stop_reason: str, usage: JSON) -> list[JSON]:
    return [{"type": "message_delta", "delta": {"stop_reason": stop_reason}, "usage": usage}, {"type": "message_stop"}]


def test_tool_indexes_skip_thinking_and_server_tools() -> None:  # thinking itself: test_anthropic_reasoning.py
    events = _events(
        _start(),
        _block(0, {"type": "thinking", "thinking": ""}),
        _delta(0, {"type": "thinking_delta", "thinking": "let me think"}),
        _delta(0, {"type": "signature_delta", "signature": "sig"}),
        _block(1, {"type": "tool_use", "id": "toolu_a", "name": "f", "input": {}}),
        _delta(1, {"type": "input_json_delta", "partial_json": ""}),
        _delta(1, {"type": "input_json_delta", "partial_json": '{"x": 1}'}),
        _block(2, {"type": "server_tool_use", "id": "srvtoolu_1", "name": "web_search", "input": {}}),
        _delta(2, {"type": "input_json_delta", "partial_json": '{"q": "s"}'}),
        _block(3, {"type": "tool_use", "id": "toolu_b", "name": "g", "input": {}}),
        _delta(3, {"type": "input_json_delta", "partial_json": "{}"}),
        {"type": "ping"},
        *_end("tool_use", {"output_tokens": 30}),
    )
    chunks = decode_events(PROVIDER.stream_decoder(make_target()), events)
    got = reassemble(chunks)
    assert got.text == ""
    assert got.calls == {
        0: {"id": "toolu_a", "name": "f", "arguments": '{"x": 1}'},
        1: {"id": "toolu_b", "name": "g", "arguments": "{}"},
    }
    assert got.finish_reasons == ["tool_calls"]
    assert got.usage == {"prompt_tokens": 3, "completion_tokens": 30, "total_tokens": 33}
    assert len(chunks) == 8  # role, reasoning, 2 tool starts, 2 argument pieces, finish, usage


def test_stream_cache_usage_and_refusal() -> None:
    decoder = PROVIDER.stream_decoder(make_target())
    assert decoder.usage is None
    usage = {"input_tokens": 10, "cache_read_input_tokens": 90, "cache_creation_input_tokens": 0, "output_tokens": 1}
    events = _events(
        _start(usage),
        _block(0, {"type": "text", "text": ""}),
        _delta(0, {"type": "text_delta", "text": "No."}),
        *_end("refusal", {"output_tokens": 4}),
    )
    got = reassemble(decode_events(decoder, events))
    assert (got.text, got.finish_reasons) == ("No.", ["content_filter"])
    assert (
        decoder.usage
        == got.usage
        == {
            "prompt_tokens": 100,
            "completion_tokens": 4,
            "total_tokens": 104,
            "prompt_tokens_details": {"cached_tokens": 90, "cache_write_tokens": 0},
        }
    )


def test_stream_without_usage_has_no_usage_chunk() -> None:
    decoder = PROVIDER.stream_decoder(make_target())
    assert decoder.on_event(SSEEvent('{"type": "message_stop"}', "message_stop")) == []
    assert decoder.done and decoder.finish() == []


@pytest.mark.parametrize("data", ["not json", "[1]", '{"type": "message_start"}'])
def test_garbage_stream_events(data: str) -> None:
    with pytest.raises(UpstreamBadResponse):
        PROVIDER.stream_decoder(make_target()).on_event(SSEEvent(data))


# --- errors ------------------------------------------------------------------

# fixture -> (status, client status, code, retryable, fallback)
ERROR_FIXTURES: dict[str, tuple[int, int, str, bool, bool]] = {
    "error_400_invalid_request.json": (400, 400, "invalid_request_error", False, False),
    "error_400_invalid_request_tool_result_vercel.json": (400, 400, "invalid_request_error", False, False),
    "error_404_not_found_model.json": (404, 502, "upstream_deployment_error", False, True),
}


@pytest.mark.parametrize("name", sorted(ERROR_FIXTURES))
def test_recorded_error_bodies(name: str) -> None:
    status, client_status, code, retryable, fallback = ERROR_FIXTURES[name]
    body = load_bytes(f"anthropic/{name}")
    err = PROVIDER.error(status, {}, body)
    assert (err.upstream_status, err.http_status, err.code) == (status, client_status, code)
    assert (err.retryable, err.fallback) == (retryable, fallback)
    assert err.message == json.loads(body)["error"]["message"]
    assert err.to_body()["error"]["type"] == ("invalid_request_error" if status == 400 else "api_error")


# reported status -> (client status, code, retryable)
REPORTED: dict[int, tuple[int, str, bool]] = {
    529: (503, "overloaded_error", True),
    500: (500, "api_error", True),
    429: (429, "rate_limit_error", True),
    401: (502, "upstream_deployment_error", False),
}


def test_reported_error_bodies() -> None:
    entries = _reported("http_status")
    assert len(entries) == 5
    for entry in entries:
        status = entry["http_status"]
        client_status, code, retryable = REPORTED[status]
        err = PROVIDER.error(status, {"retry-after": "7"}, json.dumps(entry["body"]).encode())
        assert (err.http_status, err.code, err.retryable) == (client_status, code, retryable), status
        assert err.message == entry["body"]["error"]["message"]
        assert err.retry_after == 7.0
        assert err.fallback  # all of these may work on another deployment
    rate_limited = PROVIDER.error(429, {"retry-after": "7"}, json.dumps(entries[2]["body"]).encode())
    assert rate_limited.headers == {"retry-after": "7"}
    assert rate_limited.to_body()["error"]["type"] == "rate_limit_error"


@pytest.mark.parametrize(
    "message",
    ["prompt is too long: 215000 tokens > 200000 maximum", "input length and `max_tokens` exceed context limit"],
)
def test_context_window_errors(message: str) -> None:
    body = {"type": "error", "error": {"type": "invalid_request_error", "message": message}}
    err = PROVIDER.error(400, {}, json.dumps(body).encode())
    assert (err.code, err.http_status, err.retryable) == ("context_length_exceeded", 400, False)


@pytest.mark.parametrize(
    ("status", "body", "fragment"),
    [
        (502, b"<html><body>502 Bad Gateway</body></html>", "HTTP 502: <html><body>502 Bad Gateway"),
        (503, b"", "HTTP 503"),
        (400, b'{"message": "not the envelope"}', 'HTTP 400: {"message": "not the envelope"}'),
        (500, b"x" * 1000, "HTTP 500: " + "x" * 200),
    ],
)
def test_non_envelope_error_bodies(status: int, body: bytes, fragment: str) -> None:
    err = PROVIDER.error(status, {}, body)
    assert err.upstream_status == status
    assert fragment in err.message and len(err.message) < 300
    assert err.code == "upstream_error"


def test_overloaded_type_is_retryable_whatever_the_status() -> None:
    # Some proxies in front of Anthropic relay its overloaded_error under another status.
    body = json.dumps(_reported("http_status")[0]["body"]).encode()
    assert json.loads(body)["error"]["type"] == "overloaded_error"
    err = PROVIDER.error(400, {}, body)
    assert (err.retryable, err.fallback, err.code) == (True, True, "overloaded_error")
