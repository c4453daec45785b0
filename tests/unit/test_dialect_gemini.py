"""gateway.dialects.gemini: Gemini clients' bodies -> canonical, canonical answers -> Gemini.

Requests are the recorded ``*.request.json`` bodies in shared/fixtures (gemini/ and
cross_provider/), written by pydantic-ai through google-genai; answers are recorded
OpenAI, Anthropic and Gemini responses and streams decoded by the providers' own
translators, rendered here and read back by the google-genai SDK (3.6.1), either by
its pydantic types or end to end through an ``httpx.MockTransport``.
"""

from __future__ import annotations

import base64
import copy
import random
import struct
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from google import genai
from google.genai import errors as genai_errors
from google.genai import types

from gateway.canonical import JSON
from gateway.config.settings import Params
from gateway.dialects.gemini import (
    GenerateStream,
    apply_native,
    count_tokens_body,
    model_card,
    model_list,
    parse_batch_embed,
    parse_count_tokens,
    parse_embed,
    parse_generate,
    render_batch_embed,
    render_embed,
    render_error,
    render_generate,
)
from gateway.errors import (
    AuthenticationFailed,
    BackendDegraded,
    BudgetExceeded,
    GatewayError,
    InvalidRequest,
    MethodNotAllowed,
    NoDeploymentAvailable,
    NotFound,
    PermissionDenied,
    RateLimited,
    RequestTooLarge,
    UpstreamBadResponse,
    UpstreamError,
    UpstreamTimeout,
    UpstreamUnavailable,
)
from gateway.providers.anthropic import AnthropicProvider
from gateway.providers.anthropic_stream import AnthropicStreamDecoder
from gateway.providers.base import StreamDecoder, Target
from gateway.providers.gemini import GeminiProvider
from gateway.providers.gemini_stream import GeminiStreamDecoder, gemini_error
from gateway.providers.openai_compat import OpenAICompatProvider, OpenAIStreamDecoder
from tests.unit.fixtures import FIXTURES, random_pieces, sse_events

GEMINI = FIXTURES / "gemini"
CROSS = FIXTURES / "cross_provider"
MODEL = "gemini-2.5-flash"
TARGET = Target("gemini", MODEL, "https://generativelanguage.googleapis.com/v1beta", api_key="k")
REQUEST_FILES = sorted(GEMINI.glob("*.request.json")) + sorted(CROSS.rglob("gemini*.request.json"))

# Request fixtures that are not generateContent bodies the gateway can carry elsewhere.
REFUSED = {
    # a cachedContents.create body: ``ttl`` is no field of generateContent
    "gemini/cached_contents_create.request.json": ("ttl", "unsupported_value"),
    # Google Search runs inside Gemini
    "cross_provider/reasoning/high_effort_web_search/gemini.request.json": ("tools.0", "unsupported_value"),
    # a batchEmbedContents body (tested with parse_batch_embed below)
    "gemini/error_404_not_found_embed.request.json": ("requests", "unsupported_value"),
}


def rel(path: Path) -> str:
    return path.relative_to(FIXTURES).as_posix()


def load(path: Path) -> Any:
    return orjson.loads(path.read_bytes())


def refused(call: Callable[[], Any]) -> InvalidRequest:
    with pytest.raises(InvalidRequest) as info:
        call()
    err = info.value
    assert err.http_status == 400 and err.param
    return err


def tool_messages_answer_calls(messages: list[JSON]) -> None:
    """Every tool message follows the assistant turn whose call it answers."""
    open_ids: set[str] = set()
    for msg in messages:
        if msg["role"] == "assistant":
            open_ids = {c["id"] for c in msg.get("tool_calls", [])}
        elif msg["role"] == "tool":
            assert msg["tool_call_id"] in open_ids
            open_ids.discard(msg["tool_call_id"])


def plain_contents(contents: list[JSON]) -> list[JSON]:
    """Recorded contents as the provider writes them back: thoughts, signatures and
    call ids dropped, the default role spelled out."""
    out = []
    for turn in contents:
        parts = []
        for part in turn["parts"]:
            if part.get("thought"):
                continue
            plain = {k: v for k, v in part.items() if k != "thoughtSignature"}
            for key in ("functionCall", "functionResponse"):
                if key in plain:
                    plain[key] = {k: v for k, v in plain[key].items() if k != "id"}
            parts.append(plain)
        out.append({"role": turn.get("role", "user"), "parts": parts})
    return out


# --- every recorded request ---------------------------------------------------------


@pytest.mark.parametrize("path", REQUEST_FILES, ids=rel)
def test_every_recorded_request_parses_or_is_refused(path: Path) -> None:
    body = load(path)
    if rel(path) in REFUSED:
        err = refused(lambda: parse_generate(body, MODEL, stream=False))
        assert (err.param, err.code) == REFUSED[rel(path)]
        return
    req = parse_generate(body, f"models/{MODEL}", stream=False)
    assert req["model"] == MODEL and req["stream"] is False
    assert req["messages"] and req["messages"][-1]["role"] in ("user", "tool")
    tool_messages_answer_calls(req["messages"])
    orjson.dumps(req)
    streamed = parse_generate(body, MODEL, stream=True)
    assert streamed["stream"] is True and streamed["stream_options"] == {"include_usage": True}
    assert {k: v for k, v in streamed.items() if k not in ("stream", "stream_options")} == {
        k: v for k, v in req.items() if k != "stream"
    }


CARRIED_BACK = [
    p
    for p in REQUEST_FILES
    if rel(p) not in REFUSED and not any(k in p.read_text() for k in ("inlineData", "cachedContent"))
]


@pytest.mark.parametrize("path", CARRIED_BACK, ids=rel)
def test_the_gemini_provider_writes_the_recorded_contents_back(path: Path) -> None:
    """parse_generate is the provider's mirror: canonical -> Gemini gives the client's turns again."""
    body = load(path)
    req = parse_generate(body, MODEL, stream=False)
    wire = GeminiProvider().chat_request(req, TARGET, stream=False)
    assert wire.body is not None
    sent = orjson.loads(wire.body)
    assert sent["contents"] == plain_contents(body["contents"])
    if "systemInstruction" in body:
        assert sent["systemInstruction"]["parts"] == body["systemInstruction"]["parts"]
    recorded = [d["name"] for t in body.get("tools", []) for d in t["functionDeclarations"]]
    assert [d["name"] for t in sent.get("tools", []) for d in t["functionDeclarations"]] == recorded
    assert sent.get("toolConfig") == body.get("toolConfig")


# --- translations, spot-checked ----------------------------------------------------------


def test_system_instruction_becomes_the_system_message() -> None:
    req = parse_generate(load(GEMINI / "generate_content_text.request.json"), MODEL, stream=False)
    assert req["messages"] == [
        {"role": "system", "content": "You are a chatbot."},
        {"role": "user", "content": "Hello!"},
    ]


def test_function_calls_and_responses_pair_by_id() -> None:
    body = load(GEMINI / "stream_text_multi_chunk_after_function_response.request.json")
    messages = parse_generate(body, MODEL, stream=False)["messages"]
    assert [m["role"] for m in messages] == ["system", "user", "assistant", "tool", "assistant", "tool"]
    call = messages[2]["tool_calls"][0]
    assert call == {
        "id": "pyd_ai_0e1a07b3c2b64d2ab3ad2efbe18e1b97",
        "type": "function",
        "function": {"name": "get_capital", "arguments": '{"country":"France"}'},
    }
    assert messages[3] == {"role": "tool", "tool_call_id": call["id"], "content": '{"return_value":"Paris"}'}
    assert orjson.loads(messages[5]["content"]) == {"return_value": "30°C"}


def test_calls_without_ids_get_positional_ids_and_pair_by_name() -> None:
    body = load(GEMINI / "stream_text_multi_chunk_after_function_response.request.json")
    for turn in body["contents"]:
        for part in turn["parts"]:
            for key in ("functionCall", "functionResponse"):
                part.get(key, {}).pop("id", None)
    messages = parse_generate(body, MODEL, stream=False)["messages"]
    assert messages[2]["tool_calls"][0]["id"] == "call_1_0" and messages[3]["tool_call_id"] == "call_1_0"
    assert messages[4]["tool_calls"][0]["id"] == "call_3_0" and messages[5]["tool_call_id"] == "call_3_0"


def test_parameters_in_gemini_schema_become_json_schema() -> None:
    req = parse_generate(load(GEMINI / "stream_function_call.request.json"), MODEL, stream=False)
    assert req["tools"][0] == {
        "type": "function",
        "function": {
            "name": "get_capital",
            "description": "Get the capital of a country.",
            "parameters": {
                "type": "object",
                "properties": {"country": {"type": "string", "description": "The country name."}},
                "required": ["country"],
            },
        },
    }


@pytest.mark.parametrize(
    "mode", ["tool_choice_auto", "tool_choice_required", "tool_choice_none", "tool_choice_list_single"]
)
def test_tool_choice_matches_the_same_request_recorded_for_openai(mode: str) -> None:
    gemini = parse_generate(load(CROSS / mode / "gemini.request.json"), MODEL, stream=False)
    openai = load(CROSS / mode / "openai_chat.request.json")
    assert gemini["tool_choice"] == openai["tool_choice"]
    assert gemini["messages"] == openai["messages"]
    ours = {t["function"]["name"]: t["function"]["parameters"] for t in gemini["tools"]}
    theirs = {t["function"]["name"]: t["function"]["parameters"] for t in openai["tools"]}
    if mode == "tool_choice_list_single":  # one allowed name: the function is named, every tool stays
        assert set(ours) == set(theirs)
    for name, schema in ours.items():
        assert schema["properties"] == theirs[name]["properties"] and schema["required"] == theirs[name]["required"]


def test_several_allowed_names_narrow_the_tools() -> None:
    body = load(CROSS / "tool_choice_list_single" / "gemini.request.json")
    body["toolConfig"]["functionCallingConfig"]["allowedFunctionNames"] = ["get_time", "get_weather"]
    req = parse_generate(body, MODEL, stream=False)
    assert req["tool_choice"] == "required" and len(req["tools"]) == 2
    body["toolConfig"]["functionCallingConfig"]["mode"] = "VALIDATED"
    body["toolConfig"]["functionCallingConfig"]["allowedFunctionNames"] = ["get_time"]
    req = parse_generate(body, MODEL, stream=False)
    assert req["tool_choice"] == "auto" and [t["function"]["name"] for t in req["tools"]] == ["get_time"]


def test_inline_pdf_becomes_a_file_part_with_the_same_bytes() -> None:
    body = load(GEMINI / "generate_content_inline_pdf.request.json")
    recorded = body["contents"][0]["parts"][1]["inlineData"]["data"]
    part = parse_generate(body, MODEL, stream=False)["messages"][-1]["content"][1]
    assert part["type"] == "file" and part["file"]["filename"] == "document.pdf"
    header, data = part["file"]["file_data"].split(",", 1)
    assert header == "data:application/pdf;base64"
    assert base64.b64decode(data, validate=True) == base64.urlsafe_b64decode(recorded + "==")
    assert base64.b64decode(data).startswith(b"%PDF")


def test_inline_audio_becomes_input_audio_in_standard_base64() -> None:
    body = load(GEMINI / "generate_content_inline_audio.request.json")
    recorded = body["contents"][3]["parts"][1]["inlineData"]["data"]
    messages = parse_generate(body, MODEL, stream=False)["messages"]
    audio = messages[-1]["content"][1]
    assert audio["type"] == "input_audio" and audio["input_audio"]["format"] == "mp3"
    assert base64.b64decode(audio["input_audio"]["data"], validate=True) == base64.urlsafe_b64decode(recorded + "==")
    # the call before it carried a thoughtSignature: dropped, the id kept
    assert messages[1]["tool_calls"][0]["id"] == "pyd_ai_b5f567d08cc448f6bf06f4bc57288d98"
    assert "thoughtSignature" not in orjson.dumps(messages).decode()


def test_thinking_config_maps_to_reasoning_effort_and_is_kept() -> None:
    low = parse_generate(load(GEMINI / "generate_content_thinking_budget_1024.request.json"), MODEL, stream=False)
    assert (low["reasoning_effort"], low["reasoning_budget"], low["include_reasoning"]) == ("minimal", 1024, True)
    assert low["thinking_config"] == {"includeThoughts": True, "thinkingBudget": 1024}
    off = parse_generate(load(GEMINI / "generate_content_thinking_budget_0.request.json"), MODEL, stream=False)
    assert (off["reasoning_effort"], off["reasoning_budget"]) == ("none", 0)
    assert off["thinking_config"] == {"thinkingBudget": 0}
    high = load(CROSS / "reasoning" / "high_effort_web_search" / "gemini.request.json")
    del high["tools"], high["toolConfig"]
    req = parse_generate(high, MODEL, stream=False)
    assert req["reasoning_effort"] == "high"
    assert req["thinking_config"] == {"includeThoughts": True, "thinkingLevel": "HIGH"}


@pytest.mark.parametrize(
    ("budget", "effort"),
    [
        (-1, "medium"),
        (0, "none"),
        (1, "minimal"),
        (2047, "minimal"),
        (2048, "low"),
        (8191, "low"),
        (8192, "medium"),
        (16384, "high"),
        (32768, "xhigh"),
    ],
)
def test_thinking_budget_thresholds(budget: int, effort: str) -> None:
    body = load(GEMINI / "generate_content_thinking_budget_1024.request.json")
    body["generationConfig"]["thinking_config"]["thinkingBudget"] = budget
    assert parse_generate(body, MODEL, stream=False)["reasoning_effort"] == effort


def test_thought_parts_of_a_replayed_turn_become_reasoning_content() -> None:
    body = load(CROSS / "reasoning" / "cross_the_street" / "gemini_turn2.request.json")
    thought, answer = body["contents"][1]["parts"]
    assistant = parse_generate(body, MODEL, stream=False)["messages"][2]
    assert assistant == {"role": "assistant", "content": answer["text"], "reasoning_content": thought["text"]}
    assert thought["thought"] is True and thought["text"] not in assistant["content"]


def test_generation_config_fields() -> None:
    logprobs = parse_generate(load(GEMINI / "generate_content_logprobs_vertex.request.json"), MODEL, stream=False)
    assert (logprobs["logprobs"], logprobs["top_logprobs"]) == (True, 5)
    sampled = parse_generate(load(GEMINI / "stream_text_three_chunks.request.json"), MODEL, stream=False)
    assert sampled["temperature"] == 0.0
    body = load(GEMINI / "generate_content_text.request.json")
    body["generation_config"] = {
        "max_output_tokens": 64,
        "top_p": 0.5,
        "top_k": 40.0,
        "stop_sequences": ["END"],
        "presence_penalty": 0.5,
        "frequency_penalty": -0.5,
        "seed": 7,
        "candidate_count": 2,
        "response_mime_type": "application/json",
        "response_schema": {"type": "OBJECT", "nullable": True, "properties": {"a": {"type": "STRING"}}},
    }
    del body["generationConfig"]
    req = parse_generate(body, MODEL, stream=False)
    assert {k: req[k] for k in ("max_tokens", "top_p", "top_k", "stop", "presence_penalty", "seed", "n")} == {
        "max_tokens": 64,
        "top_p": 0.5,
        "top_k": 40,
        "stop": ["END"],
        "presence_penalty": 0.5,
        "seed": 7,
        "n": 2,
    }
    schema = {"type": ["object", "null"], "properties": {"a": {"type": "string"}}}
    assert req["response_format"] == {"type": "json_schema", "json_schema": {"name": "response", "schema": schema}}
    body["generation_config"] = {"responseMimeType": "application/json"}
    assert parse_generate(body, MODEL, stream=False)["response_format"] == {"type": "json_object"}


def test_cached_content_and_top_level_fields() -> None:
    body = load(GEMINI / "generate_content_cached_content.request.json")
    req = parse_generate(body, MODEL, stream=False)
    assert req["cached_content"] == body["cachedContent"]
    body.update(safetySettings=[{"category": "HARM_CATEGORY_HARASSMENT", "threshold": "BLOCK_NONE"}])
    body.update(labels={"team": "a"}, serviceTier="flex", store=False, model="models/elsewhere")
    req = parse_generate(body, MODEL, stream=False)
    assert req["service_tier"] == "flex" and req["model"] == MODEL
    assert not {"safetySettings", "safety_settings", "labels", "store"} & set(req)


def test_count_tokens_takes_contents_or_a_whole_request() -> None:
    body = load(GEMINI / "stream_text_multi_chunk_after_function_response.request.json")
    whole = parse_count_tokens({"generateContentRequest": body}, MODEL)
    assert whole == parse_generate(body, MODEL, stream=False)
    bare = parse_count_tokens({"contents": body["contents"]}, MODEL)
    assert bare["messages"] == whole["messages"][1:]
    # the calls of a last model turn may stay open when only counting
    open_call = {"contents": body["contents"][:2]}
    assert parse_count_tokens(open_call, MODEL)["messages"][-1]["tool_calls"]


def test_media_parts_in_either_spelling() -> None:
    body = {
        "contents": [
            user(
                {"text": "What is in these?"},
                {"inline_data": {"mime_type": "image/png", "data": "iVBORw0KGgo"}},
                {"file_data": {"mime_type": "image/jpeg", "file_uri": "https://example.com/cat.jpg"}},
                {"inlineData": {"mimeType": "audio/wav", "data": "UklGRg", "displayName": "a.wav"}},
                {"inlineData": {"mimeType": "application/pdf", "data": "JVBERi0", "displayName": "r.pdf"}},
            )
        ]
    }
    assert parse_generate(body, MODEL, stream=False)["messages"][0]["content"] == [
        {"type": "text", "text": "What is in these?"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
        {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg"}},
        {"type": "input_audio", "input_audio": {"data": "UklGRg==", "format": "wav"}},
        {"type": "file", "file": {"filename": "r.pdf", "file_data": "data:application/pdf;base64,JVBERi0="}},
    ]


def test_turn_shapes() -> None:
    call = {"functionCall": {"name": "f", "args": {"x": 1}, "id": "c1"}}
    answer = {"functionResponse": {"name": "f", "response": {"ok": True}, "id": "c1"}}
    thought = {"text": "hmm", "thought": True, "thoughtSignature": "c2ln"}
    body = {"contents": [user({"text": "a"}), user(thought, role="model"), user({"text": "b"})]}
    assert [m["content"] for m in parse_generate(body, MODEL, stream=False)["messages"]] == ["a", "b"]
    body = {
        "contents": [
            user({"text": "a"}),
            user(thought, call, role="model"),
            user({"text": "here"}, answer, role="function"),
        ]
    }
    messages = parse_generate(body, MODEL, stream=False)["messages"]
    assert [m["role"] for m in messages] == ["user", "assistant", "tool", "user"]
    assert messages[2]["tool_call_id"] == "c1" and messages[3]["content"] == "here"
    answer["functionResponse"]["name"] = "g"
    err = refused(lambda: parse_generate(body, MODEL, stream=False))
    assert (err.param, err.code) == ("contents.2.parts.1.functionResponse.name", "invalid_value")


def test_gemini_schemas_become_json_schema() -> None:
    schema = {
        "type": "OBJECT",
        "propertyOrdering": ["tags", "pet"],
        "properties": {
            "tags": {"type": "ARRAY", "items": {"type": "STRING", "example": "red"}, "max_items": 3},
            "pet": {"anyOf": [{"ref": "#/defs/cat"}, {"type": "NULL"}]},
            "extra": {"type": "TYPE_UNSPECIFIED", "additionalProperties": {"type": "INTEGER"}},
        },
        "defs": {"cat": {"type": "OBJECT", "additionalProperties": False}},
    }
    body: JSON = {
        "contents": [user({"text": "a"})],
        "generationConfig": {"responseMimeType": "application/json", "responseSchema": schema},
    }
    converted = parse_generate(body, MODEL, stream=False)["response_format"]["json_schema"]["schema"]
    assert converted == {
        "type": "object",
        "properties": {
            "tags": {"type": "array", "items": {"type": "string", "examples": ["red"]}, "maxItems": 3},
            "pet": {"anyOf": [{"$ref": "#/$defs/cat"}, {"type": "null"}]},
            "extra": {"additionalProperties": {"type": "integer"}},
        },
        "$defs": {"cat": {"type": "object", "additionalProperties": False}},
    }
    body["generationConfig"] = {"responseMimeType": "application/json", "responseJsonSchema": converted}
    assert parse_generate(body, MODEL, stream=False)["response_format"]["json_schema"]["schema"] == converted
    body["generationConfig"]["responseSchema"] = schema
    err = refused(lambda: parse_generate(body, MODEL, stream=False))
    assert (err.param, err.code) == ("generationConfig.responseJsonSchema", "invalid_value")


def test_tool_config_without_a_choice() -> None:
    body = load(CROSS / "tool_choice_auto" / "gemini.request.json")
    body["toolConfig"] = {"includeServerSideToolInvocations": True, "retrievalConfig": {}}
    assert "tool_choice" not in parse_generate(body, MODEL, stream=False)
    body["toolConfig"] = {"functionCallingConfig": {"mode": "MODE_UNSPECIFIED"}}
    assert "tool_choice" not in parse_generate(body, MODEL, stream=False)
    del body["tools"]
    body["toolConfig"] = {"functionCallingConfig": {"mode": "auto"}}
    req = parse_generate(body, MODEL, stream=False)
    assert "tool_choice" not in req and "tools" not in req
    body["toolConfig"] = {"includeServerSideToolInvocations": "yes"}
    err = refused(lambda: parse_generate(body, MODEL, stream=False))
    assert (err.param, err.code) == ("toolConfig.includeServerSideToolInvocations", "invalid_type")


# --- embeddings ---------------------------------------------------------------------------


def test_batch_embed_of_the_recorded_request() -> None:
    body = load(GEMINI / "error_404_not_found_embed.request.json")
    assert parse_batch_embed(body, "nonexistent-model") == {"model": "nonexistent-model", "input": ["Hello, world!"]}
    err = refused(lambda: parse_batch_embed(body, "text-embedding-004"))
    assert (err.param, err.code) == ("requests.0.model", "invalid_value")
    single = parse_embed({**body["requests"][0], "outputDimensionality": 8}, "models/nonexistent-model")
    assert single == {"model": "nonexistent-model", "input": "Hello, world!", "dimensions": 8}


def test_embeddings_render_from_a_recorded_openai_answer() -> None:
    raw = load(FIXTURES / "openai" / "embeddings_base64_two_inputs.json")
    req = load(FIXTURES / "openai" / "embeddings_base64_two_inputs.request.json")
    result = OpenAICompatProvider().embed_response(copy.deepcopy(raw), TARGET, req)
    expected = []
    for item in raw["data"]:
        packed = base64.b64decode(item["embedding"])
        expected.append(list(struct.unpack(f"<{len(packed) // 4}f", packed)))
    batch = types.EmbedContentResponse.model_validate(render_batch_embed(result))
    assert [e.values for e in batch.embeddings or []] == expected
    single = render_embed(result)
    assert list(single) == ["embedding"]
    assert types.ContentEmbedding.model_validate(single["embedding"]).values == expected[0]


# --- answers ------------------------------------------------------------------------------

GEMINI_ANSWERS = sorted(p for p in GEMINI.glob("generate_content_*.json") if not p.name.endswith(".request.json"))
OTHER_ANSWERS = [
    p
    for p in sorted(FIXTURES.glob("openai/chat_completion_*.json")) + sorted(FIXTURES.glob("anthropic/messages_*.json"))
    if not p.name.endswith(".request.json")
]
ANTHROPIC_TARGET = Target("anthropic", "claude", "https://api.anthropic.com/v1", api_key="k")


def validated(body: JSON) -> types.GenerateContentResponse:
    return types.GenerateContentResponse.model_validate(body)


def usage_counts(meta: types.GenerateContentResponseUsageMetadata | None) -> tuple[int | None, ...]:
    assert meta is not None
    return (
        meta.prompt_token_count,
        meta.candidates_token_count,
        meta.thoughts_token_count,
        meta.cached_content_token_count,
        meta.total_token_count,
    )


def canonical_completion(path: Path) -> JSON:
    body = load(path)
    if "anthropic" in path.parts:
        return AnthropicProvider().chat_response(body, ANTHROPIC_TARGET)
    return OpenAICompatProvider().chat_response(body, TARGET)


@pytest.mark.parametrize("path", GEMINI_ANSWERS, ids=rel)
def test_a_recorded_gemini_answer_renders_back_to_itself(path: Path) -> None:
    recorded = load(path)
    completion = GeminiProvider().chat_response(copy.deepcopy(recorded), TARGET)
    recorded["usageMetadata"].pop("serviceTier", None)  # newer than the SDK's types
    ours, theirs = validated(render_generate(completion, MODEL)), validated(recorded)
    assert ours.text == theirs.text
    assert [(c.name, c.args) for c in ours.function_calls or []] == [
        (c.name, c.args) for c in theirs.function_calls or []
    ]
    assert usage_counts(ours.usage_metadata) == usage_counts(theirs.usage_metadata)
    assert ours.candidates and theirs.candidates
    assert ours.candidates[0].finish_reason == theirs.candidates[0].finish_reason
    assert ours.response_id == theirs.response_id and ours.model_version == MODEL


@pytest.mark.parametrize("path", OTHER_ANSWERS, ids=rel)
def test_openai_and_anthropic_answers_render_for_the_sdk(path: Path) -> None:
    completion = canonical_completion(path)
    ours = validated(render_generate(completion, MODEL))
    message, usage = completion["choices"][0]["message"], completion["usage"]
    content = message.get("content") or ""
    assert (ours.text or "") == (content if isinstance(content, str) else "".join(p["text"] for p in content))
    calls = [
        (c["id"], c["function"]["name"], orjson.loads(c["function"]["arguments"]))
        for c in message.get("tool_calls") or []
    ]
    assert [(c.id, c.name, c.args) for c in ours.function_calls or []] == calls
    reasoning = (usage.get("completion_tokens_details") or {}).get("reasoning_tokens")
    cached = (usage.get("prompt_tokens_details") or {}).get("cached_tokens")
    assert usage_counts(ours.usage_metadata) == (
        usage["prompt_tokens"],
        usage["completion_tokens"] - (reasoning or 0),
        reasoning,
        cached,
        usage["total_tokens"],
    )
    assert ours.candidates and ours.candidates[0].finish_reason == {"length": "MAX_TOKENS"}.get(
        completion["choices"][0]["finish_reason"], "STOP"
    )


def test_render_finish_reasons_candidates_and_logprobs() -> None:
    completion = canonical_completion(FIXTURES / "openai" / "chat_completion_tool_call.json")
    second = copy.deepcopy(completion["choices"][0])
    second.update(index=1, finish_reason="content_filter")
    second["message"]["tool_calls"][0]["function"]["arguments"] = '{"unterminated'
    completion["choices"].append(second)
    completion["choices"][0]["logprobs"] = {
        "content": [
            {"token": "4", "logprob": -0.5, "top_logprobs": [{"token": "4", "logprob": -0.5}]},
            {"token": ".", "logprob": -1.5, "top_logprobs": []},
        ]
    }
    ours = validated(render_generate(completion, MODEL))
    first, other = ours.candidates or []
    assert first.avg_logprobs == -1.0 and first.logprobs_result is not None
    assert [c.token for c in first.logprobs_result.chosen_candidates or []] == ["4", "."]
    assert other.index == 1 and other.finish_reason == "MALFORMED_FUNCTION_CALL"
    assert other.content is not None and not any(p.function_call for p in other.content.parts or [])


# --- streams ------------------------------------------------------------------------------

STREAMS = (
    sorted(FIXTURES.glob("openai/*.sse")) + sorted(FIXTURES.glob("anthropic/*.sse")) + sorted(GEMINI.glob("*.sse"))
)


def decoder_for(path: Path) -> StreamDecoder:
    if "openai" in path.parts:
        return OpenAIStreamDecoder()
    if "anthropic" in path.parts:
        return AnthropicStreamDecoder("claude")
    return GeminiStreamDecoder(MODEL)


def canonical_batches(path: Path, seed: int = 0) -> list[list[JSON]]:
    """The chunk batches the server would feed an encoder for a recorded stream:
    one batch per event, regrouped at random, the decoder's ``finish`` last."""
    decoder = decoder_for(path)
    per_event = [decoder.on_event(e) for e in sse_events(random_pieces(path.read_bytes(), seed, 4096))]
    per_event.append(decoder.finish())
    rng = random.Random(seed)
    batches: list[list[JSON]] = []
    for chunks in per_event:
        if batches and rng.random() < 0.5:
            batches[-1].extend(chunks)
        else:
            batches.append(list(chunks))
    return batches


def assembled(batches: list[list[JSON]]) -> tuple[str, list[tuple[str, str, Any]], str | None, JSON | None]:
    """(text, calls, finish reason, usage) a canonical stream adds up to."""
    text, finish, usage = "", None, None
    calls: dict[int, JSON] = {}
    for chunk in (c for batch in batches for c in batch):
        usage = chunk.get("usage") or usage
        for choice in chunk["choices"]:
            delta = choice["delta"]
            text += delta.get("content") or ""
            for call in delta.get("tool_calls") or []:
                entry = calls.setdefault(call["index"], {"id": "", "name": "", "arguments": ""})
                entry["id"] = call.get("id") or entry["id"]
                entry["name"] += call.get("function", {}).get("name") or ""
                entry["arguments"] += call.get("function", {}).get("arguments") or ""
            finish = choice["finish_reason"] or finish
    done = [(c["id"], c["name"], orjson.loads(c["arguments"] or "{}")) for _, c in sorted(calls.items())]
    return text, done, finish, usage


def encoded(batches: list[list[JSON]], ending: GatewayError | None = None) -> bytes:
    stream = GenerateStream(MODEL)
    out = b"".join(stream.chunks(batch) for batch in batches)
    return out + (stream.finish() if ending is None else stream.error(ending))


def events_of(raw: bytes) -> list[JSON]:
    assert raw.endswith(b"\r\n\r\n")
    blocks = raw.split(b"\r\n\r\n")[:-1]
    assert all(b.startswith(b"data: ") for b in blocks)
    return [orjson.loads(b[len(b"data: ") :]) for b in blocks]


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("path", STREAMS, ids=rel)
def test_recorded_streams_encode_into_gemini_events(path: Path, seed: int) -> None:
    batches = canonical_batches(path, seed)
    text, calls, finish, usage = assembled(batches)
    events = [validated(e) for e in events_of(encoded(batches))]
    every = [p for e in events for p in (e.candidates or [])[0].content.parts or []]  # type: ignore[union-attr]
    parts = [p for p in every if not p.thought]
    assert all(e.candidates and e.candidates[0].content and e.candidates[0].content.parts for e in events)
    assert "".join(p.text or "" for p in parts) == text
    reasoning = "".join(
        c["choices"][0]["delta"].get("reasoning_content") or "" for b in batches for c in b if c["choices"]
    )
    assert "".join(p.text or "" for p in every if p.thought) == reasoning  # thoughts as thought parts
    assert [(p.function_call.id, p.function_call.name, p.function_call.args) for p in parts if p.function_call] == calls
    last = events[-1]
    assert last.candidates and all(e.candidates and e.candidates[0].finish_reason is None for e in events[:-1])
    assert last.candidates[0].finish_reason == ("MAX_TOKENS" if finish == "length" else "STOP")
    if usage is None:
        assert last.usage_metadata is None
    else:
        meta = last.usage_metadata
        assert meta is not None and meta.prompt_token_count == usage["prompt_tokens"]
        assert meta.total_token_count == usage["total_tokens"]
    assert {e.model_version for e in events} == {MODEL}


def test_a_function_call_goes_out_whole_once_its_arguments_are_complete() -> None:
    chunks = [c for b in canonical_batches(FIXTURES / "openai" / "chat_stream_tool_call_include_usage.sse") for c in b]
    calls = [c for c in chunks if c["choices"] and c["choices"][0]["delta"].get("tool_calls")]
    second = copy.deepcopy(calls)  # the recorded call again, as a second parallel call
    for chunk in second:
        for delta in chunk["choices"][0]["delta"]["tool_calls"]:
            delta.update(index=1, **({"id": "call_second"} if "id" in delta else {}))
    starts = chunks.index(calls[-1]) + 1
    chunks[starts:starts] = second
    stream = GenerateStream(MODEL)
    out = [stream.chunks([c]) for c in chunks]
    finish = next(i for i, c in enumerate(chunks) if c["choices"] and c["choices"][0]["finish_reason"])
    # the first call leaves when the second starts, the second at the finish reason
    assert [i for i, raw in enumerate(out) if raw] == [starts, finish]
    parts = [events_of(out[i])[0]["candidates"][0]["content"]["parts"] for i in (starts, finish)]
    assert [p[0]["functionCall"]["id"] for p in parts] == [
        calls[0]["choices"][0]["delta"]["tool_calls"][0]["id"],
        "call_second",
    ]
    assert parts[0][0]["functionCall"]["args"] == parts[1][0]["functionCall"]["args"] == {"country": "UK"}
    assert b"finishReason" in stream.finish() and stream.finish() == b""


def test_an_error_ends_the_stream_in_googles_envelope() -> None:
    batches = canonical_batches(GEMINI / "stream_text_three_chunks.sse")
    events = events_of(encoded(batches[:1], UpstreamTimeout("upstream took too long")))
    assert events[-1] == {
        "error": {
            "code": 504,
            "message": "upstream took too long",
            "status": "DEADLINE_EXCEEDED",
            "details": [
                {
                    "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                    "reason": "UPSTREAM_TIMEOUT",
                    "domain": "gateway",
                    "metadata": {"code": "upstream_timeout"},
                }
            ],
        }
    }


def test_a_stream_with_a_malformed_call_or_a_filter_says_so() -> None:
    batches = canonical_batches(FIXTURES / "openai" / "chat_stream_tool_call_include_usage.sse")
    for chunk in (c for b in batches for c in b):
        for delta in chunk["choices"][0]["delta"].get("tool_calls", []) if chunk["choices"] else []:
            delta["function"]["arguments"] = "{"
    events = events_of(encoded(batches))
    assert "functionCall" not in orjson.dumps(events).decode()
    assert events[-1]["candidates"][0]["finishReason"] == "MALFORMED_FUNCTION_CALL"
    batches = canonical_batches(FIXTURES / "openai" / "chat_stream_text_include_usage.sse")
    for chunk in (c for b in batches for c in b):
        if chunk["choices"] and chunk["choices"][0]["finish_reason"]:
            chunk["choices"][0]["finish_reason"] = "content_filter"
    stream = GenerateStream(MODEL)
    head = b"".join(stream.chunks(b) for b in batches)
    assert events_of(head + stream.finish())[-1]["candidates"][0]["finishReason"] == "SAFETY"
    assert stream.chunks(batches[0]) == stream.finish() == stream.error(GatewayError("late")) == b""


def test_rendering_refuses_what_is_not_an_answer() -> None:
    with pytest.raises(UpstreamBadResponse):
        render_generate({"choices": []}, MODEL)
    with pytest.raises(UpstreamBadResponse):
        render_batch_embed({"data": [{"embedding": ["x"]}]})
    with pytest.raises(UpstreamBadResponse):
        render_embed({"data": []})
    floats = {"data": [{"index": 1, "embedding": [0.5]}, {"index": 0, "embedding": [1, 2]}]}
    assert render_batch_embed(floats) == {"embeddings": [{"values": [1.0, 2.0]}, {"values": [0.5]}]}
    completion = canonical_completion(FIXTURES / "openai" / "chat_completion_text_after_tool_result.json")
    completion["choices"][0].update(finish_reason=None, message={"role": "assistant", "content": None})
    completion["usage"] = None
    rendered = render_generate(completion, MODEL)
    assert rendered["candidates"][0]["content"]["parts"] == [{"text": ""}]
    assert rendered["candidates"][0]["finishReason"] == "STOP" and "usageMetadata" not in rendered


# --- the SDK, end to end ---------------------------------------------------------------------


def sdk(handler: Callable[[httpx.Request], httpx.Response]) -> genai.Client:
    transport = httpx.MockTransport(handler)
    options = types.HttpOptions(base_url="http://gateway.test", httpx_client=httpx.Client(transport=transport))
    return genai.Client(api_key="k", http_options=options)


def url_model(request: httpx.Request) -> str:
    return request.url.path.split("/models/", 1)[1].split(":", 1)[0]


def json_response(body: JSON, status: int = 200) -> httpx.Response:
    return httpx.Response(status, content=orjson.dumps(body), headers={"content-type": "application/json"})


def test_sdk_generate_content_through_the_dialect() -> None:
    completion = canonical_completion(FIXTURES / "openai" / "chat_completion_tool_call.json")
    seen: list[JSON] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(parse_generate(orjson.loads(request.content), url_model(request), stream=False))
        return json_response(render_generate(completion, url_model(request)))

    declaration = types.FunctionDeclaration(
        name="get_weather", description="Weather.", parameters_json_schema={"type": "object", "properties": {}}
    )
    config = types.GenerateContentConfig(
        system_instruction="Be brief.",
        temperature=0.2,
        max_output_tokens=100,
        thinking_config=types.ThinkingConfig(thinking_budget=4096, include_thoughts=True),
        tools=[types.Tool(function_declarations=[declaration])],
        tool_config=types.ToolConfig(
            function_calling_config=types.FunctionCallingConfig(
                mode=types.FunctionCallingConfigMode.ANY, allowed_function_names=["get_weather"]
            )
        ),
    )
    response = sdk(handler).models.generate_content(model=MODEL, contents="Weather in Paris?", config=config)
    req = seen[0]
    assert req["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Weather in Paris?"},
    ]
    assert (req["temperature"], req["max_tokens"], req["reasoning_effort"]) == (0.2, 100, "low")
    assert (req["reasoning_budget"], req["include_reasoning"]) == (4096, True)
    assert req["tool_choice"] == {"type": "function", "function": {"name": "get_weather"}}
    call = completion["choices"][0]["message"]["tool_calls"][0]
    assert response.function_calls and response.function_calls[0].name == call["function"]["name"]
    assert response.function_calls[0].args == orjson.loads(call["function"]["arguments"])


def test_sdk_streams_and_keeps_the_chat_history() -> None:
    path = FIXTURES / "anthropic" / "stream_text.sse"
    text, _, _, usage = assembled(canonical_batches(path))

    def handler(request: httpx.Request) -> httpx.Response:
        parse_generate(orjson.loads(request.content), url_model(request), stream=True)
        body = encoded(canonical_batches(path))
        return httpx.Response(200, content=body, headers={"content-type": "text/event-stream"})

    chat = sdk(handler).chats.create(model=MODEL)
    chunks = list(chat.send_message_stream("Hello"))
    assert "".join(c.text or "" for c in chunks) == text
    assert usage is not None and usage_counts(chunks[-1].usage_metadata)[0] == usage["prompt_tokens"]
    history = chat.get_history(curated=True)
    assert [c.role for c in history][:2] == ["user", "model"]
    assert "".join(p.text or "" for c in history[1:] for p in c.parts or []) == text


def test_sdk_raises_the_error_sent_inside_a_stream() -> None:
    batches = canonical_batches(GEMINI / "stream_text_three_chunks.sse")

    def handler(request: httpx.Request) -> httpx.Response:
        body = encoded(batches[:1], UpstreamUnavailable("connection refused"))
        return httpx.Response(200, content=body, headers={"content-type": "text/event-stream"})

    with pytest.raises(genai_errors.ServerError) as info:
        list(sdk(handler).models.generate_content_stream(model=MODEL, contents="Hi"))
    assert (info.value.code, info.value.status) == (502, "UNAVAILABLE")


@pytest.mark.parametrize(
    ("err", "sdk_error", "status"),
    [
        (InvalidRequest("bad", param="contents.0"), genai_errors.ClientError, "INVALID_ARGUMENT"),
        (AuthenticationFailed("bad key"), genai_errors.ClientError, "UNAUTHENTICATED"),
        (NotFound("no such model", code="model_not_found"), genai_errors.ClientError, "NOT_FOUND"),
        (RateLimited("slow down", retry_after=3), genai_errors.ClientError, "RESOURCE_EXHAUSTED"),
        (NoDeploymentAvailable("none"), genai_errors.ServerError, "UNAVAILABLE"),
    ],
)
def test_sdk_raises_rendered_errors(err: GatewayError, sdk_error: type[Exception], status: str) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        code, body = render_error(err)
        return httpx.Response(code, content=body, headers={"content-type": "application/json"})

    with pytest.raises(sdk_error) as info:
        sdk(handler).models.generate_content(model=MODEL, contents="Hi")
    raised = info.value
    assert isinstance(raised, genai_errors.APIError)
    assert (raised.code, raised.status, raised.message) == (err.http_status, status, err.message)


def test_sdk_embeddings_count_tokens_and_models() -> None:
    raw = load(FIXTURES / "openai" / "embeddings_base64_two_inputs.json")
    req = load(FIXTURES / "openai" / "embeddings_base64_two_inputs.request.json")
    result = OpenAICompatProvider().embed_response(raw, TARGET, req)
    seen: list[JSON] = []

    def handler(request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if path.endswith(":batchEmbedContents"):
            seen.append(parse_batch_embed(orjson.loads(request.content), url_model(request)))
            return json_response(render_batch_embed(result))
        if path.endswith(":countTokens"):
            seen.append(parse_count_tokens(orjson.loads(request.content), url_model(request)))
            return json_response(count_tokens_body(12, estimated=True))
        if path.endswith("/models"):
            return json_response(model_list([(MODEL, "chat"), ("embedder", "embedding")]))
        return json_response(model_card(url_model(request), "chat"))

    client = sdk(handler)
    config = types.EmbedContentConfig(output_dimensionality=3, task_type="RETRIEVAL_DOCUMENT")
    embedded = client.models.embed_content(model="embedder", contents=["first", "second"], config=config)
    assert seen[0] == {"model": "embedder", "input": ["first", "second"], "dimensions": 3}
    assert len(embedded.embeddings or []) == 2
    assert client.models.count_tokens(model=MODEL, contents="Hello").total_tokens == 12
    assert seen[1]["messages"] == [{"role": "user", "content": "Hello"}]
    listed = list(client.models.list())
    assert [(m.name, m.supported_actions) for m in listed] == [
        (f"models/{MODEL}", ["generateContent", "streamGenerateContent", "countTokens"]),
        ("models/embedder", ["embedContent", "batchEmbedContents"]),
    ]
    assert client.models.get(model=MODEL).display_name == MODEL


# --- errors ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("err", "status", "name"),
    [
        (InvalidRequest("bad", param="contents.0.role", code="unsupported_value"), 400, "INVALID_ARGUMENT"),
        (AuthenticationFailed("bad key"), 401, "UNAUTHENTICATED"),
        (PermissionDenied("no"), 403, "PERMISSION_DENIED"),
        (NotFound("gone"), 404, "NOT_FOUND"),
        (MethodNotAllowed("no"), 405, "INVALID_ARGUMENT"),
        (RequestTooLarge("big"), 413, "INVALID_ARGUMENT"),
        (RateLimited("slow", retry_after=7), 429, "RESOURCE_EXHAUSTED"),
        (BudgetExceeded("spent", retry_after=60), 429, "RESOURCE_EXHAUSTED"),
        (GatewayError("boom"), 500, "INTERNAL"),
        (UpstreamUnavailable("down"), 502, "UNAVAILABLE"),
        (BackendDegraded("redis"), 503, "UNAVAILABLE"),
        (NoDeploymentAvailable("none"), 503, "UNAVAILABLE"),
        (UpstreamTimeout("slow"), 504, "DEADLINE_EXCEEDED"),
    ],
)
def test_render_error_in_googles_envelope(err: GatewayError, status: int, name: str) -> None:
    code, raw = render_error(err)
    body = orjson.loads(raw)["error"]
    assert (code, body["code"], body["status"], body["message"]) == (status, status, name, err.message)
    details = {d["@type"].rsplit(".", 1)[1]: d for d in body["details"]}
    reason = "API_KEY_INVALID" if status == 401 else err.code.upper()
    assert details["ErrorInfo"]["reason"] == reason
    if err.param:
        assert details["BadRequest"]["fieldViolations"] == [{"field": err.param, "description": err.message}]
    if "retry-after" in err.headers:
        assert details["RetryInfo"]["retryDelay"] == f"{err.headers['retry-after']}s"
    assert set(details) <= {"ErrorInfo", "BadRequest", "RetryInfo"}


@pytest.mark.parametrize(
    ("name", "status", "retry_delay"),
    [
        ("error_400_invalid_argument_live_vercel.json", 400, None),
        ("error_429_resource_exhausted_vercel.json", 429, "34s"),
    ],
)
def test_recorded_gemini_errors_keep_their_status(name: str, status: int, retry_delay: str | None) -> None:
    recorded = load(GEMINI / name)
    envelope = recorded.get("thinkingLevelAndBudgetResponse", recorded)
    err = gemini_error(status, {}, orjson.dumps(envelope))
    code, raw = render_error(err)
    body = orjson.loads(raw)["error"]
    assert (code, body["code"], body["status"]) == (status, envelope["error"]["code"], envelope["error"]["status"])
    assert body["message"] == envelope["error"]["message"]
    delays = [d["retryDelay"] for d in body["details"] if d["@type"].endswith("RetryInfo")]
    assert delays == ([retry_delay] if retry_delay else [])


def test_a_deployment_fault_upstream_is_not_blamed_on_the_client() -> None:
    recorded = load(GEMINI / "error_404_not_found_model.json")
    code, raw = render_error(gemini_error(404, {}, orjson.dumps(recorded)))
    assert (code, orjson.loads(raw)["error"]["status"]) == (502, "UNAVAILABLE")
    assert isinstance(gemini_error(404, {}, orjson.dumps(recorded)), UpstreamError)


# --- pass-through: the deployment's policy on the client's own body -------------------------


def test_apply_native_defaults_ranges_and_cap() -> None:
    body = load(GEMINI / "stream_text_three_chunks.request.json")
    before = copy.deepcopy(body)
    params = Params(
        defaults={"temperature": 0.7, "max_tokens": 100, "stop": "END", "top_k": 20, "user": "ignored"},
        ranges={"temperature": [0.2, 1.0], "top_k": [1, 10]},
        max_tokens_cap=50,
    )
    out = apply_native(body, params, frozenset())
    assert body == before and out is not body
    assert out["generationConfig"] == {"temperature": 0.2, "maxOutputTokens": 50, "stopSequences": ["END"], "topK": 10}
    assert {k: v for k, v in out.items() if k != "generationConfig"} == {
        k: v for k, v in body.items() if k != "generationConfig"
    }


def test_apply_native_keeps_the_clients_spelling() -> None:
    body = load(GEMINI / "generate_content_thinking_budget_1024.request.json")
    body["generation_config"] = {**body.pop("generationConfig"), "max_output_tokens": 900, "top_p": 0.99}
    params = Params(ranges={"top_p": [0.1, 0.9]}, max_tokens_cap=500)
    out = apply_native(body, params, frozenset({"reasoning_effort"}))
    assert out["generation_config"] == {"max_output_tokens": 500, "top_p": 0.9}
    assert "generationConfig" not in out


def test_apply_native_drops_and_leaves_everything_else_alone() -> None:
    for name in ("generate_content_inline_audio.request.json", "generate_content_cached_content.request.json"):
        body = load(GEMINI / name)
        body["generationConfig"] = {"temperature": 1.5, "seed": 3, "candidateCount": 1, "responseModalities": ["TEXT"]}
        out = apply_native(body, Params(), frozenset({"temperature", "seed", "n"}))
        assert out["generationConfig"] == {"responseModalities": ["TEXT"]}
        assert {k: v for k, v in out.items() if k != "generationConfig"} == {
            k: v for k, v in body.items() if k != "generationConfig"
        }
    body = load(GEMINI / "generate_content_text.request.json")
    assert apply_native(body, Params(), frozenset()) == body
    del body["generationConfig"]
    assert "generationConfig" not in apply_native(body, Params(), frozenset({"temperature"}))
    assert apply_native(body, Params(max_tokens_cap=10), frozenset())["generationConfig"] == {"maxOutputTokens": 10}


# --- model list, counts -------------------------------------------------------------------------


def test_model_cards_and_token_counts() -> None:
    assert model_card("embedder", "embedding")["name"] == "models/embedder"
    assert model_card("embedder", "embedding")["supportedGenerationMethods"] == ["embedContent", "batchEmbedContents"]
    with pytest.raises(ValueError, match="kind"):
        model_card("x", "image")
    assert model_list([]) == {"models": []}
    assert count_tokens_body(5, estimated=False) == {"totalTokens": 5}
    assert count_tokens_body(5, estimated=True) == {"totalTokens": 5, "estimated": True}
    assert types.CountTokensResponse.model_validate(count_tokens_body(5, estimated=False)).total_tokens == 5


# --- bad input ------------------------------------------------------------------------------------


def user(*parts: JSON, role: str = "user") -> JSON:
    return {"role": role, "parts": list(parts)}


CALL = user({"functionCall": {"name": "f", "args": {}}}, role="model")
JPEG = {"mimeType": "image/jpeg", "data": "aGk="}

BAD_BODIES: list[tuple[Any, str, str]] = [
    ([], "body", "invalid_type"),
    ({}, "contents", "missing_required_parameter"),
    ({"contents": {}}, "contents", "invalid_type"),
    ({"contents": []}, "contents", "invalid_value"),
    ({"contents": ["hi"]}, "contents.0", "invalid_type"),
    ({"contents": [{"role": "user"}]}, "contents.0.parts", "missing_required_parameter"),
    ({"contents": [user()]}, "contents.0.parts", "invalid_value"),
    ({"contents": [user({})]}, "contents.0.parts.0", "missing_required_parameter"),
    ({"contents": [user({"image": "x"})]}, "contents.0.parts.0.image", "unsupported_value"),
    ({"contents": [user({"text": "a", "inlineData": JPEG})]}, "contents.0.parts.0", "invalid_value"),
    ({"contents": [user({"text": 5})]}, "contents.0.parts.0.text", "invalid_type"),
    ({"contents": [user({"text": "a", "thought": "yes"})]}, "contents.0.parts.0.thought", "invalid_type"),
    ({"contents": [user({"text": "a"}, role="system")]}, "contents.0.role", "unsupported_value"),
    ({"contents": [user({"text": "a"}, role=5)]}, "contents.0.role", "invalid_type"),  # type: ignore[arg-type]
    (
        {"contents": [user({"functionResponse": {"name": "f", "response": {}}})]},
        "contents.0.parts.0.functionResponse",
        "invalid_value",
    ),
    (
        {"contents": [CALL, user({"functionResponse": {"name": "g", "response": {}}})]},
        "contents.1.parts.0.functionResponse",
        "invalid_value",
    ),
    (
        {"contents": [CALL, user({"functionResponse": {"name": "f", "response": "ok"}})]},
        "contents.1.parts.0.functionResponse.response",
        "invalid_type",
    ),
    (
        {"contents": [CALL, user({"functionResponse": {"name": "f", "response": {}, "parts": []}})]},
        "contents.1.parts.0.functionResponse.parts",
        "unsupported_value",
    ),
    ({"contents": [CALL, user({"text": "and?"})]}, "contents.0.parts.0", "invalid_value"),
    ({"contents": [CALL, CALL]}, "contents.0.parts.0", "invalid_value"),
    ({"contents": [user({"functionCall": {"name": "f"}})]}, "contents.0.parts.0.functionCall", "invalid_value"),
    (
        {"contents": [user({"functionCall": {"name": ""}}, role="model")]},
        "contents.0.parts.0.functionCall.name",
        "invalid_value",
    ),
    (
        {"contents": [user({"functionCall": {"name": "f", "args": "{}"}}, role="model")]},
        "contents.0.parts.0.functionCall.args",
        "invalid_type",
    ),
    ({"contents": [user({"inlineData": JPEG}, role="model")]}, "contents.0.parts.0.inlineData", "unsupported_value"),
    (
        {"contents": [user({"inlineData": {"mimeType": "video/mp4", "data": "aGk="}})]},
        "contents.0.parts.0.inlineData.mimeType",
        "unsupported_value",
    ),
    (
        {"contents": [user({"inlineData": {"mimeType": "audio/ogg", "data": "aGk="}})]},
        "contents.0.parts.0.inlineData.mimeType",
        "unsupported_value",
    ),
    (
        {"contents": [user({"inlineData": {"data": "aGk="}})]},
        "contents.0.parts.0.inlineData.mimeType",
        "missing_required_parameter",
    ),
    (
        {"contents": [user({"inlineData": {"mimeType": "image/png", "data": "not base64!"}})]},
        "contents.0.parts.0.inlineData.data",
        "invalid_value",
    ),
    (
        {"contents": [user({"inlineData": {"mimeType": "image/png", "data": "aGk=x"}})]},
        "contents.0.parts.0.inlineData.data",
        "invalid_value",
    ),
    (
        {"contents": [user({"inlineData": {"mimeType": "image/png", "data": "aGkzA"}})]},
        "contents.0.parts.0.inlineData.data",
        "invalid_value",
    ),
    (
        {"contents": [user({"fileData": {"mimeType": "image/png", "fileUri": "gs://b/x.png"}})]},
        "contents.0.parts.0.fileData",
        "unsupported_value",
    ),
    (
        {
            "contents": [
                user(
                    {
                        "fileData": {
                            "mimeType": "image/png",
                            "fileUri": "https://generativelanguage.googleapis.com/v1beta/files/x",
                        }
                    }
                )
            ]
        },
        "contents.0.parts.0.fileData",
        "unsupported_value",
    ),
    (
        {"contents": [user({"fileData": {"mimeType": "application/pdf", "fileUri": "https://x.test/a.pdf"}})]},
        "contents.0.parts.0.fileData",
        "unsupported_value",
    ),
    (
        {"contents": [user({"executableCode": {"language": "PYTHON", "code": "1"}})]},
        "contents.0.parts.0.executableCode",
        "unsupported_value",
    ),
    ({"contents": [user({"text": "hi", "thought": True})]}, "contents", "invalid_value"),
    ({"contents": [user({"text": "a"})], "foo": 1}, "foo", "unsupported_value"),
    (
        {"contents": [user({"text": "a"})], "systemInstruction": {"parts": [{"text": "a"}]}, "system_instruction": {}},
        "systemInstruction",
        "invalid_value",
    ),
    (
        {"contents": [user({"text": "a"})], "systemInstruction": {"parts": [{"inlineData": JPEG}]}},
        "systemInstruction.parts.0.inlineData",
        "unsupported_value",
    ),
    ({"contents": [user({"text": "a"})], "systemInstruction": "be nice"}, "systemInstruction", "invalid_type"),
    ({"contents": [user({"text": "a"})], "cachedContent": 5}, "cachedContent", "invalid_type"),
    ({"contents": [user({"text": "a"})], "safetySettings": {}}, "safetySettings", "invalid_type"),
    ({"contents": [user({"text": "a"})], "serviceTier": "gold"}, "serviceTier", "unsupported_value"),
    ({"contents": [user({"text": "a"})], "tools": [{"googleSearch": {}}]}, "tools.0", "unsupported_value"),
    ({"contents": [user({"text": "a"})], "tools": [{"codeExecution": {}}]}, "tools.0", "unsupported_value"),
    (
        {"contents": [user({"text": "a"})], "tools": [{"functionDeclarations": [{"description": "x"}]}]},
        "tools.0.functionDeclarations.0.name",
        "invalid_type",
    ),
    (
        {
            "contents": [user({"text": "a"})],
            "tools": [{"functionDeclarations": [{"name": "f", "parameters": {"type": "TEXT"}}]}],
        },
        "tools.0.functionDeclarations.0.parameters.type",
        "unsupported_value",
    ),
    (
        {
            "contents": [user({"text": "a"})],
            "tools": [{"functionDeclarations": [{"name": "f", "parameters": {}, "parametersJsonSchema": {}}]}],
        },
        "tools.0.functionDeclarations.0.parametersJsonSchema",
        "invalid_value",
    ),
    (
        {"contents": [user({"text": "a"})], "toolConfig": {"functionCallingConfig": {"mode": "SOMETIMES"}}},
        "toolConfig.functionCallingConfig.mode",
        "unsupported_value",
    ),
    (
        {"contents": [user({"text": "a"})], "toolConfig": {"functionCallingConfig": {"mode": "ANY"}}},
        "toolConfig.functionCallingConfig.mode",
        "invalid_value",
    ),
    (
        {
            "contents": [user({"text": "a"})],
            "tools": [{"functionDeclarations": [{"name": "f"}]}],
            "toolConfig": {"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["g"]}},
        },
        "toolConfig.functionCallingConfig.allowedFunctionNames.0",
        "invalid_value",
    ),
    (
        {
            "contents": [user({"text": "a"})],
            "tools": [{"functionDeclarations": [{"name": "f"}]}],
            "toolConfig": {"functionCallingConfig": {"mode": "AUTO", "allowedFunctionNames": ["f"]}},
        },
        "toolConfig.functionCallingConfig.allowedFunctionNames",
        "invalid_value",
    ),
    ({"contents": [user({"text": "a"})], "generationConfig": []}, "generationConfig", "invalid_type"),
    (
        {"contents": [user({"text": "a"})], "generationConfig": {"temperature": "hot"}},
        "generationConfig.temperature",
        "invalid_type",
    ),
    (
        {"contents": [user({"text": "a"})], "generationConfig": {"temperature": 3}},
        "generationConfig.temperature",
        "invalid_value",
    ),
    ({"contents": [user({"text": "a"})], "generationConfig": {"topK": 1.5}}, "generationConfig.topK", "invalid_type"),
    (
        {"contents": [user({"text": "a"})], "generationConfig": {"maxOutputTokens": 0}},
        "generationConfig.maxOutputTokens",
        "invalid_value",
    ),
    (
        {"contents": [user({"text": "a"})], "generationConfig": {"stopSequences": "END"}},
        "generationConfig.stopSequences",
        "invalid_type",
    ),
    (
        {"contents": [user({"text": "a"})], "generationConfig": {"responseMimeType": "text/x.enum"}},
        "generationConfig.responseMimeType",
        "unsupported_value",
    ),
    (
        {"contents": [user({"text": "a"})], "generationConfig": {"responseSchema": {"type": "STRING"}}},
        "generationConfig.responseMimeType",
        "invalid_value",
    ),
    (
        {"contents": [user({"text": "a"})], "generationConfig": {"responseModalities": ["AUDIO"]}},
        "generationConfig.responseModalities.0",
        "unsupported_value",
    ),
    (
        {"contents": [user({"text": "a"})], "generationConfig": {"speechConfig": {}}},
        "generationConfig.speechConfig",
        "unsupported_value",
    ),
    (
        {"contents": [user({"text": "a"})], "generationConfig": {"logprobs": 3}},
        "generationConfig.logprobs",
        "invalid_value",
    ),
    (
        {"contents": [user({"text": "a"})], "generationConfig": {"thinkingConfig": {"thinkingBudget": -5}}},
        "generationConfig.thinkingConfig.thinkingBudget",
        "invalid_value",
    ),
    (
        {"contents": [user({"text": "a"})], "generationConfig": {"thinkingConfig": {"thinkingLevel": "ULTRA"}}},
        "generationConfig.thinkingConfig.thinkingLevel",
        "unsupported_value",
    ),
    (
        {
            "contents": [user({"text": "a"})],
            "generationConfig": {"thinkingConfig": {"thinkingLevel": "LOW", "thinkingBudget": 5}},
        },
        "generationConfig.thinkingConfig.thinkingLevel",
        "invalid_value",
    ),
    (
        {"contents": [user({"text": "a"})], "generationConfig": {"thinking_config": {"includeThoughts": 1}}},
        "generationConfig.thinkingConfig.includeThoughts",
        "invalid_type",
    ),
]


@pytest.mark.parametrize(("body", "param", "code"), BAD_BODIES, ids=[f"{p}:{c}" for _, p, c in BAD_BODIES])
def test_bad_generate_bodies_are_refused_naming_the_field(body: Any, param: str, code: str) -> None:
    err = refused(lambda: parse_generate(body, MODEL, stream=False))
    assert (err.param, err.code) == (param, code), err.message
    assert orjson.loads(render_error(err)[1])["error"]["status"] == "INVALID_ARGUMENT"


def test_more_than_one_candidate_is_refused_on_a_stream_only() -> None:
    body = {"contents": [user({"text": "a"})], "generationConfig": {"candidateCount": 2}}
    assert parse_generate(body, MODEL, stream=False)["n"] == 2
    err = refused(lambda: parse_generate(body, MODEL, stream=True))
    assert (err.param, err.code) == ("generationConfig.candidateCount", "invalid_value")


def test_a_bad_model_name_is_refused() -> None:
    err = refused(lambda: parse_generate({"contents": [user({"text": "a"})]}, "models/", stream=False))
    assert err.param == "model"


BAD_EMBEDS: list[tuple[Callable[[], Any], str, str]] = [
    (lambda: parse_batch_embed({}, "e"), "requests", "missing_required_parameter"),
    (lambda: parse_batch_embed({"requests": []}, "e"), "requests", "invalid_value"),
    (
        lambda: parse_batch_embed({"requests": [{"model": "models/e"}]}, "e"),
        "requests.0.content",
        "missing_required_parameter",
    ),
    (
        lambda: parse_batch_embed(
            {
                "requests": [
                    {"model": "models/e", "content": {"parts": [{"text": "a"}]}},
                    {"model": "models/f", "content": {"parts": [{"text": "b"}]}},
                ]
            },
            "e",
        ),
        "requests.1.model",
        "invalid_value",
    ),
    (
        lambda: parse_batch_embed(
            {
                "requests": [
                    {"content": {"parts": [{"text": "a"}]}, "outputDimensionality": 3},
                    {"content": {"parts": [{"text": "b"}]}},
                ]
            },
            "e",
        ),
        "requests.1.outputDimensionality",
        "invalid_value",
    ),
    (
        lambda: parse_embed({"content": {"parts": [{"inlineData": JPEG}]}}, "e"),
        "content.parts.0.inlineData",
        "unsupported_value",
    ),
    (lambda: parse_embed({"content": {"parts": [{"text": ""}]}}, "e"), "content.parts", "missing_required_parameter"),
    (lambda: parse_embed({"content": {"parts": [{"text": "a"}]}, "taskType": 3}, "e"), "taskType", "invalid_type"),
    (
        lambda: parse_embed({"content": {"parts": [{"text": "a"}]}, "outputDimensionality": 0}, "e"),
        "outputDimensionality",
        "invalid_value",
    ),
    (
        lambda: parse_embed({"content": {"parts": [{"text": "a"}]}, "model": "models/other"}, "e"),
        "model",
        "invalid_value",
    ),
    (
        lambda: parse_count_tokens({"contents": [], "generateContentRequest": {}}, "m"),
        "generateContentRequest",
        "invalid_value",
    ),
    (
        lambda: parse_count_tokens({"generateContentRequest": {"contents": [user({"text": "a"}, role="bot")]}}, "m"),
        "generateContentRequest.contents.0.role",
        "unsupported_value",
    ),
    (lambda: parse_count_tokens({"generateContentRequest": []}, "m"), "generateContentRequest", "invalid_type"),
    (lambda: parse_count_tokens({"prompt": "a"}, "m"), "prompt", "unsupported_value"),
]


@pytest.mark.parametrize(("call", "param", "code"), BAD_EMBEDS, ids=[f"{p}:{c}" for _, p, c in BAD_EMBEDS])
def test_bad_embed_and_count_bodies_are_refused(call: Callable[[], Any], param: str, code: str) -> None:
    err = refused(call)
    assert (err.param, err.code) == (param, code), err.message
