"""``provider_options`` merging beyond the end-to-end suite (tests/e2e/test_provider_options.py):
the edge cases of writing fields into a body."""

from __future__ import annotations

import orjson
import pytest

from gateway.errors import InvalidRequest
from gateway.providers import options
from gateway.providers.base import WireRequest


def test_objects_merge_one_level_and_anything_else_replaces() -> None:
    body = {"generationConfig": {"temperature": 0.2, "stop": ["x"]}, "tools": [1], "keep": True}
    fields = {"generationConfig": {"seed": 7, "stop": ["y"]}, "tools": {"not": "a list"}, "new": None}
    out = options.merged(body, fields)
    assert out == {
        "generationConfig": {"temperature": 0.2, "stop": ["y"], "seed": 7},
        "tools": {"not": "a list"},
        "keep": True,
        "new": None,
    }
    assert body["generationConfig"] == {"temperature": 0.2, "stop": ["x"]}, "the body itself is not changed"


def test_a_wire_without_a_json_object_body_is_left_as_it_is() -> None:
    bare = WireRequest("POST", "http://127.0.0.1:1/x", {})
    assert options.apply_to_wire(bare, {"a": 1}) is bare
    listed = WireRequest("POST", "http://127.0.0.1:1/x", {}, body=b"[1, 2]")
    assert options.apply_to_wire(listed, {"a": 1}) is listed
    sent = WireRequest("POST", "http://127.0.0.1:1/x", {}, body=b'{"model": "m"}')
    assert options.apply_to_wire(sent, {}) is sent
    assert orjson.loads(options.apply_to_wire(sent, {"top_k": 3}).body or b"") == {"model": "m", "top_k": 3}


def test_only_the_serving_kinds_entry_counts() -> None:
    given = options.checked({"provider_options": {"gemini": {"bad": 1}, "anthropic": {"top_k": 2}}})
    assert options.for_deployment(given, "anthropic", ["top_k"]) == {"top_k": 2}
    assert options.for_deployment(given, "openai", []) == {}, "no entry for openai: nothing to refuse"
    assert options.for_deployment(None, "anthropic", []) == {}
    with pytest.raises(InvalidRequest, match=r"allowed: none"):
        options.for_deployment(given, "gemini", [])


def test_a_gemini_body_may_carry_them_in_either_spelling() -> None:
    from gateway.dialects.gemini import parse_generate

    contents = [{"role": "user", "parts": [{"text": "hi"}]}]
    for key in ("provider_options", "providerOptions"):
        req = parse_generate({"contents": contents, key: {"anthropic": {"top_k": 2}}}, "m", stream=False)
        assert req["provider_options"] == {"anthropic": {"top_k": 2}}
    with pytest.raises(InvalidRequest, match="unknown field"):
        parse_generate({"contents": contents, "providerOption": {}}, "m", stream=False)
