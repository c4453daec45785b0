"""Canned, real-shaped OpenAI answers served by the nginx upstream.

Modelled on ``shared/fixtures/openai/chat_completion_*.json`` and
``chat_stream_text_include_usage.sse`` (same keys, same nesting), but with a
short fixed answer so that every response has the same size.
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
