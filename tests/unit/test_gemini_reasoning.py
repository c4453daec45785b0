"""Reasoning on the Gemini provider (issue 12), against the recorded Gemini payloads.

Requests: the canonical reasoning keys of each recorded ``thinkingConfig`` request must
translate into that recorded ``thinkingConfig``. The recordings were written by
google-genai / pydantic-ai, which spell some keys in snake_case (``thinking_config``,
``thinking_budget``, ``include_thoughts``, ``thinking_level``; Gemini reads both) and add
``responseModalities: ["TEXT"]`` (the default): :func:`recorded_config` normalises both.
Answers: thought parts become ``reasoning_content`` (joined, or stream delta pieces).
"""

from __future__ import annotations

import re
from typing import Any

import orjson
import pytest

from gateway.canonical import JSON
from gateway.errors import InvalidRequest
from gateway.providers.base import Target
from gateway.providers.gemini import GeminiProvider
from gateway.providers.gemini_reasoning import gemini_version, thinking_family
from tests.unit.fixtures import decode_events, load_bytes, load_json, random_pieces, sse_events, user

PROVIDER = GeminiProvider()
BASE = "https://generativelanguage.googleapis.com/v1beta"
STREET = "cross_provider/reasoning/cross_the_street"
SEARCH = "cross_provider/reasoning/high_effort_web_search"
STREAM = "gemini/stream_thinking_thought_parts.sse"
SNAKE = {
    "thinking_config": "thinkingConfig",
    "thinking_budget": "thinkingBudget",
    "include_thoughts": "includeThoughts",
    "thinking_level": "thinkingLevel",
}


def target(model: str = "gemini-2.5-flash", **kw: Any) -> Target:
    return Target("gemini", model, BASE, api_key="k", auth_header="x-goog-api-key", auth_scheme="", **kw)


def chat(req: JSON, model: str = "gemini-2.5-flash", **kw: Any) -> JSON:
    wire = PROVIDER.chat_request(req, target(model, **kw), stream=False)
    assert wire.body is not None
    body: JSON = orjson.loads(wire.body)
    return body


def thinking(req: JSON, model: str = "gemini-2.5-flash", **kw: Any) -> JSON | None:
    config = chat({"messages": [user("x")], **req}, model, **kw).get("generationConfig", {})
    value: JSON | None = config.get("thinkingConfig")
    return value


def recorded_model(rel: str) -> str:
    """The model of a recorded request, read off its ``upstream_uri`` in index.json."""
    folder, name = rel.rsplit("/", 1)
    uri = next(e["upstream_uri"] for e in load_json(f"{folder}/index.json") if name in e["files"])
    match = re.search(r"/models/([^/:]+):", uri)
    assert match is not None
    return match.group(1)


def recorded_config(rel: str) -> JSON:
    """A recorded request's ``generationConfig`` in our spelling (see the module docstring)."""
    config = load_json(rel).get("generationConfig", {})
    out = {SNAKE.get(k, k): v for k, v in config.items() if k != "responseModalities"}
    if "thinkingConfig" in out:
        out["thinkingConfig"] = {SNAKE.get(k, k): v for k, v in out["thinkingConfig"].items()}
    return out


def canonical_messages(recorded: JSON) -> list[JSON]:
    """A recorded text-only conversation as canonical messages (thought parts as history reasoning)."""
    messages: list[JSON] = []
    system = recorded.get("systemInstruction")
    if system:
        messages.append({"role": "system", "content": "".join(p["text"] for p in system["parts"])})
    for turn in recorded["contents"]:
        text = "".join(p["text"] for p in turn["parts"] if not p.get("thought"))
        if turn["role"] == "user":
            messages.append(user(text))
            continue
        message: JSON = {"role": "assistant", "content": text}
        if thoughts := "".join(p["text"] for p in turn["parts"] if p.get("thought")):
            message["reasoning_content"] = thoughts
            message["thinking_blocks"] = [{"type": "thinking", "thinking": thoughts, "signature": "c2ln"}]
        messages.append(message)
    return messages


# --- requests: recorded thinkingConfig ------------------------------------------------

RECORDED_REQUESTS = [
    ("gemini/generate_content_thinking_budget_0.request.json", {"reasoning_effort": "none", "reasoning_budget": 0}),
    (
        "gemini/generate_content_thinking_budget_1024.request.json",
        {"reasoning_effort": "minimal", "reasoning_budget": 1024, "include_reasoning": True},
    ),
    # No include_reasoning: reasoning asked for turns includeThoughts on by itself.
    (
        "gemini/generate_content_thinking_budget_1024.request.json",
        {"reasoning_effort": "minimal", "reasoning_budget": 1024},
    ),
    ("gemini/generate_content_include_thoughts_false.request.json", {"include_reasoning": False}),
    (f"{STREET}/gemini_budget.request.json", {"reasoning_budget": 1024, "reasoning_effort": "minimal"}),
    (f"{STREET}/gemini_budget_turn2.request.json", {"reasoning_budget": 1024, "reasoning_effort": "minimal"}),
]


@pytest.mark.parametrize(("rel", "reasoning"), RECORDED_REQUESTS)
def test_recorded_thinking_request(rel: str, reasoning: JSON) -> None:
    recorded = load_json(rel)
    body = chat({"model": "alias", "messages": canonical_messages(recorded), **reasoning}, recorded_model(rel))
    assert body["generationConfig"] == recorded_config(rel)
    assert body["contents"] == recorded["contents"]
    if "systemInstruction" in recorded:
        assert body["systemInstruction"] == {"parts": recorded["systemInstruction"]["parts"]}


# Recorded requests whose tools are not part of this comparison (an old-style
# ``parameters`` schema, googleSearch): only the generationConfig is compared.
RECORDED_WITH_TOOLS = [
    ("gemini/stream_thinking_thought_parts.request.json", {"include_reasoning": True}),
    (f"{STREET}/gemini.request.json", {"include_reasoning": True}),
    (f"{SEARCH}/gemini.request.json", {"reasoning_effort": "high", "include_reasoning": True}),
    (f"{SEARCH}/gemini.request.json", {"reasoning_effort": "xhigh"}),
]


@pytest.mark.parametrize(("rel", "reasoning"), RECORDED_WITH_TOOLS)
def test_recorded_thinking_config_with_tools(rel: str, reasoning: JSON) -> None:
    recorded = load_json(rel)
    body = chat({"messages": canonical_messages(recorded), **reasoning}, recorded_model(rel))
    assert body["generationConfig"] == recorded_config(rel)
    assert body["contents"] == recorded["contents"]


def test_replayed_reasoning_is_dropped() -> None:
    # Turn 2 on gemini-3-pro-preview: google-genai replayed the thought part and the text
    # part's thoughtSignature. The canonical history carries reasoning_content and
    # thinking_blocks instead; Gemini needs neither back, and both are dropped.
    recorded = load_json(f"{STREET}/gemini_turn2.request.json")
    messages = canonical_messages(recorded)
    assert messages[2]["reasoning_content"]
    body = chat(
        {"messages": messages, "include_reasoning": True}, recorded_model(f"{STREET}/gemini_turn2.request.json")
    )
    model_turn = recorded["contents"][1]
    replayed = [{"text": p["text"]} for p in model_turn["parts"] if not p.get("thought")]
    assert body["contents"] == [recorded["contents"][0], {"role": "model", "parts": replayed}, recorded["contents"][2]]
    assert body["generationConfig"] == recorded_config(f"{STREET}/gemini_turn2.request.json")


# --- requests: the rules by model ------------------------------------------------------

EFFORTS = ["none", "minimal", "low", "medium", "high", "xhigh"]


def level(value: str, include: bool) -> JSON:
    return {"thinkingLevel": value, "includeThoughts": True} if include else {"thinkingLevel": value}


def budget(value: int) -> JSON:
    return {"thinkingBudget": value, "includeThoughts": True} if value else {"thinkingBudget": value}


@pytest.mark.parametrize(
    ("model", "expected"),
    [
        (
            "gemini-3-pro-preview",
            [{"thinkingLevel": "LOW"}, level("LOW", True), level("LOW", True)] + [level("HIGH", True)] * 3,
        ),
        (
            "projects/p/locations/global/publishers/google/models/gemini-3.1-flash-preview",
            [{"thinkingLevel": "LOW"}, level("LOW", True), level("LOW", True)] + [level("HIGH", True)] * 3,
        ),
        ("gemini-2.5-flash", [budget(0), budget(1024), budget(2048), budget(8192), budget(16384), budget(24576)]),
        ("gemini-2.5-flash-lite", [budget(0), budget(1024), budget(2048), budget(8192), budget(16384), budget(24576)]),
        # 2.5 Pro cannot turn thinking off: "none" is its minimum budget, with no thoughts asked for.
        (
            "gemini-2.5-pro",
            [{"thinkingBudget": 128}, budget(1024), budget(2048), budget(8192), budget(16384), budget(32768)],
        ),
        ("gemini-flash-latest", [budget(0), budget(1024), budget(2048), budget(8192), budget(16384), budget(32768)]),
    ],
)
def test_effort_by_model(model: str, expected: list[JSON]) -> None:
    assert [thinking({"reasoning_effort": e}, model) for e in EFFORTS] == expected


@pytest.mark.parametrize("model", ["gemini-2.0-flash", "gemini-1.5-pro", "models/gemini-2.0-flash-exp"])
def test_models_that_do_not_think_drop_reasoning(model: str) -> None:
    req = {"reasoning_effort": "high", "reasoning_budget": 16384, "include_reasoning": True}
    assert "generationConfig" not in chat({"messages": [user("x")], **req}, model)


def test_budget_clamped_into_the_model_range() -> None:
    assert thinking({"reasoning_budget": 100, "reasoning_effort": "minimal"}, "gemini-2.5-flash-lite") == budget(512)
    assert thinking({"reasoning_budget": 100, "reasoning_effort": "minimal"}, "gemini-2.5-pro") == budget(128)
    assert thinking({"reasoning_budget": 100, "reasoning_effort": "minimal"}, "gemini-2.5-flash") == budget(100)
    assert thinking({"reasoning_budget": 0, "reasoning_effort": "none"}, "gemini-2.5-pro") == {"thinkingBudget": 128}
    assert thinking({"reasoning_budget": 50000, "reasoning_effort": "xhigh"}, "gemini-2.5-pro") == budget(32768)
    assert thinking({"reasoning_budget": 50000, "reasoning_effort": "xhigh"}, "gemini-exp-1206") == budget(50000)


def test_exact_budget_wins_over_effort_on_budget_models() -> None:
    assert thinking({"reasoning_budget": 5000, "reasoning_effort": "medium"}) == budget(5000)
    # Gemini 3 takes levels: the effort decides, a lone budget is read as its effort.
    assert thinking({"reasoning_budget": 5000, "reasoning_effort": "medium"}, "gemini-3-pro") == level("HIGH", True)
    assert thinking({"reasoning_budget": 1500}, "gemini-3-pro") == level("LOW", True)
    assert thinking({"reasoning_budget": 0}, "gemini-3-pro") == {"thinkingLevel": "LOW"}
    assert thinking({"reasoning_budget": 20000}, "gemini-3-pro") == level("HIGH", True)


def test_include_reasoning() -> None:
    assert thinking({"include_reasoning": True}) == {"includeThoughts": True}
    assert thinking({"include_reasoning": False}, "gemini-3-pro") == {"includeThoughts": False}
    assert thinking({"reasoning_effort": "high", "include_reasoning": False}) == {
        "thinkingBudget": 16384,
        "includeThoughts": False,
    }
    assert thinking({"reasoning_effort": "none", "include_reasoning": True}) == budget(0) | {"includeThoughts": True}
    assert thinking({}) is None


def test_reasoning_style_overrides_the_name_rule() -> None:
    assert thinking({"reasoning_effort": "low"}, "gemini-3-pro", reasoning_style="budget") == budget(2048)
    assert thinking({"reasoning_effort": "low"}, "gemini-2.5-flash", reasoning_style="adaptive") == level("LOW", True)
    assert thinking({"reasoning_effort": "low"}, "gemini-pro-latest", reasoning_style="adaptive") == level("LOW", True)


def test_model_name_rule() -> None:
    assert gemini_version("gemini-2.5-flash-lite-preview-09-2025") == (2, 5)
    assert gemini_version("models/gemini-3-pro-preview") == (3, 0)
    assert gemini_version("tunedModels/my-model") is None
    assert [thinking_family(m) for m in ("gemini-3-pro", "gemini-2.5-pro", "gemini-2.0-flash", "x")] == [
        "level",
        "budget",
        "none",
        "budget",
    ]


def test_drop_params_removes_reasoning() -> None:
    req = {"messages": [user("x")], "reasoning_effort": "high", "include_reasoning": True}
    assert "generationConfig" not in chat(req, drop_params=frozenset({"reasoning_effort", "include_reasoning"}))


@pytest.mark.parametrize(
    ("extra", "param", "code"),
    [
        ({"reasoning_effort": 3}, "reasoning_effort", "invalid_type"),
        ({"reasoning_effort": "max"}, "reasoning_effort", "invalid_value"),
        ({"reasoning_budget": "100"}, "reasoning_budget", "invalid_type"),
        ({"reasoning_budget": True}, "reasoning_budget", "invalid_type"),
        ({"reasoning_budget": -1}, "reasoning_budget", "invalid_value"),
        ({"include_reasoning": "yes"}, "include_reasoning", "invalid_type"),
    ],
)
def test_bad_reasoning_values(extra: JSON, param: str, code: str) -> None:
    with pytest.raises(InvalidRequest) as err:
        chat({"messages": [user("x")], **extra})
    assert (err.value.param, err.value.code, err.value.status) == (param, code, 400)


# --- answers --------------------------------------------------------------------------

ANSWERS = [
    "gemini/generate_content_thinking_budget_1024.json",
    "gemini/generate_content_thinking_budget_0.json",
    "gemini/generate_content_include_thoughts_false.json",
    f"{STREET}/gemini.json",
    f"{STREET}/gemini_turn2.json",
    f"{STREET}/gemini_budget.json",
    f"{STREET}/gemini_budget_turn2.json",
    f"{SEARCH}/gemini.json",
]


@pytest.mark.parametrize("rel", ANSWERS)
def test_thought_parts_become_reasoning_content(rel: str) -> None:
    raw = load_json(rel)
    parts = raw["candidates"][0]["content"]["parts"]
    message = PROVIDER.chat_response(raw, target())["choices"][0]["message"]
    thoughts = "".join(p["text"] for p in parts if p.get("thought"))
    assert message["content"] == "".join(p.get("text", "") for p in parts if not p.get("thought"))
    assert message.get("reasoning_content") == (thoughts or None)
    assert set(message) <= {"role", "content", "reasoning_content"}


@pytest.mark.parametrize("rel", ANSWERS)
def test_thoughts_are_billed_as_completion_tokens(rel: str) -> None:
    meta = load_json(rel)["usageMetadata"]
    usage = PROVIDER.chat_response(load_json(rel), target())["usage"]
    thoughts = meta.get("thoughtsTokenCount")
    assert usage["completion_tokens"] == meta["candidatesTokenCount"] + (thoughts or 0)
    assert usage["total_tokens"] == meta["totalTokenCount"]
    assert usage.get("completion_tokens_details") == (None if thoughts is None else {"reasoning_tokens": thoughts})


def test_reasoning_content_values() -> None:
    out = PROVIDER.chat_response(load_json("gemini/generate_content_thinking_budget_1024.json"), target())
    message = out["choices"][0]["message"]
    assert message["content"] == "2 + 2 = 4"
    assert message["reasoning_content"].startswith("**Calculating the Simple**\n\nOkay, here we go.")
    assert out["usage"] == {
        "prompt_tokens": 8,
        "completion_tokens": 24,
        "total_tokens": 32,
        "completion_tokens_details": {"reasoning_tokens": 16},
    }
    # includeThoughts false: no thought parts come back, but the thoughts are still counted.
    out = PROVIDER.chat_response(load_json("gemini/generate_content_include_thoughts_false.json"), target())
    assert "reasoning_content" not in out["choices"][0]["message"]
    assert out["usage"]["completion_tokens_details"] == {"reasoning_tokens": 275}


# --- streams --------------------------------------------------------------------------


def stream_payloads() -> list[JSON]:
    events = [e for e in load_bytes(STREAM).split(b"\r\n\r\n") if e.strip()]
    return [orjson.loads(e.removeprefix(b"data: ")) for e in events]


def decode(seed: int | None) -> list[JSON]:
    raw = load_bytes(STREAM)
    pieces = [raw] if seed is None else random_pieces(raw, seed)
    return decode_events(PROVIDER.stream_decoder(target("gemini-2.5-pro")), sse_events(pieces))


def deltas(chunks: list[JSON]) -> list[JSON]:
    return [c["choices"][0]["delta"] for c in chunks if c["choices"]]


@pytest.mark.parametrize("seed", range(6))
def test_stream_thought_parts_in_random_splits(seed: int) -> None:
    chunks = decode(seed)
    parts = [p for e in stream_payloads() for p in e["candidates"][0]["content"]["parts"]]
    pieces = [d["reasoning_content"] for d in deltas(chunks) if "reasoning_content" in d]
    assert pieces == [p["text"] for p in parts if p.get("thought")]
    text = "".join(d.get("content", "") for d in deltas(chunks))
    assert text == "".join(p["text"] for p in parts if not p.get("thought"))
    assert not any("content" in d and "reasoning_content" in d for d in deltas(chunks))
    # The reasoning comes first, as recorded; the text part's thoughtSignature is not surfaced.
    kinds = [k for d in deltas(chunks) for k in d if k in ("content", "reasoning_content")]
    assert kinds == sorted(kinds, key=lambda k: k == "content")
    assert all(set(d) <= {"role", "content", "reasoning_content"} for d in deltas(chunks))
    assert chunks[-1]["usage"] == {
        "prompt_tokens": 34,
        "completion_tokens": 469 + 787,
        "total_tokens": 1290,
        "completion_tokens_details": {"reasoning_tokens": 787},
    }
    assert [c["choices"][0]["finish_reason"] for c in chunks if c["choices"]][-1] == "stop"


def test_stream_splits_do_not_change_the_chunks() -> None:
    def comparable(chunks: list[JSON]) -> list[JSON]:
        return [{**c, "created": 0} for c in chunks]

    whole = comparable(decode(None))
    assert all(comparable(decode(seed)) == whole for seed in (11, 12, 13))
    assert whole[0]["choices"][0]["delta"]["role"] == "assistant"
    assert "reasoning_content" in whole[0]["choices"][0]["delta"]
