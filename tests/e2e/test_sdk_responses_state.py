"""The Responses API's stored state through the official openai SDK: multi-turn
``previous_response_id`` on every kind of upstream, ``retrieve``, ``delete``,
``store: false``, continuations that change provider between turns, and one key
never reading another's responses. (Create, streams and errors:
test_sdk_responses.py.)"""

from __future__ import annotations

import uuid
from typing import Any

import openai
import pytest

from tests.e2e.conftest import Mock
from tests.e2e.harness import GatewayProcess
from tests.e2e.test_sdk_responses import (
    ALIASES,
    QUESTION,
    TOOL_RESULT,
    UPSTREAM,
    WEATHER_TOOL,
    error_of,
    first_call,
    mock_reply,
)

KINDS = ["chat", "claude", "gemini", "resp-api"]


def new_key(gateway: GatewayProcess) -> str:
    """A fresh virtual key made through the admin API with the master key."""
    created = gateway.http.post("/admin/keys", json={"name": f"resp-{uuid.uuid4().hex[:8]}"})
    assert created.status_code == 201, created.text
    key: str = created.json()["key"]
    return key


@pytest.mark.parametrize("alias", ALIASES)
def test_three_turn_conversation(gateway: GatewayProcess, alias: str) -> None:
    client = gateway.client()
    one = client.responses.create(model=alias, input="first turn words")
    two = client.responses.create(model=alias, input="second turn here", previous_response_id=one.id)
    three = client.responses.create(model=alias, input="third", previous_response_id=two.id)
    assert len({one.id, two.id, three.id}) == 3
    assert (two.previous_response_id, three.previous_response_id) == (one.id, two.id)
    assert three.output_text == mock_reply(alias, "third")
    assert one.usage is not None and two.usage is not None and three.usage is not None
    # The mock counts the words it was sent: each turn carries every earlier input and answer.
    assert two.usage.input_tokens == one.usage.input_tokens + one.usage.output_tokens + 3
    assert three.usage.input_tokens == two.usage.input_tokens + two.usage.output_tokens + 1
    stored = client.responses.retrieve(two.id)
    assert (stored.id, stored.output_text, stored.previous_response_id) == (two.id, two.output_text, one.id)
    assert stored.usage is not None and stored.usage.total_tokens == two.usage.total_tokens


@pytest.mark.parametrize("alias", KINDS)
def test_streamed_turns_continue(gateway: GatewayProcess, alias: str) -> None:
    client = gateway.client()
    with client.responses.stream(model=alias, input="streamed first") as stream:
        one = stream.get_final_response()
    with client.responses.stream(model=alias, input="streamed second", previous_response_id=one.id) as stream:
        two = stream.get_final_response()
    assert two.output_text == mock_reply(alias, "streamed second")
    assert one.usage is not None and two.usage is not None
    assert two.usage.input_tokens == one.usage.input_tokens + one.usage.output_tokens + 2


@pytest.mark.parametrize("alias", KINDS)
def test_delete_then_continue_is_not_found(gateway: GatewayProcess, mock: Mock, alias: str) -> None:
    client = gateway.client()
    response = client.responses.create(model=alias, input="soon gone")
    deleted = client.responses.with_raw_response.delete(response.id)
    assert deleted.status_code == 200
    assert deleted.http_response.json() == {"id": response.id, "object": "response", "deleted": True}
    with pytest.raises(openai.NotFoundError) as err:
        client.responses.create(model=alias, input="and now?", previous_response_id=response.id)
    assert error_of(err.value)["code"] == "previous_response_not_found"
    with pytest.raises(openai.NotFoundError) as err:
        client.responses.retrieve(response.id)
    assert error_of(err.value)["code"] == "response_not_found"
    with pytest.raises(openai.NotFoundError):
        client.responses.delete(response.id)
    assert mock.calls(UPSTREAM[alias]) == 1


def test_a_deleted_earlier_turn_ends_the_conversation_not_the_later_responses(
    gateway: GatewayProcess, mock: Mock
) -> None:
    """A turn's record holds a segment of the conversation and names the records before it (a
    large first turn, then small ones: the fourth names the first and the third, which holds
    the second and third turns; tests/unit/test_response_store.py has the rule). Deleting the
    second ends nothing; once the third is deleted, the fourth cannot be continued, while it can
    still be read and other branches continued."""
    client = gateway.client()
    one = client.responses.create(model="chat", input="long opening " + "word " * 3000)
    two = client.responses.create(model="chat", input="second", previous_response_id=one.id)
    three = client.responses.create(model="chat", input="third", previous_response_id=two.id)
    four = client.responses.create(model="chat", input="fourth", previous_response_id=three.id)
    assert four.usage is not None and three.usage is not None
    assert four.usage.input_tokens == three.usage.input_tokens + three.usage.output_tokens + 1, "every turn sent"
    calls = mock.calls(UPSTREAM["chat"])
    # The second turn's items are in the third's record too: deleting it ends nothing.
    client.responses.delete(two.id)
    go_on = client.responses.create(model="chat", input="go on", previous_response_id=four.id)
    assert go_on.usage is not None
    assert go_on.usage.input_tokens == four.usage.input_tokens + four.usage.output_tokens + 2
    calls += 1
    client.responses.delete(three.id)
    with pytest.raises(openai.NotFoundError) as err:
        client.responses.create(model="chat", input="fifth", previous_response_id=four.id)
    error = error_of(err.value)
    assert error["code"] == "previous_response_not_found" and error["param"] == "previous_response_id"
    assert three.id in error["message"] and "no longer stored" in error["message"]
    assert client.responses.retrieve(four.id).output_text == four.output_text
    assert mock.calls(UPSTREAM["chat"]) == calls, "nothing was sent upstream"
    # the first turn's record needs nothing earlier: that branch goes on
    again = client.responses.create(model="chat", input="again", previous_response_id=one.id)
    assert again.usage is not None and one.usage is not None
    assert again.usage.input_tokens == one.usage.input_tokens + one.usage.output_tokens + 1


@pytest.mark.parametrize("alias", KINDS)
@pytest.mark.parametrize("stream", [False, True])
def test_store_false_is_not_kept(gateway: GatewayProcess, mock: Mock, alias: str, stream: bool) -> None:
    client = gateway.client()
    if stream:
        events: list[Any] = list(client.responses.create(model=alias, input="forget me", store=False, stream=True))
        response = events[-1].response
    else:
        response = client.responses.create(model=alias, input="forget me", store=False)
    assert response.status == "completed" and response.store is False
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(response.id)
    with pytest.raises(openai.NotFoundError) as err:
        client.responses.create(model=alias, input="and now?", previous_response_id=response.id)
    assert error_of(err.value)["code"] == "previous_response_not_found"
    assert mock.calls(UPSTREAM[alias]) == 1


@pytest.mark.parametrize("alias", ["chat", "resp-api"])
def test_one_key_never_reads_another(gateway: GatewayProcess, mock: Mock, alias: str) -> None:
    owner, other = gateway.client(), gateway.client(key=new_key(gateway))
    mine = owner.responses.create(model=alias, input="private words")
    with pytest.raises(openai.NotFoundError) as err:
        other.responses.retrieve(mine.id)
    assert error_of(err.value)["code"] == "response_not_found"
    with pytest.raises(openai.NotFoundError):
        other.responses.delete(mine.id)
    for call in (other.responses.create, other.responses.input_tokens.count):
        with pytest.raises(openai.NotFoundError) as err:
            call(model=alias, input="continue it", previous_response_id=mine.id)
        assert error_of(err.value)["code"] == "previous_response_not_found"
    assert mock.calls(UPSTREAM[alias]) == 1, "no refused request reached the upstream"
    # Still whole for its owner after the other key's delete.
    assert owner.responses.retrieve(mine.id).output_text == mine.output_text
    theirs = other.responses.create(model=alias, input="their own", previous_response_id=None)
    assert other.responses.retrieve(theirs.id).id == theirs.id
    with pytest.raises(openai.NotFoundError):
        owner.responses.retrieve(theirs.id)


@pytest.mark.parametrize(
    ("first", "second"),
    [("claude", "chat"), ("chat", "claude"), ("gemini", "resp-api"), ("resp-api", "gemini"), ("claude", "gemini")],
)
def test_continuation_changes_provider(gateway: GatewayProcess, first: str, second: str) -> None:
    client = gateway.client()
    one = client.responses.create(model=first, input="first turn words")
    two = client.responses.create(model=second, input="second turn here", previous_response_id=one.id)
    assert two.status == "completed"
    assert two.output_text == mock_reply(second, "second turn here")
    assert one.usage is not None and two.usage is not None
    assert two.usage.input_tokens == one.usage.input_tokens + one.usage.output_tokens + 3


@pytest.mark.parametrize(
    ("first", "second"),
    [("claude", "chat"), ("chat", "gemini"), ("gemini", "resp-api"), ("resp-api", "claude")],
)
def test_tool_call_continued_on_another_provider(gateway: GatewayProcess, first: str, second: str) -> None:
    """A provider's call id (``toolu_...``, ``call_...``) answered on another provider."""
    client = gateway.client()
    asked = client.responses.create(model=first, input=QUESTION, tools=[WEATHER_TOOL], tool_choice="required")
    call = first_call(asked)
    output: Any = [{"type": "function_call_output", "call_id": call.call_id, "output": TOOL_RESULT}]
    answered = client.responses.create(model=second, previous_response_id=asked.id, input=output, tools=[WEATHER_TOOL])
    assert [item.type for item in answered.output] == ["message"]
    assert answered.output_text == mock_reply(second, QUESTION)
    thanks = client.responses.create(model=first, previous_response_id=answered.id, input="thanks")
    assert thanks.output_text == mock_reply(first, "thanks")


@pytest.mark.parametrize("second", KINDS)
def test_reasoning_turn_continues_anywhere(gateway: GatewayProcess, second: str) -> None:
    """A Responses upstream's reasoning item (encrypted content) is replayed to it, and
    left out for the translated providers."""
    client = gateway.client()
    one = client.responses.create(model="resp-api", input="Think about this", reasoning={"effort": "low"})
    assert [item.type for item in one.output] == ["reasoning", "message"]
    assert one.usage is not None and one.usage.output_tokens_details.reasoning_tokens > 0
    two = client.responses.create(model=second, input="go on", previous_response_id=one.id)
    assert two.status == "completed" and two.output_text == mock_reply(second, "go on")


@pytest.mark.parametrize("alias", KINDS)
def test_input_tokens_count_with_history(gateway: GatewayProcess, alias: str) -> None:
    client = gateway.client()
    one = client.responses.create(model=alias, input="first turn words")
    alone = client.responses.input_tokens.count(model=alias, input="four more words here")
    after = client.responses.input_tokens.count(model=alias, input="four more words here", previous_response_id=one.id)
    assert after.input_tokens > alone.input_tokens > 0
    if alias == "resp-api":  # counted upstream: exactly the words of the whole conversation
        assert one.usage is not None
        assert after.input_tokens == one.usage.input_tokens + one.usage.output_tokens + alone.input_tokens
