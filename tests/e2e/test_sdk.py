"""The official openai SDK against the gateway, across all three wire formats."""

from __future__ import annotations

import json
from typing import Any

import openai
import pytest

from tests.e2e.conftest import Mock
from tests.e2e.harness import LIMITED_KEY, GatewayProcess

CHAT_ALIASES = ["chat", "claude", "gemini"]
HELLO: Any = [{"role": "user", "content": "Hello there, gateway"}]
WEATHER_TOOL: Any = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather for a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}, "days": {"type": "integer"}},
            "required": ["city", "days"],
        },
    },
}
IMAGE_PNG_1PX = "data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg=="  # noqa: E501


@pytest.mark.parametrize("alias", CHAT_ALIASES)
def test_chat(gateway: GatewayProcess, mock: Mock, alias: str) -> None:
    raw = gateway.client().chat.completions.with_raw_response.create(model=alias, messages=HELLO)
    completion = raw.parse()
    assert completion.choices[0].message.content
    assert "Hello" in completion.choices[0].message.content
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage is not None and completion.usage.completion_tokens > 0
    assert completion.usage.total_tokens == completion.usage.prompt_tokens + completion.usage.completion_tokens
    assert raw.headers["x-gateway-deployment"] == f"{alias}/0"
    assert raw.headers["x-gateway-attempts"] == "1"
    assert raw.headers["x-request-id"].startswith("req_")


def test_request_id_is_kept(gateway: GatewayProcess) -> None:
    raw = gateway.client().chat.completions.with_raw_response.create(
        model="chat",
        messages=HELLO,
        extra_headers={"x-request-id": "client-id-123"},
    )
    assert raw.headers["x-request-id"] == "client-id-123"


@pytest.mark.parametrize("alias", CHAT_ALIASES)
def test_stream_with_usage(gateway: GatewayProcess, alias: str) -> None:
    stream = gateway.client().chat.completions.create(
        model=alias,
        messages=HELLO,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert "Hello" in text
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finishes == ["stop"]
    last = chunks[-1]
    assert last.choices == []
    assert last.usage is not None and last.usage.completion_tokens > 0
    assert all(c.usage is None for c in chunks[:-1])


@pytest.mark.parametrize("alias", CHAT_ALIASES)
def test_stream_without_usage_has_none(gateway: GatewayProcess, alias: str) -> None:
    chunks = list(gateway.client().chat.completions.create(model=alias, messages=HELLO, stream=True))
    assert chunks and all(c.choices for c in chunks)
    assert all(c.usage is None for c in chunks)


@pytest.mark.parametrize("alias", CHAT_ALIASES)
@pytest.mark.parametrize("choice", ["required", "named"])
def test_tool_call(gateway: GatewayProcess, alias: str, choice: str) -> None:
    tool_choice: Any = "required" if choice == "required" else {"type": "function", "function": {"name": "get_weather"}}
    completion = gateway.client().chat.completions.create(
        model=alias,
        messages=[{"role": "user", "content": "Weather in Paris?"}],
        tools=[WEATHER_TOOL],
        tool_choice=tool_choice,
    )
    message = completion.choices[0].message
    assert completion.choices[0].finish_reason == "tool_calls"
    assert message.tool_calls
    call: Any = message.tool_calls[0]
    assert call.function.name == "get_weather"
    args = json.loads(call.function.arguments)
    assert set(args) >= {"city", "days"}


@pytest.mark.parametrize("alias", CHAT_ALIASES)
def test_streamed_tool_call_and_round_trip(gateway: GatewayProcess, alias: str) -> None:
    client = gateway.client()
    chunks = list(
        client.chat.completions.create(
            model=alias,
            messages=[{"role": "user", "content": "Weather?"}],
            tools=[WEATHER_TOOL],
            tool_choice="required",
            stream=True,
        )
    )
    calls: dict[int, dict[str, str]] = {}
    for chunk in chunks:
        for tc in (chunk.choices[0].delta.tool_calls or []) if chunk.choices else []:
            entry = calls.setdefault(tc.index, {"id": "", "name": "", "arguments": ""})
            entry["id"] = tc.id or entry["id"]
            entry["name"] = (tc.function.name if tc.function else None) or entry["name"]
            entry["arguments"] += (tc.function.arguments if tc.function else None) or ""
    assert calls[0]["name"] == "get_weather"
    assert set(json.loads(calls[0]["arguments"])) >= {"city", "days"}
    # Send the tool result back: the translator must carry the call id through.
    followup = client.chat.completions.create(
        model=alias,
        messages=[
            {"role": "user", "content": "Weather?"},
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": calls[0]["id"],
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": calls[0]["arguments"]},
                    }
                ],
            },
            {"role": "tool", "tool_call_id": calls[0]["id"], "content": '{"temp_c": 21}'},
        ],
        tools=[WEATHER_TOOL],
    )
    assert followup.choices[0].finish_reason in ("stop", "tool_calls")


@pytest.mark.parametrize("alias", CHAT_ALIASES)
def test_json_schema_output(gateway: GatewayProcess, alias: str) -> None:
    completion = gateway.client().chat.completions.create(
        model=alias,
        messages=[{"role": "user", "content": "Give me a person"}],
        response_format={
            "type": "json_schema",
            "json_schema": {
                "name": "person",
                "schema": {
                    "type": "object",
                    "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
                    "required": ["name", "age"],
                },
            },
        },
    )
    data = json.loads(completion.choices[0].message.content or "")
    assert set(data) >= {"name", "age"}


@pytest.mark.parametrize("alias", CHAT_ALIASES)
def test_image_parts_and_system_prompt(gateway: GatewayProcess, alias: str) -> None:
    completion = gateway.client().chat.completions.create(
        model=alias,
        max_tokens=50,
        temperature=0.5,
        stop=["END"],
        messages=[
            {"role": "system", "content": "You describe images."},
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "What is in this picture?"},
                    {"type": "image_url", "image_url": {"url": IMAGE_PNG_1PX}},
                    {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg"}},
                ],
            },
        ],
    )
    assert "picture" in (completion.choices[0].message.content or "")


@pytest.mark.parametrize("alias", ["embed", "gemini-embed"])
def test_embeddings_sdk_default_base64(gateway: GatewayProcess, alias: str) -> None:
    result = gateway.client().embeddings.create(model=alias, input=["first text", "second text"])
    assert [d.index for d in result.data] == [0, 1]
    vectors = [d.embedding for d in result.data]
    assert all(len(v) == 16 and all(isinstance(x, float) for x in v) for v in vectors)
    assert vectors[0] != vectors[1]
    assert result.usage.prompt_tokens > 0


def test_embeddings_float_and_dimensions(gateway: GatewayProcess) -> None:
    raw = gateway.http.post(
        "/v1/embeddings", json={"model": "embed", "input": "hi", "encoding_format": "float", "dimensions": 8}
    )
    assert raw.status_code == 200
    assert len(raw.json()["data"][0]["embedding"]) == 8


def test_models_list_and_retrieve(gateway: GatewayProcess) -> None:
    client = gateway.client()
    ids = {m.id for m in client.models.list()}
    assert {"chat", "claude", "gemini", "embed"} <= ids
    assert client.models.retrieve("claude").id == "claude"
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("no-such-model")


def test_error_authentication(gateway: GatewayProcess) -> None:
    with pytest.raises(openai.AuthenticationError) as err:
        gateway.client(key="sk-wrong-key").chat.completions.create(model="chat", messages=HELLO)
    assert err.value.code == "invalid_api_key"


def test_models_list_shows_only_what_the_key_may_use(gateway: GatewayProcess) -> None:
    assert [m.id for m in gateway.client(key=LIMITED_KEY).models.list()] == ["chat"]
    with pytest.raises(openai.NotFoundError):
        gateway.client(key=LIMITED_KEY).models.retrieve("claude")


def test_error_permission_denied_for_model_outside_key(gateway: GatewayProcess) -> None:
    limited = gateway.client(key=LIMITED_KEY)
    assert limited.chat.completions.create(model="chat", messages=HELLO).choices
    with pytest.raises(openai.PermissionDeniedError) as err:
        limited.chat.completions.create(model="claude", messages=HELLO)
    assert err.value.code == "model_not_allowed"


def test_error_not_found_model(gateway: GatewayProcess) -> None:
    with pytest.raises(openai.NotFoundError) as err:
        gateway.client().chat.completions.create(model="no-such-model", messages=HELLO)
    assert err.value.code == "model_not_found"


def test_error_bad_request_names_param(gateway: GatewayProcess) -> None:
    with pytest.raises(openai.BadRequestError) as err:
        gateway.client().chat.completions.create(model="chat", messages=HELLO, temperature=7)
    assert err.value.param == "temperature"
    assert err.value.code == "invalid_value"


def test_error_rate_limit_keeps_retry_after(gateway: GatewayProcess, mock: Mock) -> None:
    mock.behave("rl-model", error_status=429, retry_after=30)
    with pytest.raises(openai.RateLimitError) as err:
        gateway.client().chat.completions.create(model="ratelimited", messages=HELLO)
    assert err.value.response.headers["retry-after"] == "30"
    assert mock.calls("rl-model") == 1, "a Retry-After beyond max_retry_after_s must not be waited for"


def test_error_server_error(gateway: GatewayProcess, mock: Mock) -> None:
    mock.behave("fail-model", error_status=500)
    with pytest.raises(openai.InternalServerError) as err:
        gateway.client().chat.completions.create(model="failing", messages=HELLO)
    assert err.value.status_code == 500
    assert mock.calls("fail-model") == 2, "one attempt plus max_retries=1"


def test_error_overloaded_anthropic_is_503(gateway: GatewayProcess, mock: Mock) -> None:
    mock.behave("mock-claude", error_status=529)
    with pytest.raises(openai.InternalServerError) as err:
        gateway.client().chat.completions.create(model="claude", messages=HELLO)
    assert err.value.status_code == 503
    assert mock.calls("mock-claude") == 2, "529 is retryable"
