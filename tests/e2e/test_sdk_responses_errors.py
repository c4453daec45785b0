"""Typed errors of the Responses API through the official openai SDK: every refusal
is the SDK's exception for its status with OpenAI's error envelope
(``{"error": {message, type, param, code}}``), and none reaches the upstream."""

from __future__ import annotations

from typing import Any

import openai
import pytest

from tests.e2e.conftest import Mock
from tests.e2e.harness import LIMITED_KEY, GatewayProcess
from tests.e2e.test_sdk_responses import ALIASES, QUESTION, UPSTREAM, error_of, mock_reply


@pytest.mark.parametrize("alias", ALIASES)
def test_error_bad_input_item(gateway: GatewayProcess, mock: Mock, alias: str) -> None:
    client = gateway.client()
    robot: Any = [{"role": "robot", "content": "hi"}]
    with pytest.raises(openai.BadRequestError) as err:
        client.responses.create(model=alias, input=robot)
    error = error_of(err.value)
    assert (error["type"], error["param"], error["code"]) == ("invalid_request_error", "input.0.role", "invalid_value")
    no_call_id: Any = [{"type": "function_call_output", "output": "x"}]
    with pytest.raises(openai.BadRequestError) as err:
        client.responses.create(model=alias, input=no_call_id)
    error = error_of(err.value)
    assert (error["param"], error["code"]) == ("input.0.call_id", "missing_required_parameter")
    assert mock.calls(UPSTREAM[alias]) == 0


@pytest.mark.parametrize("alias", ["chat", "claude", "gemini", "gpt-5.1-codex"])
def test_error_item_type_a_translation_cannot_carry(gateway: GatewayProcess, mock: Mock, alias: str) -> None:
    unknown: Any = [{"role": "user", "content": "hi"}, {"type": "web_search_call", "id": "ws_1", "status": "completed"}]
    with pytest.raises(openai.BadRequestError) as err:
        gateway.client().responses.create(model=alias, input=unknown)
    error = error_of(err.value)
    assert (error["type"], error["param"], error["code"]) == (
        "invalid_request_error",
        "input.1.type",
        "unsupported_value",
    )
    assert mock.calls(UPSTREAM[alias]) == 0


def test_error_authentication(gateway: GatewayProcess) -> None:
    with pytest.raises(openai.AuthenticationError) as err:
        gateway.client(key="sk-wrong-key").responses.create(model="chat", input="hi")
    assert error_of(err.value)["code"] == "invalid_api_key"
    with pytest.raises(openai.AuthenticationError):
        gateway.client(key="sk-wrong-key").responses.retrieve("resp_0123")


@pytest.mark.parametrize("model", ["claude", "claude-sonnet-4-5", "resp-api", "gemini"])
def test_error_permission_denied_outside_key(gateway: GatewayProcess, mock: Mock, model: str) -> None:
    limited = gateway.client(key=LIMITED_KEY)
    assert limited.responses.create(model="chat", input="hi").status == "completed"
    assert limited.responses.create(model="gpt-5.1-codex", input="hi").status == "completed", "maps to chat"
    with pytest.raises(openai.PermissionDeniedError) as err:
        limited.responses.create(model=model, input="hi")
    error = error_of(err.value)
    assert (error["code"], error["param"]) == ("model_not_allowed", "model")
    with pytest.raises(openai.PermissionDeniedError):
        limited.responses.input_tokens.count(model=model, input="hi")
    assert mock.calls("mock-claude") == mock.calls("mock-gemini") == 0


def test_error_unknown_model(gateway: GatewayProcess) -> None:
    with pytest.raises(openai.NotFoundError) as err:
        gateway.client().responses.create(model="no-such-model", input="hi")
    error = error_of(err.value)
    assert (error["code"], error["param"]) == ("model_not_found", "model")


@pytest.mark.parametrize("alias", ALIASES)
def test_error_unknown_previous_response(gateway: GatewayProcess, mock: Mock, alias: str) -> None:
    client = gateway.client()
    with pytest.raises(openai.NotFoundError) as err:
        client.responses.create(model=alias, input="hi", previous_response_id="resp_" + "0" * 48)
    error = error_of(err.value)
    assert (error["code"], error["param"]) == ("previous_response_not_found", "previous_response_id")
    with pytest.raises(openai.NotFoundError) as err:
        client.responses.retrieve("resp_" + "0" * 48)
    assert error_of(err.value)["code"] == "response_not_found"
    assert mock.calls(UPSTREAM[alias]) == 0


@pytest.mark.parametrize("alias", ["chat", "claude", "gemini", "resp-api"])
@pytest.mark.parametrize("stream", [False, True])
def test_error_upstream_rate_limit(gateway: GatewayProcess, mock: Mock, alias: str, stream: bool) -> None:
    mock.behave(UPSTREAM[alias], error_status=429)
    with pytest.raises(openai.RateLimitError) as err:
        if stream:
            list(gateway.client().responses.create(model=alias, input="hi", stream=True))
        else:
            gateway.client().responses.create(model=alias, input="hi")
    assert err.value.status_code == 429
    assert error_of(err.value)["code"]
    assert mock.calls(UPSTREAM[alias]) == 2, "one attempt plus max_retries=1"


def test_responses_upstream_takes_hosted_tool_items(gateway: GatewayProcess, mock: Mock) -> None:
    search: Any = {
        "type": "web_search_call",
        "id": "ws_0123456789abcdef",
        "status": "completed",
        "action": {"type": "search", "query": "weather paris"},
    }
    replay: Any = [{"role": "user", "content": QUESTION}, search, {"role": "user", "content": "Summarise it"}]
    response = gateway.client().responses.create(model="resp-api", input=replay, tools=[{"type": "web_search"}])
    assert response.output_text == mock_reply("resp-api", "Summarise it")
    assert mock.calls("mock-gpt") == 1
