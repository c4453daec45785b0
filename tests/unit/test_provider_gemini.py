"""GeminiProvider against the recorded Gemini fixtures (no network).

Request translation is compared with the recorded ``gemini.request.json`` bodies
(written by pydantic-ai through google-genai). Deliberate differences, normalised
by :func:`recorded_fields` and the tests below:

- google-genai writes ``parameters_json_schema`` (snake_case; Gemini's proto-JSON
  parser accepts both spellings); we write the documented ``parametersJsonSchema``.
- pydantic-ai always sends ``generationConfig.responseModalities: ["TEXT"]`` (the
  default) or an empty ``generationConfig``; we send no generationConfig then.
- pydantic-ai gives ``systemInstruction`` a ``role: "user"`` (ignored by Gemini)
  and its own ``id`` on functionCall/functionResponse parts; we send neither.
"""

from __future__ import annotations

import base64
import random
import re
import struct
from pathlib import Path
from typing import Any

import orjson
import pytest

from gateway.canonical import JSON
from gateway.errors import DEPLOYMENT_FAULT_STATUSES, InvalidRequest, UpstreamBadResponse, UpstreamError
from gateway.providers.base import SSEEvent, Target, WireRequest
from gateway.providers.gemini import GeminiProvider
from gateway.providers.gemini_request import SKIP_SIGNATURE
from gateway.providers.gemini_stream import envelope_error, tool_call_signature
from gateway.providers.sse import SSEParser
from tests.unit.fixtures import FIXTURES, user

GEMINI = FIXTURES / "gemini"
CROSS = FIXTURES / "cross_provider"
MODES = ["tool_choice_auto", "tool_choice_required", "tool_choice_none", "tool_choice_list_single"]
BASE = "https://generativelanguage.googleapis.com/v1beta"
PROVIDER = GeminiProvider()
ID_CHARS = re.compile(r"[A-Za-z0-9_-]+")


def target(model: str = "gemini-2.5-flash", **kw: Any) -> Target:
    return Target("gemini", model, BASE, api_key="k", auth_header="x-goog-api-key", auth_scheme="", **kw)


def load(path: Path) -> Any:
    return orjson.loads(path.read_bytes())


def upstream_uri(folder: Path, name: str) -> str:
    uri = next(e["upstream_uri"] for e in load(folder / "index.json") if name in e["files"])
    assert isinstance(uri, str)
    return uri


def body_of(wire: WireRequest) -> JSON:
    assert wire.body is not None
    body: JSON = orjson.loads(wire.body)
    return body


def chat(req: JSON, model: str = "gemini-2.5-flash", *, stream: bool = False, **kw: Any) -> JSON:
    return body_of(PROVIDER.chat_request(req, target(model, **kw), stream=stream))


def recorded_fields(recorded: JSON) -> JSON:
    """A recorded request reduced to what we send (see the module docstring)."""
    out: JSON = {"contents": [strip_ids(c) for c in recorded["contents"]]}
    if "systemInstruction" in recorded:
        out["systemInstruction"] = {"parts": recorded["systemInstruction"]["parts"]}
    if "tools" in recorded:
        out["tools"] = [
            {"functionDeclarations": [camel_schema(d) for d in tool["functionDeclarations"]]}
            for tool in recorded["tools"]
        ]
    if "toolConfig" in recorded:
        out["toolConfig"] = recorded["toolConfig"]
    config = {k: v for k, v in recorded.get("generationConfig", {}).items() if k != "responseModalities"}
    if config:
        out["generationConfig"] = config
    return out


def strip_ids(content: JSON) -> JSON:
    parts = []
    for part in content["parts"]:
        key = next((k for k in ("functionCall", "functionResponse") if k in part), None)
        parts.append({**part, key: {k: v for k, v in part[key].items() if k != "id"}} if key else part)
    return {**content, "parts": parts}


def camel_schema(decl: JSON) -> JSON:
    if "parameters_json_schema" not in decl:
        return decl
    out = {k: v for k, v in decl.items() if k != "parameters_json_schema"}
    return {**out, "parametersJsonSchema": decl["parameters_json_schema"]}


# --- requests: cross-provider ground truth ------------------------------------------


@pytest.mark.parametrize("mode", MODES)
def test_cross_provider_request(mode: str) -> None:
    openai_req = load(CROSS / mode / "openai_chat.request.json")
    recorded = recorded_fields(load(CROSS / mode / "gemini.request.json"))
    wire = PROVIDER.chat_request(openai_req, target(), stream=False)
    assert wire.method == "POST"
    assert wire.url == upstream_uri(CROSS / mode, "gemini.request.json")
    assert wire.headers["x-goog-api-key"] == "k"
    assert "authorization" not in wire.headers
    body = body_of(wire)
    assert set(body) == {"contents", "tools", "toolConfig"}
    assert body["contents"] == recorded["contents"]
    assert body["toolConfig"] == recorded["toolConfig"]
    ours = body["tools"][0]["functionDeclarations"]
    theirs = recorded["tools"][0]["functionDeclarations"]
    assert [d["name"] for d in ours] == [d["name"] for d in theirs]
    assert [d["description"] for d in ours] == [d["description"] for d in theirs]
    for decl, want, tool in zip(ours, theirs, openai_req["tools"], strict=True):
        # The OpenAI schema goes through verbatim; pydantic-ai added
        # additionalProperties:false only for OpenAI strict mode in some modes.
        assert decl["parametersJsonSchema"] == tool["function"]["parameters"]
        assert without_additional(decl["parametersJsonSchema"]) == without_additional(want["parametersJsonSchema"])


def without_additional(schema: JSON) -> JSON:
    return {k: v for k, v in schema.items() if k != "additionalProperties"}


def test_tool_choice_table_of_cross_provider_readme() -> None:
    expected = {
        "tool_choice_auto": {"mode": "AUTO"},
        "tool_choice_required": {"mode": "ANY"},
        "tool_choice_none": {"mode": "NONE"},
        "tool_choice_list_single": {"mode": "ANY", "allowedFunctionNames": ["get_weather"]},
    }
    for mode, config in expected.items():
        body = chat(load(CROSS / mode / "openai_chat.request.json"))
        assert body["toolConfig"] == {"functionCallingConfig": config}


# --- requests: gemini/*.request.json ----------------------------------------------


def weather_tool() -> JSON:
    params = load(CROSS / "tool_choice_auto" / "openai_chat.request.json")["tools"][0]["function"]
    return {"type": "function", "function": params}


def test_generate_content_text_request() -> None:
    req = {"model": "alias", "messages": [{"role": "system", "content": "You are a chatbot."}, user("Hello!")]}
    wire = PROVIDER.chat_request(req, target(), stream=False)
    assert wire.url == upstream_uri(GEMINI, "generate_content_text.request.json")
    assert body_of(wire) == recorded_fields(load(GEMINI / "generate_content_text.request.json"))


def test_generate_content_function_call_request() -> None:
    req = {"messages": [user("What's the weather in Paris?")], "tools": [weather_tool()], "tool_choice": "auto"}
    recorded = recorded_fields(load(GEMINI / "generate_content_function_call.request.json"))
    assert chat(req) == recorded


def test_stream_text_three_chunks_request() -> None:
    req = {
        "messages": [
            {"role": "system", "content": "You are a helpful chatbot."},
            user("What is the capital of France?"),
        ],
        "temperature": 0.0,
        "stream": True,
    }
    wire = PROVIDER.chat_request(req, target("gemini-2.0-flash-exp"), stream=True)
    assert wire.url == upstream_uri(GEMINI, "stream_text_three_chunks.request.json")
    assert wire.url.endswith(":streamGenerateContent?alt=sse")
    body = body_of(wire)
    assert body == recorded_fields(load(GEMINI / "stream_text_three_chunks.request.json"))
    assert body["generationConfig"] == {"temperature": 0.0}


def capital_tools() -> list[JSON]:
    def tool(name: str, desc: str, arg: str, arg_desc: str) -> JSON:
        props = {arg: {"description": arg_desc, "type": "string"}}
        schema = {"properties": props, "required": [arg], "type": "object"}
        return {"type": "function", "function": {"name": name, "description": desc, "parameters": schema}}

    return [
        tool("get_capital", "Get the capital of a country.", "country", "The country name."),
        tool("get_temperature", "Get the temperature in a city.", "city", "The city name."),
    ]


def upper_types(schema: Any) -> Any:
    """JSON Schema -> the OpenAPI-subset spelling google-genai recorded (type "STRING")."""
    if isinstance(schema, dict):
        return {k: v.upper() if k == "type" else upper_types(v) for k, v in schema.items()}
    return schema


def test_stream_function_call_request() -> None:
    req = {
        "messages": [
            {"role": "system", "content": "You are a helpful chatbot."},
            user("What is the temperature of the capital of France?"),
        ],
        "tools": capital_tools(),
    }
    wire = PROVIDER.chat_request(req, target("gemini-2.0-flash"), stream=True)
    assert wire.url == upstream_uri(GEMINI, "stream_function_call.request.json")
    body = body_of(wire)
    recorded = recorded_fields(load(GEMINI / "stream_function_call.request.json"))
    assert body["contents"] == recorded["contents"]
    assert body["systemInstruction"] == recorded["systemInstruction"]
    # Recorded with the OpenAPI-subset ``parameters`` (type "OBJECT"); we send the
    # client's JSON Schema as ``parametersJsonSchema``: same schema, other spelling.
    for ours, theirs in zip(
        body["tools"][0]["functionDeclarations"], recorded["tools"][0]["functionDeclarations"], strict=True
    ):
        assert upper_types(ours.pop("parametersJsonSchema")) == theirs.pop("parameters")
        assert ours == theirs


def test_stream_after_function_response_request() -> None:
    req = {
        "messages": [
            {"role": "system", "content": "You are a helpful chatbot."},
            user("What is the temperature of the capital of France?"),
            tool_call_message("c1", "get_capital", '{"country": "France"}'),
            {"role": "tool", "tool_call_id": "c1", "content": '{"return_value": "Paris"}'},
            tool_call_message("c2", "get_temperature", '{"city":"Paris"}'),
            {"role": "tool", "tool_call_id": "c2", "content": [{"type": "text", "text": '{"return_value": "30°C"}'}]},
        ],
        "tools": capital_tools(),
    }
    recorded = recorded_fields(load(GEMINI / "stream_text_multi_chunk_after_function_response.request.json"))
    body = chat(req, "gemini-2.0-flash", stream=True)
    assert body["contents"] == recorded["contents"]
    assert body["contents"][2]["parts"][0]["functionResponse"]["response"] == {"return_value": "Paris"}


def tool_call_message(call_id: str, name: str, arguments: str) -> JSON:
    call = {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}
    return {"role": "assistant", "content": None, "tool_calls": [call]}


def empty_tool(name: str) -> JSON:
    params = {"additionalProperties": False, "properties": {}, "type": "object"}
    return {"type": "function", "function": {"name": name, "description": "", "parameters": params}}


def test_stream_thought_signature_request() -> None:
    req = {"messages": [user("What is the capital of the user country? Call the tool")]}
    wire = PROVIDER.chat_request(
        {**req, "tools": [empty_tool("get_country")]}, target("gemini-3-pro-preview"), stream=True
    )
    assert wire.url == upstream_uri(GEMINI, "stream_function_call_thought_signature.request.json")
    recorded = recorded_fields(load(GEMINI / "stream_function_call_thought_signature.request.json"))
    assert body_of(wire) == recorded


def test_vertex_request_body() -> None:
    # Recorded against Vertex AI (other URL scheme); the body is the same format.
    text = "Use the get_file tool now to retrieve a image file, then describe what you received."
    body = chat({"messages": [user(text)], "tools": [empty_tool("get_file")]}, "gemini-3-flash-preview")
    assert body == recorded_fields(load(GEMINI / "error_400_invalid_argument_vertex.request.json"))


def test_not_found_model_request() -> None:
    wire = PROVIDER.chat_request({"messages": [user("hello")]}, target("gemini-3.6-flahs"), stream=False)
    assert wire.url == upstream_uri(GEMINI, "error_404_not_found_model.request.json")
    assert body_of(wire) == recorded_fields(load(GEMINI / "error_404_not_found_model.request.json"))


# --- requests: translation rules -----------------------------------------------------


def test_roles_system_developer_and_merging() -> None:
    body = chat(
        {
            "messages": [
                {"role": "developer", "content": [{"type": "text", "text": "Be brief."}]},
                user("a"),
                user("b"),
                {"role": "system", "content": "Late rule."},
                {"role": "assistant", "content": "c"},
                {"role": "assistant", "content": [{"type": "text", "text": "d"}]},
                user("e"),
            ]
        }
    )
    assert body["systemInstruction"] == {"parts": [{"text": "Be brief."}, {"text": "Late rule."}]}
    assert body["contents"] == [
        {"role": "user", "parts": [{"text": "a"}, {"text": "b"}]},
        {"role": "model", "parts": [{"text": "c"}, {"text": "d"}]},
        {"role": "user", "parts": [{"text": "e"}]},
    ]


def test_parallel_tool_results_and_follow_up_share_one_user_turn() -> None:
    calls = [
        {"id": "a", "type": "function", "function": {"name": "f", "arguments": '{"x":1}'}},
        {"id": "b", "type": "function", "function": {"name": "g", "arguments": ""}},
    ]
    body = chat(
        {
            "messages": [
                user("go"),
                {"role": "assistant", "content": "calling", "tool_calls": calls},
                {"role": "tool", "tool_call_id": "b", "content": "plain text"},
                {"role": "tool", "tool_call_id": "a", "content": "[1, 2]"},
                user("thanks"),
            ]
        }
    )
    model_turn, answers = body["contents"][1], body["contents"][2]
    assert model_turn == {
        "role": "model",
        "parts": [
            {"text": "calling"},
            {"functionCall": {"name": "f", "args": {"x": 1}}},
            {"functionCall": {"name": "g", "args": {}}},
        ],
    }
    assert answers == {
        "role": "user",
        "parts": [
            {"functionResponse": {"name": "g", "response": {"result": "plain text"}}},
            {"functionResponse": {"name": "f", "response": {"result": "[1, 2]"}}},
            {"text": "thanks"},
        ],
    }


def test_invalid_tool_arguments_name_the_param() -> None:
    msgs = [user("x"), tool_call_message("a", "f", "{not json")]
    with pytest.raises(InvalidRequest) as err:
        chat({"messages": msgs})
    assert err.value.param == "messages[1].tool_calls[0].function.arguments"
    with pytest.raises(InvalidRequest) as err:
        chat({"messages": [user("x"), tool_call_message("a", "f", "[1]")]})
    assert err.value.param == "messages[1].tool_calls[0].function.arguments"


def test_unknown_tool_call_id() -> None:
    msgs = [user("x"), tool_call_message("a", "f", "{}"), {"role": "tool", "tool_call_id": "zz", "content": "1"}]
    with pytest.raises(InvalidRequest) as err:
        chat({"messages": msgs})
    assert err.value.param == "messages[2].tool_call_id"
    assert err.value.status == 400


def test_image_parts() -> None:
    content = [
        {"type": "text", "text": "look"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
        {"type": "image_url", "image_url": {"url": "https://example.com/cat.PNG?size=2"}},
        {"type": "image_url", "image_url": {"url": "https://example.com/photo", "detail": "high"}},
        {"type": "image_url", "image_url": {"url": "http://example.com/a.webp"}},
    ]
    parts = chat({"messages": [{"role": "user", "content": content}]})["contents"][0]["parts"]
    assert parts == [
        {"text": "look"},
        {"inlineData": {"mimeType": "image/png", "data": "iVBORw0KGgo="}},
        {"fileData": {"mimeType": "image/png", "fileUri": "https://example.com/cat.PNG?size=2"}},
        {"fileData": {"mimeType": "image/jpeg", "fileUri": "https://example.com/photo"}},
        {"fileData": {"mimeType": "image/webp", "fileUri": "http://example.com/a.webp"}},
    ]


@pytest.mark.parametrize(
    ("part", "param"),
    [
        ({"type": "image_url", "image_url": {"url": "data:image/png,abc"}}, "messages[0].content[0].image_url.url"),
        ({"type": "video_url", "video_url": {"url": "https://example.com/a.mp4"}}, "messages[0].content[0].type"),
        ({"type": "file", "file": {"file_id": "file-abc"}}, "messages[0].content[0].file.file_id"),
        ({"type": "image_url", "image_url": {"url": "cat.png"}}, "messages[0].content[0].image_url.url"),
    ],
)
def test_unsupported_parts(part: JSON, param: str) -> None:
    with pytest.raises(InvalidRequest) as err:
        chat({"messages": [{"role": "user", "content": [part]}]})
    assert err.value.param == param


def test_generation_config() -> None:
    req = {
        "messages": [user("x")],
        "temperature": 0.3,
        "top_p": 0.9,
        "top_k": 40,
        "max_tokens": 10,
        "max_completion_tokens": 20,
        "stop": "END",
        "n": 2,
        "presence_penalty": 0.5,
        "frequency_penalty": -0.5,
        "seed": 7,
        "response_format": {"type": "json_object"},
    }
    assert chat(req)["generationConfig"] == {
        "temperature": 0.3,
        "topP": 0.9,
        "topK": 40,
        "maxOutputTokens": 20,
        "stopSequences": ["END"],
        "candidateCount": 2,
        "presencePenalty": 0.5,
        "frequencyPenalty": -0.5,
        "seed": 7,
        "responseMimeType": "application/json",
    }
    config = chat({"messages": [user("x")], "max_tokens": 10, "stop": ["a", "b"]})["generationConfig"]
    assert config == {"maxOutputTokens": 10, "stopSequences": ["a", "b"]}


def test_json_schema_response_format() -> None:
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"]}
    fmt = {"type": "json_schema", "json_schema": {"name": "x", "strict": True, "schema": schema}}
    assert chat({"messages": [user("x")], "response_format": fmt})["generationConfig"] == {
        "responseMimeType": "application/json",
        "responseJsonSchema": schema,
    }
    assert "generationConfig" not in chat({"messages": [user("x")], "response_format": {"type": "text"}})


def test_drop_params_and_openai_only_params() -> None:
    req = {
        "model": "alias",
        "messages": [user("x")],
        "temperature": 0.2,
        "seed": 3,
        "user": "u1",
        "logit_bias": {"1": 2},
        "logprobs": True,
        "parallel_tool_calls": False,
        "stream_options": {"include_usage": True},
        "metadata": {"a": "b"},
        "reasoning_effort": "low",
        "max_tokens": None,
    }
    # logprobs and reasoning_effort translate (test_gemini_inputs.py, test_gemini_reasoning.py)
    # unless the deployment drops them.
    body = chat(req, drop_params=frozenset({"temperature", "logprobs", "reasoning_effort"}))
    assert body == {"contents": [{"role": "user", "parts": [{"text": "x"}]}], "generationConfig": {"seed": 3}}


def test_bad_tool_choice_and_tools() -> None:
    with pytest.raises(InvalidRequest) as err:
        chat({"messages": [user("x")], "tools": [weather_tool()], "tool_choice": {"type": "custom"}})
    assert err.value.param == "tool_choice"
    with pytest.raises(InvalidRequest) as err:
        chat({"messages": [user("x")], "tools": [{"type": "custom", "custom": {"name": "x"}}]})
    assert err.value.param == "tools[0]"
    with pytest.raises(InvalidRequest) as err:
        chat({"messages": [{"role": "system", "content": "only"}]})
    assert err.value.param == "messages"


# --- responses ----------------------------------------------------------------------


def fixture_calls(body: JSON) -> list[JSON]:
    parts = body["candidates"][0]["content"]["parts"]
    return [p for p in parts if "functionCall" in p]


@pytest.mark.parametrize("mode", MODES)
def test_cross_provider_response(mode: str) -> None:
    raw = load(CROSS / mode / "gemini.json")
    openai = load(CROSS / mode / "openai_chat.json")["choices"][0]
    out = PROVIDER.chat_response(raw, target())
    choice = out["choices"][0]
    assert out["object"] == "chat.completion"
    assert out["id"] == raw["responseId"]
    assert out["model"] == "gemini-2.5-flash"
    assert choice["finish_reason"] == openai["finish_reason"]  # same logical answer as OpenAI's
    meta = raw["usageMetadata"]
    assert out["usage"]["prompt_tokens"] == meta["promptTokenCount"]
    assert out["usage"]["completion_tokens"] == meta["candidatesTokenCount"] + meta["thoughtsTokenCount"]
    assert out["usage"]["total_tokens"] == meta["totalTokenCount"]
    assert out["usage"]["completion_tokens_details"] == {"reasoning_tokens": meta["thoughtsTokenCount"]}
    calls = fixture_calls(raw)
    got = choice["message"].get("tool_calls", [])
    assert len(got) == len(calls) == len(openai["message"].get("tool_calls") or [])
    for tc, part in zip(got, calls, strict=True):
        assert tc["type"] == "function"
        assert tc["function"]["name"] == part["functionCall"]["name"] == "get_weather"
        assert orjson.loads(tc["function"]["arguments"]) == part["functionCall"]["args"] == {"city": "Paris"}
        assert tool_call_signature(tc["id"]) == part["thoughtSignature"]
        assert ID_CHARS.fullmatch(tc["id"])
    if not calls:
        assert choice["message"]["content"] == raw["candidates"][0]["content"]["parts"][0]["text"]
        assert out["usage"]["completion_tokens"] == 128 + 996


def test_generate_content_text_response() -> None:
    out = PROVIDER.chat_response(load(GEMINI / "generate_content_text.json"), target("x"))
    assert out["choices"][0]["message"] == {"role": "assistant", "content": "Hello! How can I help you today?"}
    assert out["choices"][0]["finish_reason"] == "stop"
    assert out["id"] == "bzlXaa_EE_aHqtsPi_zw8Ao"
    assert out["model"] == "gemini-2.5-flash"
    assert out["usage"] == {
        "prompt_tokens": 9,
        "completion_tokens": 43,
        "total_tokens": 52,
        "completion_tokens_details": {"reasoning_tokens": 34},
    }


def test_generate_content_function_call_response() -> None:
    raw = load(GEMINI / "generate_content_function_call.json")
    out = PROVIDER.chat_response(raw, target())
    message = out["choices"][0]["message"]
    assert message["content"] is None
    assert message["tool_calls"][0]["function"] == {"name": "get_weather", "arguments": '{"city":"Paris"}'}
    assert out["choices"][0]["finish_reason"] == "tool_calls"
    assert out["usage"]["total_tokens"] == 112


def test_vertex_response() -> None:
    # Labelled an error in the fixture index, but the recorded body is a 200 answer.
    raw = load(GEMINI / "error_400_invalid_argument_vertex.json")
    out = PROVIDER.chat_response(raw, target("gemini-3-flash-preview"))
    call = out["choices"][0]["message"]["tool_calls"][0]
    assert orjson.loads(call["function"]["arguments"]) == {"type": "IMAGE"}
    assert tool_call_signature(call["id"]) == fixture_calls(raw)[0]["thoughtSignature"]
    assert out["choices"][0]["finish_reason"] == "tool_calls"
    assert out["usage"]["prompt_tokens"] == 22
    assert out["usage"]["completion_tokens"] == 9 + 303
    assert out["usage"]["total_tokens"] == 334


@pytest.mark.parametrize(
    ("raw", "with_call", "expected"),
    [
        ("STOP", False, "stop"),
        ("STOP", True, "tool_calls"),
        ("MAX_TOKENS", False, "length"),
        ("SAFETY", False, "content_filter"),
        ("RECITATION", False, "content_filter"),
        ("BLOCKLIST", False, "content_filter"),
        ("PROHIBITED_CONTENT", False, "content_filter"),
        ("SPII", False, "content_filter"),
        ("IMAGE_SAFETY", False, "content_filter"),
        ("OTHER", False, "stop"),
        ("MALFORMED_FUNCTION_CALL", False, "stop"),
    ],
)
def test_finish_reasons(raw: str, with_call: bool, expected: str) -> None:
    parts: list[JSON] = [{"text": "hi"}]
    if with_call:
        parts.append({"functionCall": {"name": "f", "args": {}}})
    body = {"candidates": [{"content": {"parts": parts, "role": "model"}, "finishReason": raw}]}
    assert PROVIDER.chat_response(body, target())["choices"][0]["finish_reason"] == expected


def test_thoughts_cache_and_candidates() -> None:
    body = {
        "candidates": [
            {"content": {"parts": [{"text": "thinking...", "thought": True}, {"text": "A"}]}, "finishReason": "STOP"},
            {"index": 1, "content": {"parts": [{"text": "B"}]}, "finishReason": "MAX_TOKENS"},
        ],
        "usageMetadata": {"promptTokenCount": 100, "candidatesTokenCount": 5, "cachedContentTokenCount": 80},
    }
    out = PROVIDER.chat_response(body, target("gemini-2.5-pro"))
    assert [c["message"]["content"] for c in out["choices"]] == ["A", "B"]
    assert [c["finish_reason"] for c in out["choices"]] == ["stop", "length"]
    assert [c["index"] for c in out["choices"]] == [0, 1]
    assert out["model"] == "gemini-2.5-pro"
    assert out["id"].startswith("chatcmpl-")
    assert out["usage"] == {
        "prompt_tokens": 100,
        "completion_tokens": 5,
        "total_tokens": 105,
        "prompt_tokens_details": {"cached_tokens": 80},
    }


def test_blocked_prompt() -> None:
    body = {"promptFeedback": {"blockReason": "SAFETY"}, "usageMetadata": {"promptTokenCount": 7}}
    out = PROVIDER.chat_response(body, target())
    assert out["choices"][0]["message"] == {"role": "assistant", "content": None}
    assert out["choices"][0]["finish_reason"] == "content_filter"
    assert out["usage"]["prompt_tokens"] == 7


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"candidates": []},
        {"candidates": ["x"]},
        {"candidates": [{"content": {"parts": "x"}}]},
        {"candidates": [{"content": {"parts": [{"functionCall": {"args": {}}}]}}]},
    ],
)
def test_bad_responses(body: JSON) -> None:
    with pytest.raises(UpstreamBadResponse):
        PROVIDER.chat_response(body, target())


# --- thought signatures ---------------------------------------------------------------


def follow_up(call: JSON, model: str) -> JSON:
    msgs = [
        user("q"),
        {"role": "assistant", "content": None, "tool_calls": [call]},
        {"role": "tool", "tool_call_id": call["id"], "content": "sunny"},
    ]
    return chat({"messages": msgs}, model)


def test_thought_signature_round_trip_non_stream() -> None:
    raw = load(GEMINI / "generate_content_function_call.json")
    signature = fixture_calls(raw)[0]["thoughtSignature"]
    call = PROVIDER.chat_response(raw, target())["choices"][0]["message"]["tool_calls"][0]
    contents = follow_up(call, "gemini-2.5-flash")["contents"]
    assert contents[1]["parts"] == [
        {"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}, "thoughtSignature": signature}
    ]
    assert contents[2]["parts"] == [{"functionResponse": {"name": "get_weather", "response": {"result": "sunny"}}}]


def test_thought_signature_round_trip_stream() -> None:
    path = GEMINI / "stream_function_call_thought_signature.sse"
    signature = sse_payloads(path)[0]["candidates"][0]["content"]["parts"][0]["thoughtSignature"]
    chunks = decode(path.read_bytes(), "gemini-3-pro-preview")
    call = next(c["choices"][0]["delta"]["tool_calls"][0] for c in chunks if tool_deltas(c))
    replay = {k: call[k] for k in ("id", "type", "function")}
    parts = follow_up(replay, "gemini-3-pro-preview")["contents"][1]["parts"]
    assert parts == [{"functionCall": {"name": "get_country", "args": {}}, "thoughtSignature": signature}]


def test_missing_signature_on_gemini3_gets_placeholder() -> None:
    calls = [
        {"id": "call_foreign1", "type": "function", "function": {"name": "f", "arguments": "{}"}},
        {"id": "call_foreign2", "type": "function", "function": {"name": "g", "arguments": "{}"}},
    ]
    msgs = [user("q"), {"role": "assistant", "content": None, "tool_calls": calls}]
    parts = chat({"messages": msgs}, "gemini-3-pro-preview")["contents"][1]["parts"]
    assert [p.get("thoughtSignature") for p in parts] == [SKIP_SIGNATURE, None]
    parts = chat({"messages": msgs}, "gemini-2.5-flash")["contents"][1]["parts"]
    assert [p.get("thoughtSignature") for p in parts] == [None, None]


def test_parallel_calls_keep_only_the_real_signature() -> None:
    body = {
        "candidates": [
            {
                "content": {
                    "parts": [
                        {"functionCall": {"name": "f", "args": {"a": 1}}, "thoughtSignature": "AB+/cd=="},
                        {"functionCall": {"name": "g", "args": {}}},
                    ]
                },
                "finishReason": "STOP",
            }
        ]
    }
    calls = PROVIDER.chat_response(body, target())["choices"][0]["message"]["tool_calls"]
    assert [tool_call_signature(c["id"]) for c in calls] == ["AB+/cd==", None]
    assert all(ID_CHARS.fullmatch(c["id"]) for c in calls)
    assert calls[0]["id"] != calls[1]["id"]
    msgs = [user("q"), {"role": "assistant", "content": None, "tool_calls": calls}]
    parts = chat({"messages": msgs}, "gemini-3-pro-preview")["contents"][1]["parts"]
    assert [p.get("thoughtSignature") for p in parts] == ["AB+/cd==", None]


# --- streams ----------------------------------------------------------------------------

SSE_FILES = sorted(p.name for p in GEMINI.glob("*.sse"))


def sse_payloads(path: Path) -> list[JSON]:
    """The fixture's events parsed independently of SSEParser (``\\r\\n\\r\\n`` separated)."""
    events = [e for e in path.read_bytes().split(b"\r\n\r\n") if e.strip()]
    return [orjson.loads(e.removeprefix(b"data: ")) for e in events]


def decode(raw: bytes, model: str, sizes: list[int] | None = None) -> list[JSON]:
    parser = SSEParser()
    decoder = PROVIDER.stream_decoder(target(model))
    pieces = [raw] if sizes is None else split(raw, sizes)
    chunks: list[JSON] = []
    for piece in pieces:
        for event in parser.feed(piece):
            chunks += decoder.on_event(event)
    for event in parser.close():
        chunks += decoder.on_event(event)
    assert decoder.done
    chunks += decoder.finish()
    assert decoder.usage == chunks[-1]["usage"]
    return chunks


def split(raw: bytes, sizes: list[int]) -> list[bytes]:
    pieces, pos, i = [], 0, 0
    while pos < len(raw):
        pieces.append(raw[pos : pos + sizes[i % len(sizes)]])
        pos += sizes[i % len(sizes)]
        i += 1
    return pieces


def tool_deltas(chunk: JSON) -> list[JSON]:
    return [tc for c in chunk["choices"] for tc in c["delta"].get("tool_calls", [])]


def comparable(chunks: list[JSON]) -> list[JSON]:
    """Chunks with the random parts (tool-call ids, created) made comparable."""
    out = orjson.loads(orjson.dumps(chunks))
    for chunk in out:
        chunk["created"] = 0
        for tc in tool_deltas(chunk):
            tc["id"] = ("signature", tool_call_signature(tc["id"]))
    return list(out)


@pytest.mark.parametrize("name", SSE_FILES)
def test_stream_in_one_piece_equals_small_random_splits(name: str) -> None:
    raw = (GEMINI / name).read_bytes()
    whole = comparable(decode(raw, "requested-model"))
    rng = random.Random(name)
    for _ in range(5):
        sizes = [rng.randint(1, 9) for _ in range(20)]
        assert comparable(decode(raw, "requested-model", sizes)) == whole


@pytest.mark.parametrize("name", SSE_FILES)
def test_stream_envelope(name: str) -> None:
    payloads = sse_payloads(GEMINI / name)
    chunks = decode((GEMINI / name).read_bytes(), "requested-model")
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    assert all(c["id"] == payloads[0]["responseId"] for c in chunks)
    assert all(c["model"] == payloads[0]["modelVersion"] for c in chunks)
    assert len({c["created"] for c in chunks}) == 1
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    assert chunks[-1]["choices"] == []
    meta = payloads[-1]["usageMetadata"]
    assert chunks[-1]["usage"]["prompt_tokens"] == meta["promptTokenCount"]
    assert chunks[-1]["usage"]["total_tokens"] == meta["totalTokenCount"]


@pytest.mark.parametrize("name", SSE_FILES)
def test_stream_reassembles_fixture(name: str) -> None:
    parts = [p for e in sse_payloads(GEMINI / name) for p in e["candidates"][0]["content"]["parts"]]
    chunks = decode((GEMINI / name).read_bytes(), "requested-model", [2, 7, 3])
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"])
    # Thought parts (`thought: true`) are not answer text: they come as reasoning_content.
    assert text == "".join(p.get("text", "") for p in parts if not p.get("thought"))
    reasoning = "".join(c["choices"][0]["delta"].get("reasoning_content", "") for c in chunks if c["choices"])
    assert reasoning == "".join(p.get("text", "") for p in parts if p.get("thought"))
    calls = [tc for c in chunks for tc in tool_deltas(c)]
    recorded_calls = [p for p in parts if "functionCall" in p]
    assert [tc["index"] for tc in calls] == list(range(len(recorded_calls)))
    for tc, part in zip(calls, recorded_calls, strict=True):
        assert tc["function"]["name"] == part["functionCall"]["name"]
        assert orjson.loads(tc["function"]["arguments"]) == part["functionCall"]["args"]
        assert tool_call_signature(tc["id"]) == part.get("thoughtSignature")
    finishes = [c["choices"][0]["finish_reason"] for c in chunks if c["choices"]]
    assert [f for f in finishes if f] == ["tool_calls" if recorded_calls else "stop"]


def test_stream_concrete_values() -> None:
    chunks = decode((GEMINI / "stream_text_three_chunks.sse").read_bytes(), "m", [3, 1, 4, 1, 5])
    assert [c["choices"][0]["delta"].get("content") for c in chunks[:3]] == [
        "The",
        " capital of France",
        " is Paris.\n",
    ]
    assert chunks[3]["choices"][0]["finish_reason"] == "stop"
    assert chunks[-1]["usage"] == {"prompt_tokens": 13, "completion_tokens": 8, "total_tokens": 21}
    chunks = decode((GEMINI / "stream_text_multi_chunk_after_function_response.sse").read_bytes(), "m")
    assert (
        "".join(c["choices"][0]["delta"].get("content", "") for c in chunks[:-1])
        == "The temperature in Paris is 30°C.\n"
    )
    assert chunks[-1]["usage"] == {"prompt_tokens": 79, "completion_tokens": 12, "total_tokens": 91}
    chunks = decode((GEMINI / "stream_function_call_thought_signature.sse").read_bytes(), "m")
    assert chunks[-1]["usage"] == {
        "prompt_tokens": 29,
        "completion_tokens": 212,
        "total_tokens": 241,
        "completion_tokens_details": {"reasoning_tokens": 202},
    }
    call = tool_deltas(decode((GEMINI / "stream_function_call.sse").read_bytes(), "m")[0])[0]
    assert call["function"] == {"name": "get_capital", "arguments": '{"country":"France"}'}


def test_truncated_stream() -> None:
    raw = (GEMINI / "stream_text_three_chunks.sse").read_bytes()
    last = raw.rindex(b"data: ")
    decoder = PROVIDER.stream_decoder(target())
    chunks = [c for e in SSEParser().feed(raw[:last]) for c in decoder.on_event(e)]
    assert len(chunks) == 2
    assert not decoder.done
    with pytest.raises(UpstreamBadResponse):
        decoder.finish()
    parser = SSEParser()
    cut = PROVIDER.stream_decoder(target())
    parser.feed(raw[: last + 40])
    with pytest.raises(UpstreamBadResponse):  # the half event is not JSON
        for event in parser.close():
            cut.on_event(event)


def test_stream_error_event() -> None:
    body = next(
        e["body"] for e in load(GEMINI / "reported_error_bodies.json")["entries"] if e.get("http_status") == 503
    )
    decoder = PROVIDER.stream_decoder(target())
    with pytest.raises(UpstreamError) as err:
        decoder.on_event(SSEEvent(orjson.dumps(body).decode()))
    assert err.value.upstream_status == 503
    assert err.value.retryable
    assert err.value.code == "unavailable"


def test_stream_blocked_prompt() -> None:
    decoder = PROVIDER.stream_decoder(target())
    event = SSEEvent(
        '{"promptFeedback": {"blockReason": "PROHIBITED_CONTENT"}, "usageMetadata": {"promptTokenCount": 4}}'
    )
    chunks = decoder.on_event(event)
    assert chunks[0]["choices"][0]["finish_reason"] == "content_filter"
    assert decoder.done
    assert decoder.finish()[0]["usage"]["prompt_tokens"] == 4


# --- embeddings -------------------------------------------------------------------------


def test_embed_request_matches_recorded() -> None:
    wire = PROVIDER.embed_request({"model": "emb", "input": "Hello, world!"}, target("nonexistent-model"))
    assert wire.url == upstream_uri(GEMINI, "error_404_not_found_embed.request.json")
    recorded = load(GEMINI / "error_404_not_found_embed.request.json")["requests"][0]
    # pydantic-ai also sent taskType RETRIEVAL_QUERY, which OpenAI's API cannot express.
    assert body_of(wire) == {"requests": [{"model": recorded["model"], "content": recorded["content"]}]}


def test_embed_request_list_and_dimensions() -> None:
    body = body_of(PROVIDER.embed_request({"input": ["a", "b"], "dimensions": 256}, target("text-embedding-004")))
    assert body == {
        "requests": [
            {"model": "models/text-embedding-004", "content": {"parts": [{"text": t}]}, "outputDimensionality": 256}
            for t in ("a", "b")
        ]
    }


@pytest.mark.parametrize("value", [[1, 2, 3], [[1, 2], [3]], [], None, ["a", 1]])
def test_embed_token_arrays_refused(value: Any) -> None:
    with pytest.raises(InvalidRequest) as err:
        PROVIDER.embed_request({"input": value}, target())
    assert err.value.param == "input"


def test_embed_response() -> None:
    # The documented batchEmbedContents response shape: {"embeddings": [{"values": [...]}, ...]}.
    body = {"embeddings": [{"values": [0.5, -1.25, 2.0]}, {"values": [0.0, 1.0, -0.5]}]}
    req = {"model": "my-embed", "input": ["Hello, world!", "abc"]}
    out = PROVIDER.embed_response(body, target(), req)
    assert out == {
        "object": "list",
        "data": [
            {"object": "embedding", "index": 0, "embedding": [0.5, -1.25, 2.0]},
            {"object": "embedding", "index": 1, "embedding": [0.0, 1.0, -0.5]},
        ],
        "model": "my-embed",
        "usage": {"prompt_tokens": 4, "total_tokens": 4},  # ceil(16 chars / 4)
    }
    b64 = PROVIDER.embed_response(body, target(), {**req, "encoding_format": "base64"})
    raw = base64.b64decode(b64["data"][0]["embedding"])
    assert list(struct.unpack("<3f", raw)) == [0.5, -1.25, 2.0]
    one = PROVIDER.embed_response(
        {"embeddings": [{"values": [1.0]}]}, target(), {"model": "m", "input": "Hello, world!"}
    )
    assert one["usage"] == {"prompt_tokens": 4, "total_tokens": 4}  # ceil(13 / 4)
    with pytest.raises(UpstreamBadResponse):
        PROVIDER.embed_response({"embeddings": [{"values": [1.0]}]}, target(), req)
    with pytest.raises(UpstreamBadResponse):
        PROVIDER.embed_response({"error": "x"}, target(), req)


# --- errors -----------------------------------------------------------------------------


def error_for(status: int, body: Any, headers: dict[str, str] | None = None) -> UpstreamError:
    return PROVIDER.error(status, headers or {}, orjson.dumps(body))


@pytest.mark.parametrize("name", ["error_404_not_found_model.json", "error_404_not_found_embed.json"])
def test_not_found_errors(name: str) -> None:
    body = load(GEMINI / name)
    err = error_for(404, body)
    assert err.upstream_status == 404
    assert err.message == body["error"]["message"]
    assert err.http_status == 502  # our deployment names a model the upstream lacks
    assert err.fallback
    assert not err.retryable
    assert err.code == "upstream_deployment_error"  # errors.UpstreamError hides codes of 401/403/404


def test_resource_exhausted_retry_info() -> None:
    err = error_for(429, load(GEMINI / "error_429_resource_exhausted_vercel.json"))
    assert err.upstream_status == 429
    assert err.http_status == 429
    assert err.code == "resource_exhausted"
    assert err.retryable
    assert err.retry_after == pytest.approx(34.4)
    assert err.headers["retry-after"] == "34"
    assert err.message == "You exceeded your current quota, please check your plan."
    header_wins = error_for(429, load(GEMINI / "error_429_resource_exhausted_vercel.json"), {"retry-after": "5"})
    assert header_wins.retry_after == 5.0


def test_invalid_argument_live_errors() -> None:
    fixture = load(GEMINI / "error_400_invalid_argument_live_vercel.json")
    for key in ("reasoningNoneResponse", "thinkingLevelAndBudgetResponse"):
        err = error_for(400, fixture[key])
        assert err.upstream_status == 400
        assert err.http_status == 400
        assert err.code == "invalid_argument"
        assert err.message == fixture[key]["error"]["message"]
        assert not err.retryable
        assert not err.fallback
        assert err.to_body()["error"]["type"] == "invalid_request_error"


def reported(status: int) -> list[JSON]:
    entries = load(GEMINI / "reported_error_bodies.json")["entries"]
    return [e["body"] for e in entries if e.get("http_status") == status and "body" in e]


def test_reported_error_bodies() -> None:
    for body in reported(503):
        err = error_for(503, body)
        assert (err.upstream_status, err.code, err.retryable, err.http_status) == (503, "unavailable", True, 503)
    (exhausted,) = reported(429)
    err = error_for(429, exhausted)
    assert (err.code, err.retryable, err.retry_after) == ("resource_exhausted", True, None)
    (bad_key,) = reported(400)
    err = error_for(400, bad_key)
    assert err.upstream_status == 401  # a bad key of ours, not the client's mistake
    assert err.http_status == 502
    assert err.fallback
    assert not err.retryable
    assert err.message == "API key not valid. Please pass a valid API key."


def test_status_table_for_in_stream_errors() -> None:
    entries = load(GEMINI / "reported_error_bodies.json")["entries"]
    table = next(e["status_table"] for e in entries if "status_table" in e)
    for status, names in table.items():
        for name in [names] if isinstance(names, str) else names:
            err = envelope_error({"message": "m", "status": name}, None)
            hidden = int(status) in DEPLOYMENT_FAULT_STATUSES  # UpstreamError replaces those codes
            assert err.upstream_status == int(status)
            assert err.code == ("upstream_deployment_error" if hidden else name.lower())
    assert envelope_error({"code": 500, "message": "m", "status": "INTERNAL"}, None).retryable


@pytest.mark.parametrize(
    ("body", "status", "needle"),
    [
        (b"<html>Bad Gateway</html>", 502, "Bad Gateway"),
        (b"", 500, "HTTP 500"),
        (b'{"error": "plain string"}', 400, "plain string"),
        (b"[1, 2]", 503, "[1, 2]"),
    ],
)
def test_non_envelope_errors(body: bytes, status: int, needle: str) -> None:
    err = PROVIDER.error(status, {}, body)
    assert needle in err.message
    assert err.upstream_status == status
    assert err.retryable == (status >= 500)


# --- coverage of the fixture folder ---------------------------------------------------


# Recorded generateContent answers with thought parts, inline audio/PDF input, logprobs and an
# explicit cache: the answer text, finish reason and usage translate today.
ANSWERS_WITH_EXTRAS = [
    "generate_content_include_thoughts_false.json",
    "generate_content_thinking_budget_0.json",
    "generate_content_thinking_budget_1024.json",
    "generate_content_inline_audio.json",
    "generate_content_inline_pdf.json",
    "generate_content_logprobs_vertex.json",
    "generate_content_cached_content.json",
]

# Recorded requests driven in other files: thinkingConfig, inline audio/PDF parts and logprobs
# in test_gemini_reasoning.py and test_gemini_inputs.py; cachedContent in the Gemini dialect's
# pass-through tests (a translated request names it through provider_options:
# tests/e2e/test_reasoning_conversations.py); the cachedContents resource is not a
# generateContent answer.
DRIVEN_ELSEWHERE = {
    "generate_content_include_thoughts_false.request.json",
    "generate_content_thinking_budget_0.request.json",
    "generate_content_thinking_budget_1024.request.json",
    "generate_content_inline_audio.request.json",
    "generate_content_inline_pdf.request.json",
    "generate_content_logprobs_vertex.request.json",
    "generate_content_cached_content.request.json",
    "stream_thinking_thought_parts.request.json",
    "cached_contents_create.json",
    "cached_contents_create.request.json",
}


@pytest.mark.parametrize("name", ANSWERS_WITH_EXTRAS)
def test_recorded_answer_translates(name: str) -> None:
    raw = load(GEMINI / name)
    out = PROVIDER.chat_response(raw, target("x"))
    parts = raw["candidates"][0]["content"]["parts"]
    answer = "".join(p.get("text", "") for p in parts if not p.get("thought"))
    assert out["choices"][0]["message"]["content"] == answer
    assert out["choices"][0]["finish_reason"] == "stop"
    meta = raw["usageMetadata"]
    assert out["usage"]["prompt_tokens"] == meta["promptTokenCount"]
    assert out["usage"]["total_tokens"] == meta["totalTokenCount"]
    thoughts = meta.get("thoughtsTokenCount", 0)
    assert out["usage"]["completion_tokens"] == meta.get("candidatesTokenCount", 0) + thoughts


def test_every_gemini_fixture_is_driven() -> None:
    source = Path(__file__).read_text()
    names = {f for entry in load(GEMINI / "index.json") for f in entry["files"]}
    assert names == {p.name for p in GEMINI.iterdir() if p.name not in {"README.md", "index.json"}}
    sse = {n for n in names if n.endswith(".sse")}
    assert sse == set(SSE_FILES)
    assert all(n in source for n in names - sse)
    assert names >= DRIVEN_ELSEWHERE


def test_system_text_blocks_stay_separate_parts() -> None:
    # Claude Code sends its system prompt as several text blocks: joined without a
    # separator they would run into each other ("...CLI for Claude.You are an...").
    system = [{"type": "text", "text": "billing header"}, {"type": "text", "text": "You are Claude Code."}]
    req = {"model": "a", "messages": [{"role": "system", "content": system}, {"role": "user", "content": "hi"}]}
    body = body_of(PROVIDER.chat_request(req, target(), stream=False))
    assert body["systemInstruction"] == {"parts": [{"text": "billing header"}, {"text": "You are Claude Code."}]}
