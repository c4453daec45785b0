"""The mock upstream over real loopback HTTP: response shapes of the three wire formats.

OpenAI is driven with the official ``openai`` SDK; Anthropic and Gemini with httpx.
Knobs (faults, timing, garbage, auth, precedence) are in ``test_mock_knobs.py``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest

from gateway.mock import Behaviour, MockConfig
from gateway.mock.testing import MockServer, parse_sse

CONFIG = MockConfig(models={"configured-model": Behaviour(output_tokens=6)}, embedding_dims=16)
QUESTION = "What is the capital of the UK?"
WEATHER_SCHEMA = {
    "type": "object",
    "properties": {"city": {"type": "string"}, "days": {"type": "integer"}, "metric": {"type": "boolean"}},
    "required": ["city", "days", "metric"],
}
WEATHER_ARGS = {"city": "mock", "days": 1, "metric": True}
OPENAI_TOOLS: Any = [
    {"type": "function", "function": {"name": "lookup", "parameters": {"type": "object", "properties": {}}}},
    {"type": "function", "function": {"name": "get_weather", "parameters": WEATHER_SCHEMA}},
]


@pytest.fixture
def sdk(mock: MockServer, http: httpx.Client) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=mock.url + "/v1", api_key="sk-test", max_retries=0) as client:
        yield client


@pytest.fixture(scope="module")
def mock_config() -> MockConfig:
    return CONFIG


def user(text: str = QUESTION) -> Any:
    return [{"role": "user", "content": text}]


# --- OpenAI -----------------------------------------------------------------------------------


def test_openai_chat_completion(sdk: openai.OpenAI) -> None:
    done = sdk.chat.completions.create(model="gpt-4o-mini", messages=user())
    assert done.id.startswith("chatcmpl-")
    assert done.object == "chat.completion"
    assert done.model == "gpt-4o-mini"
    choice = done.choices[0]
    assert choice.message.content == "Mock reply from gpt-4o-mini: What is the capital of the UK? lorem"
    assert choice.finish_reason == "stop"
    assert done.usage is not None
    assert (done.usage.prompt_tokens, done.usage.completion_tokens, done.usage.total_tokens) == (7, 12, 19)


def test_openai_stream_with_usage(sdk: openai.OpenAI) -> None:
    stream = sdk.chat.completions.create(
        model="gpt-4o-mini", messages=user(), stream=True, stream_options={"include_usage": True}
    )
    chunks = list(stream)
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "Mock reply from gpt-4o-mini: What is the capital of the UK? lorem"
    assert len({c.id for c in chunks}) == 1
    assert chunks[-2].choices[0].finish_reason == "stop"
    assert chunks[-1].choices == []
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 12


def test_openai_stream_raw_framing_without_usage(http: httpx.Client) -> None:
    body = {"model": "gpt-4o-mini", "messages": user("hi"), "stream": True}
    raw = http.post("/v1/chat/completions", json=body).content
    assert raw.endswith(b"\n\ndata: [DONE]\n\n")
    events = [json.loads(data) for _, data in parse_sse(raw)[:-1]]
    assert all(e["object"] == "chat.completion.chunk" and "usage" not in e for e in events)
    assert all(e["choices"] for e in events)
    assert len(events) == 1 + 12 + 1


def test_openai_forced_tool_call(sdk: openai.OpenAI) -> None:
    done = sdk.chat.completions.create(
        model="gpt-4o-mini",
        messages=user("weather in Paris?"),
        tools=OPENAI_TOOLS,
        tool_choice={"type": "function", "function": {"name": "get_weather"}},
    )
    choice = done.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content is None
    calls = choice.message.tool_calls
    assert calls is not None and len(calls) == 1
    call: Any = calls[0]
    assert call.id.startswith("call_") and call.type == "function"
    assert call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == WEATHER_ARGS


def test_openai_streamed_tool_call_arrives_in_fragments(sdk: openai.OpenAI) -> None:
    stream = sdk.chat.completions.create(model="gpt-4o-mini", messages=user(), tools=OPENAI_TOOLS, stream=True)
    deltas: list[Any] = [c.choices[0].delta for c in stream if c.choices]
    first = deltas[0].tool_calls
    assert first[0].function.name == "lookup" and first[0].id.startswith("call_")
    pieces = [d.tool_calls[0].function.arguments for d in deltas[1:] if d.tool_calls]
    assert "".join(p or "" for p in pieces) == "{}"
    forced: Any = {"type": "function", "function": {"name": "get_weather"}}
    weather = sdk.chat.completions.create(
        model="gpt-4o-mini",
        messages=user(),
        tools=OPENAI_TOOLS,
        tool_choice=forced,
        stream=True,
    )
    args = [c.choices[0].delta.tool_calls for c in weather if c.choices and c.choices[0].delta.tool_calls]
    fragments = [a[0].function.arguments for a in args[1:] if a[0].function]
    assert len(fragments) > 1
    assert json.loads("".join(f or "" for f in fragments)) == WEATHER_ARGS


def test_openai_text_when_tool_choice_none_or_after_tool_result(sdk: openai.OpenAI) -> None:
    none = sdk.chat.completions.create(model="m", messages=user(), tools=OPENAI_TOOLS, tool_choice="none")
    assert none.choices[0].message.tool_calls is None and none.choices[0].finish_reason == "stop"
    history: Any = [
        *user("weather?"),
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": "{}"}}
        ]},
        {"role": "tool", "tool_call_id": "call_1", "content": "sunny"},
    ]  # fmt: skip
    after = sdk.chat.completions.create(model="m", messages=history, tools=OPENAI_TOOLS)
    assert (
        after.choices[0].message.content
        == "Mock reply from m: weather? lorem ipsum dolor sit amet consectetur adipiscing"
    )


def test_openai_json_response_formats(sdk: openai.OpenAI) -> None:
    plain = sdk.chat.completions.create(model="m", messages=user(), response_format={"type": "json_object"})
    assert json.loads(plain.choices[0].message.content or "") == {"result": "mock"}
    schema_format: Any = {"type": "json_schema", "json_schema": {"name": "w", "schema": WEATHER_SCHEMA, "strict": True}}
    shaped = sdk.chat.completions.create(model="m", messages=user(), response_format=schema_format)
    assert json.loads(shaped.choices[0].message.content or "") == WEATHER_ARGS


def test_openai_max_tokens_cuts_with_finish_length(sdk: openai.OpenAI) -> None:
    done = sdk.chat.completions.create(model="m", messages=user(), max_completion_tokens=3)
    assert done.choices[0].message.content == "Mock reply from"
    assert done.choices[0].finish_reason == "length"


def test_korean_question_gets_korean_reply(sdk: openai.OpenAI) -> None:
    done = sdk.chat.completions.create(model="m", messages=user("서울 날씨 어때요?"))
    assert (done.choices[0].message.content or "").startswith("모의 응답입니다: 서울 날씨 어때요?")


def test_openai_embeddings_sdk_base64_default_and_float(sdk: openai.OpenAI) -> None:
    default = sdk.embeddings.create(model="text-embedding-3-small", input=["hello", "world"])
    floats = sdk.embeddings.create(model="text-embedding-3-small", input=["hello", "world"], encoding_format="float")
    assert [d.index for d in default.data] == [0, 1]
    for decoded, exact in zip(default.data, floats.data, strict=True):
        assert len(decoded.embedding) == 16
        assert decoded.embedding == pytest.approx(exact.embedding, abs=1e-6)
        assert math.isclose(math.hypot(*exact.embedding), 1.0, rel_tol=1e-9)
    assert floats.data[0].embedding != floats.data[1].embedding
    assert floats.usage.prompt_tokens == 2
    small = sdk.embeddings.create(model="text-embedding-3-small", input="hello", dimensions=4, encoding_format="float")
    assert len(small.data[0].embedding) == 4


def test_openai_models_list(sdk: openai.OpenAI) -> None:
    ids = [m.id for m in sdk.models.list()]
    assert ids[:3] == ["gpt-4o-mini", "gpt-4.1-mini", "text-embedding-3-small"]
    assert "configured-model" in ids


def test_openai_missing_messages_is_400(sdk: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        sdk.chat.completions.create(model="m", messages=[])
    assert caught.value.body == {
        "message": "Missing required parameter: 'messages'.",
        "type": "invalid_request_error",
        "param": "messages",
        "code": None,
    }


def test_configured_model_uses_its_output_tokens(sdk: openai.OpenAI) -> None:
    done = sdk.chat.completions.create(model="configured-model", messages=user())
    assert done.usage is not None and done.usage.completion_tokens == 6


# --- Anthropic --------------------------------------------------------------------------------

ANTHROPIC_HEADERS = {"anthropic-version": "2023-06-01", "x-api-key": "k"}
WEATHER_TOOL = {"name": "get_weather", "description": "", "input_schema": WEATHER_SCHEMA}


def anthropic(http: httpx.Client, **body: Any) -> httpx.Response:
    payload = {"model": "claude-sonnet-4-5", "max_tokens": 100, "messages": user(), **body}
    return http.post("/v1/messages", json=payload, headers=ANTHROPIC_HEADERS)


def test_anthropic_message(http: httpx.Client) -> None:
    resp = anthropic(http, system="Be brief.")
    assert resp.status_code == 200
    msg = resp.json()
    assert msg["id"].startswith("msg_01") and msg["type"] == "message" and msg["role"] == "assistant"
    assert msg["content"] == [
        {"type": "text", "text": "Mock reply from claude-sonnet-4-5: What is the capital of the UK? lorem"}
    ]
    assert (msg["stop_reason"], msg["stop_sequence"]) == ("end_turn", None)
    assert msg["usage"]["input_tokens"] == 9 and msg["usage"]["output_tokens"] == 12


def test_anthropic_requires_max_tokens(http: httpx.Client) -> None:
    resp = http.post("/v1/messages", json={"model": "claude", "messages": user()}, headers=ANTHROPIC_HEADERS)
    assert resp.status_code == 400
    body = resp.json()
    assert body["type"] == "error"
    assert body["error"] == {"type": "invalid_request_error", "message": "max_tokens: Field required"}
    assert body["request_id"].startswith("req_")


def test_anthropic_stream_event_sequence(http: httpx.Client) -> None:
    events = parse_sse(anthropic(http, stream=True).content)
    names = [name for name, _ in events]
    assert names == [
        "message_start",
        "content_block_start",
        "ping",
        *["content_block_delta"] * 12,
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    datas = [json.loads(d) for _, d in events]
    assert all(d["type"] == n for n, d in zip(names, datas, strict=True))
    assert datas[0]["message"]["content"] == [] and datas[0]["message"]["usage"]["output_tokens"] == 1
    text = "".join(d["delta"]["text"] for d in datas if d["type"] == "content_block_delta")
    assert text == "Mock reply from claude-sonnet-4-5: What is the capital of the UK? lorem"
    delta = datas[-2]
    assert delta["delta"] == {"stop_reason": "end_turn", "stop_sequence": None}
    assert delta["usage"]["output_tokens"] == 12 and delta["usage"]["input_tokens"] == 7


def test_anthropic_tool_use(http: httpx.Client) -> None:
    choice = {"type": "tool", "name": "get_weather"}
    tools = [{"name": "other", "input_schema": {"type": "object"}}, WEATHER_TOOL]
    msg = anthropic(http, tools=tools, tool_choice=choice).json()
    assert msg["stop_reason"] == "tool_use"
    (block,) = msg["content"]
    assert block["type"] == "tool_use" and block["id"].startswith("toolu_01")
    assert (block["name"], block["input"]) == ("get_weather", WEATHER_ARGS)


def test_anthropic_streamed_tool_use(http: httpx.Client) -> None:
    events = [json.loads(d) for _, d in parse_sse(anthropic(http, tools=[WEATHER_TOOL], stream=True).content)]
    start = events[1]["content_block"]
    assert (start["type"], start["name"], start["input"]) == ("tool_use", "get_weather", {})
    partial = [e["delta"]["partial_json"] for e in events if e["type"] == "content_block_delta"]
    assert len(partial) > 1 and all(
        e["delta"]["type"] == "input_json_delta" for e in events if "delta" in e and e["type"] == "content_block_delta"
    )
    assert json.loads("".join(partial)) == WEATHER_ARGS
    assert events[-2]["delta"]["stop_reason"] == "tool_use"


def test_anthropic_after_tool_result_answers_in_text(http: httpx.Client) -> None:
    history = [
        *user("weather in Paris?"),
        {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "sunny"}]},
    ]
    msg = anthropic(http, messages=history, tools=[WEATHER_TOOL], max_tokens=6).json()
    assert msg["content"] == [{"type": "text", "text": "Mock reply from claude-sonnet-4-5: weather in"}]
    assert msg["stop_reason"] == "max_tokens"


def test_anthropic_json_output(http: httpx.Client) -> None:
    output = {"format": {"type": "json_schema", "schema": WEATHER_SCHEMA}}
    msg = anthropic(http, output_config=output).json()
    assert json.loads(msg["content"][0]["text"]) == WEATHER_ARGS


def test_anthropic_models_list_shape(http: httpx.Client) -> None:
    body = http.get("/v1/models", headers=ANTHROPIC_HEADERS).json()
    assert body["has_more"] is False
    assert body["data"][0] == {
        "type": "model",
        "id": "claude-sonnet-4-5",
        "display_name": "claude-sonnet-4-5",
        "created_at": "2025-09-29T00:00:00Z",
    }
    assert body["first_id"] == "claude-sonnet-4-5" and body["last_id"] == "configured-model"


# --- Gemini -----------------------------------------------------------------------------------


def gemini(http: httpx.Client, method: str, model: str = "gemini-2.5-flash", **body: Any) -> httpx.Response:
    payload = {"contents": [{"role": "user", "parts": [{"text": QUESTION}]}], **body}
    suffix = "?alt=sse" if method == "streamGenerateContent" else ""
    return http.post(f"/v1beta/models/{model}:{method}{suffix}", json=payload, headers={"x-goog-api-key": "k"})


def test_gemini_generate_content(http: httpx.Client) -> None:
    body = gemini(http, "generateContent", systemInstruction={"parts": [{"text": "Be brief."}]}).json()
    (candidate,) = body["candidates"]
    assert candidate["content"] == {
        "parts": [{"text": "Mock reply from gemini-2.5-flash: What is the capital of the UK? lorem"}],
        "role": "model",
    }
    assert candidate["finishReason"] == "STOP"
    usage = body["usageMetadata"]  # Gemini 2.5 thinks by default: 8 thought tokens, in the total only
    assert (usage["promptTokenCount"], usage["candidatesTokenCount"], usage["totalTokenCount"]) == (9, 12, 29)
    assert usage["thoughtsTokenCount"] == 8
    assert body["modelVersion"] == "gemini-2.5-flash" and body["responseId"]


def test_gemini_stream_framing(http: httpx.Client) -> None:
    resp = gemini(http, "streamGenerateContent", generationConfig={"maxOutputTokens": 5})
    assert resp.headers["content-type"].startswith("text/event-stream")
    raw = resp.content
    blocks = raw.split(b"\r\n\r\n")
    assert blocks[-1] == b"" and len(blocks) == 6
    assert b"[DONE]" not in raw
    events = [json.loads(block.removeprefix(b"data: ")) for block in blocks[:-1]]
    assert (
        "".join(e["candidates"][0]["content"]["parts"][0]["text"] for e in events)
        == "Mock reply from gemini-2.5-flash: What"
    )
    assert [e["candidates"][0].get("finishReason") for e in events] == [None] * 4 + ["MAX_TOKENS"]
    assert len({e["responseId"] for e in events}) == 1
    assert "candidatesTokenCount" not in events[0]["usageMetadata"]
    assert events[-1]["usageMetadata"]["candidatesTokenCount"] == 5


def test_gemini_function_call_whole_in_one_event(http: httpx.Client) -> None:
    tools = [{"functionDeclarations": [{"name": "lookup"}, {"name": "get_weather", "parameters": WEATHER_SCHEMA}]}]
    config = {"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["get_weather"]}}
    body = gemini(http, "generateContent", tools=tools, toolConfig=config).json()
    (part,) = body["candidates"][0]["content"]["parts"]  # a thinking model signs its function call
    assert part["functionCall"] == {"name": "get_weather", "args": WEATHER_ARGS} and part["thoughtSignature"]
    assert body["candidates"][0]["finishReason"] == "STOP"
    events = parse_sse(gemini(http, "streamGenerateContent", tools=tools, toolConfig=config).content)
    assert len(events) == 1
    (event,) = [json.loads(d) for _, d in events]
    assert event["candidates"][0]["content"]["parts"][0]["functionCall"]["args"] == WEATHER_ARGS
    none = gemini(http, "generateContent", tools=tools, toolConfig={"functionCallingConfig": {"mode": "NONE"}})
    assert "text" in none.json()["candidates"][0]["content"]["parts"][0]


def test_gemini_json_mime_type(http: httpx.Client) -> None:
    schema = {"type": "OBJECT", "properties": {"name": {"type": "STRING"}}, "required": ["name"]}
    config = {"responseMimeType": "application/json", "responseSchema": schema}
    body = gemini(http, "generateContent", generationConfig=config).json()
    assert json.loads(body["candidates"][0]["content"]["parts"][0]["text"]) == {"name": "mock"}


def test_gemini_embeddings(http: httpx.Client) -> None:
    one = http.post(
        "/v1beta/models/gemini-embedding-001:embedContent",
        json={"content": {"parts": [{"text": "hello"}]}, "outputDimensionality": 8},
    ).json()
    assert len(one["embedding"]["values"]) == 8
    requests = [{"model": "models/gemini-embedding-001", "content": {"parts": [{"text": t}]}} for t in ("a", "b")]
    batch = http.post("/v1beta/models/gemini-embedding-001:batchEmbedContents", json={"requests": requests}).json()
    assert [len(e["values"]) for e in batch["embeddings"]] == [16, 16]
    assert batch["embeddings"][0] != batch["embeddings"][1]


def test_gemini_models_list_and_unknown_method(http: httpx.Client) -> None:
    listing = http.get("/v1beta/models").json()
    assert listing["models"][0]["name"] == "models/gemini-2.5-flash"
    assert "generateContent" in listing["models"][0]["supportedGenerationMethods"]
    missing = http.post("/v1beta/models/gemini-2.5-flash:fly", json={})
    assert missing.status_code == 404 and missing.json()["error"]["status"] == "NOT_FOUND"


def test_gemini_v1_path_and_model_prefix(http: httpx.Client) -> None:
    body = {"contents": [{"parts": [{"text": "hi"}]}]}
    resp = http.post("/v1/models/gemini-2.5-pro:generateContent", json=body)
    assert resp.json()["modelVersion"] == "gemini-2.5-pro"
    assert http.get("/_mock/stats").json()["by_model"] == {"gemini-2.5-pro": 1}
