"""Reasoning on the Anthropic provider (issue 12, item 1), request side: effort/budget ->
``thinking`` and thinking blocks sent back in the history, on the recorded fixtures in
shared/fixtures (answers and streams: test_anthropic_reasoning_stream.py)."""

from __future__ import annotations

import copy
from typing import Any

import orjson
import pytest
from pydantic import ValidationError

from gateway.canonical import JSON
from gateway.config.settings import Deployment
from gateway.errors import InvalidRequest
from gateway.providers.anthropic_reasoning import adaptive_only, model_version, thinking_style
from tests.unit.fixtures import load_json, user, without
from tests.unit.test_provider_anthropic import PROVIDER, make_target, openai_tool, wire

STREET = "cross_provider/reasoning/cross_the_street"


def canonical_history(request: JSON) -> list[JSON]:
    """The user text messages of a recorded Anthropic request, as canonical messages."""
    return [user(m["content"][0]["text"]) for m in request["messages"] if m["role"] == "user"]


def answer_message(rel: str, model: str = "claude-sonnet-4-5") -> JSON:
    """The canonical assistant message our provider makes of a recorded answer."""
    message: JSON = PROVIDER.chat_response(load_json(rel), make_target(model))["choices"][0]["message"]
    return message


# --- the model rule -----------------------------------------------------------


@pytest.mark.parametrize(
    ("model", "version", "style", "only"),
    [
        ("claude-3-7-sonnet-20250219", (3, 7), "budget", False),
        ("claude-3-opus-20240229", (3, 0), "budget", False),
        ("claude-sonnet-4-20250514", (4, 0), "budget", False),
        ("claude-sonnet-4-0", (4, 0), "budget", False),
        ("claude-opus-4-1-20250805", (4, 1), "budget", False),
        ("claude-sonnet-4-5", (4, 5), "budget", False),
        ("claude-haiku-4-5-20251001", (4, 5), "budget", False),
        ("claude-opus-4-6", (4, 6), "adaptive", False),
        ("anthropic.claude-sonnet-4-6", (4, 6), "adaptive", False),
        ("claude-opus-4-7", (4, 7), "adaptive", True),
        ("anthropic/claude-4.7-opus", (4, 7), "adaptive", True),
        ("claude-opus-4-8@20260601", (4, 8), "adaptive", True),
        ("claude-opus-5", (5, 0), "adaptive", True),
        ("claude-sonnet-5-5", (5, 5), "adaptive", True),
        ("claude-mythos-preview", None, "adaptive", True),
        ("claude-fable-5", (5, 0), "adaptive", True),
        ("my-proxy-model", None, "budget", False),
    ],
)
def test_model_rule(model: str, version: tuple[int, int] | None, style: str, only: bool) -> None:
    assert model_version(model) == version
    assert thinking_style("auto", model) == style
    assert adaptive_only(model) is only
    assert thinking_style("budget", model) == "budget" and thinking_style("adaptive", model) == "adaptive"


def test_the_deployment_setting_is_validated_and_defaults_to_auto() -> None:
    dep = Deployment(provider="anthropic", model="claude-opus-4-6")
    assert (dep.reasoning_style, dep.auto_cache) == ("auto", False)
    assert Deployment(provider="anthropic", model="m", reasoning_style="budget").reasoning_style == "budget"
    with pytest.raises(ValidationError):
        Deployment.model_validate({"provider": "anthropic", "model": "m", "reasoning_style": "sometimes"})


# --- request: recorded ground truth --------------------------------------------


def test_budget_request_matches_the_recorded_cross_the_street_request() -> None:
    recorded = load_json(f"{STREET}/anthropic.request.json")
    req = {"messages": canonical_history(recorded), "reasoning_effort": "minimal", "reasoning_budget": 1024}
    assert wire(req, model=recorded["model"]) == without(recorded, "stream")
    # the effort alone gives the same budget (EFFORT_BUDGETS["minimal"])
    assert wire(without(req, "reasoning_budget"), model=recorded["model"]) == without(recorded, "stream")


def test_high_effort_budget_and_max_tokens_match_the_recorded_request() -> None:
    recorded = load_json("cross_provider/reasoning/high_effort_web_search/anthropic.request.json")
    req = {"messages": canonical_history(recorded), "reasoning_effort": "high", "max_tokens": 20000}
    # the recorded web_search server tool has no canonical form
    assert wire(req, model=recorded["model"]) == without(recorded, "stream", "tools")
    # without a max_tokens above the budget, the budget is added to it (4096 + 16384)
    body = wire(without(req, "max_tokens"), model=recorded["model"])
    assert (body["thinking"]["budget_tokens"], body["max_tokens"]) == (16384, 20480)


def test_budget_with_a_tool_matches_the_recorded_thinking_tool_request() -> None:
    recorded = load_json("anthropic/messages_thinking_enabled_tool_use.request.json")
    req = {
        "messages": canonical_history(recorded),
        "tools": [openai_tool(t) for t in recorded["tools"]],
        "tool_choice": "auto",
        "reasoning_effort": "low",
        "reasoning_budget": 3000,
    }
    body = wire(req, model=recorded["model"])
    # an empty description is left out (an OpenAI tool without one)
    expected = without(recorded, "stream")
    expected["tools"] = [without(t, "description") for t in recorded["tools"]]
    assert body == expected


def test_adaptive_request_matches_the_recorded_adaptive_requests() -> None:
    plain = load_json("anthropic/messages_adaptive_thinking.request.json")
    body = wire({"messages": canonical_history(plain), "reasoning_effort": "medium"}, model=plain["model"])
    assert without(body, "output_config") == without(plain, "stream")
    assert body["output_config"] == {"effort": "medium"}
    effort = load_json("anthropic/messages_effort_low_without_thinking.request.json")
    body = wire({"messages": canonical_history(effort), "reasoning_effort": "low"}, model=effort["model"])
    assert body["output_config"] == effort["output_config"] and body["thinking"] == {"type": "adaptive"}


def test_xhigh_is_sent_as_max_with_the_display_asked_for() -> None:
    recorded = load_json("anthropic/messages_adaptive_thinking_effort_xhigh.request.json")
    req = {"messages": canonical_history(recorded), "reasoning_effort": "xhigh", "include_reasoning": True}
    body = wire(req, model=recorded["model"])
    assert without(body, "output_config") == without(recorded, "stream", "output_config")
    assert body["output_config"] == {"effort": "max"}  # the documented mapping (4.6 refuses xhigh)
    rejected = load_json("anthropic/error_400_invalid_request.request.json")
    body = wire({"messages": canonical_history(rejected), "reasoning_effort": "xhigh"}, model=rejected["model"])
    assert body["output_config"]["effort"] == "max" != rejected["output_config"]["effort"]


def test_opus_4_7_never_gets_sampling_parameters() -> None:
    live = load_json("anthropic/opus_4_7_temperature_unsupported_live_vercel.json")
    sent = live["requestBody"]
    req = {
        "messages": [{"role": "user", "content": sent["messages"][0]["content"]}],
        "max_tokens": 16,
        "temperature": live["inputTemperature"],
        "top_p": 0.5,
        "top_k": 3,
    }
    assert wire(req, model=sent["model"]) == sent


# --- request: the rules --------------------------------------------------------


@pytest.mark.parametrize(
    ("effort", "expected"),
    [("minimal", "low"), ("low", "low"), ("medium", "medium"), ("high", "high"), ("xhigh", "max")],
)
def test_adaptive_effort_mapping(effort: str, expected: str) -> None:
    body = wire({"messages": [user("q")], "reasoning_effort": effort}, model="claude-opus-4-6")
    assert (body["thinking"], body["output_config"]) == ({"type": "adaptive"}, {"effort": expected})
    assert body["max_tokens"] == 4096


@pytest.mark.parametrize(("effort", "budget"), [("minimal", 1024), ("low", 2048), ("medium", 8192), ("xhigh", 32768)])
def test_budget_effort_mapping(effort: str, budget: int) -> None:
    body = wire({"messages": [user("q")], "reasoning_effort": effort, "max_tokens": 40000})
    assert body["thinking"] == {"type": "enabled", "budget_tokens": budget}
    assert body["max_tokens"] == 40000


def test_budget_has_a_floor_and_max_tokens_is_raised_above_it() -> None:
    body = wire({"messages": [user("q")], "reasoning_effort": "minimal", "reasoning_budget": 10, "max_tokens": 500})
    assert body["thinking"] == {"type": "enabled", "budget_tokens": 1024}
    assert body["max_tokens"] == 1524
    body = wire({"messages": [user("q")], "reasoning_budget": 5000, "max_completion_tokens": 5000})
    assert (body["thinking"]["budget_tokens"], body["max_tokens"]) == (5000, 10000)


def test_a_budget_on_an_adaptive_deployment_becomes_its_effort() -> None:
    body = wire({"messages": [user("q")], "reasoning_budget": 20000}, model="claude-opus-5")
    assert body["output_config"] == {"effort": "high"}  # budget_to_effort(20000) == "high"


@pytest.mark.parametrize("style", ["adaptive", "budget"])
def test_the_deployment_style_wins_over_the_model_name(style: str) -> None:
    body = wire({"messages": [user("q")], "reasoning_effort": "high"}, model="custom-name", reasoning_style=style)
    assert body["thinking"]["type"] == ("adaptive" if style == "adaptive" else "enabled")


@pytest.mark.parametrize(
    "extra",
    [{"reasoning_effort": "none"}, {"reasoning_budget": 0}, {"reasoning_effort": "high", "reasoning_budget": 0}, {}],
)
@pytest.mark.parametrize("model", ["claude-sonnet-4-5", "claude-opus-4-6"])
def test_reasoning_off_sends_no_thinking(extra: JSON, model: str) -> None:
    body = wire({"messages": [user("q")], "temperature": 0.3, **extra}, model=model)
    assert "thinking" not in body and "output_config" not in body
    assert body["temperature"] == 0.3


def test_thinking_drops_sampling_and_a_forced_tool_choice() -> None:
    tools = [openai_tool({"name": "f", "input_schema": {"type": "object"}})]
    forced = {"type": "function", "function": {"name": "f"}}
    req: JSON = {
        "messages": [user("q")],
        "tools": tools,
        "tool_choice": forced,
        "temperature": 0.2,
        "top_k": 5,
        "top_p": 0.5,
        "reasoning_effort": "low",
    }
    body = wire(req)
    assert {"temperature", "top_k", "top_p"}.isdisjoint(body)
    assert body["tool_choice"] == {"type": "auto"}
    body = wire(req | {"tool_choice": "required", "parallel_tool_calls": False, "top_p": 0.97})
    assert body["tool_choice"] == {"type": "auto", "disable_parallel_tool_use": True}
    assert body["top_p"] == 0.97  # 0.95..1 is allowed with thinking
    assert wire(req | {"tool_choice": "none"})["tool_choice"] == {"type": "none"}
    assert wire(without(req, "reasoning_effort"))["tool_choice"] == {"type": "tool", "name": "f"}


@pytest.mark.parametrize(("flag", "display"), [(True, "summarized"), (False, "omitted")])
def test_include_reasoning_sets_the_display(flag: bool, display: str) -> None:
    req = {"messages": [user("q")], "reasoning_effort": "low", "include_reasoning": flag}
    assert wire(req, model="claude-opus-4-7")["thinking"]["display"] == display
    assert wire(req, model="claude-opus-4-6")["thinking"]["display"] == display
    unset = without(req, "include_reasoning")  # 4.7 on omit the text by default: the gateway asks for it
    assert wire(unset, model="claude-opus-4-7")["thinking"]["display"] == "summarized"
    assert "display" not in wire(unset, model="claude-opus-4-6")["thinking"], "4.6 keeps its default"
    # budget-style models always summarize and get no display field
    assert wire(req, model="claude-sonnet-4-5")["thinking"] == {"type": "enabled", "budget_tokens": 2048}


def test_drop_params_can_remove_thinking() -> None:
    body = wire({"messages": [user("q")], "reasoning_effort": "high"}, drop_params=frozenset({"reasoning_effort"}))
    assert "thinking" not in body and body["max_tokens"] == 4096


@pytest.mark.parametrize(
    ("extra", "param", "code"),
    [
        ({"reasoning_effort": 3}, "reasoning_effort", "invalid_type"),
        ({"reasoning_effort": "extreme"}, "reasoning_effort", "invalid_value"),
        ({"reasoning_budget": "1024"}, "reasoning_budget", "invalid_type"),
        ({"reasoning_budget": True}, "reasoning_budget", "invalid_type"),
        ({"reasoning_budget": -1}, "reasoning_budget", "invalid_value"),
        ({"include_reasoning": "yes"}, "include_reasoning", "invalid_type"),
    ],
)
def test_invalid_reasoning_settings(extra: JSON, param: str, code: str) -> None:
    with pytest.raises(InvalidRequest) as exc:
        wire({"messages": [user("q")], **extra})
    assert (exc.value.param, exc.value.code, exc.value.http_status) == (param, code, 400)


# --- history --------------------------------------------------------------------


def test_signed_thinking_goes_back_verbatim_before_the_tool_use() -> None:
    # Round trip: our canonical answer of turn 1 becomes the history of turn 2.
    recorded = load_json("anthropic/messages_thinking_signature_replay_tool_result.request.json")
    assistant = answer_message("anthropic/messages_thinking_enabled_tool_use.json")
    call_id = assistant["tool_calls"][0]["id"]
    question = user(recorded["messages"][0]["content"][0]["text"])
    req = {
        "messages": [question, assistant, {"role": "tool", "tool_call_id": call_id, "content": "Mexico"}],
        "tools": [openai_tool(t) for t in recorded["tools"]],
        "tool_choice": "auto",
        "reasoning_budget": 3000,
        "reasoning_effort": "low",
    }
    raw = PROVIDER.chat_request(req, make_target(recorded["model"]), stream=False).body
    assert raw is not None
    body = orjson.loads(raw)
    expected = copy.deepcopy(recorded["messages"])
    expected[2]["content"][0].pop("is_error")  # canonical tool messages carry no error flag
    assert body["messages"] == expected
    signature = recorded["messages"][1]["content"][0]["signature"]
    assert orjson.dumps(signature) in raw  # byte for byte on the wire


def test_redacted_thinking_goes_back_unchanged() -> None:
    recorded = load_json("anthropic/messages_redacted_thinking_replay.request.json")
    assistant = answer_message("anthropic/messages_redacted_thinking.json")
    assert "reasoning_content" not in assistant
    messages = [user(recorded["messages"][0]["content"][0]["text"]), assistant, user("What was that?")]
    body = wire(
        {"messages": messages, "reasoning_budget": 1024, "reasoning_effort": "minimal"}, model=recorded["model"]
    )
    assert body == without(recorded, "stream")


def test_cross_the_street_turn_two_replays_the_thinking() -> None:
    recorded = load_json(f"{STREET}/anthropic_turn2.request.json")
    assistant = answer_message(f"{STREET}/anthropic.json")
    texts = canonical_history(recorded)
    req = {"messages": [texts[0], assistant, texts[1]], "reasoning_budget": 1024, "reasoning_effort": "minimal"}
    assert wire(req, model=recorded["model"]) == without(recorded, "stream")


def test_unsigned_thinking_and_bare_reasoning_content_are_dropped() -> None:
    blocks: list[Any] = [
        {"type": "thinking", "thinking": "kept", "signature": "sig-1"},
        {"type": "thinking", "thinking": "no signature"},
        {"type": "thinking", "thinking": "empty signature", "signature": ""},
        {"type": "thinking", "thinking": "bad signature", "signature": 7},
        {"type": "redacted_thinking", "data": "opaque"},
        {"type": "redacted_thinking", "data": ""},
        {"type": "summary", "text": "x"},
        "not a block",
    ]
    assistant = {"role": "assistant", "content": "answer", "reasoning_content": "bare", "thinking_blocks": blocks}
    body = wire({"messages": [user("q"), assistant, user("again")]})
    assert body["messages"][1]["content"] == [blocks[0], blocks[4], {"type": "text", "text": "answer"}]
    only_bare = {"role": "assistant", "content": "answer", "reasoning_content": "bare"}
    assert wire({"messages": [user("q"), only_bare]})["messages"][1]["content"] == [{"type": "text", "text": "answer"}]


def test_thinking_blocks_must_be_a_list() -> None:
    assistant = {"role": "assistant", "content": "a", "thinking_blocks": {"type": "thinking"}}
    with pytest.raises(InvalidRequest) as exc:
        wire({"messages": [user("q"), assistant]})
    assert (exc.value.param, exc.value.code) == ("messages[1].thinking_blocks", "invalid_type")


def test_a_tool_call_without_signed_thinking_is_continued_without_thinking() -> None:
    call = {"id": "toolu_1", "type": "function", "function": {"name": "get_user_country", "arguments": "{}"}}
    unsigned = {"role": "assistant", "content": "Let me look.", "tool_calls": [call], "reasoning_content": "bare"}
    result = {"role": "tool", "tool_call_id": "toolu_1", "content": "Mexico"}
    req: JSON = {"messages": [user("q"), unsigned, result], "reasoning_effort": "high", "temperature": 0.5}
    for model in ("claude-sonnet-4-5", "claude-opus-4-6"):
        body = wire(req, model=model)
        assert "thinking" not in body and "output_config" not in body
        assert (body["max_tokens"], body["temperature"]) == (4096, 0.5)
    signed = unsigned | {"thinking_blocks": [{"type": "redacted_thinking", "data": "opaque"}]}
    assert wire(req | {"messages": [user("q"), signed, result]})["thinking"]["type"] == "enabled"
    # a later plain answer ends the tool loop: thinking is on again
    later = [user("q"), unsigned, result, {"role": "assistant", "content": "Mexico City."}, user("and?")]
    assert wire(req | {"messages": later})["thinking"]["type"] == "enabled"
