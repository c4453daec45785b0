"""Reasoning in the Responses paths (issue 12): the dialect's ``reasoning`` fields and
items (gateway/dialects/responses*.py) and the Responses upstream
(gateway/providers/openai_responses*.py), on the recorded payloads of ``shared/fixtures``.

Anthropic answers are turned into the canonical contract's shapes here, by the
contract (thinking text -> ``reasoning_content``, blocks verbatim -> ``thinking_blocks``,
stream ``thinking_delta`` / ``signature_delta`` / ``redacted_thinking`` ->
``reasoning_content`` / ``reasoning_signature`` / ``redacted_reasoning``), so these
tests do not depend on the Anthropic provider's own translation.
"""

from __future__ import annotations

import base64
import copy
from typing import Any

import openai
import orjson
import pytest
from openai.types.responses import Response

from gateway.canonical import JSON, make_chunk, make_completion, make_usage
from gateway.config.settings import Params
from gateway.dialects.responses import (
    apply_native,
    input_items,
    output_items,
    parse_responses,
    reasoning_blocks,
    render_response,
)
from gateway.dialects.responses_reasoning import decode_blocks, encode_blocks
from gateway.dialects.responses_stream import ResponsesStream
from gateway.errors import InvalidRequest, UpstreamBadResponse
from gateway.providers.base import Target
from gateway.providers.openai_responses import OpenAIResponsesProvider
from gateway.providers.openai_responses_stream import ResponsesStreamDecoder
from tests.unit.fixtures import decode_events, load_bytes, load_json, random_pieces, sent_body, sse_events
from tests.unit.test_dialect_responses_stream import client, collapsed, events

INCLUDE = ["reasoning.encrypted_content"]
TARGET = Target("openai_responses", "gpt-5", "http://upstream")
SEEDS = [1, 2, 3]


# -- recorded Anthropic answers in the canonical contract's shapes ------------------------------


def anthropic_completion(rel: str) -> JSON:
    answer = load_json(rel)
    blocks = [b for b in answer["content"] if b["type"] in ("thinking", "redacted_thinking")]
    texts = [b["text"] for b in answer["content"] if b["type"] == "text"]
    calls = [
        {
            "id": b["id"],
            "type": "function",
            "function": {"name": b["name"], "arguments": orjson.dumps(b["input"]).decode()},
        }
        for b in answer["content"]
        if b["type"] == "tool_use"
    ]
    message: JSON = {"role": "assistant", "content": "".join(texts) or None, "thinking_blocks": blocks}
    thinking = [b["thinking"] for b in blocks if b["type"] == "thinking"]
    if thinking:
        message["reasoning_content"] = "\n\n".join(thinking)
    if calls:
        message["tool_calls"] = calls
    usage = make_usage(answer["usage"]["input_tokens"], answer["usage"]["output_tokens"])
    finish = "tool_calls" if calls else "stop"
    return make_completion(id=answer["id"], model="m", message=message, finish_reason=finish, usage=usage, created=1)


def anthropic_chunks(rel: str, seed: int) -> list[JSON]:
    """A recorded Anthropic stream, cut at random points, as canonical chunks."""
    chunks: list[JSON] = []

    def add(delta: JSON | None = None, finish: str | None = None, usage: JSON | None = None) -> None:
        chunks.append(make_chunk(id="c", model="m", created=1, delta=delta, finish_reason=finish, usage=usage))

    for event in sse_events(random_pieces(load_bytes(rel), seed)):
        data = orjson.loads(event.data)
        kind = data["type"]
        if kind == "content_block_start" and data["content_block"]["type"] == "redacted_thinking":
            add({"redacted_reasoning": data["content_block"]["data"]})
        elif kind == "content_block_delta":
            delta = data["delta"]
            if delta["type"] == "thinking_delta":
                add({"reasoning_content": delta["thinking"]})
            elif delta["type"] == "signature_delta":
                add({"reasoning_signature": delta["signature"]})
            elif delta["type"] == "text_delta":
                add({"content": delta["text"]})
        elif kind == "message_delta":
            add({}, "stop")
            add(usage=make_usage(1, data["usage"]["output_tokens"]))
    return chunks


def recorded_blocks(rel: str) -> list[JSON]:
    """The thinking blocks of a recorded Anthropic stream, rebuilt from its events."""
    blocks: dict[int, JSON] = {}
    for event in sse_events([load_bytes(rel)]):
        data = orjson.loads(event.data)
        if data["type"] == "content_block_start" and "thinking" in data["content_block"]["type"]:
            blocks[data["index"]] = dict(data["content_block"])
        elif data["type"] == "content_block_delta" and data["index"] in blocks:
            block, delta = blocks[data["index"]], data["delta"]
            key = "thinking" if delta["type"] == "thinking_delta" else "signature"
            block[key] = block.get(key, "") + delta[key]
    return [blocks[i] for i in sorted(blocks)]


def render(completion: JSON, body: JSON) -> JSON:
    return render_response(completion, response_id="resp_gw1", model="alias", body=body, created_at=1)


def turn_two(stored: list[JSON]) -> JSON:
    """The canonical request of a continuation that replays ``stored`` items."""
    return parse_responses({"model": "alias", "input": "And then?"}, stored)


# -- ingress: the request's reasoning fields ----------------------------------------------------


@pytest.mark.parametrize(
    "rel",
    [
        "responses/create_reasoning_summary_encrypted_content.request.json",
        "responses/create_reasoning_function_call.request.json",
        "responses/stream_reasoning_summary.request.json",
        "cross_provider/reasoning/cross_the_street/openai_responses.request.json",
        "cross_provider/reasoning/high_effort_web_search/openai_responses.request.json",
        "responses/stream_function_call_reasoning_tool_choice_required.request.json",
    ],
)
def test_effort_and_summary(rel: str) -> None:
    body = load_json(rel)
    body["tools"] = [t for t in body.get("tools", []) if t["type"] == "function"]
    req = parse_responses(body, [])
    assert req["reasoning_effort"] == body["reasoning"]["effort"]
    assert req.get("include_reasoning", False) is (body["reasoning"].get("summary") is not None)
    assert req["reasoning"] == body["reasoning"] and "reasoning_budget" not in req


@pytest.mark.parametrize(
    ("reasoning", "param", "code"),
    [
        ({"summary": "verbose"}, "reasoning.summary", "invalid_value"),
        ({"summary": 1}, "reasoning.summary", "invalid_type"),
        ({"generate_summary": "short"}, "reasoning.generate_summary", "invalid_value"),
        ({"effort": 3}, "reasoning.effort", "invalid_type"),
        ("high", "reasoning", "invalid_type"),
    ],
)
def test_bad_reasoning_fields(reasoning: Any, param: str, code: str) -> None:
    with pytest.raises(InvalidRequest) as err:
        parse_responses({"model": "m", "input": "hi", "reasoning": reasoning}, [])
    assert (err.value.param, err.value.code) == (param, code)


def test_openai_reasoning_items_are_dropped_in_translation_and_kept_for_a_responses_upstream() -> None:
    body = load_json("responses/create_reasoning_replay_with_function_call_output.request.json")
    req = parse_responses(body, [])
    assert not any("thinking_blocks" in m or "reasoning_content" in m for m in req["messages"])
    assert [m["role"] for m in req["messages"]] == ["system", "user", "assistant", "tool"]
    native = apply_native(body, "gpt-5", Params(), frozenset(), [])
    assert native["input"] == input_items(body)
    assert native["input"][1]["encrypted_content"] == body["input"][1]["encrypted_content"]


# -- egress and round trip: Anthropic thinking through a Responses client -----------------------

ANSWERS = [
    "cross_provider/reasoning/cross_the_street/anthropic.json",
    "anthropic/messages_thinking_enabled_tool_use.json",
    "anthropic/messages_redacted_thinking.json",
]


@pytest.mark.parametrize("rel", ANSWERS)
def test_reasoning_item_comes_first_in_the_recorded_shape(rel: str) -> None:
    completion = anthropic_completion(rel)
    response = render(completion, {"model": "alias", "input": "hi", "include": INCLUDE})
    parsed = Response.model_validate(response)
    assert parsed.output[0].type == "reasoning"
    assert [o["type"] for o in response["output"][1:]] == [
        *(["message"] if completion["choices"][0]["message"]["content"] else []),
        *(["function_call"] if completion["choices"][0]["message"].get("tool_calls") else []),
    ]
    item = response["output"][0]
    recorded = load_json("responses/create_reasoning_summary_encrypted_content.json")["output"][0]
    assert set(item) == set(recorded) and item["id"].startswith("rs_")
    text = completion["choices"][0]["message"].get("reasoning_content")
    assert item["summary"] == ([{"type": "summary_text", "text": text}] if text else [])
    assert item["encrypted_content"].startswith("gwr1.")
    payload = base64.urlsafe_b64decode(item["encrypted_content"][5:])
    assert orjson.loads(payload) == completion["choices"][0]["message"]["thinking_blocks"]


@pytest.mark.parametrize("rel", ANSWERS)
def test_thinking_blocks_come_back_verbatim_from_the_client_and_from_the_store(rel: str) -> None:
    completion = anthropic_completion(rel)
    message = completion["choices"][0]["message"]
    # the client asked for the encrypted content and sends the items back itself
    body = {"model": "alias", "input": "hi", "include": INCLUDE}
    response = render(completion, body)
    again = parse_responses({"model": "alias", "input": [*input_items(body), *response["output"], _user("more")]}, [])
    replayed = again["messages"][1]
    assert replayed["role"] == "assistant" and replayed["thinking_blocks"] == message["thinking_blocks"]
    assert replayed.get("reasoning_content") == message.get("reasoning_content")
    assert replayed["content"] == message["content"]
    assert replayed.get("tool_calls", []) == message.get("tool_calls", [])
    # the client did not ask: its answer has no encrypted content, the store still keeps it
    plain = render(completion, {"model": "alias", "input": "hi"})
    assert "encrypted_content" not in plain["output"][0]
    assert output_items(plain) == plain["output"][1:]
    stored = input_items(body) + output_items(plain, reasoning_blocks(plain, completion))
    history = turn_two(stored)["messages"]
    assert history[1]["thinking_blocks"] == message["thinking_blocks"]
    assert history[1].get("tool_calls", []) == message.get("tool_calls", [])


def test_gateway_reasoning_never_reaches_a_responses_upstream() -> None:
    completion = anthropic_completion("anthropic/messages_thinking_enabled_tool_use.json")
    body = {"model": "alias", "input": "hi", "include": INCLUDE}
    history = input_items(body) + output_items(render(completion, body))
    native = apply_native({"model": "alias", "input": "go on"}, "gpt-5", Params(), frozenset(), history)
    assert [i["type"] for i in native["input"]] == ["message", "message", "function_call", "message"]


def test_reasoning_without_blocks_has_no_encrypted_content() -> None:
    completion = OpenAIResponsesProvider().chat_response(
        load_json("responses/create_reasoning_function_call.json"), TARGET
    )
    response = render(completion, {"model": "alias", "input": "hi", "include": INCLUDE})
    item = response["output"][0]
    assert item["type"] == "reasoning" and "encrypted_content" not in item
    assert item["summary"][0]["text"] == completion["choices"][0]["message"]["reasoning_content"]
    assert reasoning_blocks(response, completion) == {} and output_items(response) == response["output"][1:]


def test_a_reasoning_item_alone_is_dropped() -> None:
    blocks = anthropic_completion(ANSWERS[0])["choices"][0]["message"]["thinking_blocks"]
    item = {"type": "reasoning", "id": "rs_1", "summary": [], "encrypted_content": encode_blocks(blocks)}
    req = parse_responses({"model": "m", "input": [_user("hi"), item]}, [])
    assert req["messages"] == [{"role": "user", "content": [{"type": "text", "text": "hi"}]}]


@pytest.mark.parametrize(
    ("item", "param", "code"),
    [
        ({"encrypted_content": "gwr1.%%%"}, "input.1.encrypted_content", "invalid_value"),
        ({"encrypted_content": encode_blocks({"a": 1})}, "input.1.encrypted_content", "invalid_type"),  # type: ignore[arg-type]
        ({"encrypted_content": encode_blocks(["x"])}, "input.1.encrypted_content.0", "invalid_type"),  # type: ignore[list-item]
        ({"encrypted_content": encode_blocks([{"type": "text"}])}, "input.1.encrypted_content.0.type", "invalid_value"),
        (
            {"encrypted_content": encode_blocks([{"type": "thinking"}])},
            "input.1.encrypted_content.0.thinking",
            "invalid_type",
        ),
        (
            {"encrypted_content": encode_blocks([{"type": "thinking", "thinking": "t", "signature": 5}])},
            "input.1.encrypted_content.0.signature",
            "invalid_type",
        ),
        (
            {"encrypted_content": encode_blocks([{"type": "redacted_thinking"}])},
            "input.1.encrypted_content.0.data",
            "invalid_type",
        ),
        ({"summary": [{"type": "text", "text": "t"}]}, "input.1.summary.0.type", "invalid_value"),
        ({"summary": [{"type": "summary_text"}]}, "input.1.summary.0.text", "invalid_type"),
        ({"summary": ["t"]}, "input.1.summary.0", "invalid_type"),
    ],
)
def test_bad_reasoning_items(item: JSON, param: str, code: str) -> None:
    bad_item = {"type": "reasoning", "id": "rs_1", "summary": [], **item}
    with pytest.raises(InvalidRequest) as err:
        parse_responses({"model": "m", "input": [_user("hi"), bad_item, _user("again")]}, [])
    assert (err.value.param, err.value.code) == (param, code)
    with pytest.raises(InvalidRequest) as err:
        parse_responses({"model": "m", "input": "again"}, [_user("hi"), bad_item])
    assert err.value.param == "previous_response_id"


def test_decode_refuses_what_is_not_ours() -> None:
    with pytest.raises(InvalidRequest):
        decode_blocks("gwr1." + base64.urlsafe_b64encode(b"not json").decode(), "x")


def test_usage_details() -> None:
    for rel in ("responses/create_reasoning_summary_encrypted_content.json", "responses/create_cached_tokens.json"):
        raw = load_json(rel)
        completion = OpenAIResponsesProvider().chat_response(copy.deepcopy(raw), TARGET)
        usage = render(completion, {"model": "alias", "input": "hi"})["usage"]
        details = raw["usage"]["input_tokens_details"]
        assert usage["output_tokens_details"] == raw["usage"]["output_tokens_details"]
        assert usage["input_tokens_details"] == {"cache_write_tokens": 0, **details}


def _user(text: str) -> JSON:
    return {"type": "message", "role": "user", "content": [{"type": "input_text", "text": text}]}


# -- streams ------------------------------------------------------------------------------------


def upstream_chunks(seed: int) -> list[JSON]:
    """The recorded Responses reasoning stream, cut at random points, as canonical chunks."""
    pieces = random_pieces(load_bytes("responses/stream_reasoning_summary.sse"), seed, max_size=400)
    return decode_events(ResponsesStreamDecoder("o3-mini"), sse_events(pieces))


def encode(chunks: list[JSON], body: JSON) -> tuple[ResponsesStream, bytes]:
    stream = ResponsesStream("resp_gw1", "alias", body, 1)
    return stream, b"".join(stream.chunks([c]) for c in chunks) + stream.finish()


@pytest.mark.parametrize("seed", SEEDS)
def test_reasoning_summary_stream_in_the_recorded_order(seed: int) -> None:
    recorded = sse_events([load_bytes("responses/stream_reasoning_summary.sse")])
    parts = [orjson.loads(e.data) for e in recorded if e.event == "response.reasoning_summary_part.done"]
    summary = "\n\n".join(p["part"]["text"] for p in parts)
    stream, data = encode(upstream_chunks(seed), {"model": "alias", "input": "hi", "stream": True})
    # one summary part of ours holds the recorded parts, joined as the non-stream answer joins them
    first_part = [e.event for e in recorded if orjson.loads(e.data).get("summary_index", 0) == 0]
    assert collapsed([n for n, _ in events(data)]) == collapsed(first_part)
    with client(data).responses.stream(model="alias", input="hi") as sdk:
        final = sdk.get_final_response()
    reasoning = final.output[0]
    assert reasoning.type == "reasoning" and [s.text for s in reasoning.summary] == [summary]
    assert final.output_text == orjson.loads(recorded[-1].data)["response"]["output"][1]["content"][0]["text"]
    assert stream.reasoning_blocks == {}


def test_reasoning_delta_events_are_rendered_as_emit_would() -> None:
    _, data = encode(upstream_chunks(1), {"model": "alias", "input": "hi", "stream": True})
    deltas = [d for n, d in events(data) if n == "response.reasoning_summary_text.delta"]
    assert deltas and all(
        list(d) == ["type", "item_id", "output_index", "summary_index", "delta", "sequence_number"] for d in deltas
    )
    assert {d["item_id"] for d in deltas} == {events(data)[2][1]["item"]["id"]}


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize(
    "rel", ["anthropic/stream_thinking_signature_delta.sse", "anthropic/stream_redacted_thinking.sse"]
)
def test_thinking_stream_keeps_its_blocks(rel: str, seed: int) -> None:
    chunks = anthropic_chunks(rel, seed)
    blocks = recorded_blocks(rel)
    _, data = encode(chunks, {"model": "alias", "input": "hi", "stream": True, "include": INCLUDE})
    done = [d["item"] for n, d in events(data) if n == "response.output_item.done"]
    assert [i["type"] for i in done] == ["reasoning", "message"]
    assert decode_blocks(done[0]["encrypted_content"], "x") == blocks
    with client(data).responses.stream(model="alias", input="hi") as sdk:
        final = sdk.get_final_response()
    assert final.output[0].type == "reasoning"
    # without include: nothing for the client, everything for the store
    plain, data = encode(chunks, {"model": "alias", "input": "hi", "stream": True})
    assert b"encrypted_content" not in data and plain.response is not None
    stored = output_items(plain.response, plain.reasoning_blocks)
    assert decode_blocks(stored[0]["encrypted_content"], "x") == blocks
    assert turn_two([_user("hi"), *stored])["messages"][1]["thinking_blocks"] == blocks


def test_thinking_interrupted_by_an_error() -> None:
    chunks = anthropic_chunks("anthropic/stream_thinking_signature_delta.sse", 1)
    thinking = [c for c in chunks if c["choices"] and "reasoning_content" in c["choices"][0]["delta"]]
    stream = ResponsesStream("resp_gw1", "alias", {"model": "alias", "input": "hi"}, 1)
    data = stream.chunks(thinking[:3]) + stream.error(UpstreamBadResponse("cut"))
    assert [n for n, _ in events(data)][-5:] == [
        "response.reasoning_summary_text.done",
        "response.reasoning_summary_part.done",
        "response.output_item.done",
        "error",
        "response.failed",
    ]
    assert events(data)[-4][1]["status"] == "incomplete"  # the summary part's done event
    assert stream.response is not None and stream.response["output"][0]["type"] == "reasoning"
    with pytest.raises(openai.APIError), client(data).responses.stream(model="a", input="hi") as sdk:
        sdk.get_final_response()


# -- the Responses upstream ---------------------------------------------------------------------


def wire(req: JSON, drop: frozenset[str] = frozenset()) -> JSON:
    target = Target("openai_responses", "gpt-5", "http://upstream", drop_params=drop)
    return sent_body(OpenAIResponsesProvider(), req, target)


def test_upstream_gets_effort_and_a_summary() -> None:
    body = load_json("cross_provider/reasoning/cross_the_street/openai_responses.request.json")
    req = parse_responses(body, [])
    assert wire({**req, "reasoning_budget": 16384})["reasoning"] == {
        "effort": body["reasoning"]["effort"],
        "summary": "auto",
    }
    assert wire(req, frozenset({"include_reasoning"}))["reasoning"] == {"effort": "high"}
    chat = load_json("cross_provider/reasoning/cross_the_street/openai_chat_turn2.request.json")
    sent = wire(chat)
    assert sent["reasoning"] == {"effort": chat["reasoning_effort"]} and "reasoning_budget" not in sent
    assert "reasoning" not in wire({"model": "m", "messages": chat["messages"]})


@pytest.mark.parametrize(("key", "value"), [("reasoning_effort", 1), ("include_reasoning", "yes")])
def test_upstream_refuses_bad_reasoning_fields(key: str, value: Any) -> None:
    with pytest.raises(InvalidRequest) as err:
        wire({"model": "m", "messages": [{"role": "user", "content": "hi"}], key: value})
    assert (err.value.param, err.value.code) == (key, "invalid_type")


@pytest.mark.parametrize(
    "rel",
    [
        "responses/create_reasoning_function_call.json",
        "responses/create_reasoning_summary_encrypted_content.json",
        "cross_provider/reasoning/cross_the_street/openai_responses.json",
    ],
)
def test_upstream_summary_becomes_reasoning_content(rel: str) -> None:
    raw = load_json(rel)
    message = OpenAIResponsesProvider().chat_response(copy.deepcopy(raw), TARGET)["choices"][0]["message"]
    parts = [p["text"] for p in raw["output"][0]["summary"]]
    assert message["reasoning_content"] == "\n\n".join(parts) and "thinking_blocks" not in message


@pytest.mark.parametrize("seed", SEEDS)
def test_upstream_stream_summary_becomes_reasoning_content(seed: int) -> None:
    text = "".join(c["choices"][0]["delta"].get("reasoning_content", "") for c in upstream_chunks(seed) if c["choices"])
    recorded = sse_events([load_bytes("responses/stream_reasoning_summary.sse")])
    final = orjson.loads(recorded[-1].data)["response"]
    assert text == "\n\n".join(p["text"] for p in final["output"][0]["summary"])
