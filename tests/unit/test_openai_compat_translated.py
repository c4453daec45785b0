"""What an OpenAI-format upstream gets of another dialect's reasoning and caching settings:
a translated effort only for a model that reasons, and no ``cache_control`` anywhere (the
Messages dialect now keeps it on every block; OpenAI caches prompts by itself)."""

from __future__ import annotations

import orjson
import pytest

from gateway.canonical import JSON, REASONING_TRANSLATED
from gateway.dialects.anthropic import parse_messages
from gateway.dialects.gemini import parse_generate
from gateway.providers.base import Target
from gateway.providers.openai_compat import OpenAICompatProvider, reasoning_model
from gateway.providers.openai_responses import OpenAIResponsesProvider
from tests.unit.fixtures import load_json, sent_body


def _target(model: str) -> Target:
    return Target(provider="openai", model=model, base_url="http://127.0.0.1:9/v1", api_key="k")


def _sent(req: JSON, model: str) -> JSON:
    return sent_body(OpenAICompatProvider(), req, _target(model))


@pytest.mark.parametrize(
    ("model", "reasons"),
    [
        ("o3", True),
        ("o4-mini", True),
        ("gpt-5.1-codex", True),
        ("gpt-5-mini", True),
        ("gpt-5.1-chat-latest", False),
        ("gpt-5-chat-latest", False),
        ("deepseek-reasoner", True),
        ("deepseek/deepseek-r1-0528", True),
        ("qwen/qwq-32b", True),
        ("openai/gpt-oss-120b", True),
        ("qwen3-235b-a22b-thinking-2507", True),
        ("gpt-4o", False),
        ("gpt-4.1-mini", False),
        ("meta-llama/llama-3.1-8b-instruct", False),
        ("mock-gpt", False),
        ("deepseek-v3", False),
    ],
)
def test_reasoning_models_are_known_by_name(model: str, reasons: bool) -> None:
    assert reasoning_model(model) is reasons


def test_a_translated_effort_goes_only_to_a_model_that_reasons() -> None:
    body = load_json("anthropic/messages_thinking_enabled_tool_use.request.json")
    req = parse_messages(body)
    assert req["reasoning_effort"] and req[REASONING_TRANSLATED] is True
    assert "reasoning_effort" not in _sent(req, "gpt-4o"), "gpt-4o refuses the field"
    reasoning = _sent(req, "gpt-5.1")
    assert reasoning["reasoning_effort"] == req["reasoning_effort"]
    for key in (REASONING_TRANSLATED, "reasoning_budget", "include_reasoning", "cache_control"):
        assert key not in reasoning
    own = {"model": "m", "messages": [{"role": "user", "content": "hi"}], "reasoning_effort": "low"}
    assert _sent(own, "gpt-4o")["reasoning_effort"] == "low", "an OpenAI client's own effort always goes"
    responses = OpenAIResponsesProvider().chat_request(req, _target("gpt-4o"), stream=False)
    assert b'"reasoning"' not in (responses.body or b"")


def test_a_gemini_thinking_config_is_translated_the_same_way() -> None:
    body = load_json("gemini/generate_content_thinking_budget_1024.request.json")
    req = parse_generate(body, "gemini-2.5-flash", stream=False)
    assert req[REASONING_TRANSLATED] is True and req["reasoning_effort"] == "minimal"
    assert "reasoning_effort" not in _sent(req, "gpt-4.1")
    assert _sent(req, "o4-mini")["reasoning_effort"] == "minimal"


def test_cache_control_is_taken_off_everything() -> None:
    body = load_json("anthropic/messages_cache_control_block_turn1.request.json")
    body["tools"] = [{"name": "f", "input_schema": {"type": "object"}, "cache_control": {"type": "ephemeral"}}]
    body["cache_control"] = {"type": "ephemeral", "ttl": "1h"}
    req = parse_messages(body)
    raw = orjson.dumps(req)
    assert raw.count(b"cache_control") >= 3, "the canonical request keeps them (for Anthropic)"
    sent = _sent(req, "gpt-4o")
    assert b"cache_control" not in orjson.dumps(sent)
    assert sent["messages"][-1]["content"], "the marked content itself is kept"
    assert b"cache_control" in orjson.dumps(req), "the request itself is not changed"
