"""Canned, real-shaped OpenAI and Anthropic answers served by the nginx upstream.

Modelled on ``shared/fixtures/openai/chat_completion_*.json`` and
``chat_stream_text_include_usage.sse``, and on ``shared/fixtures/anthropic/
messages_text_with_sampling.json`` and ``stream_text.sse`` (same keys, same
nesting, same events), but with one short fixed answer so that every response
has the same size.
"""

from __future__ import annotations

import json
from typing import Any

MODEL = "gpt-4o-mini-2024-07-18"
COMPLETION_ID = "chatcmpl-BenchBenchBenchBenchBenchBench0"
CREATED = 1744810635
FINGERPRINT = "fp_d0469e1700"
ANSWER_PIECES: tuple[str, ...] = ("Hello", "!", " How", " can", " I", " help?")
PROMPT_TOKENS = 9
CLAUDE_MODEL = "claude-haiku-4-5-20251001"
MESSAGE_ID = "msg_01BenchBenchBenchBenchBench"


def _usage(prompt: int, completion: int) -> dict[str, Any]:
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": 0,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    }


def _dumps(obj: Any) -> str:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=True)


def chat_completion() -> dict[str, Any]:
    """A non-streaming ``chat.completion`` with usage."""
    return {
        "id": COMPLETION_ID,
        "object": "chat.completion",
        "created": CREATED,
        "model": MODEL,
        "choices": [
            {
                "index": 0,
                "message": {
                    "role": "assistant",
                    "content": "".join(ANSWER_PIECES),
                    "refusal": None,
                    "annotations": [],
                },
                "logprobs": None,
                "finish_reason": "stop",
            }
        ],
        "usage": _usage(PROMPT_TOKENS, len(ANSWER_PIECES)),
        "service_tier": "default",
        "system_fingerprint": FINGERPRINT,
    }


def _chunk(choices: list[dict[str, Any]], usage: dict[str, Any] | None, obfuscation: str) -> dict[str, Any]:
    return {
        "id": COMPLETION_ID,
        "object": "chat.completion.chunk",
        "created": CREATED,
        "model": MODEL,
        "service_tier": "default",
        "system_fingerprint": FINGERPRINT,
        "choices": choices,
        "usage": usage,
        "obfuscation": obfuscation,
    }


def _delta(delta: dict[str, Any], finish_reason: str | None = None) -> list[dict[str, Any]]:
    return [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}]


def stream_chunks() -> list[dict[str, Any]]:
    """The chunks of a streamed answer with ``include_usage``: role, content pieces,
    finish reason, then the usage chunk (``choices: []``)."""
    chunks = [_chunk(_delta({"role": "assistant", "content": "", "refusal": None}), None, "HM7mrUsjk")]
    chunks += [_chunk(_delta({"content": piece}), None, "x" * (8 - len(piece) % 8)) for piece in ANSWER_PIECES]
    chunks.append(_chunk(_delta({}, "stop"), None, "RTaww"))
    chunks.append(_chunk([], _usage(PROMPT_TOKENS, len(ANSWER_PIECES)), "dhWUdLZO659"))
    return chunks


def json_body() -> str:
    """The body of the non-streaming answer (compact JSON)."""
    return _dumps(chat_completion())


def sse_body() -> str:
    """The whole ``text/event-stream`` body, ending with ``data: [DONE]``."""
    return "".join(f"data: {_dumps(chunk)}\n\n" for chunk in stream_chunks()) + "data: [DONE]\n\n"


def _anthropic_usage(prompt: int, completion: int) -> dict[str, Any]:
    return {
        "input_tokens": prompt,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 0,
        "cache_creation": {"ephemeral_5m_input_tokens": 0, "ephemeral_1h_input_tokens": 0},
        "output_tokens": completion,
        "service_tier": "standard",
        "inference_geo": "not_available",
    }


def message() -> dict[str, Any]:
    """A non-streaming Anthropic ``message`` with the same answer and token counts."""
    return {
        "model": CLAUDE_MODEL,
        "id": MESSAGE_ID,
        "type": "message",
        "role": "assistant",
        "content": [{"type": "text", "text": "".join(ANSWER_PIECES)}],
        "stop_reason": "end_turn",
        "stop_sequence": None,
        "stop_details": None,
        "usage": _anthropic_usage(PROMPT_TOKENS, len(ANSWER_PIECES)),
    }


def message_events() -> list[tuple[str, dict[str, Any]]]:
    """The events of a streamed Anthropic answer: message_start, the text block
    (start, ping, one delta per piece, stop), message_delta with usage, message_stop."""
    start = {k: v for k, v in message().items() if k != "stop_details"}  # as recorded: not in the stream
    start.update(content=[], stop_reason=None)
    start["usage"] = _anthropic_usage(PROMPT_TOKENS, 1)
    final_usage = {k: v for k, v in _anthropic_usage(PROMPT_TOKENS, len(ANSWER_PIECES)).items() if "tokens" in k}
    events: list[tuple[str, dict[str, Any]]] = [
        ("message_start", {"type": "message_start", "message": start}),
        (
            "content_block_start",
            {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
        ),
        ("ping", {"type": "ping"}),
    ]
    events += [
        ("content_block_delta", {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": p}})
        for p in ANSWER_PIECES
    ]
    events += [
        ("content_block_stop", {"type": "content_block_stop", "index": 0}),
        (
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                "usage": final_usage,
            },
        ),
        ("message_stop", {"type": "message_stop"}),
    ]
    return events


def message_body() -> str:
    """The body of the non-streaming Anthropic answer (compact JSON)."""
    return _dumps(message())


def message_sse_body() -> str:
    """The whole Anthropic ``text/event-stream`` body (``event:`` and ``data:`` lines)."""
    return "".join(f"event: {name}\ndata: {_dumps(data)}\n\n" for name, data in message_events())
