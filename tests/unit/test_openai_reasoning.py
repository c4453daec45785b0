"""Reasoning in the OpenAI chat paths (issue 12): the chat dialect's checks of the
reasoning a client sends back (gateway/dialects/openai.py) and the OpenAI-compatible
provider (gateway/providers/openai_compat.py), on the recorded payloads of ``shared/fixtures``.

No recorded OpenAI-compatible *stream* carries reasoning, so the stream tests insert
chunks holding the recorded Ollama reasoning text into the recorded Novita stream
(its real framing, ids and usage chunk).
"""

from __future__ import annotations

import copy
from typing import Any

import orjson
import pytest
from openai.types.chat import ChatCompletion

from gateway.canonical import JSON
from gateway.dialects.openai import validate_chat
from gateway.errors import InvalidRequest
from gateway.policies.replay import ChunkAssembler, completion_to_chunks
from gateway.providers.base import Target
from gateway.providers.openai_compat import OpenAICompatProvider, OpenAIStreamDecoder
from tests.unit.fixtures import decode_events, load_bytes, load_json, random_pieces, sent_body, sse_events

TURN2 = "cross_provider/reasoning/cross_the_street/openai_chat_turn2"
OLLAMA = ["openai_compatible/ollama_local_json_schema.json", "openai_compatible/ollama_cloud_tool_call.json"]
TARGET = Target("openai_compatible", "deepseek-reasoner", "http://upstream")


def thinking_blocks() -> list[JSON]:
    """The thinking block of a recorded Anthropic answer, as the canonical model carries it."""
    answer = load_json("cross_provider/reasoning/cross_the_street/anthropic.json")
    return [b for b in answer["content"] if b["type"] == "thinking"]


def with_reasoning() -> JSON:
    """The recorded turn-2 chat request, its assistant turn carrying the reasoning of an answer."""
    body: JSON = load_json(f"{TURN2}.request.json")
    assistant = body["messages"][1]
    assistant["reasoning_content"] = thinking_blocks()[0]["thinking"]
    assistant["thinking_blocks"] = thinking_blocks()
    return body


def sent(req: JSON, drop: frozenset[str] = frozenset()) -> JSON:
    target = Target("openai_compatible", "deepseek-reasoner", "http://upstream", drop_params=drop)
    return sent_body(OpenAICompatProvider(), req, target)


# -- the chat dialect ---------------------------------------------------------------------------


def test_recorded_request_with_reasoning_passes_unchanged() -> None:
    body = with_reasoning()
    before = copy.deepcopy(body)
    assert validate_chat(body) == before
    assert body["reasoning_effort"] == "high"


@pytest.mark.parametrize(
    ("change", "param", "code"),
    [
        ({"reasoning_effort": 1}, "reasoning_effort", "invalid_type"),
        ({"reasoning_content": 5}, "messages[1].reasoning_content", "invalid_type"),
        ({"thinking_blocks": "t"}, "messages[1].thinking_blocks", "invalid_type"),
        ({"thinking_blocks": ["t"]}, "messages[1].thinking_blocks[0]", "invalid_type"),
        ({"thinking_blocks": [{"type": "text"}]}, "messages[1].thinking_blocks[0].type", "invalid_value"),
        ({"thinking_blocks": [{"type": "thinking"}]}, "messages[1].thinking_blocks[0].thinking", "invalid_type"),
        (
            {"thinking_blocks": [{"type": "thinking", "thinking": "t", "signature": 1}]},
            "messages[1].thinking_blocks[0].signature",
            "invalid_type",
        ),
        ({"thinking_blocks": [{"type": "redacted_thinking"}]}, "messages[1].thinking_blocks[0].data", "invalid_type"),
    ],
)
def test_bad_reasoning_is_refused_by_name(change: JSON, param: str, code: str) -> None:
    body = with_reasoning()
    if "reasoning_effort" in change:
        body.update(change)
    else:
        body["messages"][1].update(change)
    with pytest.raises(InvalidRequest) as err:
        validate_chat(body)
    assert (err.value.param, err.value.code) == (param, code)


def test_an_unsigned_block_is_let_through() -> None:
    body = with_reasoning()
    body["messages"][1]["thinking_blocks"] = [{"type": "thinking", "thinking": "t", "signature": None}]
    assert validate_chat(body) is body


# -- the OpenAI-compatible provider: requests ---------------------------------------------------


def test_effort_is_sent_budget_flag_and_history_reasoning_are_not() -> None:
    req = {**with_reasoning(), "reasoning_budget": 16384, "include_reasoning": True}
    before = copy.deepcopy(req)
    body = sent(req)
    assert body["reasoning_effort"] == "high"
    assert "reasoning_budget" not in body and "include_reasoning" not in body
    assert body["messages"] == load_json(f"{TURN2}.request.json")["messages"]
    assert req == before  # the canonical request is not modified


def test_history_without_reasoning_is_not_copied() -> None:
    req = load_json(f"{TURN2}.request.json")
    provider = OpenAICompatProvider()
    body = orjson.loads(provider.chat_request(req, TARGET, stream=False).body or b"")
    assert body["messages"] == req["messages"]
    assert sent(req, frozenset({"reasoning_effort"})).get("reasoning_effort") is None


# -- the OpenAI-compatible provider: answers ----------------------------------------------------


@pytest.mark.parametrize("rel", OLLAMA)
def test_reasoning_text_becomes_reasoning_content(rel: str) -> None:
    raw = load_json(rel)
    message = OpenAICompatProvider().chat_response(copy.deepcopy(raw), TARGET)["choices"][0]["message"]
    assert message["reasoning_content"] == raw["choices"][0]["message"]["reasoning"]
    assert "reasoning" not in message


@pytest.mark.parametrize("rel", OLLAMA)
def test_reasoning_content_already_canonical_wins(rel: str) -> None:
    raw = load_json(rel)
    text = raw["choices"][0]["message"]["reasoning"]
    deepseek = copy.deepcopy(raw)
    deepseek["choices"][0]["message"]["reasoning_content"] = deepseek["choices"][0]["message"].pop("reasoning")
    message = OpenAICompatProvider().chat_response(deepseek, TARGET)["choices"][0]["message"]
    assert message["reasoning_content"] == text
    both = copy.deepcopy(raw)
    both["choices"][0]["message"]["reasoning_content"] = "kept"
    message = OpenAICompatProvider().chat_response(both, TARGET)["choices"][0]["message"]
    assert message["reasoning_content"] == "kept" and "reasoning" not in message


def reasoning_stream(key: str) -> bytes:
    """The recorded Novita stream with the recorded Ollama reasoning streamed before its text."""
    text = load_json(OLLAMA[0])["choices"][0]["message"]["reasoning"]
    lines = load_bytes("openai_compatible/novita_stream_via_hf_router.sse").split(b"\n\n")
    first = orjson.loads(lines[0][len(b"data: ") :])
    inserted = []
    for start in range(0, len(text), 17):
        chunk = copy.deepcopy(first)
        chunk["choices"][0]["delta"] = {key: text[start : start + 17]}
        inserted.append(b"data: " + orjson.dumps(chunk))
    return b"\n\n".join([lines[0], *inserted, *lines[1:]])


@pytest.mark.parametrize("seed", [1, 2, 3])
@pytest.mark.parametrize("key", ["reasoning", "reasoning_content"])
def test_stream_reasoning_becomes_reasoning_content(key: str, seed: int) -> None:
    text = load_json(OLLAMA[0])["choices"][0]["message"]["reasoning"]
    chunks = decode_events(OpenAIStreamDecoder(), sse_events(random_pieces(reasoning_stream(key), seed, 40)))
    deltas = [c["choices"][0]["delta"] for c in chunks if c["choices"]]
    assert "".join(d.get("reasoning_content", "") for d in deltas) == text
    assert not any("reasoning" in d for d in deltas)
    assembled = ChunkAssembler()
    assembled.extend(chunks)
    message = assembled.build()["choices"][0]["message"]  # what the response cache keeps
    assert message["reasoning_content"] == text and message["content"] == "Paris"
    replayed = completion_to_chunks(assembled.build())
    assert "".join(c["choices"][0]["delta"].get("reasoning_content", "") for c in replayed if c["choices"]) == text


def test_chat_clients_get_every_reasoning_key() -> None:
    raw = load_json(f"{TURN2}.json")
    message = raw["choices"][0]["message"]
    message["reasoning_content"] = thinking_blocks()[0]["thinking"]
    message["thinking_blocks"] = thinking_blocks()
    answer = OpenAICompatProvider().chat_response(copy.deepcopy(raw), TARGET)
    assert answer["choices"][0]["message"] == message
    parsed = ChatCompletion.model_validate(orjson.loads(orjson.dumps(answer)))
    extra: Any = parsed.choices[0].message.model_extra
    assert extra["reasoning_content"] == message["reasoning_content"]
    assert extra["thinking_blocks"] == thinking_blocks()
    assert answer["usage"]["completion_tokens_details"]["reasoning_tokens"] == 1792
