"""The mock's pure parts: generated content, config loading, behaviour layering, fault decisions."""

from __future__ import annotations

import base64
import math
import random
import struct
from pathlib import Path
from typing import Any

import pytest

from gateway.mock import Behaviour, MockConfig, MockConfigError, load_mock_config
from gateway.mock.behaviour import header_layer
from gateway.mock.content import (
    Prompt,
    ToolSpec,
    chunks,
    embedding,
    embedding_base64,
    fragments,
    generate,
    reply_words,
    sample_object,
    text_of,
)
from gateway.mock.state import MockState

WEATHER = {
    "type": "object",
    "properties": {
        "city": {"type": "string"},
        "days": {"type": "integer"},
        "metric": {"type": "boolean"},
        "tags": {"type": "array", "items": {"type": "string"}},
        "where": {"type": "object", "properties": {"lat": {"type": "number"}}, "required": ["lat"]},
        "note": {"type": "string"},
    },
    "required": ["city", "days", "metric", "tags", "where"],
}


def test_sample_object_fills_required_properties_by_type() -> None:
    assert sample_object(WEATHER) == {"city": "mock", "days": 1, "metric": True, "tags": [], "where": {"lat": 1}}


def test_sample_object_handles_refs_enums_nullables_and_gemini_types() -> None:
    schema: dict[str, Any] = {
        "$defs": {"Unit": {"enum": ["celsius", "kelvin"]}},
        "type": "OBJECT",
        "properties": {
            "unit": {"$ref": "#/$defs/Unit"},
            "maybe": {"anyOf": [{"type": "null"}, {"type": "integer"}]},
            "pair": {"type": ["null", "string"]},
            "fixed": {"const": 7},
            "loose": {"type": "object"},
            "name": {"type": "STRING"},
        },
        "required": ["unit", "maybe", "pair", "fixed", "loose", "name"],
    }
    assert sample_object(schema) == {
        "unit": "celsius",
        "maybe": 1,
        "pair": "mock",
        "fixed": 7,
        "loose": {},
        "name": "mock",
    }
    assert sample_object(None) == {}
    assert sample_object({"type": "object"}) == {}


def test_reply_words_pads_and_cuts_deterministically() -> None:
    assert reply_words("m1", "hello there", 8) == ["Mock", "reply", "from", "m1:", "hello", "there", "lorem", "ipsum"]
    assert reply_words("m1", "one two three four five", 5) == ["Mock", "reply", "from", "m1:", "one"]
    assert reply_words("m1", "anything", 0) == []


def test_korean_user_message_gets_a_korean_reply() -> None:
    words = reply_words("m1", "안녕하세요 날씨 어때요", 6)
    assert words == ["모의", "응답입니다:", "안녕하세요", "날씨", "어때요", "그리고"]


def test_generate_text_counts_words_and_honours_max_tokens() -> None:
    prompt = Prompt(model="m", prompt_tokens=4, last_user="tell me a story")
    reply = generate(prompt, Behaviour(output_tokens=10))
    assert reply.text == "Mock reply from m: tell me a story lorem ipsum"
    assert (reply.finish, reply.prompt_tokens, reply.completion_tokens, reply.total_tokens) == ("stop", 4, 10, 14)
    cut = generate(Prompt(model="m", prompt_tokens=4, last_user="x", max_tokens=3), Behaviour())
    assert (cut.text, cut.finish, cut.completion_tokens) == ("Mock reply from", "length", 3)
    fixed = generate(prompt, Behaviour(reply="Fixed  answer here"))
    assert (fixed.text, fixed.completion_tokens) == ("Fixed  answer here", 3)


def test_generate_tool_call_choice() -> None:
    tools = (ToolSpec("first", {}), ToolSpec("weather", WEATHER))
    auto = generate(Prompt(model="m", prompt_tokens=1, tools=tools), Behaviour())
    assert auto.tool_call is not None and auto.tool_call.name == "first" and auto.finish == "tool"
    forced = generate(Prompt(model="m", prompt_tokens=1, tools=tools, forced_tool="weather"), Behaviour())
    assert forced.tool_call is not None and forced.tool_call.arguments["city"] == "mock"
    none = generate(Prompt(model="m", prompt_tokens=1, tools=tools, tool_mode="none"), Behaviour())
    assert none.tool_call is None and none.text.startswith("Mock reply")
    after = generate(Prompt(model="m", prompt_tokens=1, tools=tools, after_tool_result=True), Behaviour())
    assert after.tool_call is None
    required = Prompt(model="m", prompt_tokens=1, tools=tools, tool_mode="required", after_tool_result=True)
    assert generate(required, Behaviour()).tool_call is not None


def test_generate_json_mode() -> None:
    plain = generate(Prompt(model="m", prompt_tokens=1, json_mode=True), Behaviour())
    assert plain.text == '{"result":"mock"}'
    shaped = generate(Prompt(model="m", prompt_tokens=1, json_mode=True, json_schema=WEATHER), Behaviour())
    assert shaped.text.startswith('{"city":"mock","days":1')


def test_chunks_and_fragments_rejoin() -> None:
    assert chunks("The capital  of UK") == ["The", " capital", "  of", " UK"]
    text = '{"city":"mock","days":1}'
    assert len(fragments(text)) == 3
    assert "".join(fragments(text)) == text
    assert fragments("") == [""]


def test_text_of_collects_nested_text() -> None:
    blocks = [{"type": "text", "text": "a b"}, {"type": "tool_result", "content": [{"type": "text", "text": "c"}]}]
    assert text_of(blocks) == "a b c"
    assert text_of({"parts": [{"text": "x"}, {"inlineData": {}}]}) == "x"


def test_embedding_is_deterministic_unit_length_and_base64_round_trips() -> None:
    vec = embedding("hello", 16)
    assert len(vec) == 16
    assert math.isclose(math.sqrt(sum(v * v for v in vec)), 1.0, rel_tol=1e-9)
    assert vec == embedding("hello", 16)
    assert vec != embedding("world", 16)
    decoded = struct.unpack("<16f", base64.b64decode(embedding_base64(vec)))
    assert decoded == pytest.approx(vec, abs=1e-6)


def test_load_mock_config_defaults_and_file(tmp_path: Path) -> None:
    assert load_mock_config(None) == MockConfig()
    path = tmp_path / "mock.yaml"
    path.write_text(
        "default: {latency_ms: 5}\nmodels:\n  gpt-4.1: {error_status: 529, retry_after: 2}\nembedding_dims: 8\n"
    )
    config = load_mock_config(str(path))
    assert config.default.latency_ms == 5
    assert config.models["gpt-4.1"].error_status == 529
    assert config.embedding_dims == 8


def test_load_mock_config_errors_name_the_bad_value(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("models:\n  m1: {error_stauts: 500}\n")
    with pytest.raises(MockConfigError, match=r"models\.m1\.error_stauts"):
        load_mock_config(str(path))
    path.write_text("- a list\n")
    with pytest.raises(MockConfigError, match="mapping"):
        load_mock_config(str(path))
    with pytest.raises(MockConfigError):
        load_mock_config(str(tmp_path / "missing.yaml"))


def test_header_layer_parses_and_rejects() -> None:
    assert header_layer([("accept", "x")]) is None
    layer = header_layer([("x-mock-error-status", "429"), ("x-mock-retry-after", "1.5"), ("x-mock-reply", "hi")])
    assert layer == {"error_status": 429, "retry_after": 1.5, "reply": "hi"}
    assert header_layer([("x-mock-error-status", "none")]) == {"error_status": None}
    with pytest.raises(ValueError, match="unknown mock header"):
        header_layer([("x-mock-eror-status", "500")])
    with pytest.raises(ValueError, match="error_status"):
        header_layer([("x-mock-error-status", "abc")])


def test_resolve_precedence_header_over_runtime_over_config() -> None:
    config = MockConfig(
        default=Behaviour(latency_ms=1, output_tokens=3),
        models={"m": Behaviour(error_status=500, output_tokens=4)},
    )
    state = MockState(config)
    base = state.resolve("m", [])
    assert (base.latency_ms, base.output_tokens, base.error_status) == (1, 4, 500)
    assert state.resolve("other", []).error_status is None
    state.set_override("*", Behaviour(error_status=502, ttft_ms=9))
    state.set_override("m", Behaviour(error_status=429))
    layered = state.resolve("m", [])
    assert (layered.error_status, layered.ttft_ms, layered.output_tokens) == (429, 9, 4)
    assert state.resolve("m", [("x-mock-error-status", "503")]).error_status == 503
    assert state.resolve("other", []).error_status == 502
    state.reset()
    assert state.resolve("m", []).error_status == 500


def test_fault_status_fail_times_rate_and_always() -> None:
    state = MockState(MockConfig(), rng=random.Random(1))
    countdown = Behaviour(fail_times=2)
    assert [state.fault_status("m", countdown) for _ in range(4)] == [503, 503, None, None]
    assert state.fault_status("n", Behaviour(fail_times=1, error_status=429)) == 429
    state.set_override("m", Behaviour())
    assert state.fault_status("m", countdown) == 503
    assert {state.fault_status("m", Behaviour(error_rate=1.0)) for _ in range(20)} == {500}
    assert {state.fault_status("m", Behaviour(error_rate=0.0, error_status=429)) for _ in range(20)} == {None}
    assert state.fault_status("m", Behaviour(error_status=529)) == 529
    assert state.fault_status("m", Behaviour()) is None
