"""The mock upstream's agent features over real loopback HTTP: the OpenAI Responses API,
Anthropic thinking with signatures, prompt-cache usage and token counting.

Driven with the official ``openai`` and ``anthropic`` SDKs and with httpx, on the recorded
request bodies in ``shared/fixtures`` where there is one (shapes are compared with the
recorded answers); small hand-written bodies for the refusals.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anthropic
import httpx
import openai
import pytest

from gateway.mock.caching import PrefixMemory, gemini_cached_tokens, openai_cached_tokens
from gateway.mock.reasoning import encrypted_content, sign_thinking, verify_thinking
from gateway.mock.testing import MockServer, parse_sse

FIXTURES = Path(__file__).resolve().parents[3] / "shared" / "fixtures"
HEADERS = {"anthropic-version": "2023-06-01", "x-api-key": "k"}
RESP, MSG, GEM = "/v1/responses", "/v1/messages", "/v1beta/models/gemini-2.5-flash:"
MISSING = "missing_required_parameter"
QUESTION = "What is the capital of France?"
LONG = " ".join(f"w{i}" for i in range(1300))  # 1300 words: over OpenAI's 1024-token caching floor


def fixture(rel: str) -> Any:
    return json.loads((FIXTURES / rel).read_text(encoding="utf-8"))


def events(raw: bytes) -> list[dict[str, Any]]:
    return [json.loads(data) for _, data in parse_sse(raw)]


def collapse(names: list[str]) -> list[str]:
    return [n for i, n in enumerate(names) if i == 0 or names[i - 1] != n]


def fixture_names(rel: str) -> list[str]:
    return [name for name, _ in parse_sse((FIXTURES / rel).read_bytes())]


@pytest.fixture
def oai(mock: MockServer, http: httpx.Client) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=mock.url + "/v1", api_key="sk-test", max_retries=0) as client:
        yield client


@pytest.fixture
def claude(mock: MockServer, http: httpx.Client) -> Iterator[anthropic.Anthropic]:
    with anthropic.Anthropic(base_url=mock.url, api_key="k", max_retries=0) as client:
        yield client


def test_responses_text_has_the_recorded_shape(oai: openai.OpenAI, http: httpx.Client) -> None:
    done = oai.responses.create(model="gpt-4o", input=QUESTION)
    chat = oai.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": QUESTION}])
    assert done.output_text == chat.choices[0].message.content
    body = http.post(RESP, json=fixture("responses/create_text.request.json")).json()
    assert sorted(body) == sorted(fixture("responses/create_function_call.json"))
    assert sorted(body["output"][0]) == sorted(fixture("responses/create_text.json")["output"][0])
    usage = body["usage"]
    assert (usage["input_tokens"], usage["output_tokens"], usage["total_tokens"]) == (6, 12, 18)
    assert (
        usage["input_tokens_details"] == {"cached_tokens": 0}
        and usage["output_tokens_details"]["reasoning_tokens"] == 0
    )
    assert body["id"].startswith("resp_") and body["output"][0]["id"].startswith("msg_")
    state = (body["status"], body["object"], body["store"], body["previous_response_id"])
    assert state == ("completed", "response", True, None)
    shaped = http.post(RESP, json=fixture("responses/create_structured_output_json_schema.request.json")).json()
    assert json.loads(shaped["output"][-1]["content"][0]["text"]) == {"amount": 1}


def test_responses_function_call_round_trip(oai: openai.OpenAI, http: httpx.Client) -> None:
    request = fixture("responses/create_function_call.request.json")
    first = oai.responses.create(**request)
    (call,) = first.output
    assert call.type == "function_call" and call.name == "get_capital"
    assert json.loads(call.arguments) == {"country": "mock"} and call.call_id.startswith("call_")
    assert sorted(call.to_dict()) == sorted(fixture("responses/create_function_call.json")["output"][0])
    output = {"type": "function_call_output", "call_id": call.call_id, "output": "Potato City"}
    history = [*request["input"], call.to_dict(), output]
    second = oai.responses.create(model="gpt-4o", input=history, tools=request["tools"])
    assert second.output_text.startswith("Mock reply from gpt-4o: What is the capital of PotatoLand?")
    assert second.usage is not None and second.usage.input_tokens == 6 + 1 + 2
    recorded = http.post(RESP, json=fixture("responses/create_after_function_call_output.request.json"))
    assert recorded.status_code == 200 and recorded.json()["output"][0]["type"] == "message"


def test_responses_stateless_continuations_are_refused(oai: openai.OpenAI) -> None:
    request = fixture("responses/create_previous_response_id_function_call_output_only.request.json")
    with pytest.raises(openai.BadRequestError) as stored:
        oai.responses.create(**request)
    message = f"Previous response with id '{request['previous_response_id']}' not found."
    expected = {"type": "invalid_request_error", "param": "previous_response_id", "code": "previous_response_not_found"}
    assert stored.value.body == {"message": message, **expected}
    del request["previous_response_id"]
    with pytest.raises(openai.BadRequestError) as orphan:
        oai.responses.create(**request)
    message = "No tool call found for function call output with call_id call_N2BikjqNxghwNIwHl2XKfb0F."
    assert orphan.value.body == {"message": message, "type": "invalid_request_error", "param": "input", "code": None}


def test_responses_reasoning_items_are_signed_and_verified(oai: openai.OpenAI, http: httpx.Client) -> None:
    tools: Any = fixture("responses/create_function_call.request.json")["tools"]
    question: Any = [{"role": "user", "content": "capital?"}]
    kwargs: Any = {"reasoning": {"effort": "low", "summary": "auto"}, "include": ["reasoning.encrypted_content"]}
    first = oai.responses.create(model="gpt-5", input=question, tools=tools, tool_choice="required", **kwargs)
    reasoning, call = first.output
    assert reasoning.type == "reasoning" and call.type == "function_call"
    assert reasoning.encrypted_content == encrypted_content(reasoning.id)
    assert reasoning.summary[0].text == "Mock thinking about: capital? considering the question step"
    used = first.usage
    assert used is not None and (used.output_tokens_details.reasoning_tokens, used.output_tokens) == (8, 9)
    output = {"type": "function_call_output", "call_id": call.call_id, "output": "Paris"}
    replay = [*question, reasoning.to_dict(), call.to_dict(), output]
    assert oai.responses.create(model="gpt-5", input=replay, tools=tools).output[0].type == "message"
    replay[1] = {**reasoning.to_dict(), "encrypted_content": reasoning.encrypted_content[:-2] + "xx"}
    with pytest.raises(openai.BadRequestError) as tampered:
        oai.responses.create(model="gpt-5", input=replay, tools=tools)
    assert tampered.value.code == "invalid_encrypted_content" and "could not be verified" in tampered.value.message
    plain: Any = oai.responses.create(model="gpt-5", input=question, reasoning={"effort": "low"}).output[0]
    assert (plain.type, plain.encrypted_content, plain.summary) == ("reasoning", None, [])
    # recorded histories: a reasoning item without its following item; a real (not mock-issued) encrypted content
    without_following = "responses/error_400_reasoning_item_without_following_item"
    refused = http.post(RESP, json=fixture(f"{without_following}.request.json"))
    assert refused.status_code == 400 and refused.json() == fixture(f"{without_following}.json")
    request = fixture("responses/create_reasoning_replay_with_function_call_output.request.json")
    foreign = http.post(RESP, json=request)
    content = request["input"][1]["encrypted_content"]
    message = f"The encrypted content {content[:4]}...{content[-4:]} could not be verified."
    assert foreign.status_code == 400 and foreign.json()["error"]["message"] == message
    assert foreign.json()["error"]["code"] == "invalid_encrypted_content"


REASONING_ITEM = {"type": "reasoning", "id": "rs_1", "summary": []}
FOLLOWING = {"type": "message", "id": "msg_1", "role": "assistant", "content": [{"type": "output_text", "text": "a"}]}
RESPONSES_REFUSALS: list[tuple[dict[str, Any], str | None, str | None, str]] = [
    ({"input": None}, "input", MISSING, "Missing required parameter: 'input'."),
    ({"input": 3}, "input", "invalid_type", "expected a string or an array, but got a number"),
    ({"input": []}, "input", "empty_array", "Invalid 'input': empty array."),
    ({"max_output_tokens": "9"}, "max_output_tokens", "invalid_type", "expected an integer, but got a string"),
    ({"max_output_tokens": 15}, "max_output_tokens", "integer_below_min_value", "Expected a value >= 16"),
    ({"input": ["hi"]}, "input[0]", "invalid_type", "expected an object, but got a string instead."),
    ({"input": [{"type": "function_call", "name": "f"}]}, "input[0].call_id", MISSING, ""),
    ({"input": [{"type": "function_call_output", "output": "x"}]}, "input[0].call_id", MISSING, ""),
    ({"input": [{"type": "reasoning", "summary": []}, FOLLOWING]}, "input[0].id", MISSING, ""),
    ({"input": [{"type": "reasoning", "id": "rs_1"}, FOLLOWING]}, "input[0].summary", MISSING, ""),
    ({"input": [REASONING_ITEM]}, "input", None, "Item 'rs_1' of type 'reasoning' was provided without its"),
    ({"input": [REASONING_ITEM, FOLLOWING]}, "input", None, "Item with id 'rs_1' not found."),
    ({"input": [REASONING_ITEM, FOLLOWING], "store": False}, "input", None, "Items are not persisted when `store`"),
    ({"input": [{**REASONING_ITEM, "encrypted_content": 5}, FOLLOWING]}, None, "invalid_encrypted_content", ""),
]


@pytest.mark.parametrize(("change", "param", "code", "message"), RESPONSES_REFUSALS)
@pytest.mark.parametrize("path", [RESP, RESP + "/input_tokens"])
def test_responses_refusals(http: httpx.Client, path: str, change: Any, param: Any, code: Any, message: str) -> None:
    body = {k: v for k, v in {"model": "gpt-5", "input": "hi", **change}.items() if v is not None}
    resp = http.post(path, json=body)
    error = resp.json()["error"]
    assert resp.status_code == 400 and error["type"] == "invalid_request_error" and message in error["message"]
    assert (error["param"], error["code"]) == (param, code)


def test_responses_stream_text_follows_the_recording(oai: openai.OpenAI, http: httpx.Client) -> None:
    got = events(http.post(RESP, json={"model": "gpt-4o", "input": QUESTION, "stream": True}).content)
    names = [e["type"] for e in got]
    assert collapse(names) == collapse(fixture_names("responses/stream_text_after_function_call_output.sse"))
    assert [e["sequence_number"] for e in got] == list(range(len(got)))
    deltas = [e for e in got if e["type"] == "response.output_text.delta"]
    assert all(e["obfuscation"] and e["item_id"].startswith("msg_") for e in deltas)
    final = got[-1]["response"]
    assert "".join(e["delta"] for e in deltas) == final["output"][0]["content"][0]["text"]
    assert got[0]["response"]["status"] == "in_progress" and got[0]["response"]["usage"] is None
    with oai.responses.stream(model="gpt-4o", input=QUESTION) as stream:
        assert stream.get_final_response().output_text == final["output"][0]["content"][0]["text"]
    plain = {"model": "gpt-4o", "input": "hi", "stream": True, "stream_options": {"include_obfuscation": False}}
    assert not any("obfuscation" in e for e in events(http.post(RESP, json=plain).content))


def test_responses_stream_reasoning_and_call_follow_the_recording(http: httpx.Client) -> None:
    recorded = "responses/stream_function_call_reasoning_tool_choice_required"
    got = events(http.post(RESP, json=fixture(f"{recorded}.request.json")).content)
    assert collapse([e["type"] for e in got]) == collapse(fixture_names(f"{recorded}.sse"))
    added = got[2]["item"]
    assert added["encrypted_content"] == encrypted_content(added["id"])
    args = "".join(e["delta"] for e in got if e["type"] == "response.function_call_arguments.delta")
    assert json.loads(args) == {"result": 1} and got[-1]["response"]["service_tier"] == "flex"
    summary = {"model": "gpt-5", "input": "hi", "stream": True, "reasoning": {"summary": "detailed"}}
    names = [e["type"] for e in events(http.post(RESP, json=summary).content)]
    assert list(dict.fromkeys(names)) == list(dict.fromkeys(fixture_names("responses/stream_reasoning_summary.sse")))


def test_responses_incomplete_and_knobs(http: httpx.Client) -> None:
    body, longer = {"model": "gpt-4o", "input": "hi", "max_output_tokens": 16}, {"x-mock-output-tokens": "30"}
    cut = http.post(RESP, json=body, headers=longer).json()
    assert (cut["status"], cut["incomplete_details"]) == ("incomplete", {"reason": "max_output_tokens"})
    assert cut["usage"]["output_tokens"] == 16 and cut["output"][0]["status"] == "incomplete"
    stream = events(http.post(RESP, json={**body, "stream": True}, headers=longer).content)
    assert stream[-1]["type"] == "response.incomplete"
    failed = http.post(RESP, json=body, headers={"x-mock-fail-times": "1"})
    assert failed.status_code == 503 and failed.json()["error"]["type"] == "server_error"
    truncated = http.post(RESP, json={**body, "stream": True}, headers={"x-mock-garbage": "truncate"})
    assert "response.completed" not in [e["type"] for e in events(truncated.content)]
    assert http.get("/_mock/stats").json()["by_route"] == {"openai.responses": 4}


def test_responses_input_tokens(oai: openai.OpenAI, http: httpx.Client) -> None:
    request = fixture("responses/input_tokens_count_with_tools.request.json")
    counted = http.post(RESP + "/input_tokens", json=request).json()
    assert sorted(counted) == sorted(fixture("responses/input_tokens_count_with_tools.json"))
    created = oai.responses.create(**request)
    assert created.usage is not None and counted["input_tokens"] == created.usage.input_tokens == 6
    assert oai.responses.input_tokens.count(model="m", input=LONG).input_tokens == 1300


def test_openai_automatic_cache_on_repeat(oai: openai.OpenAI) -> None:
    first = oai.responses.create(model="gpt-4o", input=LONG)
    again = oai.responses.create(model="gpt-4o", input=LONG + " more words")
    assert first.usage is not None and first.usage.input_tokens_details.cached_tokens == 0
    assert again.usage is not None and again.usage.input_tokens_details.cached_tokens == 1280
    chat: Any = [{"role": "user", "content": LONG}]
    cold = oai.chat.completions.create(model="gpt-4.1", messages=chat)
    warm = oai.chat.completions.create(model="gpt-4.1", messages=chat)
    short = oai.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hi"}])
    details = [c.usage.prompt_tokens_details for c in (cold, warm, short) if c.usage]
    assert [d.cached_tokens for d in details if d] == [0, 1280, 0]
    memory = PrefixMemory(limit=3)  # the memory is bounded: the oldest prefixes go first
    words = LONG.split()
    assert openai_cached_tokens(words, "seed", memory) == 0 and len(memory) == 3
    assert openai_cached_tokens(words, "seed", memory) == 1280
    memory.clear()
    assert openai_cached_tokens(words[:1100], "seed", memory) == 0


def test_anthropic_cache_usage_follows_the_recordings(http: httpx.Client) -> None:
    def usage(name: str) -> tuple[int, int, int]:
        body = fixture(f"anthropic/{name}.request.json")
        counted = http.post(MSG + "/count_tokens", json=body, headers=HEADERS).json()["input_tokens"]
        got = http.post(MSG, json=body, headers=HEADERS).json()["usage"]
        assert sorted(got) == sorted(k for k in fixture(f"anthropic/{name}.json")["usage"] if k != "inference_geo")
        written, read = got["cache_creation_input_tokens"], got["cache_read_input_tokens"]
        assert got["input_tokens"] + written + read == counted
        assert got["cache_creation"] == {"ephemeral_5m_input_tokens": written, "ephemeral_1h_input_tokens": 0}
        return (got["input_tokens"], written, read)

    _, turn1, _ = usage("messages_cache_control_block_turn1")
    assert turn1 > 0 and usage("messages_cache_control_block_turn1") == (0, 0, turn1)
    assert usage("messages_cache_control_block_turn2")[::2] == (0, turn1)
    top = usage("messages_cache_control_top_level")
    assert top[::2] == (0, turn1) and usage("messages_cache_control_top_level") == (0, 0, sum(top))


def test_anthropic_cache_ttl_and_sdk_repeat(claude: anthropic.Anthropic) -> None:
    block: Any = {"type": "text", "text": "long rules " * 20, "cache_control": {"type": "ephemeral", "ttl": "1h"}}
    messages: Any = [{"role": "user", "content": [block, {"type": "text", "text": "and a question"}]}]
    first = claude.messages.create(model="claude-sonnet-4-5", max_tokens=50, messages=messages)
    again = claude.messages.create(model="claude-sonnet-4-5", max_tokens=50, messages=messages)
    assert (first.usage.input_tokens, first.usage.cache_creation_input_tokens) == (3, 40)
    assert first.usage.cache_creation is not None and first.usage.cache_creation.ephemeral_1h_input_tokens == 40
    used = again.usage
    assert (used.input_tokens, used.cache_read_input_tokens, used.cache_creation_input_tokens) == (3, 40, 0)
    other = claude.messages.create(model="claude-haiku-4-5", max_tokens=50, messages=messages)
    assert other.usage.cache_read_input_tokens == 0


def test_anthropic_thinking_tool_use_round_trip(claude: anthropic.Anthropic, http: httpx.Client) -> None:
    request = fixture("anthropic/messages_thinking_enabled_tool_use.request.json")
    first = claude.messages.create(**request)
    thinking, tool_use = first.content
    assert thinking.type == "thinking" and tool_use.type == "tool_use" and first.stop_reason == "tool_use"
    recorded = fixture("anthropic/messages_thinking_enabled_tool_use.json")["content"][0]
    assert sorted(thinking.to_dict()) == sorted(recorded) and thinking.signature == sign_thinking(thinking.thinking)
    assert first.usage.output_tokens == 8 + 1
    result = {"role": "user", "content": [{"type": "tool_result", "tool_use_id": tool_use.id, "content": "Mexico"}]}
    turn = {"role": "assistant", "content": [b.to_dict() for b in first.content]}
    history = [*request["messages"], turn, result]
    second = claude.messages.create(**{**request, "messages": history})
    assert [b.type for b in second.content] == ["thinking", "text"] and second.stop_reason == "end_turn"
    turn["content"][0]["signature"] = sign_thinking("something else")
    with pytest.raises(anthropic.BadRequestError) as tampered:
        claude.messages.create(**{**request, "messages": history})
    error: Any = tampered.value.body
    assert error["error"]["message"] == "messages.1.content.0: Invalid `signature` in `thinking` block"
    turn["content"] = turn["content"][1:]
    with pytest.raises(anthropic.BadRequestError) as missing:
        claude.messages.create(**{**request, "messages": history})
    expected = "messages.1.content.0.type: Expected `thinking` or `redacted_thinking`, but found `tool_use`."
    error = missing.value.body
    assert error["error"]["message"].startswith(expected)
    # the recorded replay: its real signature is not one the mock issued
    body = fixture("anthropic/messages_thinking_signature_replay_tool_result.request.json")
    resp = http.post(MSG, json=body, headers=HEADERS)
    message = "messages.1.content.0: Invalid `signature` in `thinking` block"
    assert resp.status_code == 400 and resp.json()["error"] == {"type": "invalid_request_error", "message": message}
    del body["thinking"]  # thinking off: signatures are not checked, the history is accepted
    assert http.post(MSG, json=body, headers=HEADERS).status_code == 200


def test_anthropic_thinking_stream_follows_the_recording(claude: anthropic.Anthropic, http: httpx.Client) -> None:
    recorded = "anthropic/stream_thinking_signature_delta"
    request = fixture(f"{recorded}.request.json")
    raw = http.post(MSG, json=request, headers=HEADERS).content
    names = [name for name, _ in parse_sse(raw)]
    assert collapse(names) == collapse(fixture_names(f"{recorded}.sse"))
    deltas = [e["delta"] for e in events(raw) if e["type"] == "content_block_delta"]
    assert collapse([d["type"] for d in deltas]) == ["thinking_delta", "signature_delta", "text_delta"]
    text = "".join(d.get("thinking", "") for d in deltas)
    assert verify_thinking(text, next(d["signature"] for d in deltas if d["type"] == "signature_delta"))
    assert events(raw)[-2]["usage"]["output_tokens"] == 8 + 12
    del request["stream"]
    with claude.messages.stream(**request) as stream:
        block = stream.get_final_message().content[0]
    assert block.type == "thinking" and block.signature == sign_thinking(block.thinking)


def test_anthropic_adaptive_thinking_shares_max_tokens(http: httpx.Client) -> None:
    body = {"model": "claude-opus-4-6", "max_tokens": 5, "thinking": {"type": "adaptive"}, "messages": USER}
    msg = http.post(MSG, json=body, headers=HEADERS).json()
    assert [b["type"] for b in msg["content"]] == ["thinking", "text"]
    assert (msg["content"][0]["thinking"], msg["content"][1]["text"]) == ("Mock thinking about: hi", "Mock")
    assert (msg["stop_reason"], msg["usage"]["output_tokens"]) == ("max_tokens", 5)
    knob = http.post(MSG, json={**body, "max_tokens": 99}, headers={**HEADERS, "x-mock-thinking-tokens": "2"}).json()
    assert knob["content"][0]["thinking"] == "Mock thinking" and knob["usage"]["output_tokens"] == 2 + 12


USER = [{"role": "user", "content": "hi"}]
CACHED = {"type": "text", "text": "x", "cache_control": {"type": "ephemeral"}}


def enabled(budget: int | None) -> dict[str, Any]:
    return {"thinking": {"type": "enabled", "budget_tokens": budget}}


def replayed(block: dict[str, Any]) -> dict[str, Any]:
    return {"messages": [*USER, {"role": "assistant", "content": [{"type": "thinking", **block}]}]}


ANTHROPIC_REFUSALS: list[tuple[dict[str, Any], str]] = [
    ({"thinking": "on"}, "thinking: Input should be a valid dictionary"),
    ({"thinking": {"type": "on"}}, "thinking: Input tag 'on' found using 'type' does not match"),
    (enabled(None), "thinking.enabled.budget_tokens: Field required"),
    (enabled(1000), "greater than or equal to 1024"),
    (enabled(4096), "`max_tokens` must be greater than `thinking.budget_tokens`"),
    ({**enabled(1024), "tool_choice": {"type": "any"}}, "Thinking may not be enabled when tool_choice forces"),
    (replayed({"thinking": "t"}), "messages.1.content.0.thinking.signature: Field required"),
    (replayed({"signature": "s"}), "messages.1.content.0.thinking.thinking: Field required"),
    ({"cache_control": "yes"}, "cache_control: Input should be a valid dictionary"),
    ({"cache_control": {"type": "persistent"}}, "cache_control.type: Input should be 'ephemeral'"),
    ({"system": [{**CACHED, "cache_control": {"type": "ephemeral", "ttl": "2h"}}]}, "system.0.cache_control.ttl"),
    ({"system": [CACHED] * 5}, "A maximum of 4 blocks with cache_control may be provided. Found 5."),
]


@pytest.mark.parametrize(("change", "message"), ANTHROPIC_REFUSALS)
def test_anthropic_refusals(http: httpx.Client, change: dict[str, Any], message: str) -> None:
    body = {"model": "claude-sonnet-4-5", "max_tokens": 4096, "messages": USER, **change}
    resp = http.post(MSG, json=body, headers=HEADERS)
    assert resp.status_code == 400 and resp.json()["error"]["type"] == "invalid_request_error"
    assert message in resp.json()["error"]["message"]


def test_anthropic_count_tokens(claude: anthropic.Anthropic, http: httpx.Client) -> None:
    request = fixture("anthropic/count_tokens_adaptive_thinking_tools.request.json")
    counted = http.post(MSG + "/count_tokens", json=request, headers=HEADERS).json()
    assert sorted(counted) == sorted(fixture("anthropic/count_tokens_adaptive_thinking_tools.json"))
    created = http.post(MSG, json={**request, "max_tokens": 100}, headers=HEADERS).json()
    assert counted["input_tokens"] == created["usage"]["input_tokens"] == 6
    long: Any = [{"role": "user", "content": LONG}]
    assert claude.messages.count_tokens(model="m", system="Be brief.", messages=long).input_tokens == 1302
    refused = http.post(MSG + "/count_tokens", json={"model": "m"}, headers=HEADERS)
    assert refused.status_code == 400 and refused.json()["error"]["message"] == "messages: Field required"


def test_gemini_cached_content_and_count_tokens(http: httpx.Client) -> None:
    request = fixture("gemini/generate_content_cached_content.request.json")
    cached = gemini_cached_tokens(request["cachedContent"])
    usage = http.post(GEM + "generateContent", json=request).json()["usageMetadata"]
    assert set(usage) <= set(fixture("gemini/generate_content_cached_content.json")["usageMetadata"])
    assert (usage["cachedContentTokenCount"], usage["promptTokenCount"]) == (cached, cached + 6)
    assert usage["cacheTokensDetails"] == [{"modality": "TEXT", "tokenCount": cached}]
    stream = http.post(GEM + "streamGenerateContent?alt=sse", json=request).content
    assert events(stream)[-1]["usageMetadata"]["cachedContentTokenCount"] == cached
    counted = http.post(GEM + "countTokens", json=request).json()
    assert counted["totalTokens"] == usage["promptTokenCount"] and counted["cachedContentTokenCount"] == cached
    wrapped = {"generateContentRequest": {"model": "models/gemini-2.5-flash", "contents": request["contents"]}}
    plain = http.post(GEM + "countTokens", json=wrapped).json()
    assert plain == {"totalTokens": 6, "promptTokensDetails": [{"modality": "TEXT", "tokenCount": 6}]}
    bad = http.post(GEM + "generateContent", json={**request, "cachedContent": "x/1"})
    assert bad.status_code == 400 and bad.json()["error"]["status"] == "INVALID_ARGUMENT"
    assert http.get("/_mock/stats").json()["by_route"]["gemini.countTokens"] == 2
