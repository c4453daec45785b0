"""gateway.dialects.responses: Responses bodies (and stored history) parsed to canonical requests.

Driven by the recorded requests/responses in shared/fixtures/responses and
cross_provider/reasoning; small hand-written bodies only for bad input. Rendering,
apply_native and streams: test_dialect_responses_render.py / _stream.py.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest

from gateway.canonical import JSON
from gateway.dialects.responses import input_items, output_items, parse_responses
from gateway.errors import InvalidRequest, Untranslatable
from gateway.providers.anthropic import AnthropicProvider
from gateway.providers.base import Provider, Target
from gateway.providers.gemini import GeminiProvider
from gateway.providers.openai_compat import OpenAICompatProvider
from tests.unit.fixtures import FIXTURES, load_json

PROVIDERS: dict[str, Provider] = {
    "openai": OpenAICompatProvider(),
    "anthropic": AnthropicProvider(),
    "gemini": GeminiProvider(),
}
# Each continuation fixture and the earlier exchange its history comes from. The
# function_call_output_only turn followed a retry (interaction 2, not recorded) of
# new_user_turn, so its call_id differs from the one new_user_turn returned.
CONTINUATIONS = {
    "create_previous_response_id_function_call_output_only": "create_previous_response_id_new_user_turn",
}
STREET = "cross_provider/reasoning/cross_the_street/"


def responses(name: str) -> Any:
    return load_json(f"responses/{name}")


def history_of(earlier: str) -> list[JSON]:
    """The items a continuation of the recorded exchange ``earlier`` replays."""
    return input_items(responses(f"{earlier}.request.json")) + output_items(responses(f"{earlier}.json"))


def canonical(provider: str, rel: str) -> JSON:
    return PROVIDERS[provider].chat_response(load_json(rel), Target(provider, "m", "http://upstream"))


def roles(req: JSON) -> list[str]:
    return [m["role"] for m in req["messages"]]


REFUSED = {
    "stream_web_search_cached_tokens.request.json": "tools.0.type",  # a built-in tool
    "error_400_temperature_below_min_on_stream_request.request.json": "temperature",
}
REQUESTS = sorted(p.name for p in (FIXTURES / "responses").glob("*.request.json") if p.name not in REFUSED)


@pytest.mark.parametrize("name", REQUESTS)
def test_every_recorded_request_parses(name: str) -> None:
    body = responses(name)
    before = copy.deepcopy(body)
    stem = name.removesuffix(".request.json")
    history = history_of(CONTINUATIONS[stem]) if stem in CONTINUATIONS else []
    req = parse_responses(body, history)
    assert body == before
    assert req["model"] == body["model"]
    assert req["messages"] and all(isinstance(m["role"], str) for m in req["messages"])
    if body.get("instructions"):
        assert req["messages"][0] == {"role": "system", "content": body["instructions"]}
    if body.get("tools"):
        assert [t["function"]["name"] for t in req["tools"]] == [t["name"] for t in body["tools"]]
    if body.get("stream"):
        assert req["stream"] is True and req["stream_options"] == {"include_usage": True}
    if (body.get("reasoning") or {}).get("effort"):
        assert req["reasoning_effort"] == body["reasoning"]["effort"]
        assert req["reasoning"] == body["reasoning"]
    for dropped in ("include", "store", "previous_response_id", "input", "instructions", "text", "truncation"):
        assert dropped not in req


def test_text_request() -> None:
    req = parse_responses(responses("create_text.request.json"), [])
    assert req == {
        "model": "gpt-4o",
        "messages": [{"role": "user", "content": "What is the capital of France?"}],
        "stream": False,
    }


def test_function_tools_and_tool_choice() -> None:
    body = responses("create_function_call.request.json")
    req = parse_responses(body, [])
    tool = body["tools"][0]
    assert req["tools"] == [
        {"type": "function", "function": {"name": "get_capital", "parameters": tool["parameters"], "strict": True}}
    ]
    assert req["tool_choice"] == "auto"
    named = {"tool_choice": {"type": "function", "name": "get_capital"}, "parallel_tool_calls": False}
    req = parse_responses({**body, **named, "text": {"verbosity": "high"}}, [])
    assert req["tool_choice"] == {"type": "function", "function": {"name": "get_capital"}}
    assert req["parallel_tool_calls"] is False and req["verbosity"] == "high"
    required = parse_responses(responses("stream_function_call_reasoning_tool_choice_required.request.json"), [])
    assert required["tool_choice"] == "required"
    assert required["service_tier"] == "flex"


def test_function_call_round_trip_order() -> None:
    req = parse_responses(responses("create_after_function_call_output.request.json"), [])
    call = {"id": "call_YfwRsW8sUxDKipwyhWTzOXCA", "type": "function"}
    assert req["messages"] == [
        {"role": "user", "content": "What is the capital of PotatoLand?"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [{**call, "function": {"name": "get_capital", "arguments": '{"country":"PotatoLand"}'}}],
        },
        {"role": "tool", "tool_call_id": "call_YfwRsW8sUxDKipwyhWTzOXCA", "content": "Potato City"},
    ]


def test_reasoning_items_dropped_and_calls_joined_to_preceding_text() -> None:
    body = responses("stream_text_after_function_call_output.request.json")
    req = parse_responses(body, [])
    assert roles(req) == ["system", "user", "assistant", "tool"]
    assistant = req["messages"][2]
    assert assistant["content"] == 'I\'ll check the capital lookup tool for "PotatoLand."'
    assert [c["id"] for c in assistant["tool_calls"]] == ["call_LabG58Uhrq9kZvR52BYKjToD"]
    replay = parse_responses(responses("create_reasoning_replay_with_function_call_output.request.json"), [])
    assert roles(replay) == ["system", "user", "assistant", "tool"]
    assert replay["reasoning_effort"] == "low"


def test_structured_output_and_cache_fields() -> None:
    body = responses("create_structured_output_json_schema.request.json")
    fmt = body["text"]["format"]
    req = parse_responses(body, [])
    assert req["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "Payment", "schema": fmt["schema"], "strict": True},
    }
    cached = parse_responses(responses("create_cached_tokens.request.json"), [])
    assert cached["prompt_cache_key"] == "pydantic-ai-prompt-cache-e2e-responses"
    assert cached["prompt_cache_options"] == {"mode": "explicit", "ttl": "30m"}
    parts = cached["messages"][0]["content"]
    assert [p["type"] for p in parts] == ["text", "text"] and parts[1]["text"] == "Reply with exactly: OK"


def test_previous_response_id_history_comes_first() -> None:
    body = responses("create_previous_response_id_function_call_output_only.request.json")
    req = parse_responses(body, history_of("create_previous_response_id_new_user_turn"))
    assert roles(req) == ["user", "assistant", "tool"]
    assert req["messages"][0]["content"] == "What's the weather in New York?"
    assert req["messages"][1]["tool_calls"][0]["function"] == {
        "name": "get_weather",
        "arguments": '{"city":"New York"}',
    }
    assert req["messages"][2] == {
        "role": "tool",
        "tool_call_id": "call_N2BikjqNxghwNIwHl2XKfb0F",
        "content": "Sunny, 72F",
    }


def test_stored_history_gives_the_same_conversation_as_a_stateless_replay() -> None:
    replayed = responses("create_after_function_call_output.request.json")
    continued = {**replayed, "input": replayed["input"][2:], "previous_response_id": "resp_gw_earlier"}
    stateful = parse_responses(continued, history_of("create_function_call"))
    assert stateful["messages"] == parse_responses(replayed, [])["messages"]


def test_instructions_are_not_inherited() -> None:
    first = responses("create_reasoning_summary_encrypted_content.request.json")
    history = input_items(first) + output_items(responses("create_reasoning_summary_encrypted_content.json"))
    later = {"model": "gpt-5.2", "input": "And in Rust?", "previous_response_id": "resp_x"}
    assert roles(parse_responses(later, history)) == ["user", "assistant", "user"]
    req = parse_responses({**later, "instructions": "Be brief."}, history)
    assert req["messages"][0] == {"role": "system", "content": "Be brief."}
    assert roles(req) == ["system", "user", "assistant", "user"]


def test_input_items_normalise() -> None:
    assert input_items({"input": "hello"}) == [
        {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "hello"}]}
    ]
    body = responses("create_text.request.json")
    items = input_items(body)
    assert items == [{"type": "message", "role": "user", "content": "What is the capital of France?"}]
    assert "type" not in body["input"][0]


def test_parts_images_files_and_tool_output_parts() -> None:
    image = {"type": "input_image", "image_url": "https://x.test/a.png", "detail": "low"}
    pdf = {"type": "input_file", "file_data": "data:application/pdf;base64,JVBERi0=", "filename": "a.pdf"}
    body = {
        "model": "m",
        "input": [
            {"role": "user", "content": [{"type": "input_text", "text": "look"}, image, pdf]},
            {"type": "function_call", "call_id": "c1", "name": "f", "arguments": "{}"},
            {"type": "function_call_output", "call_id": "c1", "output": [{"type": "input_text", "text": "a"}] * 2},
            {"type": "function_call", "call_id": "c2", "name": "f", "arguments": "{}"},
            {"type": "function_call_output", "call_id": "c2", "output": [image]},
            {"role": "assistant", "content": [{"type": "refusal", "refusal": "no"}]},
        ],
    }
    msgs = parse_responses(body, [])["messages"]
    assert msgs[0]["content"] == [
        {"type": "text", "text": "look"},
        {"type": "image_url", "image_url": {"url": "https://x.test/a.png", "detail": "low"}},
        {"type": "file", "file": {"file_data": pdf["file_data"], "filename": "a.pdf"}},
    ]
    assert msgs[2]["content"] == "aa"
    assert msgs[4]["content"] == [{"type": "image_url", "image_url": {"url": "https://x.test/a.png", "detail": "low"}}]
    assert msgs[5] == {"role": "assistant", "content": [{"type": "refusal", "refusal": "no"}]}


def test_tool_settings_dropped_without_tools_and_user_mapping() -> None:
    body = {"model": "m", "input": "hi", "tool_choice": "auto", "parallel_tool_calls": False, "tools": []}
    req = parse_responses({**body, "user": "u1", "safety_identifier": "s1", "text": {"format": {"type": "text"}}}, [])
    assert "tool_choice" not in req and "parallel_tool_calls" not in req and "tools" not in req
    assert "response_format" not in req and req["user"] == "s1"
    req = parse_responses({**body, "user": "u1", "text": {"format": {"type": "json_object"}, "verbosity": "low"}}, [])
    assert req["user"] == "u1" and req["response_format"] == {"type": "json_object"} and req["verbosity"] == "low"
    req = parse_responses(
        {**body, "max_output_tokens": 64, "temperature": 0.2, "top_p": 0.5, "metadata": {"a": "b"}}, []
    )
    assert (req["max_tokens"], req["temperature"], req["top_p"], req["metadata"]) == (64, 0.2, 0.5, {"a": "b"})


# -- bad input ---------------------------------------------------------------------------------

OK: JSON = {"model": "m", "input": "hi"}
FN = {"type": "function", "name": "f", "parameters": {"type": "object"}}
CALL = {"type": "function_call", "call_id": "c", "name": "f", "arguments": "{}"}


def items(*given: Any) -> JSON:
    return {"model": "m", "input": list(given)}


def msg(*parts: Any, role: str = "user") -> JSON:
    return {"model": "m", "input": [{"role": role, "content": list(parts)}]}


BAD: list[tuple[JSON, str, str]] = [
    ({"input": "hi"}, "model", "missing_required_parameter"),
    ({"model": 3, "input": "hi"}, "model", "invalid_type"),
    ({"model": "", "input": "hi"}, "model", "invalid_value"),
    ({**OK, "background": True}, "background", "unsupported_value"),
    ({**OK, "background": "yes"}, "background", "invalid_type"),
    ({**OK, "conversation": "conv_1"}, "conversation", "unsupported_value"),
    ({**OK, "prompt": {"id": "pmpt_1"}}, "prompt", "unsupported_value"),
    ({**OK, "store": "no"}, "store", "invalid_type"),
    ({**OK, "stream": 1}, "stream", "invalid_type"),
    ({**OK, "previous_response_id": 5}, "previous_response_id", "invalid_type"),
    ({**OK, "include": "x"}, "include", "invalid_type"),
    ({**OK, "include": [1]}, "include.0", "invalid_type"),
    ({**OK, "truncation": "sometimes"}, "truncation", "invalid_value"),
    ({**OK, "metadata": []}, "metadata", "invalid_type"),
    ({**OK, "metadata": {"k": 1}}, "metadata.k", "invalid_type"),
    ({**OK, "instructions": ["x"]}, "instructions", "invalid_type"),
    ({"model": "m"}, "input", "missing_required_parameter"),
    ({"model": "m", "input": 7}, "input", "invalid_type"),
    ({"model": "m", "input": []}, "input", "invalid_value"),
    ({"model": "m", "input": [], "instructions": "only"}, "input", "invalid_value"),
    (items("hi"), "input.0", "invalid_type"),
    (items({"content": "hi"}), "input.0.type", "missing_required_parameter"),
    (items({"type": 1}), "input.0.type", "invalid_type"),
    (items({"type": "item_reference", "id": "msg_1"}), "input.0.type", "unsupported_value"),
    (items({"type": "web_search_call", "id": "ws_1"}), "input.0.type", "unsupported_value"),
    (items({"type": "message", "content": "x"}), "input.0.role", "missing_required_parameter"),
    (items({"role": "tool", "content": "x"}), "input.0.role", "invalid_value"),
    (items({"role": "user"}), "input.0.content", "missing_required_parameter"),
    (items({"role": "user", "content": 3}), "input.0.content", "invalid_type"),
    (msg("x"), "input.0.content.0", "invalid_type"),
    (msg({"text": "x"}), "input.0.content.0.type", "invalid_value"),
    (msg({"type": "output_text", "text": "x"}), "input.0.content.0.type", "unsupported_value"),
    (msg({"type": "input_text", "text": "x"}, role="assistant"), "input.0.content.0.type", "unsupported_value"),
    (msg({"type": "input_audio"}), "input.0.content.0.type", "unsupported_value"),
    (msg({"type": "input_text", "text": 1}), "input.0.content.0.text", "invalid_type"),
    (msg({"type": "refusal", "refusal": None}, role="assistant"), "input.0.content.0.refusal", "invalid_type"),
    (msg({"type": "input_image", "file_id": "file-1"}), "input.0.content.0.file_id", "unsupported_value"),
    (msg({"type": "input_image"}), "input.0.content.0.image_url", "missing_required_parameter"),
    (msg({"type": "input_image", "image_url": 1}), "input.0.content.0.image_url", "invalid_type"),
    (msg({"type": "input_image", "image_url": "ftp://x"}), "input.0.content.0.image_url", "invalid_value"),
    (msg({"type": "input_file", "file_id": "file-1"}), "input.0.content.0.file_id", "unsupported_value"),
    (msg({"type": "input_file", "file_url": "https://x/a.pdf"}), "input.0.content.0.file_url", "unsupported_value"),
    (msg({"type": "input_file"}), "input.0.content.0.file_data", "missing_required_parameter"),
    (msg({"type": "input_file", "file_data": "d", "filename": 2}), "input.0.content.0.filename", "invalid_type"),
    (items({**CALL, "call_id": None}), "input.0.call_id", "missing_required_parameter"),
    (items({**CALL, "arguments": {}}), "input.0.arguments", "invalid_type"),
    (
        {"model": "m", "input": [{"type": "function_call_output", "call_id": "c"}]},
        "input.0.output",
        "missing_required_parameter",
    ),
    (
        {"model": "m", "input": [{"type": "function_call_output", "call_id": "c", "output": 1}]},
        "input.0.output",
        "invalid_type",
    ),
    (
        {
            "model": "m",
            "input": [{"type": "function_call_output", "call_id": "c", "output": [{"type": "output_text"}]}],
        },
        "input.0.output.0.type",
        "unsupported_value",
    ),
    ({"model": "m", "input": [{"type": "reasoning", "summary": "s"}]}, "input.0.summary", "invalid_type"),
    (
        {"model": "m", "input": [{"type": "reasoning", "encrypted_content": 1}]},
        "input.0.encrypted_content",
        "invalid_type",
    ),
    ({**OK, "tools": {}}, "tools", "invalid_type"),
    ({**OK, "tools": ["f"]}, "tools.0", "invalid_type"),
    ({**OK, "tools": [FN, {"type": "file_search", "vector_store_ids": ["vs"]}]}, "tools.1.type", "unsupported_value"),
    ({**OK, "tools": [{"type": "mcp", "server_label": "x"}]}, "tools.0.type", "unsupported_value"),
    ({**OK, "tools": [{"type": "custom", "name": "apply_patch"}]}, "tools.0.type", "unsupported_value"),
    ({**OK, "tools": [{"type": "function"}]}, "tools.0.name", "missing_required_parameter"),
    ({**OK, "tools": [{**FN, "name": 1}]}, "tools.0.name", "invalid_type"),
    ({**OK, "tools": [{**FN, "description": 1}]}, "tools.0.description", "invalid_type"),
    ({**OK, "tools": [{**FN, "parameters": "x"}]}, "tools.0.parameters", "invalid_type"),
    ({**OK, "tools": [{**FN, "strict": "yes"}]}, "tools.0.strict", "invalid_type"),
    ({**OK, "parallel_tool_calls": "no"}, "parallel_tool_calls", "invalid_type"),
    ({**OK, "prompt_cache_key": 1}, "prompt_cache_key", "invalid_type"),
    ({**OK, "prompt_cache_options": "30m"}, "prompt_cache_options", "invalid_type"),
    ({**OK, "service_tier": 0}, "service_tier", "invalid_type"),
    ({**OK, "tools": [FN], "tool_choice": "any"}, "tool_choice", "unsupported_value"),
    ({**OK, "tool_choice": "required"}, "tool_choice", "invalid_value"),
    ({**OK, "tools": [FN], "tool_choice": 3}, "tool_choice", "invalid_type"),
    ({**OK, "tools": [FN], "tool_choice": {"type": "web_search_preview"}}, "tool_choice.type", "unsupported_value"),
    ({**OK, "tools": [FN], "tool_choice": {"type": "function"}}, "tool_choice.name", "invalid_type"),
    ({**OK, "tools": [FN], "tool_choice": {"type": "function", "name": "g"}}, "tool_choice.name", "invalid_value"),
    ({**OK, "text": "json"}, "text", "invalid_type"),
    ({**OK, "text": {"verbosity": "loud"}}, "text.verbosity", "invalid_value"),
    ({**OK, "text": {"format": "json"}}, "text.format", "invalid_type"),
    ({**OK, "text": {"format": {"type": "xml"}}}, "text.format.type", "unsupported_value"),
    ({**OK, "text": {"format": {"type": "json_schema", "schema": {}}}}, "text.format.name", "invalid_type"),
    ({**OK, "text": {"format": {"type": "json_schema", "name": "n"}}}, "text.format.schema", "invalid_type"),
    (
        {**OK, "text": {"format": {"type": "json_schema", "name": "n", "schema": {}, "strict": 1}}},
        "text.format.strict",
        "invalid_type",
    ),
    ({**OK, "reasoning": "high"}, "reasoning", "invalid_type"),
    ({**OK, "reasoning": {"effort": 3}}, "reasoning.effort", "invalid_type"),
    ({**OK, "temperature": "1"}, "temperature", "invalid_type"),
    ({**OK, "temperature": True}, "temperature", "invalid_type"),
    ({**OK, "top_p": 1.5}, "top_p", "invalid_value"),
    ({**OK, "max_output_tokens": 1.5}, "max_output_tokens", "invalid_type"),
    ({**OK, "max_output_tokens": 0}, "max_output_tokens", "invalid_value"),
    ({**OK, "top_logprobs": 21}, "top_logprobs", "invalid_value"),
    ({**OK, "max_tool_calls": 0}, "max_tool_calls", "invalid_value"),
    ({**OK, "user": 1}, "user", "invalid_type"),
    ({**OK, "safety_identifier": 1}, "safety_identifier", "invalid_type"),
]


@pytest.mark.parametrize(("body", "param", "code"), BAD)
def test_bad_input(body: JSON, param: str, code: str) -> None:
    with pytest.raises(InvalidRequest) as info:
        parse_responses(body, [])
    err = info.value
    assert (err.param, err.code) == (param, code), err.message
    assert err.http_status == 400


@pytest.mark.parametrize(
    ("name", "param"),
    [
        ("stream_web_search_cached_tokens.request.json", "tools.0.type"),
        ("error_400_temperature_below_min_on_stream_request.request.json", "temperature"),
    ],
)
def test_recorded_requests_refused(name: str, param: str) -> None:
    with pytest.raises(InvalidRequest) as info:
        parse_responses(responses(name), [])
    assert info.value.param == param
    if param == "tools.0.type":
        assert "web_search" in info.value.message


def test_built_in_tools_refused_in_the_cross_provider_recording() -> None:
    with pytest.raises(InvalidRequest, match="web_search"):
        parse_responses(load_json("cross_provider/reasoning/high_effort_web_search/openai_responses.request.json"), [])


def test_a_bad_stored_history_names_previous_response_id() -> None:
    with pytest.raises(InvalidRequest) as info:
        parse_responses({**OK, "previous_response_id": "resp_1"}, [{"type": "message", "role": "wizard"}])
    assert info.value.param == "previous_response_id"


def test_a_stored_history_only_a_responses_upstream_can_continue_is_untranslatable() -> None:
    # The server then sends the turn to an `api: responses` deployment only (gateway/server/responses_api.py).
    with pytest.raises(Untranslatable) as info:
        parse_responses({**OK, "previous_response_id": "resp_1"}, [{"type": "web_search_call", "id": "ws_1"}])
    assert info.value.param == "history.0.type"


def test_lenient_items_keep_what_no_translation_carries() -> None:
    search = {"type": "web_search_call", "id": "ws_1", "status": "completed"}
    body = {**OK, "input": [search, {"role": "user", "content": "and?"}]}
    with pytest.raises(Untranslatable):
        input_items(body)
    assert input_items(body, lenient=True)[0] == search
