"""LangChain's ``ChatOpenAI`` in Responses mode (``use_responses_api=True``) against the
gateway's ``/v1/responses``: invoke, a bound tool's round trip, streaming and
``use_previous_response_id``, on translated and pass-through upstreams alike."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, ToolMessage
from langchain_core.tools import tool
from langchain_openai import ChatOpenAI

from tests.e2e.conftest import Mock
from tests.e2e.harness import MASTER_KEY, GatewayProcess
from tests.e2e.test_sdk_responses import QUESTION, TOOL_RESULT, UPSTREAM, mock_reply

ALIASES = ["chat", "claude", "gemini", "resp-api"]


@tool
def get_weather(city: str, days: int) -> str:
    """Weather for a city over the next days."""
    return TOOL_RESULT


def llm(gateway: GatewayProcess, alias: str, **options: Any) -> ChatOpenAI:
    return ChatOpenAI(
        model=alias,
        base_url=gateway.url + "/v1",
        api_key=MASTER_KEY,  # type: ignore[arg-type]  # a plain str is what users pass
        use_responses_api=True,
        max_retries=0,
        **options,
    )


@pytest.mark.parametrize("alias", ALIASES)
def test_invoke(gateway: GatewayProcess, alias: str) -> None:
    answer = llm(gateway, alias).invoke("hi there")
    assert isinstance(answer, AIMessage)
    assert answer.text == mock_reply(alias, "hi there")
    assert str(answer.response_metadata["id"]).startswith("resp_")
    assert answer.response_metadata["status"] == "completed"
    usage = answer.usage_metadata
    assert usage is not None and usage["output_tokens"] == len(answer.text.split())
    assert usage["total_tokens"] == usage["input_tokens"] + usage["output_tokens"]


@pytest.mark.parametrize("alias", ALIASES)
def test_bound_tool_round_trip(gateway: GatewayProcess, mock: Mock, alias: str) -> None:
    model = llm(gateway, alias).bind_tools([get_weather])
    messages: list[BaseMessage] = [HumanMessage(QUESTION)]
    asked = model.invoke(messages)
    assert isinstance(asked, AIMessage)
    [call] = asked.tool_calls
    assert call["name"] == "get_weather" and set(call["args"]) >= {"city", "days"}
    assert call["id"]
    result = get_weather.invoke(call)
    assert isinstance(result, ToolMessage) and result.tool_call_id == call["id"]
    answered = model.invoke([*messages, asked, result])
    assert isinstance(answered, AIMessage)
    assert answered.tool_calls == []
    assert answered.text == mock_reply(alias, QUESTION)
    assert mock.calls(UPSTREAM[alias]) == 2


@pytest.mark.parametrize("alias", ALIASES)
def test_stream(gateway: GatewayProcess, alias: str) -> None:
    chunks = list(llm(gateway, alias).stream("stream please"))
    assert len(chunks) > 3
    assert "".join(chunk.text for chunk in chunks) == mock_reply(alias, "stream please")
    usage = [chunk.usage_metadata for chunk in chunks if chunk.usage_metadata]
    assert len(usage) == 1 and usage[0]["output_tokens"] == 12


@pytest.mark.parametrize("alias", ALIASES)
def test_streamed_tool_call(gateway: GatewayProcess, alias: str) -> None:
    model = llm(gateway, alias).bind_tools([get_weather], tool_choice="get_weather")
    chunks = list(model.stream(QUESTION))
    merged: Any = chunks[0]
    for chunk in chunks[1:]:
        merged = merged + chunk
    [call] = merged.tool_calls
    assert call["name"] == "get_weather" and set(call["args"]) >= {"city", "days"}


@pytest.mark.parametrize("alias", ["chat", "claude", "resp-api"])
def test_use_previous_response_id(gateway: GatewayProcess, alias: str) -> None:
    """LangChain sends only the new messages and the last answer's id: the gateway's
    store supplies the rest (the question, and the tool call the result answers)."""
    sent: list[Any] = []

    def capture(request: httpx.Request) -> None:
        sent.append(json.loads(request.read()))

    with httpx.Client(event_hooks={"request": [capture]}) as http:
        model = llm(gateway, alias, use_previous_response_id=True, http_client=http).bind_tools([get_weather])
        messages: list[BaseMessage] = [HumanMessage(QUESTION)]
        asked = model.invoke(messages)
        assert isinstance(asked, AIMessage)
        [call] = asked.tool_calls
        answered = model.invoke([*messages, asked, get_weather.invoke(call)])
    assert isinstance(answered, AIMessage)
    assert answered.text == mock_reply(alias, QUESTION), "the question came from the store"
    assert sent[1]["previous_response_id"] == asked.response_metadata["id"]
    assert [item["type"] for item in sent[1]["input"]] == ["function_call_output"]
