"""The mock upstream enforces each format's reasoning rules by model name, over real
loopback HTTP: adaptive-only and budget-only Claude models, Gemini 2.5 and 3 thinking
(thought parts, thought signatures), OpenAI reasoning and DeepSeek-style models, and cache
usage next to reasoning. Driven with the recorded request bodies in ``shared/fixtures``
(model names changed where a rule needs another model); small hand-written bodies for the
refusals that have no recording.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from gateway.mock.gemini_thinking import BOTH_REFUSED, LEVEL_REFUSED, MINIMAL_REFUSED
from gateway.mock.models import RIG_MODELS, claude_thinking, gemini_thinking, openai_reasoning
from gateway.mock.reasoning import sign_thinking, sign_thought, verify_thinking
from gateway.mock.testing import parse_sse
from gateway.mock.thinking import ADAPTIVE_REFUSED, ENABLED_REFUSED, TEMPERATURE_REFUSED

FIXTURES = Path(__file__).resolve().parents[3] / "shared" / "fixtures"
HEADERS = {"anthropic-version": "2023-06-01", "x-api-key": "k"}
MSG, CHAT = "/v1/messages", "/v1/chat/completions"
STREET = "cross_provider/reasoning/cross_the_street/"
LONG = " ".join(f"w{i}" for i in range(1300))  # over OpenAI's 1024-token caching floor


def fixture(rel: str) -> Any:
    return json.loads((FIXTURES / rel).read_text(encoding="utf-8"))


def events(raw: bytes) -> list[dict[str, Any]]:
    return [json.loads(data) for _, data in parse_sse(raw) if data != "[DONE]"]


def gem(model: str, stream: bool = False) -> str:
    return f"/v1beta/models/{model}:" + ("streamGenerateContent?alt=sse" if stream else "generateContent")


def refused(resp: httpx.Response) -> dict[str, Any]:
    """The error object of a 400."""
    assert resp.status_code == 400, resp.text
    error: dict[str, Any] = resp.json()["error"]
    return error


def test_rules_are_chosen_by_model_name() -> None:
    claude = {
        "claude-opus-4-7": "adaptive_only",
        "claude-opus-4-8": "adaptive_only",
        "claude-opus-5": "adaptive_only",
        "claude-opus-4-6": "both",
        "claude-sonnet-4-6": "both",
        "claude-sonnet-4-5-20250929": "budget_only",
        "claude-sonnet-4-20250514": "budget_only",
        "claude-3-7-sonnet-20250219": "budget_only",
        "mock-claude": "both",
    }
    assert {name: claude_thinking(name) for name in claude} == claude
    gemini = {"gemini-3-pro-preview": "gemini3", "gemini-3.1-pro-preview": "gemini3", "gemini-2.5-flash": "gemini25"}
    assert {name: gemini_thinking(name) for name in gemini} == gemini
    assert gemini_thinking("gemini-2.0-flash") is None and gemini_thinking("mock-gemini") is None
    openai = {"o3-mini": "openai", "gpt-5.1": "openai", "deepseek-reasoner": "deepseek", "deepseek-r1": "deepseek"}
    assert {name: openai_reasoning(name) for name in openai} == openai
    assert [openai_reasoning(n) for n in ("gpt-4o-mini", "gpt-5-chat-latest", "mock-gpt")] == [None] * 3
    rigs: list[str | None] = [claude_thinking(RIG_MODELS[0]), claude_thinking(RIG_MODELS[1])]
    rigs += [gemini_thinking(RIG_MODELS[2]), gemini_thinking(RIG_MODELS[3])]
    rigs += [openai_reasoning(RIG_MODELS[4]), openai_reasoning(RIG_MODELS[5])]
    assert rigs == ["adaptive_only", "budget_only", "gemini3", "gemini25", "openai", "deepseek"]


# --- Anthropic ---------------------------------------------------------------------------------


def test_adaptive_only_claude_thinks_with_effort(http: httpx.Client) -> None:
    request = fixture("anthropic/messages_adaptive_thinking_effort_xhigh.request.json")  # claude-opus-5
    recorded = fixture("anthropic/messages_adaptive_thinking_effort_xhigh.json")
    for model in ("claude-opus-5", "mock-claude-adaptive"):
        msg = http.post(MSG, json={**request, "model": model}, headers=HEADERS).json()
        assert [b["type"] for b in msg["content"]] == [b["type"] for b in recorded["content"]]
        thinking = msg["content"][0]
        assert thinking["thinking"].startswith("Mock thinking") and verify_thinking(**_sig(thinking))
        assert set(msg["usage"]) <= set(recorded["usage"])
        assert msg["usage"]["output_tokens_details"] == {"thinking_tokens": 8}
        assert msg["usage"]["output_tokens"] == 8 + 12


def _sig(block: dict[str, Any]) -> dict[str, str]:
    return {"text": block["thinking"], "signature": block["signature"]}


def test_adaptive_only_claude_tool_loop_is_never_rejected(http: httpx.Client) -> None:
    request = fixture("anthropic/messages_thinking_enabled_tool_use.request.json")
    request |= {"model": "mock-claude-adaptive", "thinking": {"type": "adaptive", "display": "summarized"}}
    request["output_config"] = {"effort": "high"}
    first = http.post(MSG, json=request, headers=HEADERS).json()
    assert [b["type"] for b in first["content"]] == ["thinking", "tool_use"]
    tool_use = first["content"][1]
    result = {"role": "user", "content": [{"type": "tool_result", "tool_use_id": tool_use["id"], "content": "Mexico"}]}
    history = [*request["messages"], {"role": "assistant", "content": first["content"]}, result]
    second = http.post(MSG, json={**request, "messages": history}, headers=HEADERS)
    assert second.status_code == 200 and [b["type"] for b in second.json()["content"]] == ["thinking", "text"]
    unsigned = copy.deepcopy(history)
    unsigned[1]["content"] = unsigned[1]["content"][1:]
    error = refused(http.post(MSG, json={**request, "messages": unsigned}, headers=HEADERS))
    assert error["message"].startswith("messages.1.content.0.type: Expected `thinking` or `redacted_thinking`")


def test_adaptive_only_claude_omits_thinking_unless_summarized(http: httpx.Client) -> None:
    body = {**fixture("anthropic/messages_adaptive_thinking.request.json"), "model": "claude-opus-4-7"}
    msg = http.post(MSG, json=body, headers=HEADERS).json()
    thinking = msg["content"][0]
    assert thinking == {"type": "thinking", "thinking": "", "signature": sign_thinking("")}
    assert msg["usage"]["output_tokens"] == 8 + 12 and msg["usage"]["output_tokens_details"]["thinking_tokens"] == 8
    raw = http.post(MSG, json={**body, "stream": True}, headers=HEADERS).content
    deltas = [e["delta"]["type"] for e in events(raw) if e["type"] == "content_block_delta"]
    assert deltas[0] == "signature_delta" and "thinking_delta" not in deltas
    history = [*body["messages"], {"role": "assistant", "content": msg["content"]}, {"role": "user", "content": "ok"}]
    assert http.post(MSG, json={**body, "messages": history}, headers=HEADERS).status_code == 200


def test_adaptive_only_claude_refuses_budget_and_temperature(http: httpx.Client) -> None:
    budget = {**fixture("anthropic/messages_thinking_enabled_tool_use.request.json"), "model": "claude-opus-4-7"}
    error = refused(http.post(MSG, json=budget, headers=HEADERS))
    assert error == {"type": "invalid_request_error", "message": ENABLED_REFUSED}
    live = fixture("anthropic/opus_4_7_temperature_unsupported_live_vercel.json")
    plain = http.post(MSG, json=live["requestBody"], headers=HEADERS).json()  # sent without temperature: 200
    assert set(plain["usage"]) == set(live["response"]["body"]["usage"]) - {"inference_geo"}
    assert plain["usage"]["output_tokens_details"] == {"thinking_tokens": 0}
    hot = {**live["requestBody"], "temperature": live["inputTemperature"]}
    assert refused(http.post(MSG, json=hot, headers=HEADERS))["message"] == TEMPERATURE_REFUSED
    assert refused(http.post(MSG, json={**budget, "model": "mock-claude-adaptive"}, headers=HEADERS))


def test_budget_only_claude_refuses_adaptive(http: httpx.Client) -> None:
    adaptive = fixture("anthropic/messages_adaptive_thinking.request.json")  # claude-opus-4-6 takes both
    for model in ("claude-opus-4-6", "mock-claude"):
        assert http.post(MSG, json={**adaptive, "model": model}, headers=HEADERS).status_code == 200
    for model in ("claude-sonnet-4-5", "mock-claude-budget", "claude-3-7-sonnet-20250219"):
        error = refused(http.post(MSG, json={**adaptive, "model": model}, headers=HEADERS))
        assert error == {"type": "invalid_request_error", "message": ADAPTIVE_REFUSED}
    budget = fixture(STREET + "anthropic.request.json")  # claude-sonnet-4-5, budget_tokens 1024
    for model in ("claude-sonnet-4-5", "mock-claude-budget", "claude-opus-4-6", "mock-claude"):
        msg = http.post(MSG, json={**budget, "model": model}, headers=HEADERS).json()
        assert [b["type"] for b in msg["content"]] == ["thinking", "text"]
        assert "output_tokens_details" not in msg["usage"]


def test_claude_effort_levels_follow_the_recording(http: httpx.Client) -> None:
    request = fixture("anthropic/error_400_invalid_request.request.json")  # claude-opus-4-6, effort xhigh
    recorded = fixture("anthropic/error_400_invalid_request.json")
    assert refused(http.post(MSG, json=request, headers=HEADERS)) == recorded["error"]
    low = fixture("anthropic/messages_effort_low_without_thinking.request.json")
    assert http.post(MSG, json=low, headers=HEADERS).status_code == 200
    assert http.post(MSG, json={**request, "model": "claude-opus-4-7"}, headers=HEADERS).status_code == 200
    wrong = {**request, "model": "claude-opus-4-7", "output_config": {"effort": "minimal"}}
    message = refused(http.post(MSG, json=wrong, headers=HEADERS))["message"]
    levels = "high, low, max, medium, xhigh"
    assert message == f"This model does not support effort level 'minimal'. Supported levels: {levels}."


# --- Gemini ------------------------------------------------------------------------------------


def test_gemini3_thought_parts_and_signed_text(http: httpx.Client) -> None:
    request, recorded = fixture(STREET + "gemini.request.json"), fixture(STREET + "gemini.json")
    request["toolConfig"] = {"functionCallingConfig": {"mode": "NONE"}}  # the mock would call its dummy tool
    body = http.post(gem("gemini-3-pro-preview"), json=request).json()
    parts = body["candidates"][0]["content"]["parts"]
    assert [sorted(p) for p in parts] == [sorted(p) for p in recorded["candidates"][0]["content"]["parts"]]
    assert parts[0]["thought"] is True and parts[0]["text"].startswith("Mock thinking about: How do I cross")
    assert parts[1]["thoughtSignature"] == sign_thought(parts[1]["text"])
    usage = body["usageMetadata"]
    assert set(usage) == set(recorded["usageMetadata"]) and usage["thoughtsTokenCount"] == 8
    assert usage["totalTokenCount"] == usage["promptTokenCount"] + usage["candidatesTokenCount"] + 8
    turn2 = fixture(STREET + "gemini_turn2.request.json")  # the real signature on a text part is replayed
    assert http.post(gem("gemini-3-pro-preview"), json=turn2).status_code == 200


def test_gemini3_function_call_signature_round_trip(http: httpx.Client) -> None:
    request = fixture("gemini/stream_function_call_thought_signature.request.json")  # gemini-3-pro-preview
    recorded = events((FIXTURES / "gemini/stream_function_call_thought_signature.sse").read_bytes())
    streamed = events(http.post(gem("gemini-3-pro-preview", stream=True), json=request).content)
    call_part = streamed[0]["candidates"][0]["content"]["parts"][0]
    assert sorted(call_part) == sorted(recorded[0]["candidates"][0]["content"]["parts"][0])
    call = call_part["functionCall"]
    assert call_part["thoughtSignature"] == sign_thought(f"{call['name']}\x00{json.dumps(call['args'])}")
    answer = {"role": "model", "parts": [call_part]}
    result = {"role": "user", "parts": [{"functionResponse": {"name": call["name"], "response": {"c": "Mexico"}}}]}
    loop = {**request, "contents": [*request["contents"], answer, result]}
    second = http.post(gem("gemini-3-pro-preview"), json=loop).json()
    assert second["candidates"][0]["content"]["parts"][0]["text"]
    snake = copy.deepcopy(loop)
    snake["contents"][1]["parts"][0] = {"functionCall": call, "thought_signature": "c2tpcA=="}
    assert http.post(gem("gemini-3-pro-preview"), json=snake).status_code == 200
    unsigned = copy.deepcopy(loop)
    del unsigned["contents"][1]["parts"][0]["thoughtSignature"]
    error = refused(http.post(gem("mock-gemini-3-thinking"), json=unsigned))
    assert error["status"] == "INVALID_ARGUMENT" and error["code"] == 400
    assert error["message"].startswith("Function call is missing a thought_signature in functionCall parts.")
    assert "function call `default_api:get_country` , position 2." in error["message"]
    later = {**unsigned, "contents": [*unsigned["contents"], {"role": "user", "parts": [{"text": "thanks"}]}]}
    assert http.post(gem("gemini-3-pro-preview"), json=later).status_code == 200, "only the current turn"
    assert http.post(gem("gemini-2.5-flash"), json=unsigned).status_code == 200, "Gemini 2.5 does not check"


def test_gemini25_budget_recordings(http: httpx.Client) -> None:
    cases = {
        "gemini/generate_content_thinking_budget_1024": ("gemini-2.5-flash", [["text", "thought"], ["text"]], 8),
        "gemini/generate_content_include_thoughts_false": ("gemini-2.5-pro-preview-03-25", [["text"]], 8),
        "gemini/generate_content_thinking_budget_0": ("gemini-2.5-flash", [["text"]], None),
        STREET + "gemini_budget": ("gemini-2.5-flash", [["text", "thought"], ["text"]], 8),
    }
    for rel, (model, shape, thoughts) in cases.items():
        body = http.post(gem(model), json=fixture(rel + ".request.json")).json()
        recorded = fixture(rel + ".json")
        parts = body["candidates"][0]["content"]["parts"]
        assert [sorted(p) for p in parts] == shape == [sorted(p) for p in recorded["candidates"][0]["content"]["parts"]]
        assert body["usageMetadata"].get("thoughtsTokenCount") == thoughts
        assert set(body["usageMetadata"]) <= set(recorded["usageMetadata"]) | {"promptTokensDetails"}
    plain = http.post(gem("gemini-2.0-flash"), json=fixture(STREET + "gemini_budget.request.json")).json()
    assert "thoughtsTokenCount" not in plain["usageMetadata"] and len(plain["candidates"][0]["content"]["parts"]) == 1


def test_gemini25_thought_stream_follows_the_recording(http: httpx.Client) -> None:
    rel = "gemini/stream_thinking_thought_parts"  # gemini-2.5-pro, includeThoughts
    recorded = events((FIXTURES / f"{rel}.sse").read_bytes())
    got = events(http.post(gem("gemini-2.5-pro", stream=True), json=fixture(f"{rel}.request.json")).content)

    def kinds(stream: list[dict[str, Any]]) -> list[bool]:
        flags = [bool(e["candidates"][0]["content"]["parts"][0].get("thought")) for e in stream]
        return [f for i, f in enumerate(flags) if i == 0 or flags[i - 1] != f]

    assert kinds(got) == kinds(recorded) == [True, False]
    assert all(e["usageMetadata"]["thoughtsTokenCount"] == 8 for e in got)
    assert "".join(e["candidates"][0]["content"]["parts"][0]["text"] for e in got[:8]).startswith("Mock thinking")
    assert [("finishReason" in e["candidates"][0]) for e in got][-2:] == [False, True]


BUDGET = STREET + "gemini_budget"
GEMINI_REFUSALS: list[tuple[str, str, dict[str, Any], str]] = [
    (STREET.replace("cross_the_street", "high_effort_web_search") + "gemini", "gemini-2.5-flash", {}, LEVEL_REFUSED),
    (STREET + "gemini", "gemini-3-flash-preview", {"thinkingBudget": 1024, "thinkingLevel": "low"}, BOTH_REFUSED),
    (STREET + "gemini", "gemini-3.1-pro-preview", {"thinking_level": "minimal"}, MINIMAL_REFUSED),
    (BUDGET, "gemini-2.5-pro", {"thinkingBudget": 52428}, "The thinking budget (52428) is invalid."),
    (BUDGET, "gemini-2.5-flash", {"thinkingBudget": 24577}, "The thinking budget (24577) is invalid."),
    (BUDGET, "gemini-2.5-pro", {"thinkingBudget": 0}, "The thinking budget (0) is invalid."),
    (BUDGET, "gemini-2.5-flash", {"thinkingBudget": "a lot"}, '(TYPE_INT32), "a lot"'),
    (STREET + "gemini", "mock-gemini-3-thinking", {"thinkingLevel": "EXTREME"}, "thinking_level' (type.googleapis"),
]


@pytest.mark.parametrize(("rel", "model", "change", "message"), GEMINI_REFUSALS)
def test_gemini_thinking_config_refusals(
    http: httpx.Client, rel: str, model: str, change: dict[str, Any], message: str
) -> None:
    request = fixture(rel + ".request.json")
    config = request.pop("generationConfig", None) or request.pop("generation_config", None) or {}
    config.pop("thinking_config", None)
    thinking = {**config.get("thinkingConfig", {}), **change}
    request["generationConfig"] = {**config, "thinkingConfig": thinking}
    error = refused(http.post(gem(model), json=request))
    assert error["status"] == "INVALID_ARGUMENT" and message in error["message"]
    if not change:  # the recorded request (thinking_level HIGH) is fine on its recorded Gemini 3 model
        assert http.post(gem("gemini-3-flash-preview"), json=request).status_code == 200


# --- OpenAI chat -------------------------------------------------------------------------------


def test_openai_reasoning_model_counts_reasoning_tokens(http: httpx.Client) -> None:
    request = fixture(STREET + "openai_chat_turn2.request.json")  # o3-mini, reasoning_effort high
    recorded = fixture(STREET + "openai_chat_turn2.json")
    for model in ("o3-mini", "mock-gpt-reasoning"):
        body = http.post(CHAT, json={**request, "model": model}).json()
        usage, message = body["usage"], body["choices"][0]["message"]
        assert set(usage) == set(recorded["usage"]) and "reasoning_content" not in message
        assert usage["completion_tokens_details"]["reasoning_tokens"] == 8 and usage["completion_tokens"] == 8 + 12
        assert usage["total_tokens"] == usage["prompt_tokens"] + 20
    off = http.post(CHAT, json={**request, "reasoning_effort": "none"}).json()
    assert off["usage"]["completion_tokens_details"]["reasoning_tokens"] == 0
    streamed = {**request, "stream": True, "stream_options": {"include_usage": True}}
    final = events(http.post(CHAT, json=streamed).content)[-1]
    assert final["usage"]["completion_tokens_details"]["reasoning_tokens"] == 8
    plain = http.post(CHAT, json={**request, "model": "gpt-4o-mini", "temperature": 0.2}).json()
    assert plain["usage"]["completion_tokens_details"]["reasoning_tokens"] == 0


def test_openai_reasoning_model_refusals(http: httpx.Client) -> None:
    request = fixture(STREET + "openai_chat_turn2.request.json")
    error = refused(http.post(CHAT, json={**request, "temperature": 0.2}))
    message = "Unsupported value: 'temperature' does not support 0.2 with this model. Only the default (1) value is"
    assert error["message"] == message + " supported."
    assert (error["param"], error["code"]) == ("temperature", "unsupported_value")
    assert error["type"] == "invalid_request_error"
    assert http.post(CHAT, json={**request, "temperature": 1}).status_code == 200
    error = refused(http.post(CHAT, json={**request, "reasoning_effort": "extreme"}))
    assert (error["param"], error["code"]) == ("reasoning_effort", "invalid_value")
    assert error["message"].startswith("Invalid value: 'extreme'. Supported values are: 'none', 'minimal'")
    deepseek = {**request, "model": "mock-deepseek-reasoner", "temperature": 0.2}
    assert http.post(CHAT, json=deepseek).status_code == 200, "DeepSeek ignores sampling settings"


def test_deepseek_style_reasoning_content(http: httpx.Client) -> None:
    request = {**fixture(STREET + "openai_chat_turn2.request.json"), "model": "deepseek-reasoner"}
    message = http.post(CHAT, json=request).json()["choices"][0]["message"]
    assert message["reasoning_content"].startswith("Mock thinking about: Considering the way")
    chunks = events(http.post(CHAT, json={**request, "stream": True}).content)
    deltas = [c["choices"][0]["delta"] for c in chunks if c["choices"]]
    thought = "".join(d.get("reasoning_content") or "" for d in deltas)
    answer = "".join(d.get("content") or "" for d in deltas)
    assert (thought, answer) == (message["reasoning_content"], message["content"])
    shown = [d for d in deltas if d.get("reasoning_content") or d.get("content")]
    order = ["r" if d.get("reasoning_content") else "c" for d in shown]
    assert order == sorted(order, reverse=True) and order[0] == "r", "the reasoning comes first"
    tools = fixture("openai/chat_completion_tool_call.request.json")
    called = {**tools, "model": "mock-deepseek-reasoner", "stream": True}
    deltas = [c["choices"][0]["delta"] for c in events(http.post(CHAT, json=called).content) if c["choices"]]
    first_call = next(i for i, d in enumerate(deltas) if d.get("tool_calls"))
    assert all(d.get("reasoning_content") is not None for d in deltas[:first_call]) and first_call > 1


# --- cache usage next to reasoning -------------------------------------------------------------


def test_cache_usage_next_to_reasoning(http: httpx.Client) -> None:
    cached = fixture("anthropic/messages_cache_control_top_level.request.json")
    cached |= {"model": "mock-claude-adaptive", "thinking": {"type": "adaptive"}}
    cached["cache_control"] = {"type": "ephemeral", "ttl": "1h"}
    first = http.post(MSG, json=cached, headers=HEADERS).json()["usage"]
    written = first["cache_creation_input_tokens"]
    assert written > 0
    assert first["cache_creation"] == {"ephemeral_5m_input_tokens": 0, "ephemeral_1h_input_tokens": written}
    again = http.post(MSG, json=cached, headers=HEADERS).json()["usage"]
    assert (again["cache_read_input_tokens"], again["cache_creation_input_tokens"]) == (written, 0)
    assert again["output_tokens_details"] == {"thinking_tokens": 8}
    long = {"model": "mock-gpt-reasoning", "messages": [{"role": "user", "content": LONG}]}
    usages = [http.post(CHAT, json=long).json()["usage"] for _ in range(2)]
    assert [u["prompt_tokens_details"]["cached_tokens"] for u in usages] == [0, 1280]
    assert usages[1]["completion_tokens_details"]["reasoning_tokens"] == 8
    gemini = fixture("gemini/generate_content_cached_content.request.json")
    usage = http.post(gem("mock-gemini-3-thinking"), json=gemini).json()["usageMetadata"]
    assert usage["cachedContentTokenCount"] > 0 and usage["thoughtsTokenCount"] == 8
    assert set(usage) <= set(fixture("gemini/generate_content_cached_content.json")["usageMetadata"])
