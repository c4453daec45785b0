"""The OpenAI Responses translator, driven by the recorded fixtures in shared/fixtures/responses
(and the OpenAI chat / cross-provider requests that ask the same thing).

Deliberate differences from the recorded request bodies (written by pydantic-ai), normalised below:

- pydantic-ai sends ``stream: false``; we leave ``stream`` out of non-stream requests.
- we always send ``store: false``; the recordings mostly leave it to the API's default (true).
- pydantic-ai asks for ``reasoning.summary`` and ``include: ["reasoning.encrypted_content"]``; the
  canonical request has no such fields (only ``reasoning_effort``).
- pydantic-ai writes ``description: null`` on tools without one; we leave it out.
- replayed assistant items carry their upstream ``id`` / ``status`` / ``phase`` / ``annotations`` and the
  reasoning item; the canonical message has none of them.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import orjson
import pytest

from gateway.canonical import JSON, WIRE_OPENAI_RESPONSES
from gateway.errors import InvalidRequest, UpstreamBadResponse, UpstreamError, UpstreamErrorPage
from gateway.providers.base import NativeProvider, Provider, SSEEvent, StreamDecoder, Target
from gateway.providers.openai_responses import OpenAIResponsesProvider
from gateway.providers.openai_responses_stream import ResponsesStreamDecoder
from tests.unit.fixtures import FIXTURES, decode_events, load_bytes, load_json, random_pieces, sse_events, user, without

PROVIDER = OpenAIResponsesProvider()
RESPONSES = FIXTURES / "responses"
CREATE_FIXTURES = sorted(p.name for p in RESPONSES.glob("create_*.json") if not p.name.endswith(".request.json"))
STREAM_FIXTURES = sorted(p.name for p in RESPONSES.glob("*.sse"))
REASONING = "cross_provider/reasoning"
CROSS_RESPONSES = [
    f"{REASONING}/cross_the_street/openai_responses.json",
    f"{REASONING}/cross_the_street/openai_o3mini_responses.json",
    f"{REASONING}/cross_the_street/openai_responses_turn2.json",
    f"{REASONING}/high_effort_web_search/openai_responses.json",
]
QUOTA_MESSAGE = "You exceeded your current quota, please check your plan and billing details."


def make_target(model: str = "gpt-4o", **kw: Any) -> Target:
    return Target(provider="openai", model=model, base_url="https://api.openai.com/v1/", api_key="sk-test", **kw)


def wire(req: JSON, *, stream: bool = False, **target_kw: Any) -> JSON:
    body = PROVIDER.chat_request(req, make_target(**target_kw), stream=stream).body
    assert body is not None
    parsed: JSON = orjson.loads(body)
    return parsed


def chat_tool(responses_tool: JSON) -> JSON:
    """A recorded Responses function tool, as the same tool in a canonical request."""
    fn = {k: responses_tool[k] for k in ("name", "parameters", "strict")}
    if responses_tool.get("description") is not None:
        fn["description"] = responses_tool["description"]
    return {"type": "function", "function": fn}


def recorded_tool(responses_tool: JSON) -> JSON:
    return {k: v for k, v in responses_tool.items() if v is not None}


# --- stream helpers ---------------------------------------------------------------------------


@dataclass
class Assembled:
    """A canonical chunk stream put back together, the way a client would."""

    role: str | None = None
    text: str = ""
    reasoning: str = ""
    calls: dict[int, JSON] = field(default_factory=dict)
    finish_reasons: list[str] = field(default_factory=list)
    usage: JSON | None = None
    usage_chunks: int = 0


def reassemble(chunks: list[JSON]) -> Assembled:
    out = Assembled()
    for n, chunk in enumerate(chunks):
        assert chunk["object"] == "chat.completion.chunk"
        if chunk.get("usage") is not None:
            assert chunk["choices"] == [], "usage must come in the final usage-only chunk"
            out.usage, out.usage_chunks = chunk["usage"], out.usage_chunks + 1
        for choice in chunk["choices"]:
            delta = choice["delta"]
            assert ("role" in delta) == (n == 0), "role exactly on the first chunk"
            out.role = delta.get("role", out.role)
            out.text += delta.get("content") or ""
            out.reasoning += delta.get("reasoning_content") or ""
            for call in delta.get("tool_calls", []):
                if call["index"] not in out.calls:
                    assert call["id"] and call["function"]["name"], "a new tool call must bring its id and name"
                    out.calls[call["index"]] = {"id": call["id"], "name": call["function"]["name"], "arguments": ""}
                else:
                    assert "id" not in call, "id only on a tool call's first chunk"
                out.calls[call["index"]]["arguments"] += call["function"].get("arguments", "")
            if choice["finish_reason"] is not None:
                out.finish_reasons.append(choice["finish_reason"])
    return out


def decode(pieces: Iterable[bytes]) -> tuple[list[JSON], ResponsesStreamDecoder]:
    decoder = PROVIDER.stream_decoder(make_target())
    return decode_events(decoder, sse_events(pieces)), decoder


def final_response(raw: bytes) -> JSON:
    """The ``response`` of the stream's terminal event: what the deltas must add up to."""
    last = [e for e in sse_events([raw]) if e.event in ("response.completed", "response.incomplete")][-1]
    response: JSON = orjson.loads(last.data)["response"]
    return response


def jsonl_events(rel: str) -> list[SSEEvent]:
    lines = load_bytes(rel).decode().splitlines()
    return [SSEEvent(data=line, event=orjson.loads(line)["type"]) for line in lines if line.strip()]


def output_texts(response: JSON, item_type: str, part_key: str, part_type: str) -> list[str]:
    return [
        part["text"]
        for item in response["output"]
        if item["type"] == item_type
        for part in item.get(part_key) or []
        if part["type"] == part_type
    ]


def test_types_satisfy_the_provider_protocols() -> None:
    provider: Provider = PROVIDER
    native: NativeProvider = PROVIDER
    decoder: StreamDecoder = provider.stream_decoder(make_target())
    assert native.wire == WIRE_OPENAI_RESPONSES
    assert (PROVIDER.kind, PROVIDER.wire) == ("openai_responses", "openai_responses")
    assert not decoder.done and decoder.usage is None


# --- request translation: recorded ground truth -----------------------------------------------


def test_create_text_request() -> None:
    recorded = load_json("responses/create_text.request.json")
    body = wire({"model": "alias", "messages": recorded["input"]}, model=recorded["model"])
    assert body == {**without(recorded, "stream"), "store": False}


@pytest.mark.parametrize("name", ["create_function_call", "input_tokens_count_with_tools"])
def test_function_tools_are_flat_and_keep_strict(name: str) -> None:
    recorded = load_json(f"responses/{name}.request.json")
    req = {"messages": recorded["input"], "tools": [chat_tool(t) for t in recorded["tools"]]}
    body = wire({**req, "tool_choice": recorded["tool_choice"]}, model=recorded["model"])
    assert body["tools"] == [recorded_tool(t) for t in recorded["tools"]]
    assert body["input"] == recorded["input"]
    assert body["tool_choice"] == recorded["tool_choice"]


def test_tool_round_trip_request() -> None:
    recorded = load_json("responses/create_after_function_call_output.request.json")
    question, call, output = recorded["input"]
    req = {
        "messages": [
            {"role": "user", "content": question["content"]},
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": call["call_id"],
                        "type": "function",
                        "function": {"name": call["name"], "arguments": call["arguments"]},
                    }
                ],
            },
            {"role": "tool", "tool_call_id": output["call_id"], "content": output["output"]},
        ],
        "tools": [chat_tool(t) for t in recorded["tools"]],
        "tool_choice": "auto",
    }
    body = wire(req, model=recorded["model"])
    assert body["input"] == [question, without(call, "status"), output]  # pydantic-ai sent status: null
    assert without(body, "input", "tools", "store") == without(recorded, "input", "tools", "stream")


def test_recorded_openai_chat_tool_round_trip_becomes_items() -> None:
    chat = load_json("openai/chat_completion_text_after_tool_result.request.json")
    body = wire(chat, model=chat["model"])
    system, question, assistant, result = chat["messages"]
    call = assistant["tool_calls"][0]
    assert body["instructions"] == system["content"]
    assert body["input"] == [
        question,
        {
            "type": "function_call",
            "call_id": call["id"],
            "name": call["function"]["name"],
            "arguments": call["function"]["arguments"],
        },
        {"type": "function_call_output", "call_id": result["tool_call_id"], "output": "20.0"},
    ]
    fn = chat["tools"][0]["function"]
    assert body["tools"] == [{"type": "function", **fn}]
    assert (body["tool_choice"], body["store"]) == ("auto", False)
    assert "n" not in body and "stream" not in body


def test_structured_output_request() -> None:
    recorded = load_json("responses/create_structured_output_json_schema.request.json")
    fmt = recorded["text"]["format"]
    spec = {"name": fmt["name"], "schema": fmt["schema"], "strict": fmt["strict"]}
    req = {"messages": recorded["input"], "response_format": {"type": "json_schema", "json_schema": spec}}
    body = wire(req, model=recorded["model"])
    assert body == {**without(recorded, "stream", "include"), "store": False}


@pytest.mark.parametrize(
    "rel",
    [
        "responses/create_reasoning_summary_encrypted_content.request.json",
        "responses/create_reasoning_function_call.request.json",
        f"{REASONING}/cross_the_street/openai_responses.request.json",
        f"{REASONING}/cross_the_street/openai_o3mini_responses.request.json",
    ],
)
def test_reasoning_requests(rel: str) -> None:
    recorded = load_json(rel)
    messages = [{"role": "system", "content": recorded["instructions"]}] if "instructions" in recorded else []
    req: JSON = {"messages": messages + recorded["input"], "reasoning_effort": recorded["reasoning"]["effort"]}
    if "tools" in recorded:
        req |= {"tools": [chat_tool(t) for t in recorded["tools"]], "tool_choice": recorded["tool_choice"]}
        recorded["tools"] = [recorded_tool(t) for t in recorded["tools"]]
    body = wire(req, model=recorded["model"])
    assert body["reasoning"] == {"effort": recorded["reasoning"]["effort"]}  # no summary: see the docstring
    assert without(body, "reasoning", "store") == without(recorded, "reasoning", "stream", "include")


def test_chat_reasoning_effort_request_of_the_second_turn() -> None:
    chat = load_json(f"{REASONING}/cross_the_street/openai_chat_turn2.request.json")
    body = wire(chat, model=chat["model"])
    first, answer, follow_up = chat["messages"]
    assert body["reasoning"] == {"effort": "high"}
    assert body["input"] == [
        first,
        {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": answer["content"]}]},
        follow_up,
    ]


def test_replayed_turn_without_reasoning_item_and_ids() -> None:
    recorded = load_json("responses/stream_text_after_function_call_output.request.json")
    question, _reasoning, commentary, call, output = recorded["input"]
    text = commentary["content"][0]["text"]
    tool_call = {
        "id": call["call_id"],
        "type": "function",
        "function": {"name": call["name"], "arguments": call["arguments"]},
    }
    req = {
        "messages": [
            {"role": "system", "content": recorded["instructions"]},
            question,
            {"role": "assistant", "content": text, "tool_calls": [tool_call]},
            {
                "role": "tool",
                "tool_call_id": output["call_id"],
                "content": [{"type": "text", "text": output["output"]}],
            },
        ],
        "tools": [chat_tool(t) for t in recorded["tools"]],
        "tool_choice": "auto",
    }
    body = wire(req, stream=True, model=recorded["model"])
    assert body["input"] == [
        question,
        {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": text}]},
        without(call, "id"),
        output,
    ]
    assert body["stream"] is True and body["instructions"] == recorded["instructions"]


def test_cached_prompt_request_parts_and_cache_key() -> None:
    recorded = load_json("responses/create_cached_tokens.request.json")
    parts = recorded["input"][0]["content"]
    req = {
        "messages": [{"role": "user", "content": [{"type": "text", "text": p["text"]} for p in parts]}],
        "prompt_cache_key": recorded["prompt_cache_key"],
    }
    body = wire(req, model=recorded["model"])
    assert body["input"] == [{"role": "user", "content": [without(p, "prompt_cache_breakpoint") for p in parts]}]
    assert body["prompt_cache_key"] == recorded["prompt_cache_key"]


def test_temperature_request_of_the_stream_error_fixture() -> None:
    recorded = load_json("responses/error_400_temperature_below_min_on_stream_request.request.json")
    req = {"messages": [{"role": "system", "content": ""}, *recorded["input"]], "temperature": -1}
    body = wire(req, stream=True, model=recorded["model"])
    # An empty instruction is left out (pydantic-ai sent instructions: "").
    assert body == {**without(recorded, "instructions"), "store": False}


@pytest.mark.parametrize(
    "mode", ["tool_choice_auto", "tool_choice_required", "tool_choice_none", "tool_choice_list_single"]
)
def test_cross_provider_tool_choice(mode: str) -> None:
    chat = load_json(f"cross_provider/{mode}/openai_chat.request.json")
    body = wire(chat, model=chat["model"])
    assert body["tools"] == [{"type": "function", **t["function"]} for t in chat["tools"]]
    choice = chat["tool_choice"]
    expected = choice if isinstance(choice, str) else {"type": "function", "name": choice["function"]["name"]}
    assert body["tool_choice"] == expected
    assert body["input"] == chat["messages"]


def test_count_request_posts_to_input_tokens() -> None:
    recorded = load_json("responses/input_tokens_count_with_tools.request.json")
    wreq = PROVIDER.count_request({**recorded, "stream": True, "store": False}, make_target(), {})
    assert (wreq.method, wreq.url) == ("POST", "https://api.openai.com/v1/responses/input_tokens")
    assert wreq.body is not None and orjson.loads(wreq.body) == recorded
    assert wreq.headers["authorization"] == "Bearer sk-test"


@pytest.mark.parametrize("stream", [False, True])
def test_native_request_forwards_the_body(stream: bool) -> None:
    recorded = load_json("responses/create_reasoning_replay_with_function_call_output.request.json")
    body = {**recorded, "store": False}
    client = {"openai-beta": "responses=v1", "authorization": "Bearer client-key", "x-other": "1"}
    target = make_target(headers={"openai-organization": "org-1"})
    wreq = PROVIDER.native_request(body, target, stream=stream, headers=client)
    assert (wreq.method, wreq.url) == ("POST", "https://api.openai.com/v1/responses")
    assert wreq.headers == {
        "content-type": "application/json",
        "authorization": "Bearer sk-test",
        "openai-organization": "org-1",
        "openai-beta": "responses=v1",
    }
    assert wreq.body is not None and orjson.loads(wreq.body) == {**body, "stream": stream}
    assert body["stream"] is False and "stream" in recorded  # the caller's dicts are untouched


def test_embeddings_go_to_the_openai_embeddings_endpoint() -> None:
    recorded = load_json("openai/embeddings_base64.request.json")
    wreq = PROVIDER.embed_request({**recorded, "model": "alias"}, make_target(model=recorded["model"]))
    assert wreq.url == "https://api.openai.com/v1/embeddings"
    assert wreq.body is not None and orjson.loads(wreq.body) == recorded
    answer = load_json("openai/embeddings_base64.json")
    assert PROVIDER.embed_response(copy.deepcopy(answer), make_target(), recorded)["data"] == answer["data"]


# --- request translation: the rules -----------------------------------------------------------


def test_url_headers_store_and_stream() -> None:
    wreq = PROVIDER.chat_request({"messages": [user("hi")], "store": True}, make_target(), stream=True)
    assert (wreq.method, wreq.url) == ("POST", "https://api.openai.com/v1/responses")
    assert wreq.headers == {"content-type": "application/json", "authorization": "Bearer sk-test"}
    assert wreq.body is not None
    assert orjson.loads(wreq.body) == {"model": "gpt-4o", "input": [user("hi")], "store": False, "stream": True}


def test_parameters_passed_translated_and_dropped() -> None:
    passed = {
        "temperature": 0.3,
        "top_p": 0.9,
        "user": "u-1",
        "metadata": {"k": "v"},
        "parallel_tool_calls": False,
        "service_tier": "flex",
        "safety_identifier": "s-1",
        "prompt_cache_key": "pk",
        "prompt_cache_retention": "24h",
    }
    dropped = {
        "stop": ["END"],
        "logprobs": True,
        "top_logprobs": 2,
        "presence_penalty": 0.5,
        "frequency_penalty": 0.5,
        "seed": 7,
        "logit_bias": {"1": 2},
        "stream_options": {"include_usage": True},
        "n": 1,
        "modalities": ["text"],
        "some_future_param": 1,
    }
    req = {"messages": [user("hi")], "max_tokens": 10, "max_completion_tokens": 20, "verbosity": "low"}
    body = wire({**req, **passed, **dropped, "reasoning_effort": "minimal"})
    assert body == {
        "model": "gpt-4o",
        "input": [user("hi")],
        "store": False,
        **passed,
        "max_output_tokens": 20,
        "text": {"verbosity": "low"},
        "reasoning": {"effort": "minimal"},
    }
    assert wire({**req, "max_completion_tokens": None})["max_output_tokens"] == 10


def test_n_above_one_is_refused() -> None:
    with pytest.raises(InvalidRequest) as exc:
        wire({"messages": [user("hi")], "n": 2})
    assert (exc.value.param, exc.value.code, exc.value.http_status) == ("n", "unsupported_value", 400)


def test_drop_params_by_canonical_or_wire_name() -> None:
    req = {"messages": [user("hi")], "temperature": 0.2, "max_tokens": 5, "reasoning_effort": "low"}
    body = wire(req, drop_params=frozenset({"temperature", "max_output_tokens", "reasoning", "store", "input"}))
    assert body == {"model": "gpt-4o", "input": [user("hi")], "store": False}
    assert "max_output_tokens" not in wire(req, drop_params=frozenset({"max_tokens"}))


def test_system_and_developer_messages_become_instructions() -> None:
    body = wire(
        {
            "messages": [
                {"role": "system", "content": [{"type": "text", "text": "Be "}, {"type": "text", "text": "brief."}]},
                user("hi"),
                {"role": "developer", "content": "Use English."},
            ]
        }
    )
    assert body["instructions"] == "Be brief.\n\nUse English."
    assert body["input"] == [user("hi")]


def test_content_parts() -> None:
    parts = [
        {"type": "text", "text": "look"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
        {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg", "detail": "high"}},
        {"type": "file", "file": {"file_data": "data:application/pdf;base64,JVBERi0x", "filename": "a.pdf"}},
        {"type": "file", "file": {"file_id": "file-1"}},
    ]
    assert wire({"messages": [{"role": "user", "content": parts}]})["input"][0]["content"] == [
        {"type": "input_text", "text": "look"},
        {"type": "input_image", "image_url": "data:image/png;base64,iVBORw0KGgo=", "detail": "auto"},
        {"type": "input_image", "image_url": "https://example.com/cat.jpg", "detail": "high"},
        {"type": "input_file", "file_data": "data:application/pdf;base64,JVBERi0x", "filename": "a.pdf"},
        {"type": "input_file", "file_id": "file-1"},
    ]


def test_assistant_refusal_tool_parts_and_arguments_forms() -> None:
    calls = [
        {"id": "c1", "type": "function", "function": {"name": "f", "arguments": ""}},
        {"id": "c2", "type": "function", "function": {"name": "g", "arguments": {"a": 1}}},
    ]
    image = {"type": "image_url", "image_url": {"url": "https://x/y.png"}}
    body = wire(
        {
            "messages": [
                user("q"),
                {"role": "assistant", "content": [{"type": "refusal", "refusal": "no"}], "tool_calls": calls},
                {"role": "tool", "tool_call_id": "c1", "content": None},
                {"role": "tool", "tool_call_id": "c2", "content": [{"type": "text", "text": "see"}, image]},
                {"role": "assistant", "content": "", "reasoning_content": "hmm", "name": "bot"},
            ]
        }
    )
    assert body["input"][1:] == [
        {"type": "message", "role": "assistant", "content": [{"type": "refusal", "refusal": "no"}]},
        {"type": "function_call", "call_id": "c1", "name": "f", "arguments": "{}"},
        {"type": "function_call", "call_id": "c2", "name": "g", "arguments": '{"a":1}'},
        {"type": "function_call_output", "call_id": "c1", "output": ""},
        {
            "type": "function_call_output",
            "call_id": "c2",
            "output": [
                {"type": "input_text", "text": "see"},
                {"type": "input_image", "image_url": "https://x/y.png", "detail": "auto"},
            ],
        },
    ]


def test_tools_without_strict_or_parameters_and_tool_choices() -> None:
    tools = [{"type": "function", "function": {"name": "f"}}, {"type": "function", "function": {"name": "g"}}]
    body = wire({"messages": [user("hi")], "tools": tools, "tool_choice": "required"})
    assert body["tools"][0] == {
        "type": "function",
        "name": "f",
        "parameters": {"type": "object", "properties": {}},
        "strict": False,
    }
    allowed = {
        "type": "allowed_tools",
        "allowed_tools": {"mode": "required", "tools": [{"type": "function", "function": {"name": "g"}}]},
    }
    body = wire({"messages": [user("hi")], "tools": tools, "tool_choice": allowed})
    assert body["tool_choice"] == {
        "type": "allowed_tools",
        "mode": "required",
        "tools": [{"type": "function", "name": "g"}],
    }


@pytest.mark.parametrize(
    ("fmt", "expected"),
    [
        ({"type": "json_object"}, {"format": {"type": "json_object"}}),
        ({"type": "text"}, None),
        (
            {"type": "json_schema", "json_schema": {"name": "n", "schema": {"type": "object"}, "description": "d"}},
            {"format": {"type": "json_schema", "name": "n", "schema": {"type": "object"}, "description": "d"}},
        ),
    ],
)
def test_response_formats(fmt: JSON, expected: JSON | None) -> None:
    assert wire({"messages": [user("hi")], "response_format": fmt}).get("text") == expected


@pytest.mark.parametrize(
    ("req", "param", "code"),
    [
        ({"messages": []}, "messages", "invalid_type"),
        ({"messages": ["hi"]}, "messages[0]", "invalid_type"),
        ({"messages": [{"role": "function", "content": "x"}]}, "messages[0].role", "unsupported_value"),
        ({"messages": [{"role": "user"}]}, "messages[0].content", "missing_required_parameter"),
        ({"messages": [{"role": "user", "content": 3}]}, "messages[0].content", "invalid_type"),
        (
            {"messages": [{"role": "user", "content": [{"type": "text"}]}]},
            "messages[0].content[0].text",
            "invalid_type",
        ),
        (
            {"messages": [{"role": "user", "content": [{"type": "input_audio", "input_audio": {}}]}]},
            "messages[0].content[0].type",
            "unsupported_value",
        ),
        (
            {"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "ftp://x"}}]}]},
            "messages[0].content[0].image_url.url",
            "invalid_value",
        ),
        (
            {"messages": [{"role": "user", "content": [{"type": "file", "file": {"filename": "a.pdf"}}]}]},
            "messages[0].content[0].file",
            "missing_required_parameter",
        ),
        (
            {"messages": [{"role": "system", "content": [{"type": "image_url", "image_url": {"url": "https://x"}}]}]},
            "messages[0].content[0].type",
            "unsupported_value",
        ),
        ({"messages": [{"role": "assistant", "tool_calls": {}}]}, "messages[0].tool_calls", "invalid_type"),
        (
            {"messages": [{"role": "assistant", "tool_calls": [{"function": {"name": "f"}}]}]},
            "messages[0].tool_calls[0].id",
            "missing_required_parameter",
        ),
        (
            {
                "messages": [
                    {"role": "assistant", "tool_calls": [{"id": "c", "function": {"name": "f", "arguments": 3}}]}
                ]
            },
            "messages[0].tool_calls[0].function.arguments",
            "invalid_type",
        ),
        ({"messages": [{"role": "tool", "content": "x"}]}, "messages[0].tool_call_id", "missing_required_parameter"),
        ({"max_tokens": 0}, "max_tokens", "invalid_type"),
        ({"reasoning_effort": 3}, "reasoning_effort", "invalid_type"),
        ({"tools": {}}, "tools", "invalid_type"),
        ({"tools": [{"type": "custom", "custom": {"name": "x"}}]}, "tools[0].type", "unsupported_value"),
        ({"tools": [{"type": "function", "function": {}}]}, "tools[0].function.name", "missing_required_parameter"),
        ({"tool_choice": "any"}, "tool_choice", "invalid_value"),
        ({"response_format": {"type": "yaml"}}, "response_format.type", "invalid_value"),
        (
            {"response_format": {"type": "json_schema", "json_schema": {"schema": {}}}},
            "response_format.json_schema.name",
            "missing_required_parameter",
        ),
    ],
)
def test_invalid_requests_name_the_param(req: JSON, param: str, code: str) -> None:
    with pytest.raises(InvalidRequest) as exc:
        wire({"messages": [user("hi")], **req})
    assert (exc.value.param, exc.value.code, exc.value.http_status) == (param, code, 400)


# --- non-stream answers -----------------------------------------------------------------------


@pytest.mark.parametrize("rel", [f"responses/{n}" for n in CREATE_FIXTURES] + CROSS_RESPONSES)
def test_every_recorded_response_to_a_chat_completion(rel: str) -> None:
    raw = load_json(rel)
    completion = PROVIDER.chat_response(copy.deepcopy(raw), make_target())
    assert completion["object"] == "chat.completion"
    assert (completion["id"], completion["model"], completion["created"]) == (
        raw["id"],
        raw["model"],
        raw["created_at"],
    )
    [choice] = completion["choices"]
    message = choice["message"]
    calls = [i for i in raw["output"] if i["type"] == "function_call"]
    assert message["role"] == "assistant"
    assert (message["content"] or "") == "".join(output_texts(raw, "message", "content", "output_text"))
    assert message.get("tool_calls", []) == [
        {"id": c["call_id"], "type": "function", "function": {"name": c["name"], "arguments": c["arguments"]}}
        for c in calls
    ]
    summaries = output_texts(raw, "reasoning", "summary", "summary_text")
    assert message.get("reasoning_content") == ("\n\n".join(summaries) if summaries else None)
    assert choice["finish_reason"] == ("tool_calls" if calls else "stop")
    usage = raw["usage"]
    assert completion["usage"] == {
        "prompt_tokens": usage["input_tokens"],
        "completion_tokens": usage["output_tokens"],
        "total_tokens": usage["total_tokens"],
        "prompt_tokens_details": {
            k: v for k, v in usage["input_tokens_details"].items() if k in ("cached_tokens", "cache_write_tokens")
        },
        "completion_tokens_details": {"reasoning_tokens": usage["output_tokens_details"]["reasoning_tokens"]},
    }


def test_specific_answers() -> None:
    def message(name: str) -> JSON:
        completion = PROVIDER.chat_response(load_json(f"responses/{name}.json"), make_target())
        return dict(completion["choices"][0]["message"], usage=completion["usage"])

    assert message("create_text")["content"] == "The capital of France is Paris."
    call = message("create_function_call")
    assert call["content"] is None
    assert call["tool_calls"][0]["id"] == "call_YfwRsW8sUxDKipwyhWTzOXCA"
    assert json.loads(call["tool_calls"][0]["function"]["arguments"]) == {"country": "PotatoLand"}
    assert json.loads(message("create_structured_output_json_schema")["content"]) == {"amount": 12.34}
    assert message("create_cached_tokens")["usage"]["prompt_tokens_details"] == {
        "cached_tokens": 4012,
        "cache_write_tokens": 0,
    }
    thinking = message("create_reasoning_summary_encrypted_content")
    assert thinking["reasoning_content"].startswith("**Generating factorial function**")
    assert thinking["usage"]["completion_tokens_details"] == {"reasoning_tokens": 59}
    assert message("create_reasoning_function_call")["reasoning_content"].count("\n\n**") == 4  # 5 summary parts


def test_web_search_items_are_skipped() -> None:
    raw = load_json(f"{REASONING}/high_effort_web_search/openai_responses.json")
    assert {i["type"] for i in raw["output"]} >= {"web_search_call", "message"}
    message = PROVIDER.chat_response(raw, make_target())["choices"][0]["message"]
    assert message["content"] and "tool_calls" not in message


@pytest.mark.parametrize(
    ("reason", "finish"),
    [("max_output_tokens", "length"), ("content_filter", "content_filter"), ("other", "tool_calls")],
)
def test_incomplete_answers(reason: str, finish: str) -> None:
    raw = load_json("responses/create_function_call.json")
    raw |= {"status": "incomplete", "incomplete_details": {"reason": reason}}
    assert PROVIDER.chat_response(raw, make_target())["choices"][0]["finish_reason"] == finish


def test_refusal_part_and_missing_usage() -> None:
    raw = load_json("responses/create_text.json")
    raw["output"][0]["content"] = [{"type": "refusal", "refusal": "I can't help with that."}]
    del raw["usage"]
    completion = PROVIDER.chat_response(raw, make_target())
    assert completion["choices"][0]["message"]["refusal"] == "I can't help with that."
    assert completion["choices"][0]["message"]["content"] == ""
    assert completion["usage"] is None


def test_failed_answer_is_an_upstream_error() -> None:
    raw = load_json("responses/create_text.json")
    raw |= {
        "status": "failed",
        "error": {"code": "server_error", "message": "The model failed to generate a response."},
    }
    with pytest.raises(UpstreamError) as exc:
        PROVIDER.chat_response(raw, make_target())
    assert "The model failed to generate a response." in exc.value.message
    assert (exc.value.upstream_status, exc.value.retryable, exc.value.code) == (500, True, "server_error")


def _bad_answers() -> dict[str, Any]:
    raw = load_json("responses/create_text.json")
    call = {"type": "function_call", "name": "f", "arguments": "{}"}
    return {
        "not-an-object": [raw],
        "no-output": without(raw, "output"),
        "output-not-a-list": {**raw, "output": {"type": "message"}},
        "item-not-an-object": {**raw, "output": ["text"]},
        "in-progress": {**raw, "status": "in_progress"},
        "call-without-id": {**raw, "output": [call]},
    }


@pytest.mark.parametrize("case", sorted(_bad_answers()))
def test_bad_answers_are_bad_responses(case: str) -> None:
    with pytest.raises(UpstreamBadResponse) as exc:
        PROVIDER.chat_response(_bad_answers()[case], make_target())
    assert exc.value.http_status == 502 and exc.value.fallback


def test_unknown_items_and_parts_are_skipped() -> None:
    raw = load_json("responses/create_text.json")
    raw["output"][:0] = [{"type": "image_generation_call", "id": "ig_1"}, {"type": "reasoning", "summary": None}, {}]
    raw["output"][-1]["content"].append({"type": "audio", "data": "x"})
    message = PROVIDER.chat_response(raw, make_target())["choices"][0]["message"]
    assert message == {"role": "assistant", "content": "The capital of France is Paris."}


# --- streams ----------------------------------------------------------------------------------


def test_stream_fixtures_found() -> None:
    assert len(STREAM_FIXTURES) == 6 and len(CREATE_FIXTURES) == 10


@pytest.mark.parametrize("name", STREAM_FIXTURES)
def test_streams_add_up_to_the_completed_response(name: str) -> None:
    raw = load_bytes(f"responses/{name}")
    chunks, decoder = decode(random_pieces(raw, seed=len(name)))
    assert chunks == decode([raw])[0], "the same chunks whatever the network splits"
    assert decoder.done
    final = final_response(raw)
    out = reassemble(chunks)
    assert out.role == "assistant"
    assert out.text == "".join(output_texts(final, "message", "content", "output_text"))
    assert out.reasoning == "\n\n".join(output_texts(final, "reasoning", "summary", "summary_text"))
    calls = [i for i in final["output"] if i["type"] == "function_call"]
    assert list(out.calls.values()) == [
        {"id": c["call_id"], "name": c["name"], "arguments": c["arguments"]} for c in calls
    ]
    assert out.finish_reasons == ["tool_calls" if calls else "stop"]
    assert out.usage_chunks == 1 and out.usage == decoder.usage
    usage = final["usage"]
    assert out.usage is not None
    assert (out.usage["prompt_tokens"], out.usage["completion_tokens"]) == (
        usage["input_tokens"],
        usage["output_tokens"],
    )
    assert out.usage["prompt_tokens_details"]["cached_tokens"] == usage["input_tokens_details"]["cached_tokens"]
    assert (
        out.usage["completion_tokens_details"]["reasoning_tokens"] == usage["output_tokens_details"]["reasoning_tokens"]
    )
    assert all(c["id"] == final["id"] and c["model"] == final["model"] for c in chunks)


def test_specific_streams() -> None:
    def assembled(name: str) -> Assembled:
        return reassemble(decode([load_bytes(f"responses/{name}.sse")])[0])

    required = assembled("stream_function_call_reasoning_tool_choice_required")
    assert required.calls[0]["arguments"] == '{"result":6666}'
    assert required.usage is not None and required.usage["completion_tokens_details"] == {"reasoning_tokens": 448}
    assert assembled("stream_legacy_2025_03_function_call").calls[0]["arguments"] == '{"country":"France"}'
    web = assembled("stream_web_search_cached_tokens")
    assert web.text.startswith("San Francisco weather today") and web.calls == {}
    assert web.usage is not None and web.usage["prompt_tokens_details"] == {"cached_tokens": 8320}
    summary = assembled("stream_reasoning_summary")
    assert summary.reasoning.count("\n\n**") == 3  # 4 summary parts
    commentary = assembled("stream_commentary_then_function_call")
    assert commentary.text and commentary.calls[0]["name"] == "get_capital"


def test_in_stream_error_raises_the_upstream_message() -> None:
    decoder = PROVIDER.stream_decoder(make_target())
    created, in_progress, error, _failed = jsonl_events("responses/stream_error_insufficient_quota_vercel.jsonl")
    assert decoder.on_event(created) == [] and decoder.on_event(in_progress) == []  # nothing sent yet
    with pytest.raises(UpstreamError) as exc:
        decoder.on_event(error)
    assert QUOTA_MESSAGE in exc.value.message
    assert (exc.value.upstream_status, exc.value.code, exc.value.http_status) == (429, "insufficient_quota", 429)
    assert exc.value.to_body()["error"]["type"] == "insufficient_quota"
    assert decoder.done


def test_response_failed_raises_the_upstream_message() -> None:
    decoder = PROVIDER.stream_decoder(make_target())
    created, _in_progress, _error, failed = jsonl_events("responses/stream_error_insufficient_quota_vercel.jsonl")
    decoder.on_event(created)
    with pytest.raises(UpstreamError) as exc:
        decoder.on_event(failed)
    assert QUOTA_MESSAGE in exc.value.message and exc.value.upstream_status == 429
    assert decoder.done and decoder.finish() == []


def test_flat_error_event_and_unknown_code() -> None:
    decoder = PROVIDER.stream_decoder(make_target())
    event = {"type": "error", "code": "ERR_SOMETHING", "message": "Something went wrong", "param": None}
    with pytest.raises(UpstreamError) as exc:
        decoder.on_event(SSEEvent(orjson.dumps(event).decode(), "error"))
    assert "Something went wrong" in exc.value.message
    assert (exc.value.upstream_status, exc.value.retryable) == (502, True)


def test_incomplete_stream_finishes_with_length() -> None:
    raw = load_bytes("responses/stream_legacy_2025_03_function_call.sse")
    events = sse_events([raw])
    last = orjson.loads(events[-1].data)
    last["type"] = "response.incomplete"
    last["response"] |= {"status": "incomplete", "incomplete_details": {"reason": "max_output_tokens"}}
    events[-1] = SSEEvent(orjson.dumps(last).decode(), "response.incomplete")
    out = reassemble(decode_events(PROVIDER.stream_decoder(make_target()), events))
    assert out.finish_reasons == ["length"] and out.usage is not None


@pytest.mark.parametrize("name", STREAM_FIXTURES)
def test_truncated_stream_is_a_bad_response(name: str) -> None:
    events = sse_events([load_bytes(f"responses/{name}")])
    decoder = PROVIDER.stream_decoder(make_target())
    for event in events[:-1]:
        decoder.on_event(event)
    assert not decoder.done
    with pytest.raises(UpstreamBadResponse) as exc:
        decoder.finish()
    assert "truncated" in exc.value.message and exc.value.fallback


def test_events_after_the_end_and_unknown_events_are_ignored() -> None:
    events = sse_events([load_bytes("responses/stream_legacy_2025_03_function_call.sse")])
    decoder = PROVIDER.stream_decoder(make_target())
    unknown = SSEEvent('{"type":"response.future_thing.delta","delta":"x"}', "response.future_thing.delta")
    chunks = [c for e in [unknown, *events] for c in decoder.on_event(e)]
    assert decoder.on_event(events[-1]) == [] and decoder.on_event(SSEEvent("[DONE]")) == []
    assert reassemble(chunks).calls[0]["arguments"] == '{"country":"France"}'


def test_call_arguments_sent_only_in_the_done_item_are_not_lost() -> None:
    events = [e for e in sse_events([load_bytes("responses/stream_legacy_2025_03_function_call.sse")])]
    kept = [e for e in events if e.event != "response.function_call_arguments.delta"]
    out = reassemble(decode_events(PROVIDER.stream_decoder(make_target()), kept))
    assert out.calls[0]["arguments"] == '{"country":"France"}'
    only_done = [e for e in kept if e.event != "response.output_item.added"]
    out = reassemble(decode_events(PROVIDER.stream_decoder(make_target()), only_done))
    assert out.calls[0] == {
        "id": "call_kL0PCQV7M2WMoVX8V8OtYSAL",
        "name": "get_capital",
        "arguments": '{"country":"France"}',
    }


@pytest.mark.parametrize(
    "data",
    ["not json", "[1, 2]", '{"type":"response.output_item.added"}', '{"type":"response.completed","response":3}'],
)
def test_bad_stream_events_are_bad_responses(data: str) -> None:
    with pytest.raises(UpstreamBadResponse):
        PROVIDER.stream_decoder(make_target()).on_event(SSEEvent(data))


# --- error answers ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "status", "code", "param"),
    [
        ("error_400_reasoning_item_without_following_item", 400, "upstream_error", "input"),
        ("error_400_temperature_below_min_on_stream_request", 400, "decimal_below_min_value", "temperature"),
        ("error_temperature_unsupported_vercel", 400, "upstream_error", "temperature"),
        ("error_insufficient_quota_vercel", 429, "insufficient_quota", None),
    ],
)
def test_error_bodies(name: str, status: int, code: str, param: str | None) -> None:
    body = load_bytes(f"responses/{name}.json")
    err = PROVIDER.error(status, {"retry-after": "3"}, body)
    assert err.message == orjson.loads(body)["error"]["message"]
    assert (err.http_status, err.code, err.param) == (status, code, param)
    assert err.is_client_error == (status == 400)
    assert err.retry_after == 3.0


def test_unknown_model_400_is_a_deployment_fault() -> None:
    body = load_bytes("responses/error_400_model_not_found.json")
    err = PROVIDER.error(400, {}, body)
    assert err.message == "The requested model 'gpt-5.2-proo' does not exist."
    assert (err.upstream_status, err.http_status, err.code, err.param) == (
        404,
        502,
        "upstream_deployment_error",
        "model",
    )
    assert err.fallback and not err.is_client_error


def test_error_without_envelope() -> None:
    err = PROVIDER.error(503, {}, b"<html>Service Unavailable</html>")
    assert isinstance(err, UpstreamErrorPage) and err.http_status == 503 and err.retryable
