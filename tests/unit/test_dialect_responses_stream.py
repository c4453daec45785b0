"""gateway.dialects.responses_stream: canonical chunks as Responses events, and a
Responses upstream's events relayed under the gateway's id.

The canonical chunks are what the providers' stream decoders make of recorded
OpenAI, Anthropic and Gemini streams; the encoded bytes are read back with the
openai SDK (``client.responses.stream`` / ``responses.create(stream=True)``),
and the event order is compared with recorded Responses streams.
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx2
import openai
import orjson
import pytest
from openai.types.responses import Response

from gateway.canonical import JSON, make_chunk
from gateway.dialects.responses_stream import PassthroughEvents, ResponsesStream, _Events
from gateway.errors import UpstreamBadResponse
from gateway.providers.base import Target
from tests.unit.fixtures import FIXTURES, decode_events, load_bytes, random_pieces, sse_events
from tests.unit.test_dialect_responses import PROVIDERS

STREAMS = [
    "openai/chat_stream_text_include_usage.sse",
    "openai/chat_stream_tool_call_include_usage.sse",
    "openai_compatible/novita_stream_via_hf_router.sse",
    "anthropic/stream_text.sse",
    "anthropic/stream_client_tool_use_vercel.derived.sse",
    "anthropic/stream_thinking_signature_delta.sse",
    "anthropic/stream_text_after_tool_result.sse",
    "anthropic/stream_tool_use_with_server_tool_search.sse",
    "gemini/stream_text_three_chunks.sse",
    "gemini/stream_function_call.sse",
    "gemini/stream_function_call_thought_signature.sse",
    "gemini/stream_thinking_thought_parts.sse",
]
BODY: JSON = {"model": "alias", "input": "hi", "stream": True}


def chunks_of(rel: str) -> list[JSON]:
    provider = "openai" if rel.startswith("openai_compatible/") else rel.split("/", maxsplit=1)[0]
    decoder = PROVIDERS[provider].stream_decoder(Target(provider, "m", "http://upstream"))
    return decode_events(decoder, sse_events([load_bytes(rel)]))


def expected(chunks: list[JSON]) -> tuple[str, list[tuple[str, str, str]], JSON | None]:
    """(text, [(call id, name, arguments)], usage) accumulated from canonical chunks."""
    text, usage = "", None
    calls: dict[int, tuple[str, str, str]] = {}
    for chunk in chunks:
        usage = chunk.get("usage") or usage
        for choice in chunk["choices"]:
            text += choice["delta"].get("content") or ""
            for call in choice["delta"].get("tool_calls") or ():
                fn = call.get("function") or {}
                cid, name, args = calls.get(call["index"], ("", "", ""))
                calls[call["index"]] = (
                    call.get("id") or cid,
                    fn.get("name") or name,
                    args + (fn.get("arguments") or ""),
                )
    return text, [calls[k] for k in sorted(calls)], usage


def encode(chunks: list[JSON], body: JSON = BODY, per_chunk: bool = True) -> tuple[ResponsesStream, bytes]:
    stream = ResponsesStream("resp_gw1", "alias", body, 1700000000)
    batches = [[c] for c in chunks] if per_chunk else [chunks]
    return stream, b"".join(stream.chunks(b) for b in batches) + stream.finish()


def client(data: bytes) -> openai.OpenAI:
    sse = {"content-type": "text/event-stream"}
    transport = httpx2.MockTransport(lambda _: httpx2.Response(200, headers=sse, content=data))
    return openai.OpenAI(base_url="http://x/v1", api_key="k", http_client=httpx2.Client(transport=transport))


def events(data: bytes) -> list[tuple[str, JSON]]:
    return [(e.event, orjson.loads(e.data)) for e in sse_events([data])]


def collapsed(names: Iterator[str] | list[str]) -> list[str]:
    out: list[str] = []
    for name in names:
        if not out or out[-1] != name:
            out.append(name)
    return out


@pytest.mark.parametrize("rel", STREAMS)
def test_sdk_reads_the_stream(rel: str) -> None:
    chunks = chunks_of(rel)
    text, calls, usage = expected(chunks)
    stream, data = encode(chunks)
    with client(data).responses.stream(model="alias", input="hi") as sdk:
        final = sdk.get_final_response()
    assert final.id == "resp_gw1" and final.status == "completed"
    assert final.output_text == text
    got = [(o.call_id, o.name, o.arguments) for o in final.output if o.type == "function_call"]
    assert got == calls
    assert usage is not None and final.usage is not None
    assert (final.usage.input_tokens, final.usage.output_tokens) == (usage["prompt_tokens"], usage["completion_tokens"])
    assert stream.response is not None
    assert Response.model_validate(stream.response).output_text == text
    assert [getattr(o, "id", None) for o in final.output] == [o["id"] for o in stream.response["output"]]
    assert stream.finish() == b"" and stream.chunks(chunks) == b""


@pytest.mark.parametrize("rel", STREAMS)
def test_events_are_numbered_named_and_placed(rel: str) -> None:
    chunks = chunks_of(rel)
    _, data = encode(chunks)
    seen = events(data)
    assert [d["sequence_number"] for _, d in seen] == list(range(len(seen)))
    assert all(name == d["type"] for name, d in seen)
    ids: dict[int, str] = {}
    for name, d in seen:
        if name == "response.output_item.added":
            ids[d["output_index"]] = d["item"]["id"]
        elif "item_id" in d:
            assert ids[d["output_index"]] == d["item_id"]
    _, whole = encode(chunks, per_chunk=False)
    assert [n for n, _ in events(whole)] == [n for n, _ in seen]


@pytest.mark.parametrize("rel", STREAMS)
def test_each_frame_is_its_event_rendered_whole(rel: str) -> None:
    """The frames are rendered from parts (a content part's shared fields once, a delta into
    a fixed head and tail): each must be exactly the event written out as one object, ``type``
    first and ``sequence_number`` last, one ``data`` line, no key twice."""
    _, data = encode(chunks_of(rel))
    frames = data.split(b"\n\n")
    assert frames.pop() == b""
    for frame in frames:
        event_line, data_line = frame.split(b"\n")
        payload = data_line.removeprefix(b"data: ")
        event = orjson.loads(payload)
        assert event_line == b"event: " + event["type"].encode()
        keys = list(event)
        assert keys[0] == "type" and keys[-1] == "sequence_number"
        assert orjson.dumps(event) == payload  # compact, and no key written twice


@pytest.mark.parametrize("fields", [{}, {"type": "other"}, {"sequence_number": 3, "delta": "x"}])
def test_an_event_that_cannot_be_framed_is_refused(fields: JSON) -> None:
    """An event is written as its fields' members between ``type`` and ``sequence_number``:
    no fields, or one of those two among them, would not make one JSON object."""
    with pytest.raises(ValueError, match="cannot be framed"):
        _Events().emit("response.output_text.delta", fields)


@pytest.mark.parametrize(
    ("rel", "recorded"),
    [
        ("gemini/stream_text_three_chunks.sse", "stream_text_after_function_call_output.sse"),
        ("openai/chat_stream_tool_call_include_usage.sse", "stream_legacy_2025_03_function_call.sse"),
    ],
)
def test_event_order_matches_the_recorded_api(rel: str, recorded: str) -> None:
    _, data = encode(chunks_of(rel))
    real = [e.event for e in sse_events([load_bytes(f"responses/{recorded}")])]
    assert collapsed([n for n, _ in events(data)]) == collapsed(real)


def test_commentary_then_call_like_the_recorded_stream() -> None:
    # anthropic text followed by a tool_use, as the recorded gpt-5.5 stream narrates, then calls
    _, data = encode(chunks_of("anthropic/stream_tool_use_with_server_tool_search.sse"))
    ours = collapsed([n for n, _ in events(data)])
    real = [e.event for e in sse_events([load_bytes("responses/stream_commentary_then_function_call.sse")])]
    without_reasoning = collapsed(real[:2] + real[4:])  # the recorded reasoning item: added + done
    assert ours == without_reasoning


def test_length_is_incomplete() -> None:
    chunks = chunks_of("anthropic/stream_text.sse")
    for chunk in chunks:
        for choice in chunk["choices"]:
            if choice["finish_reason"]:
                choice["finish_reason"] = "length"  # as a max_tokens stop translates
    stream, data = encode(chunks)
    seen = list(client(data).responses.create(model="alias", input="hi", stream=True))
    assert seen[-1].type == "response.incomplete"
    assert stream.response is not None and stream.response["status"] == "incomplete"
    assert stream.response["incomplete_details"] == {"reason": "max_output_tokens"}
    assert stream.response["output"][0]["status"] == "incomplete"


def test_error_mid_stream() -> None:
    chunks = chunks_of("openai/chat_stream_text_include_usage.sse")
    stream = ResponsesStream("resp_gw1", "alias", BODY, 1700000000)
    data = stream.chunks(chunks[:3]) + stream.error(UpstreamBadResponse("stream cut short"))
    seen = events(data)
    assert [n for n, _ in seen][-4:] == [
        "response.content_part.done",
        "response.output_item.done",
        "error",
        "response.failed",
    ]
    assert seen[-3][1]["item"]["status"] == "incomplete"
    error = seen[-2][1]
    assert (error["code"], error["message"]) == ("upstream_bad_response", "stream cut short")
    recorded = [
        orjson.loads(line) for line in load_bytes("responses/stream_error_insufficient_quota_vercel.jsonl").splitlines()
    ]
    assert set(error["error"]) == set(recorded[2]["error"])
    assert set(seen[-1][1]["response"]["error"]) <= set(recorded[3]["response"]["error"]) | {"param"}
    with (
        pytest.raises(openai.APIError, match="stream cut short"),
        client(data).responses.stream(model="a", input="hi") as sdk,
    ):
        sdk.get_final_response()
    assert stream.response is not None and stream.response["status"] == "failed"
    assert stream.error(UpstreamBadResponse("again")) == b"" and stream.finish() == b""


def test_error_before_any_chunk_matches_the_recorded_sequence() -> None:
    stream = ResponsesStream("resp_gw1", "alias", BODY, 1700000000)
    data = stream.error(UpstreamBadResponse("no answer"))
    recorded = [
        orjson.loads(line)["type"]
        for line in load_bytes("responses/stream_error_insufficient_quota_vercel.jsonl").splitlines()
    ]
    assert [n for n, _ in events(data)] == recorded


def test_finish_without_chunks() -> None:
    stream = ResponsesStream("resp_gw1", "alias", BODY, 1700000000)
    data = stream.finish()
    assert [n for n, _ in events(data)] == ["response.created", "response.in_progress", "response.completed"]
    assert stream.response is not None and stream.response["output"] == [] and stream.response["usage"] is None


def test_refusal_and_text_after_calls() -> None:
    # Canonical chunks written by hand: no recorded stream has a refusal or text after a tool call.
    def chunk(delta: JSON, finish: str | None = None) -> JSON:
        return make_chunk(id="c", model="m", created=1, delta=delta, finish_reason=finish)

    call = {"index": 0, "id": "call_1", "type": "function", "function": {"name": "f", "arguments": "{}"}}
    chunks = [
        chunk({"content": "Hi. "}),
        chunk({"refusal": "No."}),
        chunk({"tool_calls": [call]}),
        chunk({"tool_calls": [{**call, "index": 1, "id": "call_2"}]}),
        chunk({"content": "Done."}),
        chunk({}, "stop"),
    ]
    _, data = encode(chunks)
    with client(data).responses.stream(model="alias", input="hi") as sdk:
        final = sdk.get_final_response()
    assert [o.type for o in final.output] == ["message", "function_call", "function_call", "message"]
    first = final.output[0]
    assert first.type == "message" and [c.type for c in first.content] == ["output_text", "refusal"]
    assert final.output_text == "Hi. Done."
    assert [(o.call_id, o.arguments) for o in final.output if o.type == "function_call"] == [
        ("call_1", "{}"),
        ("call_2", "{}"),
    ]


@pytest.mark.parametrize("per_chunk", [True, False])
def test_text_after_a_call_opens_a_new_message(per_chunk: bool) -> None:
    # More text while a part is open takes the stream's fast path; a call in between ends it,
    # so the text after the call is a new message item (one batch or a chunk per batch alike).
    def chunk(delta: JSON) -> JSON:
        return make_chunk(id="c", model="m", created=1, delta=delta, finish_reason=None)

    call = {"index": 0, "id": "call_1", "type": "function", "function": {"name": "f", "arguments": "{}"}}
    chunks = [chunk({"content": "A"}), chunk({"content": "B"}), chunk({"tool_calls": [call]}), chunk({"content": "C"})]
    chunks += [chunk({"content": "D"}), make_chunk(id="c", model="m", created=1, delta={}, finish_reason="stop")]
    stream, data = encode(chunks, per_chunk=per_chunk)
    deltas = [(e["output_index"], e["delta"]) for n, e in events(data) if n == "response.output_text.delta"]
    assert deltas == [(0, "A"), (0, "B"), (2, "C"), (2, "D")]
    with client(data).responses.stream(model="alias", input="hi") as sdk:
        final = sdk.get_final_response()
    assert [o.type for o in final.output] == ["message", "function_call", "message"]
    assert final.output_text == "ABCD"
    assert stream.response is not None and stream.response["output"][2]["content"][0]["text"] == "CD"


# -- PassthroughEvents -------------------------------------------------------------------------

RECORDED = sorted(p.name for p in (FIXTURES / "responses").glob("*.sse"))


def relay(name: str, seed: int | None = None, body: JSON | None = None) -> tuple[PassthroughEvents, bytes]:
    raw = load_bytes(f"responses/{name}")
    pieces = random_pieces(raw, seed) if seed is not None else [raw]
    relayed = PassthroughEvents("resp_gw9", body=body)
    return relayed, b"".join(relayed.event(e.event, e.data) for e in sse_events(pieces))


@pytest.mark.parametrize("name", RECORDED)
def test_passthrough_takes_the_gateway_id(name: str) -> None:
    upstream = sse_events([load_bytes(f"responses/{name}")])
    relay_, data = relay(name, seed=7, body={"store": True})
    ours = sse_events([data])
    assert [e.event for e in ours] == [e.event for e in upstream]
    for mine, theirs in zip(ours, upstream, strict=True):
        payload = orjson.loads(theirs.data)
        if "response" in payload:
            assert orjson.loads(mine.data)["response"]["id"] == "resp_gw9"
            assert orjson.loads(mine.data)["response"]["store"] is True
        else:
            assert mine.data == theirs.data  # relayed byte for byte
    assert relay_.response is not None and relay_.response["id"] == "resp_gw9"
    assert relay_.response["status"] == "completed"


@pytest.mark.parametrize("name", [n for n in RECORDED if "web_search" not in n])  # SDK warns on its output union
def test_sdk_reads_the_relayed_stream(name: str) -> None:
    relay_, data = relay(name)
    with client(data).responses.stream(model="alias", input="hi") as sdk:
        final = sdk.get_final_response()
    assert final.id == "resp_gw9"
    assert relay_.response is not None
    assert final.output_text == Response.model_construct(**relay_.response).output_text


def test_passthrough_of_a_failed_stream() -> None:
    lines = load_bytes("responses/stream_error_insufficient_quota_vercel.jsonl").decode().splitlines()
    relay_ = PassthroughEvents("resp_gw9")
    data = b"".join(relay_.event(orjson.loads(line)["type"], line) for line in lines)
    seen = events(data)
    assert [d["response"]["id"] for _, d in seen if "response" in d] == ["resp_gw9"] * 3
    with (
        pytest.raises(openai.APIError, match="exceeded your current quota"),
        client(data).responses.stream(model="a", input="hi") as sdk,
    ):
        sdk.get_final_response()
    assert relay_.response is None


def test_passthrough_of_unnamed_and_odd_events() -> None:
    created = sse_events([load_bytes("responses/stream_text_after_function_call_output.sse")])[0]
    relay_ = PassthroughEvents("resp_gw9")
    framed = sse_events([relay_.event("message", created.data)])
    assert framed[0].event == "response.created"
    assert orjson.loads(framed[0].data)["response"]["id"] == "resp_gw9"
    assert sse_events([relay_.event("response.created", "not json")])[0].data == "not json"
    assert sse_events([relay_.event("message", "[1]")])[0] == sse_events([b"event: message\ndata: [1]\n\n"])[0]
