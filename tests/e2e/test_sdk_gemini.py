"""The official google-genai SDK against the gateway: generation, streaming, function
calling, chats and JSON output, over every upstream wire format (Gemini pass-through,
OpenAI chat, Anthropic Messages) and both URL versions the SDK uses (``/v1``, ``/v1beta``).

Keys, models, embeddings, token counts and errors: test_sdk_gemini_api.py."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from google.genai import types

from tests.e2e.conftest import Mock
from tests.e2e.genai_support import (
    API_VERSIONS,
    CHAT_ALIASES,
    HELLO,
    TARGET,
    UPSTREAM,
    WEATHER_ARGS,
    Clients,
    mock_reply,
    weather_tool,
)
from tests.e2e.harness import GatewayProcess

STOP = types.FinishReason.STOP


def person_schema() -> types.Schema:
    return types.Schema(
        type=types.Type.OBJECT,
        properties={"name": types.Schema(type=types.Type.STRING), "age": types.Schema(type=types.Type.INTEGER)},
        required=["name", "age"],
    )


@pytest.fixture
def clients(gateway: GatewayProcess) -> Iterator[Clients]:
    made = Clients(gateway)
    yield made
    made.close()


@pytest.mark.parametrize("api_version", API_VERSIONS)
@pytest.mark.parametrize("alias", CHAT_ALIASES)
def test_generate_content(clients: Clients, mock: Mock, alias: str, api_version: str | None) -> None:
    config = types.GenerateContentConfig(
        system_instruction="Be brief.", temperature=0.5, max_output_tokens=50, stop_sequences=["END"]
    )
    response = clients.make(api_version=api_version).models.generate_content(model=alias, contents=HELLO, config=config)
    assert response.text == mock_reply(alias, HELLO)
    assert response.candidates and response.candidates[0].finish_reason == STOP
    usage = response.usage_metadata
    assert usage is not None
    assert usage.prompt_token_count == 5, "the mock counts words: 2 of the system instruction + 3 of the user"
    assert usage.candidates_token_count == 12
    assert usage.total_token_count == usage.prompt_token_count + usage.candidates_token_count
    assert response.sdk_http_response and response.sdk_http_response.headers
    assert response.sdk_http_response.headers["x-gateway-deployment"] == f"{TARGET[alias]}/0"
    assert mock.calls(UPSTREAM[alias]) == 1


@pytest.mark.parametrize("alias", CHAT_ALIASES)
def test_max_output_tokens_cuts_the_reply(clients: Clients, alias: str) -> None:
    config = types.GenerateContentConfig(max_output_tokens=4)
    response = clients.make().models.generate_content(model=alias, contents=HELLO, config=config)
    assert response.text == mock_reply(alias, HELLO, 4)
    assert response.candidates and response.candidates[0].finish_reason == types.FinishReason.MAX_TOKENS
    assert response.usage_metadata and response.usage_metadata.candidates_token_count == 4


@pytest.mark.parametrize("api_version", API_VERSIONS)
@pytest.mark.parametrize("alias", CHAT_ALIASES)
def test_stream(clients: Clients, alias: str, api_version: str | None) -> None:
    client = clients.make(api_version=api_version)
    chunks = list(client.models.generate_content_stream(model=alias, contents=HELLO))
    assert "".join(c.text or "" for c in chunks) == mock_reply(alias, HELLO)
    finishes = [c.candidates[0].finish_reason if c.candidates else None for c in chunks]
    assert finishes[-1] == STOP and not any(finishes[:-1]), "only the last chunk finishes"
    usage = chunks[-1].usage_metadata
    assert usage is not None and usage.prompt_token_count == 3 and usage.candidates_token_count == 12
    assert usage.total_token_count == 15


@pytest.mark.parametrize("alias", CHAT_ALIASES)
def test_stream_is_incremental(clients: Clients, mock: Mock, alias: str) -> None:
    """A paced upstream (one word per 10 ms) reaches the client in many events, not one buffered answer."""
    mock.behave(UPSTREAM[alias], tokens_per_s=100)
    chunks = list(clients.make().models.generate_content_stream(model=alias, contents=HELLO))
    assert len([c for c in chunks if c.text]) >= 4
    assert "".join(c.text or "" for c in chunks) == mock_reply(alias, HELLO)


def _weather_config(mode: types.FunctionCallingConfigMode | None = None) -> types.GenerateContentConfig:
    tool_config = None
    if mode is not None:
        tool_config = types.ToolConfig(function_calling_config=types.FunctionCallingConfig(mode=mode))
    return types.GenerateContentConfig(tools=[weather_tool()], tool_config=tool_config)


@pytest.mark.parametrize("alias", CHAT_ALIASES)
def test_function_call_and_response_round_trip(clients: Clients, mock: Mock, alias: str) -> None:
    client = clients.make()
    question = types.Content(role="user", parts=[types.Part.from_text(text="Weather in Paris?")])
    first = client.models.generate_content(model=alias, contents=[question], config=_weather_config())
    assert first.function_calls and len(first.function_calls) == 1
    call = first.function_calls[0]
    assert call.name == "get_weather" and call.args == dict(WEATHER_ARGS)
    assert first.candidates and first.candidates[0].finish_reason == STOP
    model_turn = first.candidates[0].content
    assert model_turn is not None and model_turn.role == "model"
    if TARGET[alias] != "gemini":  # a translated call carries the upstream's id for the answer to name
        assert call.id
    answer = types.Content(
        role="user", parts=[types.Part.from_function_response(name="get_weather", response={"temp_c": 21})]
    )
    final = client.models.generate_content(
        model=alias, contents=[question, model_turn, answer], config=_weather_config()
    )
    assert final.function_calls is None
    assert final.text == mock_reply(alias, "Weather in Paris?")
    assert final.candidates and final.candidates[0].finish_reason == STOP
    assert mock.calls(UPSTREAM[alias]) == 2


@pytest.mark.parametrize("alias", ["chat", "claude"])
def test_function_response_naming_the_call_id(clients: Clients, alias: str) -> None:
    """A functionResponse that carries the call's id (as the SDK's automatic function
    calling sends it) reaches a translated upstream as that call's result."""
    client = clients.make()
    first = client.models.generate_content(model=alias, contents="Weather?", config=_weather_config())
    assert first.function_calls and first.candidates and first.candidates[0].content
    call = first.function_calls[0]
    result = types.FunctionResponse(id=call.id, name="get_weather", response={"output": {"temp_c": 21}})
    history = [
        types.Content(role="user", parts=[types.Part.from_text(text="Weather?")]),
        first.candidates[0].content,
        types.Content(role="user", parts=[types.Part(function_response=result)]),
    ]
    final = client.models.generate_content(model=alias, contents=history, config=_weather_config())
    assert final.function_calls is None and final.text == mock_reply(alias, "Weather?")


@pytest.mark.parametrize("alias", ["chat", "claude"])
def test_function_declared_with_a_json_schema(clients: Clients, alias: str) -> None:
    """``parameters_json_schema`` goes out in snake_case (the SDK does not rename it);
    the gateway reads it and hands the schema to a translated upstream. (The Gemini
    pass-through forwards it as sent, but the mock reads only camelCase: not tested there.)"""
    schema = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
    declaration = types.FunctionDeclaration(name="get_city", parameters_json_schema=schema)
    config = types.GenerateContentConfig(tools=[types.Tool(function_declarations=[declaration])])
    response = clients.make().models.generate_content(model=alias, contents="Which city?", config=config)
    assert response.function_calls and response.function_calls[0].args == {"city": "mock"}


@pytest.mark.parametrize("alias", CHAT_ALIASES)
def test_function_calling_modes(clients: Clients, alias: str) -> None:
    models = clients.make().models
    forced = models.generate_content(
        model=alias, contents="Say hi", config=_weather_config(types.FunctionCallingConfigMode.ANY)
    )
    assert forced.function_calls and forced.function_calls[0].name == "get_weather"
    disabled = models.generate_content(
        model=alias, contents="Weather?", config=_weather_config(types.FunctionCallingConfigMode.NONE)
    )
    assert disabled.function_calls is None and disabled.text == mock_reply(alias, "Weather?")


@pytest.mark.parametrize("alias", CHAT_ALIASES)
def test_streamed_function_call(clients: Clients, alias: str) -> None:
    stream = clients.make().models.generate_content_stream(model=alias, contents="Weather?", config=_weather_config())
    chunks = list(stream)
    calls = [call for c in chunks for call in c.function_calls or []]
    assert len(calls) == 1, "a streamed call arrives whole, once"
    assert calls[0].name == "get_weather" and calls[0].args == dict(WEATHER_ARGS)
    last = chunks[-1]
    assert last.candidates and last.candidates[0].finish_reason == STOP
    usage = last.usage_metadata
    assert usage is not None and usage.candidates_token_count and usage.candidates_token_count > 0
    assert usage.total_token_count == (usage.prompt_token_count or 0) + usage.candidates_token_count


@pytest.mark.parametrize("alias", CHAT_ALIASES)
def test_chat_session_two_turns(clients: Clients, alias: str) -> None:
    config = types.GenerateContentConfig(system_instruction="Be brief.")
    chat = clients.make().chats.create(model=alias, config=config)
    first = chat.send_message("First question here")
    second = chat.send_message("Second question now")
    assert first.text == mock_reply(alias, "First question here")
    assert second.text == mock_reply(alias, "Second question now")
    history = chat.get_history()
    assert [c.role for c in history] == ["user", "model", "user", "model"]
    assert first.usage_metadata and second.usage_metadata and first.usage_metadata.total_token_count
    # The second turn sent the first one along: its prompt is the first turn's total plus three words.
    assert second.usage_metadata.prompt_token_count == first.usage_metadata.total_token_count + 3


@pytest.mark.parametrize("alias", CHAT_ALIASES)
def test_streamed_chat_session(clients: Clients, alias: str) -> None:
    chat = clients.make().chats.create(model=alias)
    first = list(chat.send_message_stream("First question here"))
    second = list(chat.send_message_stream("Second question now"))
    assert "".join(c.text or "" for c in first) == mock_reply(alias, "First question here")
    assert "".join(c.text or "" for c in second) == mock_reply(alias, "Second question now")
    # The SDK keeps each streamed event as a model turn of its own; none may be dropped.
    history = chat.get_history(curated=True)
    roles = [c.role for c in history]
    assert roles == ["user"] + ["model"] * len(first) + ["user"] + ["model"] * len(second)
    before, after = first[-1].usage_metadata, second[-1].usage_metadata
    assert before and after and before.total_token_count
    assert after.prompt_token_count == before.total_token_count + 3, "the first turn went along with the second"


@pytest.mark.parametrize("alias", CHAT_ALIASES)
def test_json_output_with_response_schema(clients: Clients, alias: str) -> None:
    config = types.GenerateContentConfig(response_mime_type="application/json", response_schema=person_schema())
    response = clients.make().models.generate_content(model=alias, contents="Give me a person", config=config)
    assert json.loads(response.text or "") == {"name": "mock", "age": 1}
    assert response.parsed == {"name": "mock", "age": 1}


@pytest.mark.parametrize("alias", CHAT_ALIASES)
def test_json_output_with_response_json_schema(clients: Clients, alias: str) -> None:
    schema = {
        "type": "object",
        "properties": {"name": {"type": "string"}, "tags": {"type": "array", "items": {"type": "string"}}},
        "required": ["name", "tags"],
    }
    config = types.GenerateContentConfig(response_mime_type="application/json", response_json_schema=schema)
    response = clients.make().models.generate_content(model=alias, contents="Give me a person", config=config)
    assert json.loads(response.text or "") == {"name": "mock", "tags": []}
