"""The official anthropic SDK, unchanged, against the gateway's Messages API over loopback:
answers, streams, tools, images, system prompts, token counting and the model list, for
each upstream wire format (an Anthropic deployment gets the client's body as it came, the
others a translation). Errors: test_sdk_anthropic_errors.py.

The mock cannot show what it received, so :func:`record_upstream` wraps its (in-process)
request pipeline for the duration of a test and keeps each body and its headers.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import anthropic
import pytest

from gateway.mock import pipeline
from gateway.mock.behaviour import Behaviour
from gateway.mock.pipeline import Call, ModelRoute
from gateway.mock.state import MockState
from tests.e2e.conftest import Mock
from tests.e2e.harness import LIMITED_KEY, MASTER_KEY, GatewayProcess
from tests.e2e.test_sdk import IMAGE_PNG_1PX

ALIASES = ["claude", "chat", "gemini"]
PROVIDER_NAME = "claude-sonnet-4-5-20250929"  # model_aliases "claude-*" -> claude
ALL_NAMES = [*ALIASES, PROVIDER_NAME]
ALIAS_OF = {"claude": "claude", "chat": "chat", "gemini": "gemini", PROVIDER_NAME: "claude"}
UPSTREAM = {"claude": "mock-claude", "chat": "mock-gpt", "gemini": "mock-gemini"}
HELLO: Any = [{"role": "user", "content": "Hello there, gateway"}]
WEATHER_TOOL: Any = {
    "name": "get_weather",
    "description": "Weather for a city",
    "input_schema": {
        "type": "object",
        "properties": {"city": {"type": "string"}, "days": {"type": "integer"}},
        "required": ["city", "days"],
    },
}
WEATHER_INPUT = {"city": "mock", "days": 1}  # what the mock fills the schema's required fields with
PNG_BASE64 = IMAGE_PNG_1PX.partition(",")[2]
PROTOCOL_EVENTS = frozenset(
    {
        "message_start",
        "content_block_start",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
    }
)


def sdk_client(gateway: GatewayProcess, key: str = MASTER_KEY) -> anthropic.Anthropic:
    """An anthropic SDK client on the gateway; no SDK retries (the gateway retries itself)."""
    return anthropic.Anthropic(base_url=gateway.url, api_key=key, max_retries=0)


@dataclass
class Upstream:
    """What the mock received during one test: (route name, body) and the headers, in order."""

    bodies: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)

    def last(self, route: str) -> dict[str, Any]:
        return next(body for name, body in reversed(self.bodies) if name == route)


def record_upstream(monkeypatch: pytest.MonkeyPatch, mock: Mock) -> Upstream:
    """Wrap the in-process mock's pipeline (its model routes) to keep every request it gets."""
    seen = Upstream()
    respond = pipeline._respond
    state: MockState = mock.server.app.state.mock
    resolve = state.resolve

    def recording_respond(route: ModelRoute, call: Call, st: MockState) -> Any:
        seen.bodies.append((route.name, call.body))
        return respond(route, call, st)

    def recording_resolve(model: str, headers: Any) -> Behaviour:
        pairs = list(headers)
        seen.headers.append(dict(pairs))
        return resolve(model, pairs)

    monkeypatch.setattr(pipeline, "_respond", recording_respond)
    monkeypatch.setattr(state, "resolve", recording_resolve)
    return seen


@pytest.fixture
def client(gateway: GatewayProcess) -> Iterator[anthropic.Anthropic]:
    with sdk_client(gateway) as c:
        yield c


@pytest.fixture
def upstream(monkeypatch: pytest.MonkeyPatch, mock: Mock) -> Upstream:
    return record_upstream(monkeypatch, mock)


@pytest.mark.parametrize("name", ALL_NAMES)
def test_create_text_usage_and_headers(client: anthropic.Anthropic, mock: Mock, name: str) -> None:
    alias = ALIAS_OF[name]
    raw = client.messages.with_raw_response.create(model=name, max_tokens=100, messages=HELLO)
    message = raw.parse()
    assert message.type == "message" and message.role == "assistant" and message.id.startswith("msg_")
    assert [block.type for block in message.content] == ["text"]
    text = message.content[0].text  # type: ignore[union-attr]
    assert text.startswith(f"Mock reply from {UPSTREAM[alias]}: Hello there, gateway")
    assert message.stop_reason == "end_turn" and message.stop_sequence is None
    assert message.usage.input_tokens > 0 and message.usage.output_tokens == 12
    if alias != "claude":  # a translated answer names the model as the client did
        assert message.model == name
    assert raw.headers["x-gateway-deployment"] == f"{alias}/0"
    assert float(raw.headers["x-gateway-cost-usd"]) > 0
    assert mock.calls(UPSTREAM[alias]) == 1


@pytest.mark.parametrize("name", ALL_NAMES)
def test_stream_text_and_final_message(client: anthropic.Anthropic, name: str) -> None:
    alias = ALIAS_OF[name]
    with client.messages.stream(model=name, max_tokens=100, messages=HELLO) as stream:
        pieces = list(stream.text_stream)
        final = stream.get_final_message()
        deployment = stream.response.headers["x-gateway-deployment"]
    assert deployment == f"{alias}/0"
    assert len(pieces) == 12  # one word each
    assert [block.type for block in final.content] == ["text"]
    assert "".join(pieces) == final.content[0].text  # type: ignore[union-attr]
    assert "".join(pieces).startswith(f"Mock reply from {UPSTREAM[alias]}: Hello there")
    assert final.stop_reason == "end_turn"
    assert final.usage.input_tokens > 0 and final.usage.output_tokens == 12
    # message_start may carry the gateway's estimate; the final usage is the upstream's count
    whole = client.messages.create(model=name, max_tokens=100, messages=HELLO)
    assert (final.usage.input_tokens, final.usage.output_tokens) == (whole.usage.input_tokens, 12)


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("alias", ALIASES)
def test_max_tokens_stop_reason(client: anthropic.Anthropic, alias: str, stream: bool) -> None:
    message: anthropic.types.Message
    if stream:
        with client.messages.stream(model=alias, max_tokens=3, messages=HELLO) as events:
            message = events.get_final_message()
    else:
        message = client.messages.create(model=alias, max_tokens=3, messages=HELLO)
    assert message.stop_reason == "max_tokens" and message.usage.output_tokens == 3
    assert message.content[0].type == "text" and message.content[0].text == "Mock reply from"


def _protocol(events: Sequence[str]) -> list[str]:
    """The wire events the SDK saw, runs of deltas collapsed to one."""
    out: list[str] = []
    for kind in events:
        if kind in PROTOCOL_EVENTS and not (kind == "content_block_delta" and out and out[-1] == kind):
            out.append(kind)
    return out


@pytest.mark.parametrize("alias", ALIASES)
def test_stream_event_order(client: anthropic.Anthropic, alias: str) -> None:
    with client.messages.stream(model=alias, max_tokens=100, messages=HELLO) as stream:
        events = list(stream)
    kinds = [event.type for event in events]
    assert kinds[0] == "message_start" and kinds[-1] == "message_stop"
    assert _protocol(kinds) == [
        "message_start",
        "content_block_start",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    assert kinds.count("text") == 12  # the SDK's own event after each text delta
    stop = next(e for e in events if e.type == "message_delta")
    assert stop.delta.stop_reason == "end_turn"


def _tool_turns(first: anthropic.types.Message, question: Any) -> Any:
    use = first.content[-1]
    assert use.type == "tool_use"
    result = {"type": "tool_result", "tool_use_id": use.id, "content": '{"temp_c": 21}'}
    return [
        *question,
        {"role": "assistant", "content": [block.model_dump(exclude_none=True) for block in first.content]},
        {"role": "user", "content": [result]},
    ]


@pytest.mark.parametrize("alias", ALIASES)
def test_tool_round_trip(client: anthropic.Anthropic, upstream: Upstream, alias: str) -> None:
    question: Any = [{"role": "user", "content": "Weather in Paris?"}]
    first = client.messages.create(model=alias, max_tokens=100, messages=question, tools=[WEATHER_TOOL])
    assert first.stop_reason == "tool_use"
    assert [block.type for block in first.content] == ["tool_use"]
    use = first.content[0]
    assert use.type == "tool_use" and use.name == "get_weather" and use.input == WEATHER_INPUT and use.id
    final = client.messages.create(
        model=alias, max_tokens=100, messages=_tool_turns(first, question), tools=[WEATHER_TOOL]
    )
    assert final.stop_reason == "end_turn"
    assert final.content[0].type == "text" and "Weather in Paris?" in final.content[0].text
    sent = json.dumps(upstream.bodies[-1][1])
    assert "temp_c" in sent, "the tool result reached the upstream"
    if alias != "gemini":  # Gemini's function responses are matched by name, not by id
        assert use.id in sent


@pytest.mark.parametrize("alias", ALIASES)
def test_streamed_tool_use(client: anthropic.Anthropic, alias: str) -> None:
    question: Any = [{"role": "user", "content": "Weather?"}]
    with client.messages.stream(
        model=alias, max_tokens=100, messages=question, tools=[WEATHER_TOOL], tool_choice={"type": "any"}
    ) as stream:
        events = list(stream)
        final = stream.get_final_message()
    partial = [e for e in events if e.type == "input_json"]
    assert partial, "the SDK assembles input_json_delta events"
    assert json.loads("".join(e.partial_json for e in partial)) == WEATHER_INPUT
    assert partial[-1].snapshot == WEATHER_INPUT
    assert final.stop_reason == "tool_use"
    use = final.content[-1]
    assert use.type == "tool_use" and use.name == "get_weather" and use.input == WEATHER_INPUT
    followup = client.messages.create(
        model=alias, max_tokens=100, messages=_tool_turns(final, question), tools=[WEATHER_TOOL]
    )
    assert followup.stop_reason == "end_turn"


def _as_sent(route: str, body: dict[str, Any]) -> dict[str, Any]:
    """System text, image, stop sequences and user of an upstream body, whatever its format."""
    if route == "anthropic.messages":
        system = body.get("system")
        text = system if isinstance(system, str) else " ".join(b["text"] for b in system or ())
        image = body["messages"][-1]["content"][-1]["source"]
        return {
            "system": text,
            "image": (image["media_type"], image["data"]),
            "stop": body.get("stop_sequences"),
            "user": body.get("metadata", {}).get("user_id"),
        }
    if route == "openai.chat":
        system = body["messages"][0]
        assert system["role"] == "system"
        content = system["content"]
        text = content if isinstance(content, str) else " ".join(p["text"] for p in content)
        url = body["messages"][-1]["content"][-1]["image_url"]["url"]
        media, _, data = url.removeprefix("data:").partition(";base64,")
        return {"system": text, "image": (media, data), "stop": body.get("stop"), "user": body.get("user")}
    inline = body["contents"][-1]["parts"][-1]["inlineData"]
    return {
        "system": " ".join(p["text"] for p in body["systemInstruction"]["parts"]),
        "image": (inline["mimeType"], inline["data"]),
        "stop": body.get("generationConfig", {}).get("stopSequences"),
        "user": None,  # Gemini has no end-user field: metadata.user_id is dropped
    }


ROUTES = {"claude": "anthropic.messages", "chat": "openai.chat", "gemini": "gemini.generateContent"}
SYSTEMS: Any = {
    "string": "You describe images.",
    "blocks": [{"type": "text", "text": "You describe images.", "cache_control": {"type": "ephemeral"}}],
}


@pytest.mark.parametrize("system", ["string", "blocks"])
@pytest.mark.parametrize("alias", ALIASES)
def test_image_system_stop_sequences_metadata(
    client: anthropic.Anthropic, upstream: Upstream, alias: str, system: str
) -> None:
    message = client.messages.create(
        model=alias,
        max_tokens=100,
        system=SYSTEMS[system],
        stop_sequences=["END"],
        metadata={"user_id": "user-42"},
        messages=[
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "What is in this picture?"},
                    {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG_BASE64}},
                ],
            }
        ],
    )
    assert message.content[0].type == "text" and "What is in this picture?" in message.content[0].text
    body = upstream.last(ROUTES[alias])
    assert _as_sent(ROUTES[alias], body) == {
        "system": "You describe images.",
        "image": ("image/png", PNG_BASE64),
        "stop": ["END"],
        "user": None if alias == "gemini" else "user-42",
    }
    if alias == "claude":  # the client's system as it came, cache_control included
        assert body["system"] == SYSTEMS[system]
        assert bool(message.usage.cache_creation_input_tokens) == (system == "blocks")


def test_prompt_cache_blocks_reach_anthropic(client: anthropic.Anthropic) -> None:
    text = "You are a careful assistant. " * 20
    system: Any = [{"type": "text", "text": text, "cache_control": {"type": "ephemeral"}}]
    first = client.messages.create(model="claude", max_tokens=50, system=system, messages=HELLO)
    second = client.messages.create(model="claude", max_tokens=50, system=system, messages=HELLO)
    assert (first.usage.cache_creation_input_tokens or 0) > 0 and not first.usage.cache_read_input_tokens
    assert second.usage.cache_read_input_tokens == first.usage.cache_creation_input_tokens


@pytest.mark.parametrize("name", ALL_NAMES)
def test_count_tokens(client: anthropic.Anthropic, mock: Mock, name: str) -> None:
    alias = ALIAS_OF[name]
    raw = client.messages.with_raw_response.count_tokens(model=name, system="Be brief.", messages=HELLO)
    body: Any = raw.json()
    assert body["input_tokens"] > 0 and raw.parse().input_tokens == body["input_tokens"]
    assert mock.calls(UPSTREAM[alias]) == (1 if alias == "claude" else 0)
    if alias == "claude":  # the upstream's own count: what a generation reports as its input
        assert raw.headers["x-gateway-token-count"] == "upstream"
        assert "estimated" not in body
        answer = client.messages.create(model=name, max_tokens=50, system="Be brief.", messages=HELLO)
        assert answer.usage.input_tokens == body["input_tokens"]
    else:
        assert raw.headers["x-gateway-token-count"] == "estimated"
        assert body["estimated"] is True


def test_models_list_in_anthropic_shape(gateway: GatewayProcess, client: anthropic.Anthropic) -> None:
    page = client.models.list()
    ids = [model.id for model in page.data]
    assert {"claude", "chat", "gemini", "resp-api"} <= set(ids)
    assert "embed" not in ids and "gemini-embed" not in ids, "only chat models"
    assert all(model.type == "model" and model.display_name == model.id for model in page.data)
    assert client.models.retrieve("claude").id == "claude"
    with sdk_client(gateway, LIMITED_KEY) as limited:
        assert [model.id for model in limited.models.list()] == ["chat"]
        with pytest.raises(anthropic.NotFoundError) as err:
            limited.models.retrieve("claude")
    assert isinstance(err.value.body, dict) and err.value.body["type"] == "error"
    assert err.value.type == "not_found_error"


def test_anthropic_headers_reach_anthropic_only(client: anthropic.Anthropic, upstream: Upstream) -> None:
    beta = {"anthropic-beta": "prompt-caching-2024-07-31"}
    client.messages.create(model="claude", max_tokens=20, messages=HELLO, extra_headers=beta)
    client.messages.create(model="chat", max_tokens=20, messages=HELLO, extra_headers=beta)
    to_claude, to_chat = upstream.headers
    assert to_claude["anthropic-version"] == client.default_headers["anthropic-version"]
    assert to_claude["anthropic-beta"] == "prompt-caching-2024-07-31"
    assert "anthropic-version" not in to_chat and "anthropic-beta" not in to_chat
    assert MASTER_KEY not in json.dumps([to_claude, to_chat]), "the client's key never goes upstream"


CACHED_1H: Any = [
    {
        "role": "user",
        "content": [{"type": "text", "text": "Hello there", "cache_control": {"type": "ephemeral", "ttl": "1h"}}],
    }
]
FUTURE_FIELD: Any = {"x_future_field": {"nested": [1, "two"]}}


@pytest.mark.parametrize("stream", [False, True])
def test_unknown_fields_and_cache_ttl_reach_anthropic_unchanged(
    client: anthropic.Anthropic, upstream: Upstream, stream: bool
) -> None:
    answer: anthropic.types.Message
    if stream:
        with client.messages.stream(model="claude", max_tokens=50, messages=CACHED_1H, extra_body=FUTURE_FIELD) as s:
            answer = s.get_final_message()
    else:
        answer = client.messages.create(model="claude", max_tokens=50, messages=CACHED_1H, extra_body=FUTURE_FIELD)
    sent = {"model": "mock-claude", "max_tokens": 50, "messages": CACHED_1H, **FUTURE_FIELD}
    assert upstream.last("anthropic.messages") == ({**sent, "stream": True} if stream else sent)
    written = answer.usage.cache_creation_input_tokens
    assert written == 2  # "Hello there", written to the cache
    assert answer.usage.cache_creation is not None, "Anthropic's own usage breakdown, relayed"
    assert answer.usage.cache_creation.ephemeral_1h_input_tokens == written, "the mock saw the 1h TTL"


@pytest.mark.parametrize("alias", ["chat", "gemini"])
def test_unknown_fields_and_cache_ttl_are_translated_away(
    client: anthropic.Anthropic, upstream: Upstream, alias: str
) -> None:
    answer = client.messages.create(model=alias, max_tokens=50, messages=CACHED_1H, extra_body=FUTURE_FIELD)
    assert answer.content[0].type == "text" and "Hello there" in answer.content[0].text
    body = upstream.last(ROUTES[alias])
    assert "x_future_field" not in json.dumps(body) and "cache_control" not in json.dumps(body)
    if alias == "chat":
        assert body["messages"] == [{"role": "user", "content": [{"type": "text", "text": "Hello there"}]}]
    else:
        assert body["contents"] == [{"role": "user", "parts": [{"text": "Hello there"}]}]
