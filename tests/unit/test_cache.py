"""The response cache: keys, decisions, storage and stream replay."""

from __future__ import annotations

import copy
import itertools
from typing import Any, cast

import orjson
import pytest

from gateway.canonical import JSON
from gateway.config.fields import Mode
from gateway.config.settings import CacheSettings
from gateway.dialects.openai import SSE_DONE
from gateway.errors import BackendDegraded
from gateway.policies.cache import (
    CACHE_HEADER,
    EXCLUDED_PARAMS,
    OUTPUT_PARAMS,
    CacheMode,
    ResponseCache,
    cache_key,
    cache_partition,
    decide,
    decide_embedding,
    embedding_cache_key,
    storable,
)
from gateway.policies.replay import ChunkAssembler, completion_to_chunks
from gateway.providers.openai_compat import OpenAIStreamDecoder
from gateway.providers.sse import SSEParser
from gateway.server.streaming import render_chunks
from gateway.state.base import BackendUnavailable, StateBackend
from tests.unit.fixtures import load_bytes, load_json, random_pieces

# --- stand-in backends -------------------------------------------------------


class FakeBackend:
    """The cache half of a state backend: a dict with expiry on a fake clock."""

    kind = "embedded"

    def __init__(self) -> None:
        self.now = 0.0
        self.data: dict[str, tuple[bytes, float]] = {}
        self.sets: list[tuple[str, int, float]] = []

    async def cache_get(self, key: str) -> bytes | None:
        entry = self.data.get(key)
        if entry is None or entry[1] <= self.now:
            return None
        return entry[0]

    async def cache_set(self, key: str, value: bytes, ttl_s: float) -> None:
        self.sets.append((key, len(value), ttl_s))
        self.data[key] = (value, self.now + ttl_s)


class DownBackend(FakeBackend):
    async def cache_get(self, key: str) -> bytes | None:
        raise BackendUnavailable("connection refused")

    async def cache_set(self, key: str, value: bytes, ttl_s: float) -> None:
        raise BackendUnavailable("connection refused")


def make_cache(backend: FakeBackend, mode: Mode = "open", **settings: Any) -> ResponseCache:
    return ResponseCache(cast(StateBackend, backend), CacheSettings(**settings), mode)


# --- requests and completions ---------------------------------------------------

TOOL = {
    "type": "function",
    "function": {
        "name": "get_capital",
        "parameters": {"type": "object", "properties": {"country": {"type": "string"}}, "required": ["country"]},
    },
}


def request(**extra: Any) -> JSON:
    req: JSON = {
        "model": "gpt-4o",
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "What is the capital of the UK?"},
        ],
        "temperature": 0,
    }
    req.update(extra)
    return req


def key(req: JSON, alias: str = "gpt-4o", partition: str = "team:a") -> str:
    return cache_key(req, alias=alias, partition=partition)


COMPLETION_FIXTURES = ["chat_completion_text_after_tool_result.json", "chat_completion_tool_call.json"]
SSE_FIXTURES = ["chat_stream_text_include_usage.sse", "chat_stream_tool_call_include_usage.sse"]


def fixture_completion(name: str) -> JSON:
    return cast(JSON, load_json(f"openai/{name}"))


def decode_sse(raw: bytes, pieces: list[bytes] | None = None) -> list[JSON]:
    """Canonical chunks of an SSE body, as the gateway's stream path sees them."""
    parser, decoder = SSEParser(), OpenAIStreamDecoder()
    chunks: list[JSON] = []
    for piece in pieces or [raw]:
        for event in parser.feed(piece):
            chunks.extend(decoder.on_event(event))
    for event in parser.close():
        chunks.extend(decoder.on_event(event))
    chunks.extend(decoder.finish())
    return chunks


def assemble(chunks: list[JSON]) -> JSON:
    asm = ChunkAssembler()
    asm.extend(copy.deepcopy(chunks))
    completion = asm.completion()
    assert completion is not None
    return completion


# --- keys -------------------------------------------------------------------------


def test_key_shape_and_version_prefix() -> None:
    version, team, team_id, digest = key(request(), partition="team:a").split(":")
    assert (version, team, team_id) == ("v1", "team", "a")
    assert len(digest) == 64
    assert set(digest) <= set("0123456789abcdef")
    assert key(request(), partition="global").startswith("v1:global:")


def test_key_ignores_json_key_order() -> None:
    a = request(tools=[TOOL], response_format={"type": "json_object"}, stop=["x", "y"])
    b: JSON = {}
    for name in reversed(list(a)):
        b[name] = a[name]
    b["messages"] = [dict(reversed(list(m.items()))) for m in a["messages"]]
    fn = TOOL["function"]
    assert isinstance(fn, dict)
    b["tools"] = [{"function": dict(reversed(list(fn.items()))), "type": "function"}]
    assert list(b) != list(a)
    assert key(a) == key(b)


def test_key_is_stable_for_equal_requests() -> None:
    assert key(request()) == key(copy.deepcopy(request()))


CHANGES: list[tuple[str, Any]] = [
    ("messages", [{"role": "user", "content": "What is the capital of France?"}]),
    ("temperature", 0.5),
    ("top_p", 0.9),
    ("top_k", 40),
    ("n", 2),
    ("max_tokens", 16),
    ("max_completion_tokens", 16),
    ("stop", ["\n"]),
    ("seed", 7),
    ("presence_penalty", 0.5),
    ("frequency_penalty", 0.5),
    ("logit_bias", {"50256": -100}),
    ("tools", [TOOL]),
    ("tool_choice", "required"),
    ("parallel_tool_calls", False),
    ("response_format", {"type": "json_object"}),
    ("reasoning_effort", "low"),
    ("logprobs", True),
    ("top_logprobs", 3),
    ("some_future_param", "x"),  # unknown keys are keyed, to be safe
    ("service_tier", "flex"),
]


def test_changes_cover_every_output_param() -> None:
    assert set(OUTPUT_PARAMS) <= {name for name, _ in CHANGES}


@pytest.mark.parametrize(("name", "value"), CHANGES, ids=[c[0] for c in CHANGES])
def test_key_changes_with_each_output_param(name: str, value: Any) -> None:
    base = request()
    assert key(base) != key(request(**{name: value}))


def test_every_change_gives_a_distinct_key() -> None:
    keys = {key(request(**{name: value})) for name, value in CHANGES}
    assert len(keys) == len(CHANGES)


@pytest.mark.parametrize(
    "content",
    ["what is the capital of the uk?", "What is the capital of the UK? ", [{"type": "text", "text": "What?"}]],
)
def test_key_changes_with_message_content(content: Any) -> None:
    changed = request()
    changed["messages"][1]["content"] = content
    assert key(changed) != key(request())


def test_key_changes_with_message_role_and_order() -> None:
    req = request()
    swapped = request(messages=list(reversed(req["messages"])))
    assert key(swapped) != key(req)
    named = request()
    named["messages"][1]["name"] = "alice"
    assert key(named) != key(req)


def test_key_changes_with_alias() -> None:
    assert key(request(), alias="gpt-4o") != key(request(), alias="gpt-4o-mini")


def test_key_uses_the_alias_not_the_model_field() -> None:
    assert key(request(model="a"), alias="x") == key(request(model="b"), alias="x")


@pytest.mark.parametrize(
    "extra",
    [
        {"stream": True},
        {"stream": True, "stream_options": {"include_usage": True}},
        {"user": "alice"},
        {"metadata": {"trace": "123"}},
        {"store": True},
        {"safety_identifier": "u1"},
        {"prompt_cache_key": "p"},
    ],
)
def test_key_ignores_output_neutral_params(extra: JSON) -> None:
    assert set(extra) <= EXCLUDED_PARAMS
    assert key(request(**extra)) == key(request())


def test_key_normalisation() -> None:
    base = key(request())
    assert key(request(temperature=0.0)) == base
    assert key(request(seed=None, stop=None)) == base
    with_null_name = request()
    with_null_name["messages"][0]["name"] = None
    assert key(with_null_name) == base
    assert key(request(stop="\n")) == key(request(stop=["\n"]))
    assert key(request(top_p=1)) == key(request(top_p=1.0))
    assert key(request(top_p=1)) != key(request(top_p=0.99))
    # Defaults are not filled in: absent and explicit n=1 differ.
    assert key(request(n=1)) != base
    # true is not 1
    assert key(request(logprobs=True)) != key(request(logprobs=1))


def test_teams_never_share_keys_under_team_scope() -> None:
    pa, pb = cache_partition("team", "a"), cache_partition("team", "b")
    assert pa != pb
    assert key(request(), partition=pa) != key(request(), partition=pb)
    assert cache_partition("team", None) == "noteam"
    assert cache_partition("team", "global") != cache_partition("global", "global")


def test_teams_share_keys_under_global_scope() -> None:
    pa, pb = cache_partition("global", "a"), cache_partition("global", "b")
    assert pa == pb == "global"
    assert key(request(), partition=pa) == key(request(), partition=pb)


def test_embedding_keys() -> None:
    def ekey(partition: str = "global", **extra: Any) -> str:
        req: JSON = {"model": "emb", "input": ["a", "b"], **extra}
        return embedding_cache_key(req, alias="emb", partition=partition)

    base = ekey()
    assert ekey(encoding_format="float") == base
    assert ekey(user="u", model="other") == base
    assert ekey(encoding_format="base64") != base
    assert ekey(dimensions=128) != base
    assert ekey(partition="team:a") != base
    assert embedding_cache_key({"input": ["a"]}, alias="emb", partition="g") != embedding_cache_key(
        {"input": ["b"]}, alias="emb", partition="g"
    )
    # A chat request and an embeddings request never share a key.
    assert embedding_cache_key({"input": "x"}, alias="m", partition="g") != cache_key(
        {"input": "x"}, alias="m", partition="g"
    )


# --- decide -----------------------------------------------------------------------

HEADERS: list[tuple[dict[str, str], CacheMode]] = [
    ({}, CacheMode.LOOKUP_STORE),
    ({"cache-control": "no-cache"}, CacheMode.STORE_ONLY),
    ({"Cache-Control": "No-Cache"}, CacheMode.STORE_ONLY),
    ({"cache-control": "max-age=60, no-cache"}, CacheMode.STORE_ONLY),
    ({"cache-control": "no-store"}, CacheMode.OFF),
    ({"cache-control": "no-cache, no-store"}, CacheMode.OFF),
    ({"cache-control": "max-age=60"}, CacheMode.LOOKUP_STORE),
    ({CACHE_HEADER: "refresh"}, CacheMode.STORE_ONLY),
    ({"X-Gateway-Cache": "REFRESH"}, CacheMode.STORE_ONLY),
    ({CACHE_HEADER: "off"}, CacheMode.OFF),
    ({CACHE_HEADER: "bogus"}, CacheMode.LOOKUP_STORE),
    ({CACHE_HEADER: "refresh", "cache-control": "no-store"}, CacheMode.OFF),
    ({CACHE_HEADER: "off", "cache-control": "no-cache"}, CacheMode.OFF),
]
TEMPERATURES: list[tuple[dict[str, Any], bool]] = [
    ({"temperature": 0}, True),
    ({"temperature": 0.0}, True),
    ({}, False),  # absent = OpenAI's default 1: sampled
    ({"temperature": None}, False),
    ({"temperature": 0.7}, False),
    ({"temperature": 1}, False),
    ({"temperature": False}, False),
]
SAMPLED: list[tuple[bool, bool | None, bool]] = [
    # settings.cache_sampled, alias override, sampled requests cacheable?
    (False, None, False),
    (True, None, True),
    (False, True, True),
    (True, False, False),
    (True, True, True),
    (False, False, False),
]


@pytest.mark.parametrize(("headers", "header_mode"), HEADERS)
@pytest.mark.parametrize(("temp", "deterministic"), TEMPERATURES)
@pytest.mark.parametrize(("settings_sampled", "alias_sampled", "sampled_ok"), SAMPLED)
def test_decide(
    headers: dict[str, str],
    header_mode: CacheMode,
    temp: dict[str, Any],
    deterministic: bool,
    settings_sampled: bool,
    alias_sampled: bool | None,
    sampled_ok: bool,
) -> None:
    req: JSON = {"model": "m", "messages": [{"role": "user", "content": "hi"}], **temp}
    settings = CacheSettings(cache_sampled=settings_sampled)
    expected = header_mode if deterministic or sampled_ok else CacheMode.OFF
    assert decide(req, headers, settings, alias_sampled) is expected


@pytest.mark.parametrize(
    ("extra", "cached"),
    [
        ({"thinking": {"type": "enabled", "budget_tokens": 2048}}, False),
        ({"thinking": {"type": "adaptive"}}, False),
        ({"thinking": {"type": "disabled"}}, True),
        ({"thinking_config": {"thinkingBudget": 0}}, False),
        ({"native_body": {"model": "m", "tools": [{"type": "web_search_20250305"}]}}, False),
        ({"reasoning_effort": "low"}, True),
    ],
)
def test_answers_a_hit_could_not_give_back_whole_are_not_cached(extra: JSON, cached: bool) -> None:
    # A hit is rendered from the canonical answer: thinking blocks and signatures the client
    # must send back next turn would be missing (gateway/policies/cache.py _unreplayable).
    req: JSON = {"model": "m", "messages": [{"role": "user", "content": "hi"}], "temperature": 0, **extra}
    expected = CacheMode.LOOKUP_STORE if cached else CacheMode.OFF
    assert decide(req, {}, CacheSettings(), None) is expected


@pytest.mark.parametrize(("headers", "header_mode"), HEADERS)
def test_decide_disabled_is_always_off(headers: dict[str, str], header_mode: CacheMode) -> None:
    settings = CacheSettings(enabled=False, cache_sampled=True)
    assert decide(request(), headers, settings, True) is CacheMode.OFF
    assert decide_embedding(headers, settings) is CacheMode.OFF


@pytest.mark.parametrize(("headers", "header_mode"), HEADERS)
def test_decide_embedding_ignores_temperature(headers: dict[str, str], header_mode: CacheMode) -> None:
    assert decide_embedding(headers, CacheSettings()) is header_mode


def test_n_above_one_is_cacheable() -> None:
    assert decide(request(n=4), {}, CacheSettings(), None) is CacheMode.LOOKUP_STORE


def test_modes_and_header_values() -> None:
    assert CACHE_HEADER == "x-gateway-cache"
    assert (CacheMode.LOOKUP_STORE.lookup, CacheMode.LOOKUP_STORE.store) == (True, True)
    assert (CacheMode.STORE_ONLY.lookup, CacheMode.STORE_ONLY.store) == (False, True)
    assert (CacheMode.OFF.lookup, CacheMode.OFF.store) == (False, False)
    assert CacheMode.LOOKUP_STORE.header(hit=True) == "hit"
    assert CacheMode.LOOKUP_STORE.header(hit=False) == "miss"
    assert CacheMode.STORE_ONLY.header() == "refresh"
    assert CacheMode.OFF.header() == "off"


# --- ResponseCache ------------------------------------------------------------------


async def test_put_then_get_with_ttl() -> None:
    backend = FakeBackend()
    cache = make_cache(backend, ttl_s=60)
    completion = fixture_completion("chat_completion_tool_call.json")
    k = key(request())
    assert await cache.get(k) is None
    assert await cache.put(k, completion) is True
    assert backend.sets == [(k, len(orjson.dumps(completion)), 60.0)]
    assert orjson.loads(backend.data[k][0]) == completion
    assert await cache.get(k) == completion
    assert await cache.get(key(request(), partition="team:b")) is None
    backend.now = 59.9
    assert await cache.get(k) == completion
    backend.now = 60.0
    assert await cache.get(k) is None
    assert (cache.hits, cache.misses, cache.stores, cache.degraded) == (2, 3, 1, 0)


async def test_entries_over_max_entry_bytes_are_skipped() -> None:
    completion = fixture_completion("chat_completion_text_after_tool_result.json")
    size = len(orjson.dumps(completion))
    backend = FakeBackend()
    exact = make_cache(backend, max_entry_bytes=size)
    assert await exact.put("k1", completion) is True
    small = make_cache(backend, max_entry_bytes=size - 1)
    assert await small.put("k2", completion) is False
    assert "k2" not in backend.data
    assert (small.stores, small.skipped) == (0, 1)


def truncated(completion: JSON) -> JSON:
    out = copy.deepcopy(completion)
    out["choices"][0]["finish_reason"] = None
    return out


def two_choices_one_unfinished(completion: JSON) -> JSON:
    out = copy.deepcopy(completion)
    second = copy.deepcopy(out["choices"][0])
    second["index"], second["finish_reason"] = 1, None
    out["choices"].append(second)
    return out


NOT_STORABLE = [
    ("truncated", truncated),
    ("one_choice_unfinished", two_choices_one_unfinished),
    ("no_choices", lambda c: {**c, "choices": []}),
    ("choices_missing", lambda c: {k: v for k, v in c.items() if k != "choices"}),
    ("error_body", lambda c: {"error": {"message": "boom", "type": "api_error", "code": None, "param": None}}),
    ("error_with_choices", lambda c: {**c, "error": {"message": "partial"}}),
]


@pytest.mark.parametrize("mutate", [m for _, m in NOT_STORABLE], ids=[n for n, _ in NOT_STORABLE])
async def test_errors_and_unfinished_completions_are_not_stored(mutate: Any) -> None:
    backend = FakeBackend()
    cache = make_cache(backend)
    bad = mutate(fixture_completion("chat_completion_text_after_tool_result.json"))
    assert not storable(bad)
    assert await cache.put("k", bad) is False
    assert backend.data == {}
    assert (cache.stores, cache.skipped) == (0, 1)


@pytest.mark.parametrize("reason", ["stop", "length", "tool_calls", "content_filter"])
def test_every_finish_reason_is_storable(reason: str) -> None:
    completion = fixture_completion("chat_completion_text_after_tool_result.json")
    completion["choices"][0]["finish_reason"] = reason
    assert storable(completion)


async def test_corrupt_entry_is_a_miss() -> None:
    backend = FakeBackend()
    backend.data["k"] = (b"\x00not json", 1e9)
    backend.data["l"] = (b"[1, 2]", 1e9)
    cache = make_cache(backend)
    assert await cache.get("k") is None
    assert await cache.get("l") is None
    assert (cache.hits, cache.misses) == (0, 2)


async def test_fail_open_is_a_miss_and_no_store() -> None:
    cache = make_cache(DownBackend(), "open")
    assert await cache.get("k") is None
    assert await cache.put("k", fixture_completion("chat_completion_tool_call.json")) is False
    assert (cache.hits, cache.misses, cache.stores, cache.degraded) == (0, 1, 0, 2)


async def test_fail_closed_raises_backend_degraded() -> None:
    cache = make_cache(DownBackend(), "closed")
    with pytest.raises(BackendDegraded) as info:
        await cache.get("k")
    assert info.value.http_status == 503
    assert info.value.code == "state_backend_unavailable"
    with pytest.raises(BackendDegraded):
        await cache.put("k", fixture_completion("chat_completion_tool_call.json"))
    assert cache.degraded == 2
    assert cache.stores == 0


async def test_fail_closed_does_not_touch_a_healthy_backend() -> None:
    cache = make_cache(FakeBackend(), "closed")
    assert await cache.get("k") is None
    assert await cache.put("k", fixture_completion("chat_completion_tool_call.json")) is True
    assert cache.degraded == 0


async def test_embedding_entries() -> None:
    backend = FakeBackend()
    cache = make_cache(backend)
    result = cast(JSON, load_json("openai/embeddings_base64_two_inputs.json"))
    assert await cache.put_embedding("e", result) is True
    assert await cache.get("e") == result
    assert await cache.put_embedding("x", {"error": {"message": "no"}}) is False
    assert await cache.put("c", result) is False  # not a chat completion


# --- replay: completion -> chunks -> completion ----------------------------------------


def essentials(completion: JSON) -> JSON:
    return {
        "id": completion["id"],
        "model": completion["model"],
        "created": completion["created"],
        "usage": completion["usage"],
        "choices": [
            {
                "index": c["index"],
                "finish_reason": c["finish_reason"],
                "content": c["message"].get("content"),
                "tool_calls": c["message"].get("tool_calls"),
            }
            for c in completion["choices"]
        ],
    }


@pytest.mark.parametrize("name", COMPLETION_FIXTURES)
def test_completion_round_trip_through_chunks(name: str) -> None:
    completion = fixture_completion(name)
    chunks = completion_to_chunks(completion)
    rebuilt = assemble(chunks)
    assert essentials(rebuilt) == essentials(completion)
    assert rebuilt == completion  # every field survives, annotations and refusal too


@pytest.mark.parametrize("name", COMPLETION_FIXTURES)
def test_replayed_chunks_have_the_canonical_shape(name: str) -> None:
    completion = fixture_completion(name)
    chunks = completion_to_chunks(completion)
    for chunk in chunks:
        assert chunk["object"] == "chat.completion.chunk"
        assert (chunk["id"], chunk["model"], chunk["created"]) == (
            completion["id"],
            completion["model"],
            completion["created"],
        )
        for choice in chunk["choices"]:
            assert set(choice) == {"index", "delta", "finish_reason", "logprobs"}
    first = chunks[0]["choices"][0]["delta"]
    assert first["role"] == "assistant"
    finishes = [c for c in chunks if c["choices"] and c["choices"][0]["finish_reason"]]
    assert len(finishes) == 1
    assert finishes[0]["choices"][0]["delta"] == {}
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"] == completion["usage"]
    assert all("usage" not in c for c in chunks[:-1])


def test_replayed_tool_call_chunk() -> None:
    chunks = completion_to_chunks(fixture_completion("chat_completion_tool_call.json"))
    calls = [
        c["choices"][0]["delta"]["tool_calls"]
        for c in chunks
        if c["choices"] and "tool_calls" in c["choices"][0]["delta"]
    ]
    assert calls == [
        [
            {
                "index": 0,
                "id": "call_bhZkmIKKItNGJ41whHUHB7p9",
                "type": "function",
                "function": {"name": "get_temperature", "arguments": '{"city":"Tokyo"}'},
            }
        ]
    ]


@pytest.mark.parametrize("include_usage", [True, False])
def test_replay_renders_with_the_handler_filter(include_usage: bool) -> None:
    completion = fixture_completion("chat_completion_text_after_tool_result.json")
    body = render_chunks(completion_to_chunks(completion), include_usage) + SSE_DONE
    assert (b'"usage"' in body) is include_usage
    # The rendered replay is a valid upstream stream for the gateway's own decoder.
    rebuilt = assemble(decode_sse(body))
    assert essentials(rebuilt) == essentials({**completion, "usage": completion["usage"] if include_usage else None})


def test_multiple_choices_tool_calls_refusal_and_logprobs_round_trip() -> None:
    logprobs = {"content": [{"token": "Hi", "logprob": -0.1, "bytes": [72, 105], "top_logprobs": []}], "refusal": None}
    completion: JSON = {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 1700000000,
        "model": "m",
        "system_fingerprint": "fp_1",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "Hi"},
                "finish_reason": "stop",
                "logprobs": logprobs,
            },
            {
                "index": 1,
                "message": {
                    "role": "assistant",
                    "content": "Let me check.",
                    "tool_calls": [
                        {"id": "c1", "type": "function", "function": {"name": "a", "arguments": '{"x":1}'}},
                        {"id": "c2", "type": "function", "function": {"name": "b", "arguments": "{}"}},
                    ],
                },
                "finish_reason": "tool_calls",
                "logprobs": None,
            },
            {
                "index": 2,
                "message": {"role": "assistant", "content": None, "refusal": "I can't help with that."},
                "finish_reason": "stop",
                "logprobs": {"content": None, "refusal": [{"token": "I", "logprob": -0.2, "bytes": [73]}]},
            },
            {"index": 3, "message": {"role": "assistant", "content": ""}, "finish_reason": "length", "logprobs": None},
        ],
        "usage": {"prompt_tokens": 5, "completion_tokens": 9, "total_tokens": 14},
    }
    chunks = completion_to_chunks(completion)
    assert assemble(chunks) == completion
    # Interleaved delivery (as OpenAI does for n > 1) assembles the same.
    by_choice: dict[int, list[JSON]] = {}
    for chunk in chunks[:-1]:
        by_choice.setdefault(chunk["choices"][0]["index"], []).append(chunk)
    interleaved = [c for group in itertools.zip_longest(*by_choice.values()) for c in group if c is not None]
    assert interleaved != chunks[:-1]
    assert assemble([*interleaved, chunks[-1]]) == completion
    # So does delivery with the last choice first.
    backwards = [c for group in reversed(by_choice.values()) for c in group]
    assert assemble([*backwards, chunks[-1]]) == completion


def test_assembler_copes_with_compatible_servers_quirks() -> None:
    def chunk(delta: JSON, finish: str | None = None, usage: JSON | None = None) -> JSON:
        choice = {"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}
        return {
            "id": "x",
            "object": "chat.completion.chunk",
            "created": 1,
            "model": "m",
            "choices": [choice],
            "usage": usage,
        }

    call = {"index": 0, "id": "c1", "type": "function", "function": {"name": "lookup", "arguments": '{"q":'}}
    more = {"index": 0, "type": "function", "function": {"name": "lookup", "arguments": '"x"}'}}
    chunks = [
        chunk(
            {"role": "assistant", "content": "Checking."},
            usage={"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4},
        ),
        chunk({"role": "assistant", "content": None, "tool_calls": [call]}),  # role repeated, content null
        chunk({"content": None, "tool_calls": [more]}),  # name and type repeated
        chunk({}, "tool_calls", usage={"prompt_tokens": 3, "completion_tokens": 5, "total_tokens": 8}),
    ]
    completion = assemble(chunks)
    [choice] = completion["choices"]
    assert choice["message"] == {
        "role": "assistant",
        "content": "Checking.",
        "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "lookup", "arguments": '{"q":"x"}'}}],
    }
    assert completion["usage"]["total_tokens"] == 8


def test_completion_without_usage_has_no_usage_chunk() -> None:
    completion = fixture_completion("chat_completion_text_after_tool_result.json")
    completion["usage"] = None
    chunks = completion_to_chunks(completion)
    assert all(c["choices"] for c in chunks)
    assert assemble(chunks) == completion


# --- replay: recorded streams ---------------------------------------------------------


@pytest.mark.parametrize("name", SSE_FIXTURES)
def test_sse_round_trip(name: str) -> None:
    raw = load_bytes(f"openai/{name}")
    chunks = decode_sse(raw)
    first = assemble(chunks)
    again = assemble(completion_to_chunks(first))
    assert again == first
    # Pieces of any size give the same stream.
    assert assemble(decode_sse(raw, random_pieces(raw, seed=3))) == first


def test_sse_text_stream_assembles_to_the_recorded_answer() -> None:
    completion = assemble(decode_sse(load_bytes("openai/chat_stream_text_include_usage.sse")))
    assert completion["id"] == "chatcmpl-Dx0Xq5Xx9rHB2ehcHZCRDsnuymUXc"
    assert completion["model"] == "gpt-4o-mini-2024-07-18"
    assert completion["created"] == 1782955818
    assert completion["system_fingerprint"] == "fp_d0469e1700"
    assert "obfuscation" not in completion
    [choice] = completion["choices"]
    assert choice["message"] == {"role": "assistant", "content": "The capital of the UK is London.", "refusal": None}
    assert choice["finish_reason"] == "stop"
    assert completion["usage"]["total_tokens"] == 87
    assert storable(completion)


def test_sse_tool_stream_assembles_to_the_recorded_call() -> None:
    completion = assemble(decode_sse(load_bytes("openai/chat_stream_tool_call_include_usage.sse")))
    [choice] = completion["choices"]
    assert choice["finish_reason"] == "tool_calls"
    assert choice["message"]["content"] is None
    assert choice["message"]["tool_calls"] == [
        {
            "id": "call_ZR5UUuTt3pf61kjwAJIYdVMj",
            "type": "function",
            "function": {"name": "get_capital", "arguments": '{"country":"UK"}'},
        }
    ]
    assert completion["usage"]["completion_tokens"] == 15


def test_cut_stream_is_not_complete() -> None:
    chunks = decode_sse(load_bytes("openai/chat_stream_text_include_usage.sse"))
    asm = ChunkAssembler()
    asm.extend(c for c in chunks if not (c["choices"] and c["choices"][0]["finish_reason"]))
    assert not asm.finished
    assert asm.completion() is None
    assert not storable(asm.build())
    assert not ChunkAssembler().finished


def test_assembler_gives_up_beyond_max_chars() -> None:
    chunks = decode_sse(load_bytes("openai/chat_stream_text_include_usage.sse"))
    text = "The capital of the UK is London."
    fits = ChunkAssembler(max_chars=len(text))
    fits.extend(chunks)
    assert fits.completion() is not None
    over = ChunkAssembler(max_chars=len(text) - 1)
    over.extend(chunks)
    assert over.overflowed
    assert over.completion() is None


async def test_streamed_miss_serves_a_later_non_stream_hit_and_back() -> None:
    backend = FakeBackend()
    cache = make_cache(backend)
    k = key(request(stream=True))
    asm = ChunkAssembler()
    asm.extend(decode_sse(load_bytes("openai/chat_stream_tool_call_include_usage.sse")))
    streamed = asm.completion()
    assert streamed is not None
    assert await cache.put(k, streamed) is True
    hit = await cache.get(key(request()))  # the same request without stream
    assert hit == streamed
    replay = render_chunks(completion_to_chunks(hit), include_usage=True) + SSE_DONE
    assert assemble(decode_sse(replay)) == streamed
