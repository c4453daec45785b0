"""Model names as clients send them: ``model_aliases`` (gateway/routing/names.py),
its validation in the config schema and loader, and the response store's key
isolation and size cap (gateway/state/response_store.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.routing.names import ModelNames
from gateway.server.asgi import client_key
from gateway.state.embedded import EmbeddedBackend
from gateway.state.response_store import ResponseStore
from tests.unit.config_helpers import parse, problems

TWO = """
auth: {master_key: "${GATEWAY_MASTER_KEY}"}
models:
  claude-real:
    requires_env: [ANTHROPIC_API_KEY]
    deployments: [{provider: anthropic, model: claude-haiku-4-5, api_key: "${ANTHROPIC_API_KEY}"}]
  local: {deployments: [{provider: openai_compatible, model: qwen, base_url: "http://127.0.0.1:9/v1"}]}
  embed: {kind: embedding, deployments: [{provider: openai, model: text-embedding-3-small}]}
model_aliases:
  "gpt-4o": embed
  "claude-*": [claude-real, local]
  "gpt-*": local
  "o[0-9]*": local
"""
ENV = {"GATEWAY_MASTER_KEY": "k" * 32}


def names(env: dict[str, str]) -> ModelNames:
    loaded = parse(TWO, env)
    return ModelNames([*loaded.settings.models, *loaded.missing_env], loaded.settings.model_aliases)


def test_exact_names_win_over_globs_and_globs_go_in_file_order() -> None:
    n = names(ENV)
    assert n.resolve("gpt-4o") == "embed"  # exact, though "gpt-*" also matches
    assert n.resolve("gpt-5.1-codex") == "local"
    assert n.resolve("o3-mini") == "local"
    assert n.resolve("omni") is None  # o[0-9]* needs a digit
    assert n.resolve("GPT-5") is None  # case-sensitive
    assert n.resolve("local") == "local"  # an alias means itself
    assert n.resolve("claude-sonnet-4-5-20250929") == "local"  # claude-real is switched off
    assert n.resolve("unknown-model") is None
    assert n.resolve("claude-real") == "claude-real"  # switched off, but still itself: no detour


def test_the_first_enabled_alias_of_a_list_is_used() -> None:
    n = names({**ENV, "ANTHROPIC_API_KEY": "sk-ant"})
    assert n.resolve("claude-sonnet-4-5-20250929") == "claude-real"


def test_an_entry_whose_aliases_are_all_switched_off_disappears() -> None:
    text = TWO.replace('"claude-*": [claude-real, local]', '"claude-*": claude-real')
    settings = parse(text, ENV).settings
    assert "claude-*" not in settings.model_aliases
    assert ModelNames(settings.models, settings.model_aliases).resolve("claude-x") is None


@pytest.mark.parametrize(
    ("entry", "problem"),
    [
        ('"x-*": nope', "model_aliases.x-*: unknown model alias 'nope'"),
        ('"x-*": []', "model_aliases.x-*: names no alias"),
        ('"x-*": [local, nope]', "model_aliases.x-*: unknown model alias 'nope'"),
    ],
)
def test_bad_entries_are_config_errors_naming_them(entry: str, problem: str) -> None:
    text = TWO.replace('  "gpt-4o": embed\n', f"  {entry}\n")
    assert problem in problems(text, ENV)


def test_api_responses_is_refused_for_anthropic_and_gemini() -> None:
    text = TWO.replace("model: claude-haiku-4-5,", "model: claude-haiku-4-5, api: responses,")
    found = problems(text, {**ENV, "ANTHROPIC_API_KEY": "sk-ant"})
    assert any("api: responses is for OpenAI-format deployments, not provider anthropic" in p for p in found)


def scope(path: str, headers: list[tuple[bytes, bytes]] = (), query: bytes = b"") -> dict[str, object]:  # type: ignore[assignment]
    return {"path": path, "headers": list(headers), "query_string": query}


@pytest.mark.parametrize(
    ("path", "headers", "query", "key"),
    [
        ("/v1/messages", [(b"authorization", b"Bearer sk-a")], b"", b"sk-a"),
        ("/v1/messages", [(b"x-api-key", b"sk-b")], b"", b"sk-b"),
        ("/v1beta/models/m:generateContent", [(b"x-goog-api-key", b"sk-c")], b"", b"sk-c"),
        ("/v1beta/models/m:generateContent", [], b"alt=sse&key=sk-d", b"sk-d"),
        ("/v1/models/m:generateContent", [], b"key=sk-e", b"sk-e"),
        ("/v1/chat/completions", [], b"key=sk-f", b""),  # key= only on the Gemini routes
        ("/v1/models", [], b"key=sk-g", b""),
        ("/v1beta/models/m:generateContent", [(b"x-goog-api-key", b"sk-h")], b"key=sk-i", b"sk-h"),
    ],
)
def test_client_keys_come_the_way_each_sdk_sends_them(
    path: str, headers: list[tuple[bytes, bytes]], query: bytes, key: bytes
) -> None:
    assert client_key(scope(path, headers, query)) == key


async def test_stored_responses_are_filed_per_key_and_capped(tmp_path: Path) -> None:
    backend = EmbeddedBackend(str(tmp_path / "gw.db"))
    try:
        store = ResponseStore(backend, ttl_s=60, max_bytes=4096)
        response = {"id": "resp_1", "object": "response", "output": []}
        items = [{"type": "message", "role": "user", "content": "hi"}]
        assert await store.save("key-a", response, items, None)
        found = await store.load("key-a", "resp_1")
        assert found is not None and found.response == response and found.items == items
        assert await store.load("key-b", "resp_1") is None  # another key never reads it
        assert await store.delete("key-b", "resp_1") is False
        big = {"id": "resp_2", "output": [{"text": "x" * 5000}]}
        assert await store.save("key-a", big, [], None) is False  # over the cap: answered, not stored
        assert await store.load("key-a", "resp_2") is None
        assert await store.delete("key-a", "resp_1") is True
        assert await store.load("key-a", "resp_1") is None
    finally:
        await backend.aclose()
