"""Reasoning and prompt caching in Messages answers and streams (issue 12).

The recorded Messages and streams of shared/fixtures are read into the canonical form
the contract describes (gateway/canonical.py, "Response"); the dialect renders them back
and the result is compared with the recording field by field, and read by the
anthropic SDK. Other providers' reasoning (a recorded Gemini answer) renders as an
unsigned thinking block.
"""

from __future__ import annotations

import json
import random
from typing import Any

import anthropic
import httpx2
import pytest
from anthropic.types import Message

from gateway.canonical import JSON, make_chunk, make_completion
from gateway.dialects.anthropic import MessagesStream, render_message
from tests.unit.fixtures import FIXTURES, load_bytes, load_json, sse_events

THINKING = ("thinking", "redacted_thinking")
USAGE_FIELDS = (
    "input_tokens",
    "output_tokens",
    "cache_creation_input_tokens",
    "cache_read_input_tokens",
    "cache_creation",
    "output_tokens_details",
)


def canonical_usage(usage: JSON) -> JSON:
    """Anthropic usage -> canonical (prompt = uncached + reads + writes)."""
    reads, writes = usage.get("cache_read_input_tokens") or 0, usage.get("cache_creation_input_tokens") or 0
    prompt = usage.get("input_tokens", 0) + reads + writes
    details: JSON = {"cached_tokens": reads, "cache_write_tokens": writes}
    split = usage.get("cache_creation")
    if isinstance(split, dict):
        details["cache_write_1h_tokens"] = split["ephemeral_1h_input_tokens"]
    out: JSON = {
        "prompt_tokens": prompt,
        "completion_tokens": usage["output_tokens"],
        "total_tokens": prompt + usage["output_tokens"],
        "prompt_tokens_details": details,
    }
    thinking = (usage.get("output_tokens_details") or {}).get("thinking_tokens")
    if thinking is not None:
        out["completion_tokens_details"] = {"reasoning_tokens": thinking}
    return out


def canonical_completion(recorded: JSON) -> JSON:
    blocks = recorded["content"]
    message: JSON = {"role": "assistant", "content": "".join(b["text"] for b in blocks if b["type"] == "text")}
    calls = [
        {"id": b["id"], "type": "function", "function": {"name": b["name"], "arguments": json.dumps(b["input"])}}
        for b in blocks
        if b["type"] == "tool_use"
    ]
    if calls:
        message["tool_calls"] = calls
    thinking = [b for b in blocks if b["type"] in THINKING]
    if thinking:
        message["thinking_blocks"] = thinking
        message["reasoning_content"] = "\n\n".join(b["thinking"] for b in thinking if b["type"] == "thinking")
    finish = {"end_turn": "stop", "tool_use": "tool_calls", "max_tokens": "length"}[recorded["stop_reason"]]
    usage = canonical_usage(recorded["usage"])
    return make_completion(id=recorded["id"], model="m", message=message, finish_reason=finish, usage=usage)


def delta_chunk(**delta: Any) -> JSON:
    return make_chunk(id="c", model="m", created=1, delta=delta)


def canonical_chunks(raw: bytes) -> list[JSON]:
    """A recorded Messages stream as the contract's canonical chunks."""
    chunks: list[JSON] = []
    for event in sse_events([raw]):
        data = json.loads(event.data)
        block, delta = data.get("content_block") or {}, data.get("delta") or {}
        if block.get("type") == "redacted_thinking":
            chunks.append(delta_chunk(redacted_reasoning=block["data"]))
        elif delta.get("type") == "thinking_delta" and delta["thinking"]:
            chunks.append(delta_chunk(reasoning_content=delta["thinking"]))
        elif delta.get("type") == "signature_delta":
            chunks.append(delta_chunk(reasoning_signature=delta["signature"]))
        elif delta.get("type") == "text_delta":
            chunks.append(delta_chunk(content=delta["text"]))
        elif data["type"] == "message_delta":
            chunks.append(make_chunk(id="c", model="m", created=1, delta={}, finish_reason="stop"))
            chunks.append(make_chunk(id="c", model="m", created=1, usage=canonical_usage(data["usage"])))
    return chunks


def random_batches(chunks: list[JSON], seed: int) -> list[list[JSON]]:
    rng = random.Random(seed)
    out: list[list[JSON]] = []
    pos = 0
    while pos < len(chunks):
        size = rng.randint(1, 4)
        out.append(chunks[pos : pos + size])
        pos += size
    return out


def encode(batches: list[list[JSON]]) -> bytes:
    stream = MessagesStream("claude-alias", 10)
    return b"".join(stream.chunks(b) for b in batches) + stream.finish()


def shape(raw: bytes) -> list[str]:
    """Each event as name:index:block-or-delta type; pings and deltas that carry nothing left out."""
    out: list[str] = []
    for event in sse_events([raw]):
        data = json.loads(event.data)
        delta, block = data.get("delta") or {}, data.get("content_block") or {}
        if data["type"] == "ping" or delta.get("thinking") == "":
            continue
        kind = block.get("type") or delta.get("type") if "index" in data else None
        out.append(":".join(str(x) for x in (data["type"], data.get("index"), kind) if x is not None))
    return out


def sdk_stream(raw: bytes) -> Message:
    response = httpx2.Response(200, headers={"content-type": "text/event-stream"}, content=raw)
    http = httpx2.Client(transport=httpx2.MockTransport(lambda request: response))
    client = anthropic.Anthropic(api_key="k", base_url="http://gateway.test", max_retries=0, http_client=http)
    user: Any = [{"role": "user", "content": "hi"}]
    with client.messages.stream(model="claude-test", max_tokens=100, messages=user) as stream:
        return stream.get_final_message()


# --- non-stream answers -----------------------------------------------------------------------

RECORDED = sorted(p.stem for p in (FIXTURES / "anthropic").glob("messages_*.json") if ".request" not in p.stem)


def expected_content(blocks: list[JSON]) -> list[JSON]:
    """The recorded content in the order the dialect writes it: thinking, the text, tool uses."""
    text = "".join(b["text"] for b in blocks if b["type"] == "text")
    uses = [b for b in blocks if b["type"] == "tool_use"]
    return (
        [b for b in blocks if b["type"] in THINKING]
        + ([{"type": "text", "text": text}] if text or not uses else [])
        + uses
    )


@pytest.mark.parametrize("name", RECORDED)
def test_recorded_messages_render_back_field_by_field(name: str) -> None:
    recorded = load_json(f"anthropic/{name}.json")
    rendered = render_message(canonical_completion(recorded), "claude-alias")
    assert rendered["content"] == expected_content(recorded["content"])
    assert rendered["stop_reason"] == recorded["stop_reason"] and rendered["id"] == recorded["id"]
    usage = recorded["usage"]
    assert {k: rendered["usage"][k] for k in USAGE_FIELDS if k in usage} == {
        k: usage[k] for k in USAGE_FIELDS if k in usage
    }
    message = Message.model_validate(rendered)
    assert [b.type for b in message.content] == [b["type"] for b in rendered["content"]]


def test_thinking_blocks_are_rendered_verbatim_first() -> None:
    recorded = load_json("anthropic/messages_thinking_enabled_tool_use.json")
    rendered = render_message(canonical_completion(recorded), "claude-alias")
    assert rendered["content"] == recorded["content"]  # thinking (signature included), text, tool_use
    assert json.dumps(rendered["content"][0]) == json.dumps(recorded["content"][0])


def test_cache_writes_and_reads_render_apart_with_the_1h_split() -> None:
    recorded = load_json("anthropic/messages_cache_control_top_level.json")
    completion = canonical_completion(recorded)
    details = completion["usage"]["prompt_tokens_details"]
    details["cache_write_1h_tokens"] = 100  # of the 418 written, 100 for an hour
    usage = render_message(completion, "claude")["usage"]
    assert usage["cache_creation"] == {"ephemeral_5m_input_tokens": 318, "ephemeral_1h_input_tokens": 100}
    assert (usage["input_tokens"], usage["cache_creation_input_tokens"], usage["cache_read_input_tokens"]) == (
        3,
        418,
        1111,
    )
    del details["cache_write_tokens"], details["cache_write_1h_tokens"]  # an upstream that says nothing of writes
    usage = render_message(completion, "claude")["usage"]
    assert (usage["input_tokens"], usage["cache_creation_input_tokens"]) == (3 + 418, 0)
    assert usage["cache_creation"] == {"ephemeral_5m_input_tokens": 0, "ephemeral_1h_input_tokens": 0}


def gemini_thinking_completion() -> tuple[JSON, str, str]:
    """The recorded Gemini thinking answer as the contract's canonical completion."""
    recorded = load_json("gemini/generate_content_thinking_budget_1024.json")
    parts = recorded["candidates"][0]["content"]["parts"]
    thought = "".join(p["text"] for p in parts if p.get("thought"))
    answer = "".join(p["text"] for p in parts if not p.get("thought"))
    meta = recorded["usageMetadata"]
    completion = make_completion(
        id=recorded["responseId"],
        model="gemini",
        message={"role": "assistant", "content": answer, "reasoning_content": thought},
        finish_reason="stop",
        usage={
            "prompt_tokens": meta["promptTokenCount"],
            "completion_tokens": meta["candidatesTokenCount"] + meta["thoughtsTokenCount"],
            "total_tokens": meta["totalTokenCount"],
            "completion_tokens_details": {"reasoning_tokens": meta["thoughtsTokenCount"]},
        },
    )
    return completion, thought, answer


def test_reasoning_content_without_thinking_blocks_is_an_unsigned_thinking_block() -> None:
    completion, thought, answer = gemini_thinking_completion()
    rendered = render_message(completion, "claude-alias")
    assert rendered["content"] == [
        {"type": "thinking", "thinking": thought, "signature": ""},
        {"type": "text", "text": answer},
    ]
    assert rendered["usage"]["output_tokens_details"] == {"thinking_tokens": 16}
    assert rendered["usage"]["output_tokens"] == 24  # thinking stays inside output_tokens, as Anthropic counts it
    Message.model_validate(rendered)


def test_thinking_blocks_win_over_reasoning_content() -> None:
    recorded = load_json("anthropic/messages_redacted_thinking.json")
    completion = canonical_completion(recorded)
    completion["choices"][0]["message"]["reasoning_content"] = "not shown: the blocks say it"
    content = render_message(completion, "claude")["content"]
    assert [b for b in content if b["type"] in THINKING] == [b for b in recorded["content"] if b["type"] in THINKING]


# --- streams --------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["stream_thinking_signature_delta", "stream_redacted_thinking"])
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_recorded_thinking_streams_render_the_same_event_sequence(name: str, seed: int) -> None:
    raw = load_bytes(f"anthropic/{name}.sse")
    ours = encode(random_batches(canonical_chunks(raw), seed))
    assert shape(ours) == shape(raw)
    original, message = sdk_stream(raw), sdk_stream(ours)
    assert [b.model_dump() for b in message.content] == [b.model_dump() for b in original.content]
    assert message.stop_reason == original.stop_reason
    assert (message.usage.input_tokens, message.usage.output_tokens) == (
        original.usage.input_tokens,
        original.usage.output_tokens,
    )


def test_the_signature_closes_the_block_and_later_reasoning_opens_another() -> None:
    chunks = [
        delta_chunk(reasoning_signature="sig-0"),  # nothing to sign yet: an empty block, signed
        delta_chunk(reasoning_content="one", reasoning_signature="sig-1", content="answer"),
        delta_chunk(reasoning_content="two"),  # never signed: keeps ""
        delta_chunk(redacted_reasoning="opaque"),
        delta_chunk(content="more"),
    ]
    raw = encode([chunks])
    blocks = [b.model_dump() for b in sdk_stream(raw).content]
    assert blocks == [
        {"type": "thinking", "thinking": "", "signature": "sig-0"},
        {"type": "thinking", "thinking": "one", "signature": "sig-1"},
        {"type": "text", "text": "answer", "citations": None},
        {"type": "thinking", "thinking": "two", "signature": ""},
        {"type": "redacted_thinking", "data": "opaque"},
        {"type": "text", "text": "more", "citations": None},
    ]
    assert shape(raw)[1:5] == [
        "content_block_start:0:thinking",
        "content_block_delta:0:signature_delta",
        "content_block_stop:0",
        "content_block_start:1:thinking",
    ]


def test_stream_usage_reports_cache_writes_and_reads_apart() -> None:
    recorded = load_json("anthropic/messages_cache_control_top_level.json")
    usage = canonical_completion(recorded)["usage"]
    chunks = [
        make_chunk(id="c", model="m", created=1, delta={"content": "hi"}, finish_reason="stop"),
        make_chunk(id="c", model="m", created=1, usage=usage),
    ]
    raw = encode([chunks])
    delta = next(json.loads(e.data) for e in sse_events([raw]) if e.event == "message_delta")
    assert delta["usage"] == {k: recorded["usage"][k] for k in USAGE_FIELDS[:4]}
    final: Any = sdk_stream(raw).usage
    assert (final.cache_creation_input_tokens, final.cache_read_input_tokens) == (418, 1111)
