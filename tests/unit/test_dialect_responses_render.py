"""gateway.dialects.responses: canonical answers as Response objects, the items a
continuation replays, Responses-upstream bodies (apply_native, rewrite), errors and
token-count bodies. Canonical answers are the providers' translations of recorded
OpenAI, Anthropic and Gemini bodies; the Response objects are checked with the
openai SDK's own types.
"""

from __future__ import annotations

import copy

import orjson
import pytest
from openai.types.responses import Response

from gateway.canonical import JSON
from gateway.config.settings import Params
from gateway.dialects.responses import (
    apply_native,
    input_items,
    input_tokens_body,
    output_items,
    parse_responses,
    render_error,
    render_response,
    rewrite,
)
from gateway.errors import InvalidRequest, UpstreamError
from tests.unit.fixtures import load_json
from tests.unit.test_dialect_responses import STREET, canonical, history_of, responses

CANONICAL = [
    ("openai", "openai/chat_completion_tool_call.json"),
    ("openai", "openai/chat_completion_text_after_tool_result.json"),
    ("anthropic", "anthropic/messages_parallel_tool_use.json"),
    ("anthropic", "anthropic/messages_cache_control_block_turn2.json"),
    ("gemini", "gemini/generate_content_text.json"),
    ("gemini", "gemini/generate_content_function_call.json"),
    ("openai", "openai_compatible/ollama_cloud_tool_call.json"),
]
# Echoed request parameters, compared with what the API answered to the same request.
ECHOED = (
    "instructions",
    "max_output_tokens",
    "max_tool_calls",
    "metadata",
    "parallel_tool_calls",
    "previous_response_id",
    "prompt_cache_key",
    "reasoning",
    "safety_identifier",
    "store",
    "temperature",
    "text",
    "tool_choice",
    "tools",
    "top_logprobs",
    "top_p",
    "truncation",
    "user",
    "background",
    "error",
    "incomplete_details",
    "object",
    "status",
)


def render(completion: JSON, body: JSON | None = None) -> JSON:
    body = body if body is not None else {"model": "alias", "input": "hi"}
    return render_response(completion, response_id="resp_gw1", model="alias", body=body, created_at=1700000000)


@pytest.mark.parametrize(("provider", "rel"), CANONICAL)
def test_render_response_validates_with_the_sdk(provider: str, rel: str) -> None:
    completion = canonical(provider, rel)
    message, usage = completion["choices"][0]["message"], completion["usage"]
    response = render(completion)
    parsed = Response.model_validate(response)
    assert parsed.id == "resp_gw1" and parsed.status == "completed" and parsed.model == "alias"
    assert parsed.output_text == (message.get("content") or "")
    calls = [o for o in parsed.output if o.type == "function_call"]
    assert [(c.call_id, c.name, c.arguments) for c in calls] == [
        (t["id"], t["function"]["name"], t["function"]["arguments"]) for t in message.get("tool_calls") or []
    ]
    assert all(c.id and c.id.startswith("fc_") and c.status == "completed" for c in calls)
    assert all(o.id.startswith("msg_") for o in parsed.output if o.type == "message")
    assert len({o.id for o in parsed.output}) == len(parsed.output)
    assert parsed.usage is not None
    assert (parsed.usage.input_tokens, parsed.usage.output_tokens) == (
        usage["prompt_tokens"],
        usage["completion_tokens"],
    )
    assert parsed.usage.total_tokens == usage["total_tokens"]
    details = (usage.get("prompt_tokens_details") or {}, usage.get("completion_tokens_details") or {})
    assert parsed.usage.input_tokens_details.cached_tokens == details[0].get("cached_tokens", 0)
    assert parsed.usage.output_tokens_details.reasoning_tokens == details[1].get("reasoning_tokens", 0)


@pytest.mark.parametrize(
    "name",
    [
        "create_text",
        "create_function_call",
        "create_after_function_call_output",
        "create_previous_response_id_new_user_turn",
        "create_reasoning_function_call",
    ],
)
def test_echo_matches_the_recorded_api(name: str) -> None:
    body = responses(f"{name}.request.json")
    recorded = responses(f"{name}.json")
    completion = canonical("openai", "openai/chat_completion_text_after_tool_result.json")
    response = render(completion, body)
    assert {k: response[k] for k in ECHOED} == {k: recorded[k] for k in ECHOED}


def test_echo_of_structured_output_and_instructions() -> None:
    body = responses("create_structured_output_json_schema.request.json")
    response = render(canonical("gemini", "gemini/generate_content_text.json"), body)
    assert response["text"]["format"] == body["text"]["format"]
    Response.model_validate(response)
    body = responses("create_reasoning_summary_encrypted_content.request.json")
    response = render(canonical("gemini", "gemini/generate_content_text.json"), body)
    assert response["instructions"] == body["instructions"]
    assert response["reasoning"] == {"effort": "high", "summary": "auto"}


def test_length_and_content_filter_are_incomplete() -> None:
    completion = canonical("anthropic", "anthropic/messages_cache_control_block_turn2.json")
    completion["choices"][0]["finish_reason"] = "length"  # as a max_tokens stop translates
    response = render(completion, {"model": "m", "input": "hi", "max_output_tokens": 33})
    parsed = Response.model_validate(response)
    assert parsed.status == "incomplete" and parsed.incomplete_details is not None
    assert parsed.incomplete_details.reason == "max_output_tokens"
    assert response["output"][0]["status"] == "incomplete" and response["max_output_tokens"] == 33
    completion["choices"][0]["finish_reason"] = "content_filter"
    assert render(completion)["incomplete_details"] == {"reason": "content_filter"}


def test_refusal_and_empty_answers() -> None:
    completion = canonical("openai", "openai/chat_completion_text_after_tool_result.json")
    completion["choices"][0]["message"].update(content=None, refusal="I can't help with that.")
    parsed = Response.model_validate(render(completion))
    assert parsed.output[0].type == "message"
    assert [c.type for c in parsed.output[0].content] == ["refusal"]
    completion["choices"][0]["message"].update(refusal=None)
    completion["usage"] = None
    empty = render(completion)
    assert empty["output"] == [] and empty["usage"] is None
    assert Response.model_validate(empty).output_text == ""


def test_output_items_for_the_store() -> None:
    response = responses("create_reasoning_summary_encrypted_content.json")
    items = output_items(response)
    assert [i["type"] for i in items] == ["reasoning", "message"]
    assert items[0]["encrypted_content"] == response["output"][0]["encrypted_content"]
    stripped = copy.deepcopy(response)
    del stripped["output"][0]["encrypted_content"]
    assert [i["type"] for i in output_items(stripped)] == ["message"]
    assert output_items({"output": None}) == []
    rendered = render(canonical("anthropic", "anthropic/messages_parallel_tool_use.json"))
    assert output_items(rendered) == rendered["output"]


def test_rendered_output_replays_as_history() -> None:
    body = {"model": "alias", "input": "Who is the youngest?"}
    completion = canonical("anthropic", "anthropic/messages_parallel_tool_use.json")
    history = input_items(body) + output_items(render(completion, body))
    outputs = [
        {"type": "function_call_output", "call_id": c["id"], "output": "42"}
        for c in completion["choices"][0]["message"]["tool_calls"]
    ]
    req = parse_responses({"model": "alias", "input": outputs, "previous_response_id": "resp_gw1"}, history)
    assistant = req["messages"][1]
    assert assistant["content"] == completion["choices"][0]["message"]["content"]
    assert assistant["tool_calls"] == completion["choices"][0]["message"]["tool_calls"]
    assert [m["role"] for m in req["messages"]] == ["user", "assistant"] + ["tool"] * len(outputs)


def test_rewrite_a_non_stream_upstream_answer() -> None:
    upstream = responses("create_cached_tokens.json")
    before = copy.deepcopy(upstream)
    out = rewrite(upstream, "resp_gw2")
    assert upstream == before
    assert out["id"] == "resp_gw2" and out["output"] == upstream["output"] and out["store"] is True
    assert Response.model_validate(out).output_text == "OK"
    stateless = {**upstream, "store": False, "previous_response_id": None}
    echoed = rewrite(stateless, "resp_gw2", body={"previous_response_id": "resp_gw1"})
    assert (echoed["store"], echoed["previous_response_id"]) == (True, "resp_gw1")


# -- apply_native ----------------------------------------------------------------------------


def test_apply_native_on_a_previous_response_id_turn() -> None:
    body = responses("create_previous_response_id_function_call_output_only.request.json")
    before = copy.deepcopy(body)
    history = history_of("create_previous_response_id_new_user_turn")
    out = apply_native(body, "gpt-4.1-2025-04-14", Params(), frozenset(), history)
    assert body == before
    assert out["model"] == "gpt-4.1-2025-04-14" and "previous_response_id" not in out
    assert out["store"] is False and out["include"] == ["reasoning.encrypted_content"]
    assert out["input"] == [*history, {**body["input"][0]}]
    assert [i["type"] for i in out["input"]] == ["message", "function_call", "function_call_output"]
    for key in ("tools", "tool_choice", "stream"):
        assert out[key] == body[key]


def test_apply_native_replays_reasoning_verbatim() -> None:
    turn1 = load_json(STREET + "openai_responses.request.json")
    recorded_turn2 = load_json(STREET + "openai_responses_turn2.request.json")
    history = input_items(turn1) + output_items(load_json(STREET + "openai_responses.json"))
    body = {**recorded_turn2, "input": recorded_turn2["input"][-1:], "previous_response_id": "resp_gw1"}
    out = apply_native(body, "gpt-5", Params(), frozenset(), history)
    expected = input_items(recorded_turn2)
    assert [i["type"] for i in out["input"]] == [i["type"] for i in expected]
    assert out["input"][1] == expected[1]  # the reasoning item, encrypted_content and all
    assert out["input"][2]["id"] == expected[2]["id"]
    assert out["input"][2]["content"][0]["text"] == expected[2]["content"][0]["text"]
    assert out["include"] == ["reasoning.encrypted_content"]  # not doubled
    roles = [m["role"] for m in parse_responses(body, history)["messages"]]
    assert roles == ["user", "assistant", "user"]


def test_apply_native_policy_and_drop() -> None:
    body = responses("create_reasoning_function_call.request.json")
    params = Params(defaults={"temperature": 0.5, "max_tokens": 900, "top_p": 0.9}, ranges={"temperature": [0, 0.3]})
    out = apply_native(body, "gpt-5", params, frozenset(), [])
    assert (out["temperature"], out["max_output_tokens"], out["top_p"]) == (0.3, 900, 0.9)
    capped = apply_native({**body, "max_output_tokens": 5000}, "gpt-5", Params(max_tokens_cap=1000), frozenset(), [])
    assert capped["max_output_tokens"] == 1000
    assert apply_native(body, "gpt-5", Params(max_tokens_cap=1000), frozenset(), [])["max_output_tokens"] == 1000
    kept = apply_native({**body, "max_output_tokens": 200}, "gpt-5", Params(max_tokens_cap=1000), frozenset(), [])
    assert kept["max_output_tokens"] == 200
    drop = frozenset({"max_tokens", "temperature", "model", "input", "tool_choice"})
    dropped = apply_native({**body, "temperature": 1.0}, "gpt-5", params, drop, [])
    assert "max_output_tokens" not in dropped and "temperature" not in dropped and "tool_choice" not in dropped
    assert dropped["model"] == "gpt-5" and dropped["input"]


def test_apply_native_with_a_string_input() -> None:
    out = apply_native(
        {"model": "alias", "input": "hi", "include": ["message.output_text.logprobs"]}, "m", Params(), frozenset(), []
    )
    assert out["input"] == input_items({"input": "hi"})
    assert out["include"] == ["message.output_text.logprobs", "reasoning.encrypted_content"]
    with pytest.raises(InvalidRequest):
        apply_native({"model": "alias"}, "m", Params(), frozenset(), [])


# -- errors and token counts -------------------------------------------------------------------


def test_render_error_in_the_api_envelope() -> None:
    recorded = responses("error_400_model_not_found.json")
    err = InvalidRequest(recorded["error"]["message"], param="model", code="model_not_found")
    status, raw = render_error(err)
    assert status == 400 and orjson.loads(raw) == recorded
    upstream = UpstreamError("overloaded", upstream_status=529)
    status, raw = render_error(upstream)
    assert status == 503 and orjson.loads(raw)["error"]["message"] == "overloaded"


def test_input_tokens_body() -> None:
    assert input_tokens_body(51, estimated=False) == responses("input_tokens_count_with_tools.json")
    assert input_tokens_body(12, estimated=True) == {
        "object": "response.input_tokens",
        "input_tokens": 12,
        "estimated": True,
    }
