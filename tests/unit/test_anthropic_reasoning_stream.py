"""Reasoning in Anthropic answers and streams (issue 12, item 1): thinking blocks ->
``reasoning_content`` / ``thinking_blocks`` and the stream's reasoning deltas, on the recorded
fixtures in shared/fixtures (the request side: test_anthropic_reasoning.py)."""

from __future__ import annotations

import copy

import orjson
import pytest

from gateway.canonical import JSON
from tests.unit.fixtures import load_bytes, load_json, random_pieces, user
from tests.unit.test_provider_anthropic import PROVIDER, decode_sse, make_target, wire, without_created

STREET = "cross_provider/reasoning/cross_the_street"


# --- answers --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("rel", "reasoning_tokens"),
    [
        ("anthropic/messages_thinking_enabled_tool_use.json", None),
        ("anthropic/messages_adaptive_thinking.json", None),
        ("anthropic/messages_adaptive_thinking_effort_xhigh.json", 33),
        ("anthropic/messages_redacted_thinking.json", None),
        (f"{STREET}/anthropic.json", None),
    ],
)
def test_thinking_blocks_in_answers(rel: str, reasoning_tokens: int | None) -> None:
    raw = load_json(rel)
    out = PROVIDER.chat_response(copy.deepcopy(raw), make_target())
    message = out["choices"][0]["message"]
    blocks = [b for b in raw["content"] if b["type"] in ("thinking", "redacted_thinking")]
    assert orjson.dumps(message["thinking_blocks"]) == orjson.dumps(blocks)
    thoughts = [b["thinking"] for b in blocks if b["type"] == "thinking"]
    assert message.get("reasoning_content") == ("\n\n".join(thoughts) if thoughts else None)
    assert message["content"] == "".join(b["text"] for b in raw["content"] if b["type"] == "text")
    details = out["usage"].get("completion_tokens_details")
    assert (details or {}).get("reasoning_tokens") == reasoning_tokens


def test_several_thinking_blocks_join_with_a_blank_line() -> None:
    raw = load_json("anthropic/messages_thinking_enabled_tool_use.json")
    first = raw["content"][0]
    raw["content"].insert(2, {**first, "thinking": "second thought"})
    raw["content"].insert(3, {"type": "thinking", "thinking": "", "signature": "s"})  # display: omitted
    message = PROVIDER.chat_response(raw, make_target())["choices"][0]["message"]
    assert message["reasoning_content"] == first["thinking"] + "\n\nsecond thought"
    assert len(message["thinking_blocks"]) == 3


# --- streams --------------------------------------------------------------------


def _sse_blocks(raw: bytes) -> list[JSON]:
    """The content blocks of a recorded stream, put together from its events."""
    blocks: dict[int, JSON] = {}
    for line in raw.decode().splitlines():
        if not line.startswith("data: "):
            continue
        event = orjson.loads(line[6:])
        if event["type"] == "content_block_start":
            blocks[event["index"]] = dict(event["content_block"])
        elif event["type"] == "content_block_delta":
            delta, block = event["delta"], blocks[event["index"]]
            for key in ("thinking", "signature", "text"):
                if key in delta:
                    block[key] = block.get(key, "") + delta[key]
    return [blocks[i] for i in sorted(blocks)]


def _stream_thinking(chunks: list[JSON]) -> tuple[list[JSON], str]:
    """thinking_blocks and text rebuilt from canonical chunks, the contract's way."""
    blocks: list[JSON] = []
    text = ""
    open_block: JSON | None = None
    for chunk in chunks:
        for choice in chunk["choices"]:
            delta = choice["delta"]
            text += delta.get("content") or ""
            if delta.get("reasoning_content"):
                if open_block is None:
                    open_block = {"type": "thinking", "thinking": ""}
                open_block["thinking"] += delta["reasoning_content"]
            if "reasoning_signature" in delta:
                closed = open_block or {"type": "thinking", "thinking": ""}  # a block with its text omitted
                blocks.append({**closed, "signature": delta["reasoning_signature"]})
                open_block = None
            if "redacted_reasoning" in delta:
                blocks.append({"type": "redacted_thinking", "data": delta["redacted_reasoning"]})
    assert open_block is None
    return blocks, text


@pytest.mark.parametrize("name", ["stream_thinking_signature_delta.sse", "stream_redacted_thinking.sse"])
def test_thinking_stream_rebuilds_the_recorded_blocks(name: str) -> None:
    raw = load_bytes(f"anthropic/{name}")
    chunks = decode_sse(raw)
    blocks, text = _stream_thinking(chunks)
    recorded = _sse_blocks(raw)
    thinking = [b for b in recorded if b["type"] in ("thinking", "redacted_thinking")]
    assert [(b["type"], b.get("thinking"), b.get("signature"), b.get("data")) for b in blocks] == [
        (b["type"], b.get("thinking"), b.get("signature"), b.get("data")) for b in thinking
    ]
    assert text == "".join(b["text"] for b in recorded if b["type"] == "text")
    signatures = [c for c in chunks if c["choices"] and "reasoning_signature" in c["choices"][0]["delta"]]
    assert len(signatures) == sum(b["type"] == "thinking" for b in thinking)


@pytest.mark.parametrize("name", ["stream_thinking_signature_delta.sse", "stream_redacted_thinking.sse"])
def test_thinking_stream_in_random_splits_gives_the_same_chunks(name: str) -> None:
    raw = load_bytes(f"anthropic/{name}")
    whole = without_created(decode_sse(raw))
    for seed in range(8):
        assert without_created(decode_sse(raw, random_pieces(raw, seed, max_size=13))) == whole


def test_streamed_thinking_replays_like_the_recorded_turn_two() -> None:
    # The stream and cross_the_street share the prompt; the rebuilt block has the recorded shape.
    blocks, _ = _stream_thinking(decode_sse(load_bytes("anthropic/stream_thinking_signature_delta.sse")))
    assistant = {"role": "assistant", "content": "ok", "thinking_blocks": blocks}
    body = wire({"messages": [user("How do I cross the street?"), assistant, user("thanks")], "reasoning_budget": 1024})
    sent = body["messages"][1]["content"][0]
    assert sent == blocks[0] and sent.keys() == {"type", "thinking", "signature"}
