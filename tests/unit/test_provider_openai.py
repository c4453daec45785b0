"""The OpenAI / OpenAI-compatible translator, driven by the recorded fixtures in shared/fixtures."""

from __future__ import annotations

import copy
import json
import textwrap
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson
import pytest
from multidict import CIMultiDict

from gateway.canonical import JSON
from gateway.config.loader import parse_config
from gateway.errors import UpstreamBadResponse, UpstreamError
from gateway.providers.base import Provider, SSEEvent, StreamDecoder, Target
from gateway.providers.openai_compat import OpenAICompatProvider, OpenAIStreamDecoder, openai_error
from gateway.providers.registry import build_target, presets
from tests.unit.fixtures import FIXTURES, decode_events, load_bytes, load_json, random_pieces, sse_events

PROVIDER = OpenAICompatProvider()


# --- helpers ----------------------------------------------------------------------


def decode_stream(pieces: Iterable[bytes]) -> tuple[list[JSON], OpenAIStreamDecoder]:
    decoder = PROVIDER.stream_decoder(make_target())
    return decode_events(decoder, sse_events(pieces)), decoder


@dataclass
class Assembled:
    role: str | None = None
    text: str = ""
    calls: dict[int, JSON] = field(default_factory=dict)
    finish_reasons: list[str] = field(default_factory=list)
    usage: JSON | None = None
    usage_chunks: int = 0


def reassemble(chunks: list[JSON]) -> Assembled:
    out = Assembled()
    for chunk in chunks:
        assert chunk["object"] == "chat.completion.chunk"
        if chunk.get("usage") is not None:
            assert chunk["choices"] == [], "usage must come in the final usage-only chunk"
            out.usage = chunk["usage"]
            out.usage_chunks += 1
        for choice in chunk["choices"]:
            delta = choice["delta"]
            out.role = delta.get("role", out.role)
            out.text += delta.get("content") or ""
            for call in delta.get("tool_calls") or []:
                index = call["index"]
                if index not in out.calls:
                    out.calls[index] = {"id": call["id"], "name": call["function"]["name"], "arguments": ""}
                out.calls[index]["arguments"] += call["function"].get("arguments", "")
            if choice.get("finish_reason") is not None:
                out.finish_reasons.append(choice["finish_reason"])
    return out


def make_target(**kw: Any) -> Target:
    base: dict[str, Any] = {
        "provider": "openai",
        "model": "gpt-4.1-mini",
        "base_url": "https://api.openai.com/v1",
        "api_key": "sk-test",
    }
    base.update(kw)
    return Target(**base)


def target_from_config(deployment_yaml: str) -> Target:
    text = "models:\n  a:\n    deployments:\n" + textwrap.indent(textwrap.dedent(deployment_yaml).strip(), " " * 6)
    settings = parse_config(text, env={}).settings
    dep = settings.models["a"].deployments[0]
    return build_target(dep, presets()[dep.provider])


def wire_body(req: JSON, target: Target | None = None, *, stream: bool = False) -> JSON:
    body = PROVIDER.chat_request(req, target or make_target(), stream=stream).body
    assert body is not None
    parsed: JSON = orjson.loads(body)
    return parsed


def last_usage_in(raw: bytes) -> JSON:
    usage: JSON | None = None
    for event in sse_events([raw]):
        if event.data.startswith("{"):
            chunk = json.loads(event.data)
            if chunk.get("usage"):
                usage = chunk["usage"]
    assert usage is not None
    return usage


def test_types_satisfy_the_provider_protocols() -> None:
    provider: Provider = PROVIDER
    decoder: StreamDecoder = provider.stream_decoder(make_target())
    assert not decoder.done
    assert decoder.usage is None


# --- chat_request ----------------------------------------------------------------------


CHAT_REQUESTS = [
    "openai/chat_completion_tool_call.request.json",
    "openai/chat_completion_text_after_tool_result.request.json",
    "openai/chat_stream_text_include_usage.request.json",
    "openai/chat_stream_tool_call_include_usage.request.json",
    "openai_compatible/ollama_cloud_tool_call.request.json",
    "openai_compatible/ollama_local_json_schema.request.json",
    "openai_compatible/novita_stream_via_hf_router.request.json",
    "openai_compatible/groq_error_400_tool_use_failed.request.json",
]


@pytest.mark.parametrize("rel", CHAT_REQUESTS)
def test_chat_request_non_stream_is_the_request_with_model_replaced(rel: str) -> None:
    req = load_json(rel)
    original = copy.deepcopy(req)
    target = make_target(model="upstream-model-name")
    wire = PROVIDER.chat_request(req, target, stream=False)
    assert wire.method == "POST"
    assert wire.url == "https://api.openai.com/v1/chat/completions"
    assert wire.headers == {"content-type": "application/json", "authorization": "Bearer sk-test"}
    body = wire_body(req, target)
    expected = {k: v for k, v in original.items() if k not in ("stream", "stream_options")}
    expected["model"] = "upstream-model-name"
    assert body == expected
    assert req == original  # the canonical request is not mutated


@pytest.mark.parametrize("rel", CHAT_REQUESTS)
def test_chat_request_stream_asks_for_usage(rel: str) -> None:
    req = load_json(rel)
    original = copy.deepcopy(req)
    body = wire_body(req, make_target(model="m2"), stream=True)
    assert body["model"] == "m2"
    assert body["stream"] is True
    assert body["stream_options"] == {"include_usage": True}
    rest = {k: v for k, v in body.items() if k not in ("model", "stream", "stream_options")}
    assert rest == {k: v for k, v in original.items() if k not in ("model", "stream", "stream_options")}
    assert req == original


def test_stream_options_of_client_kept_and_usage_forced() -> None:
    req: JSON = {
        "model": "alias",
        "messages": [{"role": "user", "content": "hi"}],
        "stream": True,
        "stream_options": {"include_usage": False, "include_obfuscation": False},
    }
    body = wire_body(req, stream=True)
    assert body["stream_options"] == {"include_usage": True, "include_obfuscation": False}
    assert req["stream_options"] == {"include_usage": False, "include_obfuscation": False}


def test_drop_params_honoured() -> None:
    req: JSON = {
        "model": "alias",
        "messages": [{"role": "user", "content": "hi"}],
        "temperature": 0.3,
        "seed": 7,
        "parallel_tool_calls": False,
        "user": "u",
    }
    target = make_target(drop_params=frozenset({"seed", "parallel_tool_calls"}))
    body = wire_body(req, target)
    assert body == {
        "model": "gpt-4.1-mini",
        "messages": [{"role": "user", "content": "hi"}],
        "temperature": 0.3,
        "user": "u",
    }


def test_drop_stream_options_for_servers_that_refuse_it() -> None:
    req: JSON = {
        "model": "a",
        "messages": [{"role": "user", "content": "hi"}],
        "stream_options": {"include_usage": True},
    }
    body = wire_body(req, make_target(drop_params=frozenset({"stream_options"})), stream=True)
    assert body["stream"] is True
    assert "stream_options" not in body


def test_base_url_trailing_slash() -> None:
    wire = PROVIDER.chat_request({"messages": []}, make_target(base_url="http://localhost:11434/v1/"), stream=False)
    assert wire.url == "http://localhost:11434/v1/chat/completions"


def test_auth_header_and_scheme_variants_from_config() -> None:
    azure_like = target_from_config(
        """
        - provider: openai_compatible
          model: m
          base_url: https://example.openai.azure.com/openai
          api_key: az-key
          auth_header: Api-Key
          auth_scheme: ""
          headers: {X-Org-Id: org-1}
        """
    )
    wire = PROVIDER.chat_request({"messages": []}, azure_like, stream=False)
    assert wire.headers == {"content-type": "application/json", "api-key": "az-key", "x-org-id": "org-1"}
    assert wire.url == "https://example.openai.azure.com/openai/chat/completions"


def test_custom_auth_scheme() -> None:
    target = target_from_config(
        "- {provider: openai_compatible, model: m, base_url: 'http://h/v1', api_key: k, auth_scheme: Token}"
    )
    wire = PROVIDER.chat_request({"messages": []}, target, stream=False)
    assert wire.headers["authorization"] == "Token k"


def test_preset_defaults_for_openai_and_novita() -> None:
    openai = target_from_config("- {provider: openai, model: gpt-4o, api_key: sk-o}")
    assert PROVIDER.chat_request({}, openai, stream=False).url == "https://api.openai.com/v1/chat/completions"
    assert PROVIDER.chat_request({}, openai, stream=False).headers["authorization"] == "Bearer sk-o"
    novita = target_from_config("- {provider: novita, model: meta-llama/llama-3.1-8b-instruct, api_key: nv}")
    wire = PROVIDER.chat_request({}, novita, stream=False)
    assert wire.url == "https://api.novita.ai/v3/openai/chat/completions"
    assert orjson.loads(wire.body or b"{}")["model"] == "meta-llama/llama-3.1-8b-instruct"


def test_no_api_key_sends_no_auth_header() -> None:
    local = target_from_config("- {provider: openai_compatible, model: llama3, base_url: 'http://localhost:11434/v1'}")
    wire = PROVIDER.chat_request({}, local, stream=False)
    assert wire.headers == {"content-type": "application/json"}
    wire = PROVIDER.chat_request({}, make_target(api_key=None), stream=False)
    assert "authorization" not in wire.headers


def test_embed_request() -> None:
    req = load_json("openai/embeddings_base64.request.json")
    wire = PROVIDER.embed_request(
        req, make_target(model="text-embedding-3-small", drop_params=frozenset({"dimensions"}))
    )
    assert wire.method == "POST"
    assert wire.url == "https://api.openai.com/v1/embeddings"
    assert wire.headers["authorization"] == "Bearer sk-test"
    assert orjson.loads(wire.body or b"{}") == {
        "encoding_format": "base64",
        "input": ["Hello, world!"],
        "model": "text-embedding-3-small",
    }


# --- non-stream responses --------------------------------------------------------------


def test_chat_response_tool_call() -> None:
    body = PROVIDER.chat_response(load_json("openai/chat_completion_tool_call.json"), make_target())
    assert body["object"] == "chat.completion"
    choice = body["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    message = choice["message"]
    assert message["content"] is None
    assert message["tool_calls"] == [
        {
            "function": {"arguments": '{"city":"Tokyo"}', "name": "get_temperature"},
            "id": "call_bhZkmIKKItNGJ41whHUHB7p9",
            "type": "function",
        }
    ]
    assert json.loads(message["tool_calls"][0]["function"]["arguments"]) == {"city": "Tokyo"}
    usage = body["usage"]
    assert (usage["prompt_tokens"], usage["completion_tokens"], usage["total_tokens"]) == (50, 15, 65)
    assert usage["prompt_tokens_details"]["cached_tokens"] == 0


def test_chat_response_text() -> None:
    body = PROVIDER.chat_response(load_json("openai/chat_completion_text_after_tool_result.json"), make_target())
    message = body["choices"][0]["message"]
    assert message["content"] == "The temperature in Tokyo is currently 20.0 degrees Celsius."
    assert body["choices"][0]["finish_reason"] == "stop"
    assert body["usage"]["total_tokens"] == 90


def test_ollama_tool_call_empty_content_becomes_none() -> None:
    raw = load_json("openai_compatible/ollama_cloud_tool_call.json")
    assert raw["choices"][0]["message"]["content"] == ""
    body = PROVIDER.chat_response(raw, make_target())
    message = body["choices"][0]["message"]
    assert message["content"] is None
    assert message["tool_calls"][0]["function"] == {
        "arguments": '{"city":"Paris","country":"France"}',
        "name": "final_result",
    }
    assert message["tool_calls"][0]["id"] == "call_o2vnpxrw"
    assert body["choices"][0]["finish_reason"] == "tool_calls"
    assert body["usage"] == {"completion_tokens": 194, "prompt_tokens": 206, "total_tokens": 400}


def test_ollama_local_json_content_kept() -> None:
    body = PROVIDER.chat_response(load_json("openai_compatible/ollama_local_json_schema.json"), make_target())
    message = body["choices"][0]["message"]
    assert json.loads(message["content"]) == {"city": "Paris", "country": "France"}
    assert body["usage"] == {"completion_tokens": 15, "prompt_tokens": 136, "total_tokens": 151}


def test_empty_text_without_tool_calls_stays_empty_string() -> None:
    raw: JSON = {"choices": [{"index": 0, "message": {"role": "assistant", "content": ""}, "finish_reason": "length"}]}
    body = PROVIDER.chat_response(raw, make_target())
    assert body["choices"][0]["message"]["content"] == ""
    assert body["object"] == "chat.completion"  # filled in when missing


@pytest.mark.parametrize("raw", [{}, {"choices": []}, {"choices": None}, {"choices": ["x"]}, {"error": "x"}])
def test_chat_response_without_choices_is_bad_response(raw: JSON) -> None:
    with pytest.raises(UpstreamBadResponse) as info:
        PROVIDER.chat_response(raw, make_target())
    assert info.value.http_status == 502
    assert info.value.fallback


@pytest.mark.parametrize("rel", ["openai/embeddings_base64.json", "openai/embeddings_base64_two_inputs.json"])
def test_embed_response(rel: str) -> None:
    raw = load_json(rel)
    expected = copy.deepcopy(raw)
    req = load_json(rel.replace(".json", ".request.json"))
    assert PROVIDER.embed_response(raw, make_target(), req) == expected


def test_embed_response_without_data() -> None:
    with pytest.raises(UpstreamBadResponse):
        PROVIDER.embed_response({"object": "list"}, make_target(), {})
    body = PROVIDER.embed_response({"data": []}, make_target(), {})
    assert body == {"data": [], "object": "list"}


# --- streams ---------------------------------------------------------------------------


STREAMS = sorted(
    str(p.relative_to(FIXTURES)) for p in [*FIXTURES.glob("openai/*.sse"), *FIXTURES.glob("openai_compatible/*.sse")]
)


def test_stream_fixtures_found() -> None:
    assert STREAMS == [
        "openai/chat_stream_text_include_usage.sse",
        "openai/chat_stream_tool_call_include_usage.sse",
        "openai_compatible/novita_stream_via_hf_router.sse",
    ]


@pytest.mark.parametrize("rel", STREAMS)
def test_stream_same_chunks_in_random_splits(rel: str) -> None:
    raw = load_bytes(rel)
    whole, decoder = decode_stream([raw])
    assert decoder.done
    for seed in range(30):
        chunks, _ = decode_stream(random_pieces(raw, seed))
        assert chunks == whole, seed


@pytest.mark.parametrize("rel", STREAMS)
def test_stream_final_usage_chunk_emitted_once(rel: str) -> None:
    raw = load_bytes(rel)
    chunks, decoder = decode_stream([raw])
    expected_usage = last_usage_in(raw)
    usage_chunks = [c for c in chunks if "usage" in c]
    assert len(usage_chunks) == 1
    final = chunks[-1]
    assert final is usage_chunks[0]
    assert final["choices"] == []
    assert final["usage"] == expected_usage
    assert decoder.usage == expected_usage
    first_upstream = json.loads(sse_events([raw])[0].data)
    assert final["id"] == first_upstream["id"]
    assert final["model"] == first_upstream["model"]
    assert final["created"] == first_upstream["created"]
    # every other chunk carries choices and no usage key
    for chunk in chunks[:-1]:
        assert chunk["choices"]
        assert "usage" not in chunk


def test_stream_tool_call() -> None:
    raw = load_bytes("openai/chat_stream_tool_call_include_usage.sse")
    chunks, _ = decode_stream([raw])
    assert len(chunks) == 8  # 7 upstream chunks with choices + the usage chunk
    out = reassemble(chunks)
    assert out.role == "assistant"
    assert out.calls == {
        0: {"id": "call_ZR5UUuTt3pf61kjwAJIYdVMj", "name": "get_capital", "arguments": '{"country":"UK"}'}
    }
    assert out.finish_reasons == ["tool_calls"]
    assert out.usage is not None
    assert (out.usage["prompt_tokens"], out.usage["completion_tokens"], out.usage["total_tokens"]) == (53, 15, 68)
    assert out.usage_chunks == 1
    assert out.text == ""


def test_stream_text() -> None:
    raw = load_bytes("openai/chat_stream_text_include_usage.sse")
    chunks, _ = decode_stream([raw])
    out = reassemble(chunks)
    assert out.text == "The capital of the UK is London."
    assert out.finish_reasons == ["stop"]
    assert out.usage is not None
    assert (out.usage["prompt_tokens"], out.usage["completion_tokens"], out.usage["total_tokens"]) == (78, 9, 87)
    assert len(chunks) == 11  # 10 chunks with choices, then usage


def test_stream_novita_usage_without_being_asked() -> None:
    raw = load_bytes("openai_compatible/novita_stream_via_hf_router.sse")
    chunks, decoder = decode_stream([raw])
    out = reassemble(chunks)
    assert out.role == "assistant"
    assert out.text == "Paris"
    assert out.finish_reasons == ["stop"]
    assert out.usage_chunks == 1
    assert out.usage == {
        "prompt_tokens": 40,
        "completion_tokens": 2,
        "total_tokens": 42,
        "prompt_tokens_details": None,
        "completion_tokens_details": None,
    }
    assert chunks[0]["id"] == "ebafdc26c3296ed027c5cd6565fa1bce"
    assert chunks[0]["sla_metrics"]["ttft_ms"] == 274  # unknown fields pass through
    assert decoder.done


def test_usage_on_every_chunk_yields_one_final_usage_chunk() -> None:
    def chunk(content: str | None, finish: str | None, usage: JSON | None) -> SSEEvent:
        delta = {} if content is None else {"content": content}
        body: JSON = {
            "id": "c1",
            "object": "chat.completion.chunk",
            "created": 1,
            "model": "m",
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
            "usage": usage,
        }
        return SSEEvent(json.dumps(body))

    events = [
        chunk("a", None, {"prompt_tokens": 5, "completion_tokens": 1, "total_tokens": 6}),
        chunk("b", None, {"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7}),
        chunk(None, "stop", {"prompt_tokens": 5, "completion_tokens": 3, "total_tokens": 8}),
        SSEEvent("[DONE]"),
    ]
    chunks = decode_events(PROVIDER.stream_decoder(make_target()), events)
    out = reassemble(chunks)
    assert out.text == "ab"
    assert out.usage_chunks == 1
    assert out.usage == {"prompt_tokens": 5, "completion_tokens": 3, "total_tokens": 8}


def test_stream_without_usage_has_no_usage_chunk() -> None:
    body: JSON = {
        "id": "c",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "m",
        "choices": [{"index": 0, "delta": {"content": "x"}, "finish_reason": "stop"}],
    }
    chunks = decode_events(PROVIDER.stream_decoder(make_target()), [SSEEvent(json.dumps(body)), SSEEvent("[DONE]")])
    assert [c["choices"][0]["delta"] for c in chunks] == [{"content": "x"}]


@pytest.mark.parametrize("rel", STREAMS)
def test_truncated_stream_is_bad_response(rel: str) -> None:
    raw = load_bytes(rel)
    events = sse_events([raw])
    finish_at = next(i for i, e in enumerate(events) if '"finish_reason":"' in e.data)
    # cut at event level: everything before the finish_reason chunk
    for cut in range(finish_at):
        decoder = PROVIDER.stream_decoder(make_target())
        with pytest.raises(UpstreamBadResponse) as info:
            decode_events(decoder, events[:cut])
        assert "truncated" in info.value.message
        assert not decoder.done
    # cut at byte level, anywhere before the finish_reason chunk is complete
    limit = raw.index(b'"finish_reason":"')
    for cut in range(0, limit, 37):
        decoder = PROVIDER.stream_decoder(make_target())
        with pytest.raises(UpstreamBadResponse):
            decode_events(decoder, sse_events([raw[:cut]]))


def test_truncated_error_is_fallback_not_client_error() -> None:
    decoder = PROVIDER.stream_decoder(make_target())
    with pytest.raises(UpstreamBadResponse) as info:
        decoder.finish()
    assert info.value.fallback
    assert not info.value.is_client_error
    assert info.value.http_status == 502
    assert info.value.code == "upstream_bad_response"


def test_stream_event_not_json() -> None:
    with pytest.raises(UpstreamBadResponse):
        PROVIDER.stream_decoder(make_target()).on_event(SSEEvent("{not json"))
    with pytest.raises(UpstreamBadResponse):
        PROVIDER.stream_decoder(make_target()).on_event(SSEEvent("[1, 2]"))
    with pytest.raises(UpstreamBadResponse):
        PROVIDER.stream_decoder(make_target()).on_event(SSEEvent('{"id": "x", "object": "chat.completion.chunk"}'))


def test_stream_error_event_inside_200() -> None:
    decoder = PROVIDER.stream_decoder(make_target())
    with pytest.raises(UpstreamError) as info:
        decoder.on_event(SSEEvent('{"error": {"message": "The server is overloaded", "type": "server_error"}}'))
    assert "The server is overloaded" in info.value.message
    assert info.value.retryable
    assert info.value.http_status == 502
    with pytest.raises(UpstreamError) as info2:
        PROVIDER.stream_decoder(make_target()).on_event(SSEEvent('{"error": "boom"}'))
    assert "boom" in info2.value.message


# --- error bodies ----------------------------------------------------------------------


def error_for(status: int, body: Any, headers: Mapping[str, str] | None = None) -> UpstreamError:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    err = PROVIDER.error(status, headers or CIMultiDict(), raw)
    assert isinstance(err, UpstreamError)
    assert err.upstream_status == status
    return err


def test_error_400_with_param() -> None:
    err = error_for(400, load_json("openai/error_400_unsupported_value.json"))
    assert err.http_status == 400
    assert err.code == "unsupported_value"
    assert err.param == "messages[0].role"
    assert err.message == "Unsupported value: 'messages[0].role' does not support 'system' with this model."
    assert err.is_client_error
    assert not err.retryable
    assert err.to_body() == {
        "error": {
            "message": "Unsupported value: 'messages[0].role' does not support 'system' with this model.",
            "type": "invalid_request_error",
            "param": "messages[0].role",
            "code": "unsupported_value",
        }
    }


def test_error_400_code_null() -> None:
    err = error_for(400, load_json("openai/error_400_param_code_null.json"))
    assert err.http_status == 400
    assert err.param == "web_search_options"
    assert err.code == "upstream_error"
    assert err.message == "Web search options not supported with this model."
    assert err.is_client_error


@pytest.mark.parametrize(
    "rel", ["openai/error_404_model_not_found.json", "openai/error_404_model_not_found_embeddings.json"]
)
def test_error_404_model_not_found_is_a_deployment_fault(rel: str) -> None:
    err = error_for(404, load_json(rel))
    assert err.http_status == 502
    assert err.code == "upstream_deployment_error"
    assert err.fallback
    assert not err.retryable
    assert not err.is_client_error
    assert "does not exist" in err.message
    body = err.to_body()["error"]
    assert body["type"] == "api_error"
    assert body["code"] == "upstream_deployment_error"


def test_error_429_with_retry_after_header() -> None:
    body = {"error": {"message": "Rate limit reached", "type": "tokens", "param": None, "code": "rate_limit_exceeded"}}
    err = error_for(429, body, CIMultiDict({"Retry-After": "7"}))
    assert err.retry_after == 7.0
    assert err.retryable
    assert err.http_status == 429
    assert err.code == "rate_limit_exceeded"
    assert err.headers == {"retry-after": "7"}
    assert err.to_body()["error"]["type"] == "tokens"


def test_error_429_with_retry_after_ms() -> None:
    err = error_for(429, {"error": {"message": "slow down"}}, CIMultiDict({"retry-after-ms": "1500"}))
    assert err.retry_after == 1.5
    assert err.headers == {"retry-after": "2"}


def test_error_429_with_unparseable_retry_after() -> None:
    err = error_for(429, {"error": {"message": "x"}}, CIMultiDict({"Retry-After": "Wed, 21 Oct 2026 07:28:00 GMT"}))
    assert err.retry_after is None
    assert err.retryable
    assert "retry-after" not in err.headers


def test_openrouter_numeric_code() -> None:
    err = error_for(429, load_json("openai_compatible/openrouter_error_429.json"))
    assert err.code == "429"
    assert isinstance(err.code, str)
    assert err.message == "Provider returned error"
    assert err.retryable
    assert err.http_status == 429


def test_groq_tool_use_failed() -> None:
    err = error_for(400, load_json("openai_compatible/groq_error_400_tool_use_failed.json"))
    assert err.code == "tool_use_failed"
    assert err.http_status == 400
    assert err.is_client_error
    assert err.message.startswith("Tool call validation failed")


def test_non_json_html_502() -> None:
    html = (
        b"<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n"
        b"<body><center><h1>502 Bad Gateway</h1></center></body></html>"
    )
    err = error_for(502, html)
    assert err.http_status == 502
    assert err.retryable
    assert err.message.startswith("upstream answered HTTP 502: <html>")
    assert "502 Bad Gateway" in err.message
    assert err.code == "upstream_error"


def test_empty_error_body() -> None:
    err = error_for(503, b"")
    assert err.message == "upstream answered HTTP 503"
    assert err.retryable
    assert err.http_status == 503


def test_error_body_truncated_to_a_snippet() -> None:
    err = error_for(500, b"x" * 5000)
    assert err.message == "upstream answered HTTP 500: " + "x" * 200


def test_error_as_plain_string() -> None:
    err = error_for(500, {"error": "internal failure"})
    assert err.message == "internal failure"
    assert err.retryable


def test_error_json_without_error_key() -> None:
    err = error_for(500, {"detail": "oops"})
    assert err.message.startswith("upstream answered HTTP 500: ")
    assert "oops" in err.message


def test_error_without_message_gets_default() -> None:
    err = error_for(500, {"error": {"type": "server_error"}})
    assert err.message == "upstream answered HTTP 500"
    assert err.to_body()["error"]["type"] == "api_error"


def test_openai_error_function_matches_provider_method() -> None:
    body = json.dumps(load_json("openai/error_400_unsupported_value.json")).encode()
    a = openai_error(400, {}, body)
    b = PROVIDER.error(400, {}, body)
    assert (a.message, a.code, a.param, a.http_status) == (b.message, b.code, b.param, b.http_status)


# --- reported (not recorded) error bodies ------------------------------------------------


def reported_entries() -> list[JSON]:
    data = load_json("openai/reported_error_bodies.json")
    return [e for e in data["entries"] if "http_status" in e]


def test_reported_entries_found() -> None:
    assert [e["http_status"] for e in reported_entries()] == [401, 429, 429, 429, 500]


@pytest.mark.parametrize("entry", reported_entries(), ids=lambda e: f"{e['http_status']}")
def test_reported_error_bodies(entry: JSON) -> None:
    status = entry["http_status"]
    if "body" in entry:
        body = entry["body"]
    else:
        body = {"error": {"message": entry["message_only"], "type": "x", "param": None, "code": None}}
    message = body["error"]["message"]
    err = error_for(status, body)
    assert err.message == message
    if status == 401:
        # the upstream's "invalid_api_key" is about our deployment's key, not the client's
        assert err.http_status == 502
        assert err.code == "upstream_deployment_error"
        assert err.fallback and not err.retryable
        assert err.to_body()["error"]["type"] == "api_error"
    elif status == 429:
        assert err.http_status == 429
        assert err.retryable
        expected_code = body["error"]["code"] or "upstream_error"
        assert err.code == expected_code
        assert err.to_body()["error"]["type"] == body["error"]["type"]
    else:
        assert status == 500
        assert err.http_status == 500
        assert err.retryable
        assert err.to_body()["error"]["type"] == "api_error"
