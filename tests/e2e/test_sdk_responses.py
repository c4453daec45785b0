"""The official openai SDK's Responses API (``client.responses``) against the gateway,
over real loopback HTTP, for every kind of upstream: OpenAI chat (``chat``),
Anthropic (``claude``) and Gemini (``gemini``) translated, a Responses upstream
(``resp-api``) passed through, and a provider model name (``gpt-5.1-codex``)
mapped by ``model_aliases``.

Here: create, both streaming styles, function calling round trips, structured
output and input token counts. Typed errors are in test_sdk_responses_errors.py,
stored state (``previous_response_id``, retrieve, delete, per-key isolation) in
test_sdk_responses_state.py, LangChain in test_sdk_responses_langchain.py, two
replicas sharing Redis in test_sdk_responses_replicas.py.
"""

from __future__ import annotations

import json
from typing import Any

import openai
import pytest
from pydantic import BaseModel

from tests.e2e.conftest import Mock
from tests.e2e.harness import GatewayProcess

ALIASES = ["chat", "claude", "gemini", "resp-api", "gpt-5.1-codex"]
UPSTREAM = {
    "chat": "mock-gpt",
    "claude": "mock-claude",
    "gemini": "mock-gemini",
    "resp-api": "mock-gpt",
    "gpt-5.1-codex": "mock-gpt",
}
"""The mock's model behind each name (the mock's replies name it)."""
DEPLOYMENT = {
    "chat": "chat/0",
    "claude": "claude/0",
    "gemini": "gemini/0",
    "resp-api": "resp-api/0",
    "gpt-5.1-codex": "chat/0",
}
QUESTION = "Weather in Paris?"
TOOL_RESULT = '{"temp_c": 21, "sky": "clear"}'
WEATHER_TOOL: Any = {
    "type": "function",
    "name": "get_weather",
    "description": "Weather for a city",
    "parameters": {
        "type": "object",
        "properties": {"city": {"type": "string"}, "days": {"type": "integer"}},
        "required": ["city", "days"],
    },
}
PERSON_FORMAT: Any = {
    "type": "json_schema",
    "name": "person",
    "strict": True,
    "schema": {
        "type": "object",
        "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
        "required": ["name", "age"],
        "additionalProperties": False,
    },
}
TEXT_EVENTS = [
    "response.created",
    "response.in_progress",
    "response.output_item.added",
    "response.content_part.added",
    "response.output_text.delta",
    "response.output_text.done",
    "response.content_part.done",
    "response.output_item.done",
    "response.completed",
]
"""The event types of a streamed text answer, runs of deltas collapsed to one."""
CALL_EVENTS = [
    "response.created",
    "response.in_progress",
    "response.output_item.added",
    "response.function_call_arguments.delta",
    "response.function_call_arguments.done",
    "response.output_item.done",
    "response.completed",
]


FILLER = ["lorem", "ipsum", "dolor", "sit", "amet", "consectetur", "adipiscing", "elit"]


class Person(BaseModel):
    name: str
    age: int


def mock_reply(alias: str, user_text: str) -> str:
    """The mock's default 12-word answer to ``user_text`` (gateway/mock/content.py)."""
    words = ["Mock", "reply", "from", f"{UPSTREAM[alias]}:", *user_text.split()]
    return " ".join((words + FILLER)[:12])


def collapsed(types: list[str]) -> list[str]:
    """Event types with each run of the same type kept once."""
    return [t for i, t in enumerate(types) if i == 0 or types[i - 1] != t]


def error_of(err: openai.APIStatusError) -> dict[str, Any]:
    """The error object of OpenAI's envelope, checked to be exactly that envelope."""
    body = err.response.json()
    assert set(body) == {"error"}, body
    error: dict[str, Any] = body["error"]
    assert {"message", "type", "param", "code"} <= set(error)
    assert isinstance(error["message"], str) and error["message"]
    return error


@pytest.mark.parametrize("alias", ALIASES)
def test_create(gateway: GatewayProcess, alias: str) -> None:
    raw = gateway.client().responses.with_raw_response.create(model=alias, input="Hello there, gateway")
    response = raw.parse()
    assert response.id.startswith("resp_")
    assert response.object == "response"
    assert response.status == "completed"
    assert response.output_text == mock_reply(alias, "Hello there, gateway")
    [message] = response.output
    assert message.type == "message" and message.role == "assistant" and message.status == "completed"
    assert message.id.startswith("msg_")
    usage = response.usage
    assert usage is not None
    assert usage.input_tokens == 3
    assert usage.output_tokens == len(response.output_text.split())
    assert usage.total_tokens == usage.input_tokens + usage.output_tokens
    assert response.previous_response_id is None
    assert (response.model_extra or {})["store"] is True
    assert raw.headers["x-gateway-deployment"] == DEPLOYMENT[alias]
    assert raw.headers["x-request-id"].startswith("req_")


@pytest.mark.parametrize("alias", ALIASES)
def test_create_echoes_settings(gateway: GatewayProcess, alias: str) -> None:
    response = gateway.client().responses.create(
        model=alias,
        instructions="Answer briefly.",
        input=[{"role": "user", "content": [{"type": "input_text", "text": "Hello with settings"}]}],
        temperature=0.5,
        max_output_tokens=200,
        metadata={"ticket": "42"},
    )
    assert response.output_text == mock_reply(alias, "Hello with settings")
    assert response.instructions == "Answer briefly."
    assert response.temperature == 0.5
    assert response.max_output_tokens == 200
    assert response.metadata == {"ticket": "42"}


@pytest.mark.parametrize("alias", ALIASES)
def test_max_output_tokens_cut_is_incomplete(gateway: GatewayProcess, mock: Mock, alias: str) -> None:
    mock.behave(UPSTREAM[alias], output_tokens=40)
    response = gateway.client().responses.create(model=alias, input="Tell me a long story", max_output_tokens=16)
    assert response.status == "incomplete"
    assert response.incomplete_details is not None and response.incomplete_details.reason == "max_output_tokens"
    assert len(response.output_text.split()) == 16


@pytest.mark.parametrize("alias", ALIASES)
def test_stream_events(gateway: GatewayProcess, alias: str) -> None:
    client = gateway.client()
    raw = client.responses.with_raw_response.create(model=alias, input="Hello stream", stream=True)
    assert raw.headers["content-type"].startswith("text/event-stream")
    assert raw.headers["x-gateway-deployment"] == DEPLOYMENT[alias]
    events: list[Any] = list(raw.parse())
    types = [e.type for e in events]
    assert collapsed(types) == TEXT_EVENTS
    numbers = [e.sequence_number for e in events]
    assert numbers == sorted(set(numbers)), "sequence_number strictly increases"
    created, completed = events[0].response, events[-1].response
    assert created.id == completed.id and completed.id.startswith("resp_")
    assert created.status == "in_progress" and completed.status == "completed"
    text = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert text == mock_reply(alias, "Hello stream")
    assert text == completed.output_text
    assert [e.text for e in events if e.type == "response.output_text.done"] == [text]
    usage = completed.usage
    assert usage is not None and usage.output_tokens == len(text.split())
    assert usage.total_tokens == usage.input_tokens + usage.output_tokens
    assert client.responses.retrieve(completed.id).output_text == text, "a streamed response is stored too"


@pytest.mark.parametrize("alias", ALIASES)
def test_stream_helper_final_response(gateway: GatewayProcess, alias: str) -> None:
    with gateway.client().responses.stream(model=alias, input="Hello helper") as stream:
        deltas = [e.delta for e in stream if e.type == "response.output_text.delta"]
        final = stream.get_final_response()
    assert final.status == "completed" and final.id.startswith("resp_")
    assert "".join(deltas) == final.output_text == mock_reply(alias, "Hello helper")


def first_call(response: Any) -> Any:
    """The single function_call item of ``response``, checked."""
    calls = [item for item in response.output if item.type == "function_call"]
    assert len(calls) == 1, response.output
    call = calls[0]
    assert call.name == "get_weather"
    assert call.call_id and call.id.startswith("fc_")
    assert set(json.loads(call.arguments)) >= {"city", "days"}
    return call


def call_output(call: Any) -> Any:
    return {"type": "function_call_output", "call_id": call.call_id, "output": TOOL_RESULT}


@pytest.mark.parametrize("alias", ALIASES)
def test_function_call_round_trip_replaying_items(gateway: GatewayProcess, alias: str) -> None:
    client = gateway.client()
    first = client.responses.create(model=alias, input=QUESTION, tools=[WEATHER_TOOL])
    assert first.status == "completed" and first.output_text == ""
    call = first_call(first)
    replay: Any = [
        {"role": "user", "content": QUESTION},
        *[item.model_dump(exclude_none=True) for item in first.output],
        call_output(call),
    ]
    final = client.responses.create(model=alias, input=replay, tools=[WEATHER_TOOL], store=False)
    # With the tool still offered the mock calls it again unless the conversation it
    # gets ends in the tool's result: a text answer shows the output reached the model.
    assert [item.type for item in final.output] == ["message"]
    assert final.output_text == mock_reply(alias, QUESTION)


@pytest.mark.parametrize("alias", ALIASES)
def test_function_call_round_trip_by_previous_response_id(gateway: GatewayProcess, alias: str) -> None:
    client = gateway.client()
    first = client.responses.create(model=alias, input=QUESTION, tools=[WEATHER_TOOL], tool_choice="required")
    call = first_call(first)
    final = client.responses.create(
        model=alias, previous_response_id=first.id, input=[call_output(call)], tools=[WEATHER_TOOL]
    )
    assert final.previous_response_id == first.id
    assert [item.type for item in final.output] == ["message"]
    assert final.output_text == mock_reply(alias, QUESTION), "the stored question was replayed"


@pytest.mark.parametrize("alias", ALIASES)
def test_streamed_function_call_then_continue(gateway: GatewayProcess, alias: str) -> None:
    client = gateway.client()
    named: Any = {"type": "function", "name": "get_weather"}
    events: list[Any] = list(
        client.responses.create(model=alias, input=QUESTION, tools=[WEATHER_TOOL], tool_choice=named, stream=True)
    )
    assert collapsed([e.type for e in events]) == CALL_EVENTS
    arguments = "".join(e.delta for e in events if e.type == "response.function_call_arguments.delta")
    done = [e for e in events if e.type == "response.function_call_arguments.done"]
    assert [e.arguments for e in done] == [arguments]
    completed = events[-1].response
    call = first_call(completed)
    assert call.arguments == arguments
    final = client.responses.create(
        model=alias, previous_response_id=completed.id, input=[call_output(call)], tools=[WEATHER_TOOL]
    )
    assert final.output_text == mock_reply(alias, QUESTION)


@pytest.mark.parametrize("alias", ALIASES)
def test_structured_output_json_schema(gateway: GatewayProcess, alias: str) -> None:
    response = gateway.client().responses.create(model=alias, input="Give me a person", text={"format": PERSON_FORMAT})
    data = json.loads(response.output_text)
    assert isinstance(data["name"], str) and isinstance(data["age"], int)
    assert response.text is not None and response.text.format is not None
    assert response.text.format.type == "json_schema"


@pytest.mark.parametrize("alias", ALIASES)
def test_structured_output_parse(gateway: GatewayProcess, alias: str) -> None:
    parsed = gateway.client().responses.parse(model=alias, input="Give me a person", text_format=Person)
    assert isinstance(parsed.output_parsed, Person)
    assert parsed.output_parsed == Person.model_validate_json(parsed.output_text)


@pytest.mark.parametrize("alias", ALIASES)
def test_input_tokens_count(gateway: GatewayProcess, mock: Mock, alias: str) -> None:
    client = gateway.client()
    text = "count these four words"
    raw = client.responses.input_tokens.with_raw_response.count(model=alias, input=text, instructions="Be brief.")
    counted = raw.parse()
    body = raw.http_response.json()
    assert counted.object == "response.input_tokens" and counted.input_tokens > 0
    if alias == "resp-api":
        assert raw.headers["x-gateway-token-count"] == "upstream"
        assert "estimated" not in body
        created = client.responses.create(model=alias, input=text, instructions="Be brief.")
        assert created.usage is not None and counted.input_tokens == created.usage.input_tokens
        assert mock.calls(UPSTREAM[alias]) == 2, "one count and one create"
    else:
        assert raw.headers["x-gateway-token-count"] == "estimated"
        assert body["estimated"] is True
        assert mock.calls(UPSTREAM[alias]) == 0, "an estimate calls no model"
