"""Reasoning in the Gemini dialect (issue 12): ``thinkingConfig`` and replayed thought
parts -> the contract's canonical keys; canonical reasoning and usage -> thought parts,
``thoughtsTokenCount`` and ``cachedContentTokenCount``.

Requests are the recorded ones in shared/fixtures (gemini/, cross_provider/reasoning/);
answers and streams are the recorded Gemini ones read into the canonical form the
contract describes, rendered back and compared with the recording, part by part.
"""

from __future__ import annotations

import json
import random
from typing import Any

import pytest
from google.genai import types

from gateway.canonical import JSON, make_chunk, make_completion, upstream_view
from gateway.dialects.anthropic import parse_messages
from gateway.dialects.gemini import GenerateStream, parse_generate, render_generate
from gateway.errors import InvalidRequest
from tests.unit.fixtures import load_bytes, load_json, sse_events

MODEL = "gemini-alias"
CROSS = "cross_provider/reasoning"
NO_SDK_FIELDS = ("serviceTier", "cacheTokensDetails", "promptTokensDetails")
"""usageMetadata fields the canonical usage does not carry."""


def parse(path: str, **changes: Any) -> JSON:
    body = load_json(path)
    body.update(changes)
    return parse_generate(body, MODEL, stream=False)


def reasoning_keys(req: JSON) -> tuple[Any, ...]:
    return tuple(req.get(k) for k in ("reasoning_effort", "reasoning_budget", "include_reasoning"))


# --- requests -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("gemini/generate_content_thinking_budget_1024.request.json", ("minimal", 1024, True)),
        ("gemini/generate_content_thinking_budget_0.request.json", ("none", 0, None)),
        ("gemini/generate_content_include_thoughts_false.request.json", (None, None, False)),
        ("gemini/stream_thinking_thought_parts.request.json", (None, None, True)),
        (f"{CROSS}/cross_the_street/gemini.request.json", (None, None, True)),
        (f"{CROSS}/cross_the_street/gemini_budget.request.json", ("minimal", 1024, True)),
        (f"{CROSS}/cross_the_street/gemini_budget_turn2.request.json", ("minimal", 1024, True)),
    ],
)
def test_recorded_thinking_configs_become_the_canonical_keys(path: str, expected: tuple[Any, ...]) -> None:
    req = parse(path)
    assert reasoning_keys(req) == expected
    assert "thinking_config" in req and "thinking_config" not in upstream_view(req)
    assert reasoning_keys(upstream_view(req)) == expected


def test_the_high_level_recording_maps_to_high_once_its_search_tool_is_gone() -> None:
    body = load_json(f"{CROSS}/high_effort_web_search/gemini.request.json")
    del body["tools"], body["toolConfig"]
    req = parse_generate(body, MODEL, stream=True)
    assert reasoning_keys(req) == ("high", None, True)


def test_the_same_budget_means_the_same_thing_from_gemini_and_anthropic() -> None:
    gemini = parse(f"{CROSS}/cross_the_street/gemini_budget.request.json")
    claude = parse_messages(load_json(f"{CROSS}/cross_the_street/anthropic.request.json"))
    assert reasoning_keys(gemini)[:2] == reasoning_keys(claude)[:2] == ("minimal", 1024)


@pytest.mark.parametrize(
    ("config", "expected"),
    [
        ({"thinkingBudget": -1}, ("medium", None, None)),  # dynamic: the model decides
        ({"thinking_budget": 2048, "include_thoughts": False}, ("low", 2048, False)),
        ({"thinkingBudget": 500}, ("minimal", 500, None)),
        ({"thinkingBudget": 8191}, ("low", 8191, None)),
        ({"thinkingBudget": 24576}, ("high", 24576, None)),
        ({"thinkingBudget": 32768}, ("xhigh", 32768, None)),
        ({"thinkingLevel": "low"}, ("low", None, None)),
        ({"thinking_level": "MINIMAL"}, ("minimal", None, None)),
        ({"thinkingLevel": "THINKING_LEVEL_UNSPECIFIED"}, (None, None, None)),
    ],
)
def test_thinking_config_rules(config: JSON, expected: tuple[Any, ...]) -> None:
    assert (
        reasoning_keys(parse("gemini/generate_content_text.request.json", generationConfig={"thinkingConfig": config}))
        == expected
    )


@pytest.mark.parametrize(
    ("config", "param", "code"),
    [
        ({"thinkingBudget": -2}, "generationConfig.thinkingConfig.thinkingBudget", "invalid_value"),
        ({"thinkingBudget": "1024"}, "generationConfig.thinkingConfig.thinkingBudget", "invalid_type"),
        ({"thinkingBudget": 1.5}, "generationConfig.thinkingConfig.thinkingBudget", "invalid_type"),
        ({"thinkingLevel": "ULTRA"}, "generationConfig.thinkingConfig.thinkingLevel", "unsupported_value"),
        ({"thinkingLevel": 2}, "generationConfig.thinkingConfig.thinkingLevel", "invalid_type"),
        (
            {"thinkingBudget": 1024, "thinkingLevel": "LOW"},
            "generationConfig.thinkingConfig.thinkingLevel",
            "invalid_value",
        ),
        ({"includeThoughts": "yes"}, "generationConfig.thinkingConfig.includeThoughts", "invalid_type"),
        ({"budget": 1}, "generationConfig.thinkingConfig.budget", "unsupported_value"),
    ],
)
def test_bad_thinking_configs_are_refused_by_name(config: JSON, param: str, code: str) -> None:
    with pytest.raises(InvalidRequest) as info:
        parse("gemini/generate_content_text.request.json", generationConfig={"thinkingConfig": config})
    assert (info.value.param, info.value.code) == (param, code)


def test_replayed_thought_parts_become_reasoning_content() -> None:
    body = load_json(f"{CROSS}/cross_the_street/gemini_turn2.request.json")
    thought, answer = body["contents"][1]["parts"]
    assistant = parse_generate(body, MODEL, stream=False)["messages"][2]
    assert assistant == {"role": "assistant", "content": answer["text"], "reasoning_content": thought["text"]}
    assert "thoughtSignature" not in json.dumps(assistant)  # no canonical place: dropped


def test_thought_pieces_join_as_one_text_and_a_turn_of_thoughts_alone_gives_no_message() -> None:
    body = load_json(f"{CROSS}/cross_the_street/gemini_turn2.request.json")
    thought, answer = body["contents"][1]["parts"]
    body["contents"][1]["parts"] = [{**thought, "text": "one, "}, {**thought, "text": "two"}, answer]
    assert parse_generate(body, MODEL, stream=False)["messages"][2]["reasoning_content"] == "one, two"
    body["contents"][1]["parts"] = [thought]
    roles = [m["role"] for m in parse_generate(body, MODEL, stream=False)["messages"]]
    assert roles == ["system", "user", "user"]


def test_thought_parts_of_a_user_turn_are_dropped() -> None:
    body = load_json(f"{CROSS}/cross_the_street/gemini_turn2.request.json")
    body["contents"][2]["parts"].append({"text": "my own musing", "thought": True})
    user = parse_generate(body, MODEL, stream=False)["messages"][3]
    assert "my own musing" not in json.dumps(user) and "reasoning_content" not in user


# --- answers --------------------------------------------------------------------------------------


def canonical_usage(meta: JSON) -> JSON:
    """usageMetadata -> canonical usage (thoughts count as completion tokens, as OpenAI counts them)."""
    thoughts = meta.get("thoughtsTokenCount")
    usage: JSON = {
        "prompt_tokens": meta["promptTokenCount"],
        "completion_tokens": meta.get("candidatesTokenCount", 0) + (thoughts or 0),
        "total_tokens": meta["totalTokenCount"],
    }
    if thoughts is not None:
        usage["completion_tokens_details"] = {"reasoning_tokens": thoughts}
    if "cachedContentTokenCount" in meta:
        usage["prompt_tokens_details"] = {"cached_tokens": meta["cachedContentTokenCount"]}
    return usage


def canonical_completion(recorded: JSON) -> JSON:
    parts = recorded["candidates"][0]["content"]["parts"]
    message: JSON = {"role": "assistant", "content": "".join(p["text"] for p in parts if not p.get("thought"))}
    thought = "".join(p["text"] for p in parts if p.get("thought"))
    if thought:
        message["reasoning_content"] = thought
    usage = canonical_usage(recorded["usageMetadata"])
    return make_completion(id=recorded["responseId"], model="m", message=message, finish_reason="stop", usage=usage)


@pytest.mark.parametrize(
    "name",
    ["generate_content_thinking_budget_1024", "generate_content_cached_content", "generate_content_text"],
)
def test_recorded_answers_render_back_part_by_part(name: str) -> None:
    recorded = load_json(f"gemini/{name}.json")
    rendered = render_generate(canonical_completion(recorded), MODEL)
    theirs = recorded["candidates"][0]
    # one text part per kind: a recording that split its answer into several parts is compared joined
    thoughts = [p for p in theirs["content"]["parts"] if p.get("thought")]
    answer = "".join(p["text"] for p in theirs["content"]["parts"] if not p.get("thought"))
    parts = [*thoughts[:1], {"text": answer}]
    assert rendered["candidates"][0]["content"]["parts"] == parts
    meta = {k: v for k, v in recorded["usageMetadata"].items() if k not in NO_SDK_FIELDS}
    assert rendered["usageMetadata"] == meta
    sdk = types.GenerateContentResponse.model_validate(rendered)
    assert sdk.text == parts[-1]["text"]  # the SDK's text leaves thoughts out


def test_an_answer_without_reasoning_has_no_thought_part() -> None:
    recorded = load_json("gemini/generate_content_thinking_budget_0.json")
    rendered = render_generate(canonical_completion(recorded), MODEL)
    assert not any(p.get("thought") for p in rendered["candidates"][0]["content"]["parts"])


# --- streams ------------------------------------------------------------------------------------------


def canonical_chunks(raw: bytes) -> list[list[JSON]]:
    """A recorded Gemini stream as canonical chunks, one list per event; usage in a last one."""
    per_event: list[list[JSON]] = []
    meta: JSON = {}
    for event in sse_events([raw]):
        data = json.loads(event.data)
        meta = data.get("usageMetadata") or meta
        chunks = []
        for part in data["candidates"][0]["content"]["parts"]:
            key = "reasoning_content" if part.get("thought") else "content"
            chunks.append(make_chunk(id="r", model="m", created=1, delta={key: part["text"]}))
        if data["candidates"][0].get("finishReason"):
            chunks.append(make_chunk(id="r", model="m", created=1, delta={}, finish_reason="stop"))
        per_event.append(chunks)
    per_event.append([make_chunk(id="r", model="m", created=1, usage=canonical_usage(meta))])
    return per_event


def events_of(raw: bytes) -> list[JSON]:
    return [json.loads(block[len(b"data: ") :]) for block in raw.split(b"\r\n\r\n") if block]


def unsigned(parts: list[JSON]) -> list[JSON]:
    return [{k: v for k, v in p.items() if k != "thoughtSignature"} for p in parts]


def test_the_recorded_thinking_stream_renders_event_by_event() -> None:
    raw = load_bytes("gemini/stream_thinking_thought_parts.sse")
    stream = GenerateStream(MODEL)
    ours = events_of(b"".join(stream.chunks(batch) for batch in canonical_chunks(raw)) + stream.finish())
    theirs = [json.loads(e.data) for e in sse_events([raw])]
    assert [e["candidates"][0]["content"]["parts"] for e in ours[: len(theirs)]] == [
        unsigned(e["candidates"][0]["content"]["parts"]) for e in theirs
    ]
    assert ours[-1]["candidates"][0]["finishReason"] == "STOP"
    meta = {k: v for k, v in theirs[-1]["usageMetadata"].items() if k not in NO_SDK_FIELDS}
    assert ours[-1]["usageMetadata"] == meta


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_thoughts_stream_before_the_answer_in_any_batching(seed: int) -> None:
    raw = load_bytes("gemini/stream_thinking_thought_parts.sse")
    chunks = [c for event in canonical_chunks(raw) for c in event]
    rng, batches, pos = random.Random(seed), [], 0
    while pos < len(chunks):
        size = rng.randint(1, 6)
        batches.append(chunks[pos : pos + size])
        pos += size
    stream = GenerateStream(MODEL)
    events = events_of(b"".join(stream.chunks(b) for b in batches) + stream.finish())
    parts = [p for e in events for p in e["candidates"][0]["content"]["parts"]]
    kinds = [bool(p.get("thought")) for p in parts if p["text"]]
    assert kinds == sorted(kinds, reverse=True)  # every thought before the first answer text
    recorded = [p for e in sse_events([raw]) for p in json.loads(e.data)["candidates"][0]["content"]["parts"]]
    for thought in (True, False):
        assert "".join(p["text"] for p in parts if bool(p.get("thought")) is thought) == "".join(
            p["text"] for p in recorded if bool(p.get("thought")) is thought
        )
    for event in events:
        types.GenerateContentResponse.model_validate(event)
