"""The response cache keeps reasoning whole (gateway/policies/replay.py): a streamed answer's
reasoning deltas are rebuilt into ``thinking_blocks`` with their signatures byte for byte,
and a cached answer replays its reasoning first, block by block, on the recorded Anthropic
thinking streams decoded by the real provider decoder."""

from __future__ import annotations

import orjson
import pytest

from gateway.policies.replay import ChunkAssembler, completion_to_chunks
from tests.unit.fixtures import load_bytes
from tests.unit.test_provider_anthropic import decode_sse


def _recorded_blocks(raw: bytes) -> list[dict[str, str]]:
    """The thinking and redacted blocks of a recorded Anthropic stream, from its events."""
    blocks: dict[int, dict[str, str]] = {}
    for line in raw.decode().splitlines():
        if not line.startswith("data: "):
            continue
        event = orjson.loads(line[6:])
        if event.get("type") == "content_block_start":
            block = event["content_block"]
            if block["type"] in ("thinking", "redacted_thinking"):
                blocks[event["index"]] = dict(block)
        elif event.get("type") == "content_block_delta" and event["index"] in blocks:
            delta, block = event["delta"], blocks[event["index"]]
            if delta["type"] == "thinking_delta":
                block["thinking"] = block.get("thinking", "") + delta["thinking"]
            elif delta["type"] == "signature_delta":
                block["signature"] = block.get("signature", "") + delta["signature"]
    return [blocks[i] for i in sorted(blocks)]


@pytest.mark.parametrize("name", ["stream_thinking_signature_delta", "stream_redacted_thinking"])
def test_a_streamed_answers_thinking_survives_the_cache_both_ways(name: str) -> None:
    raw = load_bytes(f"anthropic/{name}.sse")
    recorded = _recorded_blocks(raw)
    assert recorded, "the fixture has thinking"
    assembled = ChunkAssembler()
    assembled.extend(decode_sse(raw))
    completion = assembled.completion()
    assert completion is not None
    message = completion["choices"][0]["message"]
    assert orjson.dumps(message["thinking_blocks"]) == orjson.dumps(recorded)
    assert "reasoning_signature" not in message and "redacted_reasoning" not in message

    replayed = completion_to_chunks(completion)
    deltas = [c["choices"][0]["delta"] for c in replayed if c["choices"]]
    first_text = next(i for i, d in enumerate(deltas) if d.get("content") or d.get("tool_calls"))
    last_reasoning = max(
        i for i, d in enumerate(deltas) if set(d) & {"reasoning_content", "reasoning_signature", "redacted_reasoning"}
    )
    assert last_reasoning < first_text, "the reasoning comes first, as a stream gives it"
    again = ChunkAssembler()
    again.extend(replayed)
    rebuilt = again.completion()
    assert rebuilt is not None
    assert orjson.dumps(rebuilt["choices"][0]["message"]["thinking_blocks"]) == orjson.dumps(recorded)


def test_reasoning_without_blocks_replays_in_one_piece_first() -> None:
    completion = {
        "id": "c",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "Paris", "reasoning_content": "Think."}}],
    }
    deltas = [c["choices"][0]["delta"] for c in completion_to_chunks(completion) if c["choices"]]
    assert deltas[1] == {"reasoning_content": "Think."} and deltas[2] == {"content": "Paris"}
    assembled = ChunkAssembler()
    assembled.extend(completion_to_chunks(completion))
    message = assembled.build()["choices"][0]["message"]
    assert message["reasoning_content"] == "Think." and "thinking_blocks" not in message
