"""Stored Responses shared by two gateway replicas through one real Redis (state
backend ``redis``): a response made on one replica is continued, read and deleted
on the other, and stays private to its key.

The gateway stores a response before its answer reaches the client, so a turn sent
the moment the last one was answered finds it on either replica, at once
(:func:`settled` checks without waiting; :func:`test_read_your_writes` many times over).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest

from tests.e2e.conftest import Mock
from tests.e2e.harness import GatewayProcess, e2e_config
from tests.e2e.test_sdk_responses import QUESTION, TOOL_RESULT, WEATHER_TOOL, first_call, mock_reply
from tests.redis_server import RedisServer

Replicas = tuple[GatewayProcess, GatewayProcess]


@pytest.fixture(scope="module")
def replicas(mock: Mock, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Replicas]:
    with RedisServer() as server:
        state = f"state: {{backend: redis, url: '{server.url}', flush_interval_s: 0.2, refresh_interval_s: 0.2}}\n"
        config = state + e2e_config(mock.url)
        a = GatewayProcess(config, Path(tmp_path_factory.mktemp("resp-replica-a")))
        try:
            b = GatewayProcess(config, Path(tmp_path_factory.mktemp("resp-replica-b")))
        except BaseException:
            a.stop()
            raise
        yield a, b
        a.stop()
        b.stop()


def stored(client: openai.OpenAI, response_id: str) -> bool:
    try:
        client.responses.retrieve(response_id)
    except openai.NotFoundError:
        return False
    return True


def settled(client: openai.OpenAI, response: Any) -> Any:
    """``response``, which ``client``'s replica can read already (see the module docstring)."""
    assert stored(client, response.id), f"{response.id} not stored when it was answered"
    return response


@pytest.mark.parametrize("alias", ["chat", "claude", "gemini", "resp-api"])
def test_continued_on_the_other_replica(replicas: Replicas, alias: str) -> None:
    a, b = (gw.client() for gw in replicas)
    one = settled(b, a.responses.create(model=alias, input="first turn words"))
    two = settled(a, b.responses.create(model=alias, input="second turn here", previous_response_id=one.id))
    three = settled(b, a.responses.create(model=alias, input="third", previous_response_id=two.id))
    assert three.output_text == mock_reply(alias, "third")
    assert one.usage is not None and two.usage is not None and three.usage is not None
    assert two.usage.input_tokens == one.usage.input_tokens + one.usage.output_tokens + 3
    assert three.usage.input_tokens == two.usage.input_tokens + two.usage.output_tokens + 1
    assert b.responses.retrieve(three.id).output_text == three.output_text
    b.responses.delete(one.id)
    with pytest.raises(openai.NotFoundError):
        a.responses.retrieve(one.id)
    with pytest.raises(openai.NotFoundError):
        a.responses.create(model=alias, input="again", previous_response_id=one.id)


def test_tool_call_answered_on_the_other_replica_and_provider(replicas: Replicas) -> None:
    a, b = (gw.client() for gw in replicas)
    asked = settled(b, a.responses.create(model="claude", input=QUESTION, tools=[WEATHER_TOOL], tool_choice="required"))
    call = first_call(asked)
    output: Any = [{"type": "function_call_output", "call_id": call.call_id, "output": TOOL_RESULT}]
    answered = b.responses.create(model="resp-api", previous_response_id=asked.id, input=output, tools=[WEATHER_TOOL])
    assert answered.output_text == mock_reply("resp-api", QUESTION)


@pytest.mark.parametrize("alias", ["chat", "resp-api"])
def test_streamed_answer_continues_elsewhere(replicas: Replicas, alias: str) -> None:
    a, b = (gw.client() for gw in replicas)
    events: list[Any] = list(a.responses.create(model=alias, input="streamed turn", stream=True))
    done = settled(b, events[-1].response)
    with b.responses.stream(model=alias, input="next", previous_response_id=done.id) as stream:
        final = stream.get_final_response()
    assert final.output_text == mock_reply(alias, "next")
    assert settled(a, final).previous_response_id == done.id


def test_read_your_writes(replicas: Replicas) -> None:
    """Each answer can be read back at once, on its replica and on the other: the gateway
    stores a response before its answer (or its stream's end) reaches the client."""
    a, b = (gw.client() for gw in replicas)
    for i in range(60):
        alias = ("chat", "resp-api")[i % 2]
        response_id = a.responses.create(model=alias, input=f"turn {i}").id
        assert stored(a if i % 4 < 2 else b, response_id), f"answer {i} ({alias}) not stored yet"


def test_other_key_sees_nothing_on_either_replica(replicas: Replicas) -> None:
    a, b = replicas
    created = a.http.post("/admin/keys", json={"name": f"resp-{uuid.uuid4().hex[:8]}"})
    assert created.status_code == 201, created.text
    other = b.client(key=created.json()["key"])
    mine = settled(b.client(), a.client().responses.create(model="chat", input="private words"))
    with pytest.raises(openai.NotFoundError):
        other.responses.retrieve(mine.id)
    with pytest.raises(openai.NotFoundError):
        other.responses.create(model="chat", input="continue", previous_response_id=mine.id)
    with pytest.raises(openai.NotFoundError):
        other.responses.delete(mine.id)
    assert b.client().responses.retrieve(mine.id).id == mine.id
