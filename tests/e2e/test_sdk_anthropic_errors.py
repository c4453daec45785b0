"""Errors as the official anthropic SDK sees them from the gateway's Messages API: each
status raises the SDK's exception class for it, in Anthropic's envelope
(``{"type": "error", "error": {"type", "message"}}``), whatever the upstream's format.
The gateway retries an upstream once (e2e config ``max_retries: 1``); the SDK not at all.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import anthropic
import pytest

from tests.e2e.conftest import Mock
from tests.e2e.harness import LIMITED_KEY, GatewayProcess
from tests.e2e.test_sdk_anthropic import (
    ALIAS_OF,
    ALIASES,
    ALL_NAMES,
    HELLO,
    PROVIDER_NAME,
    UPSTREAM,
    Upstream,
    record_upstream,
    sdk_client,
)


@pytest.fixture
def client(gateway: GatewayProcess) -> Iterator[anthropic.Anthropic]:
    with sdk_client(gateway) as c:
        yield c


@pytest.fixture
def upstream(monkeypatch: pytest.MonkeyPatch, mock: Mock) -> Upstream:
    return record_upstream(monkeypatch, mock)


def envelope(err: anthropic.APIStatusError, kind: str) -> str:
    """Check Anthropic's error shape and type; the message."""
    body: Any = err.body
    assert isinstance(body, dict) and body["type"] == "error", body
    assert body["error"]["type"] == kind and err.type == kind
    message = body["error"]["message"]
    assert isinstance(message, str) and message
    return message


def create(client: anthropic.Anthropic, model: str, stream: bool = False, **extra: Any) -> None:
    """One Messages request, streaming (read to the end) or not."""
    if stream:
        with client.messages.stream(model=model, max_tokens=50, messages=HELLO, **extra) as events:
            for _ in events:
                pass
    else:
        client.messages.create(model=model, max_tokens=50, messages=HELLO, **extra)


@pytest.mark.parametrize("name", ALL_NAMES)
def test_missing_max_tokens_is_bad_request(client: anthropic.Anthropic, mock: Mock, name: str) -> None:
    with pytest.raises(anthropic.BadRequestError) as err:
        client.post("/v1/messages", body={"model": name, "messages": HELLO}, cast_to=object)
    assert "max_tokens" in envelope(err.value, "invalid_request_error")
    assert mock.calls(UPSTREAM[ALIAS_OF[name]]) == 0


BAD_FIELDS: Any = {
    "temperature": {"temperature": 2},
    "empty_messages": {"messages": []},
    "empty_text": {"messages": [{"role": "user", "content": ""}]},
    "stop_sequences": {"stop_sequences": "END"},
    "tool_choice_without_tools": {"tool_choice": {"type": "any"}},
}


@pytest.mark.parametrize("case", sorted(BAD_FIELDS))
@pytest.mark.parametrize("alias", ALIASES)
def test_invalid_fields_are_bad_requests_before_any_upstream(
    client: anthropic.Anthropic, mock: Mock, alias: str, case: str
) -> None:
    body = {"model": alias, "max_tokens": 50, "messages": HELLO, **BAD_FIELDS[case]}
    with pytest.raises(anthropic.BadRequestError) as err:
        client.post("/v1/messages", body=body, cast_to=object)
    envelope(err.value, "invalid_request_error")
    assert mock.calls(UPSTREAM[alias]) == 0, "the gateway checks the body, pass-through or not"


UNKNOWN_BLOCK: Any = [{"role": "user", "content": [{"type": "text", "text": "hi"}, {"type": "future_block", "x": 1}]}]


@pytest.mark.parametrize("alias", ["chat", "gemini"])
def test_unknown_block_type_is_bad_request_when_translated(client: anthropic.Anthropic, mock: Mock, alias: str) -> None:
    with pytest.raises(anthropic.BadRequestError) as err:
        client.messages.create(model=alias, max_tokens=50, messages=UNKNOWN_BLOCK)
    assert "future_block" in envelope(err.value, "invalid_request_error")
    assert mock.calls(UPSTREAM[alias]) == 0


def test_unknown_block_type_goes_to_anthropic_as_it_came(client: anthropic.Anthropic, upstream: Upstream) -> None:
    """Anthropic itself judges a block the gateway does not know (the mock accepts it)."""
    client.messages.create(model="claude", max_tokens=50, messages=UNKNOWN_BLOCK)
    assert upstream.last("anthropic.messages")["messages"] == UNKNOWN_BLOCK


@pytest.mark.parametrize("alias", ALIASES)
def test_upstream_bad_request_is_not_retried(client: anthropic.Anthropic, mock: Mock, alias: str) -> None:
    mock.behave(UPSTREAM[alias], error_status=400)
    with pytest.raises(anthropic.BadRequestError) as err:
        create(client, alias)
    envelope(err.value, "invalid_request_error")
    assert mock.calls(UPSTREAM[alias]) == 1


@pytest.mark.parametrize("call", ["create", "stream", "count_tokens", "models"])
def test_bad_key_is_authentication_error(gateway: GatewayProcess, mock: Mock, call: str) -> None:
    with sdk_client(gateway, "sk-wrong-key") as bad, pytest.raises(anthropic.AuthenticationError) as err:
        if call == "count_tokens":
            bad.messages.count_tokens(model="claude", messages=HELLO)
        elif call == "models":
            bad.models.list()
        else:
            create(bad, "claude", stream=call == "stream")
    envelope(err.value, "authentication_error")
    assert mock.calls("mock-claude") == 0


@pytest.mark.parametrize("call", ["create", "stream", "count_tokens"])
@pytest.mark.parametrize("name", ["claude", PROVIDER_NAME, "gemini"])
def test_model_outside_the_key_is_permission_denied(gateway: GatewayProcess, mock: Mock, name: str, call: str) -> None:
    with sdk_client(gateway, LIMITED_KEY) as limited:
        assert limited.messages.create(model="chat", max_tokens=20, messages=HELLO).content
        with pytest.raises(anthropic.PermissionDeniedError) as err:
            if call == "count_tokens":
                limited.messages.count_tokens(model=name, messages=HELLO)
            else:
                create(limited, name, stream=call == "stream")
    assert f"'{ALIAS_OF[name]}'" in envelope(err.value, "permission_error")
    assert mock.calls(UPSTREAM[ALIAS_OF[name]]) == 0


@pytest.mark.parametrize("call", ["create", "stream", "count_tokens", "retrieve"])
def test_unknown_model_is_not_found(client: anthropic.Anthropic, call: str) -> None:
    with pytest.raises(anthropic.NotFoundError) as err:
        if call == "count_tokens":
            client.messages.count_tokens(model="no-such-model", messages=HELLO)
        elif call == "retrieve":
            client.models.retrieve("no-such-model")
        else:
            create(client, "no-such-model", stream=call == "stream")
    assert "no-such-model" in envelope(err.value, "not_found_error")


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("alias", ALIASES)
def test_upstream_rate_limit_after_retries(client: anthropic.Anthropic, mock: Mock, alias: str, stream: bool) -> None:
    mock.behave(UPSTREAM[alias], error_status=429)
    with pytest.raises(anthropic.RateLimitError) as err:
        create(client, alias, stream=stream)
    envelope(err.value, "rate_limit_error")
    assert mock.calls(UPSTREAM[alias]) == 2, "one attempt plus the gateway's one retry"


@pytest.mark.parametrize("alias", ALIASES)
def test_upstream_rate_limit_keeps_retry_after(client: anthropic.Anthropic, mock: Mock, alias: str) -> None:
    mock.behave(UPSTREAM[alias], error_status=429, retry_after=30)
    with pytest.raises(anthropic.RateLimitError) as err:
        create(client, alias)
    envelope(err.value, "rate_limit_error")
    assert err.value.response.headers["retry-after"] == "30"
    assert mock.calls(UPSTREAM[alias]) == 1, "a Retry-After beyond max_retry_after_s is not waited for"


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("name", ["claude", PROVIDER_NAME])
def test_anthropic_overloaded_is_overloaded_error(
    client: anthropic.Anthropic, mock: Mock, name: str, stream: bool
) -> None:
    mock.behave("mock-claude", error_status=529)
    with pytest.raises(anthropic.OverloadedError) as err:
        create(client, name, stream=stream)
    assert err.value.status_code == 529
    envelope(err.value, "overloaded_error")
    assert mock.calls("mock-claude") == 2, "529 is retried once"


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("alias", ALIASES)
def test_upstream_server_error_is_internal_server_error(
    client: anthropic.Anthropic, mock: Mock, alias: str, stream: bool
) -> None:
    mock.behave(UPSTREAM[alias], error_status=500)
    with pytest.raises(anthropic.InternalServerError) as err:
        create(client, alias, stream=stream)
    assert err.value.status_code == 500
    envelope(err.value, "api_error")
    assert mock.calls(UPSTREAM[alias]) == 2


@pytest.mark.parametrize("alias", ALIASES)
def test_stream_cut_short_is_an_error_event(client: anthropic.Anthropic, mock: Mock, alias: str) -> None:
    """After the first bytes nothing can be retried: the stream ends in an Anthropic ``error`` event."""
    mock.behave(UPSTREAM[alias], disconnect_after_chunks=3)
    seen: list[str] = []
    with (
        pytest.raises(anthropic.APIStatusError) as err,
        client.messages.stream(model=alias, max_tokens=50, messages=HELLO) as stream,
    ):
        seen.extend(stream.text_stream)
    assert seen == ["Mock", " reply", " from"], "the client got the text before the cut"
    envelope(err.value, "api_error")


def test_oversized_body_is_content_too_large(client: anthropic.Anthropic, mock: Mock) -> None:
    big: Any = [{"role": "user", "content": "x" * 70_000}]  # the e2e server's max_body_bytes is 65536
    with pytest.raises(anthropic.ContentTooLargeError) as err:
        client.messages.create(model="claude", max_tokens=10, messages=big)
    assert err.value.status_code == 413
    envelope(err.value, "request_too_large")
    assert mock.calls("mock-claude") == 0


def test_embedding_model_is_bad_request(client: anthropic.Anthropic, mock: Mock) -> None:
    with pytest.raises(anthropic.BadRequestError) as err:
        client.messages.create(model="embed", max_tokens=10, messages=HELLO)
    assert "embedding" in envelope(err.value, "invalid_request_error")
    assert mock.calls("mock-embed") == 0
