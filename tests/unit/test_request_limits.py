"""Requests bounded before they are read: the JSON depth limit (gateway/dialects/bounded_json.py),
the body limit of every route outside /v1 (gateway/server/asgi.py ``BoundedRequests``) and the
admin JSON reader (gateway/admin/keys.py ``read_json``). Over real sockets: tests/e2e/test_request_limits.py."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Any

import orjson
import pytest
from pydantic import ValidationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.testclient import TestClient

from gateway.admin.keys import error_response, json_response, read_json
from gateway.config.settings import ServerSettings
from gateway.dialects import bounded_json
from gateway.dialects.openai import parse_json_body
from gateway.errors import GatewayError, InvalidRequest
from gateway.server.asgi import BoundedRequests, RequestLimits


def nested(depth: int, leaf: Any = 1) -> Any:
    value = leaf
    for i in range(depth):
        value = [value] if i % 2 else {"k": value}
    return value


# --- depth -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "depth"),
    [(1, 0), ("x", 0), ({}, 1), ([], 1), ({"a": [1, 2]}, 2), ([[], {"a": {}}], 3), (nested(7), 7)],
)
def test_depth_is_the_deepest_chain_of_containers(value: Any, depth: int) -> None:
    assert not bounded_json.depth_exceeds(value, depth)
    if depth:
        assert bounded_json.depth_exceeds(value, depth - 1)


def test_the_check_is_iterative_so_any_depth_is_safe() -> None:
    deep = nested(200_000)  # far past the interpreter's recursion limit
    assert bounded_json.depth_exceeds(deep, 64)
    assert not bounded_json.depth_exceeds(deep, 200_000)


def test_long_arrays_are_checked_whole() -> None:
    scalars = [0.5] * 2000  # an embedding input: skipped at C speed
    assert not bounded_json.depth_exceeds({"input": [scalars, scalars]}, 3)
    tail = [*scalars, [[{"k": []}]]]  # a container at the end of a long array is still seen
    assert bounded_json.depth_exceeds({"input": tail}, 5)
    assert not bounded_json.depth_exceeds({"input": tail}, 6)


def test_a_wide_shallow_body_passes() -> None:
    wide = {"messages": [{"role": "user", "content": [{"type": "text", "text": "x"}]}] * 5000}
    assert not bounded_json.depth_exceeds(wide, 5)
    assert bounded_json.depth_exceeds(wide, 4)


@pytest.mark.parametrize("depth", [65, 300, 1000, 5000])
def test_too_deep_is_400_json_too_deep_naming_the_limit(depth: int) -> None:
    raw = b'{"model": "m", "x": ' + b"[" * depth + b"]" * depth + b"}"
    with pytest.raises(InvalidRequest) as info:
        parse_json_body(raw, 64)
    err = info.value
    assert (err.http_status, err.code, err.param) == (400, "json_too_deep", "body")
    assert "64" in err.message and "server.max_json_depth" in err.message


def test_the_limit_itself_is_accepted() -> None:
    raw = b'{"x": ' + b"[" * 63 + b"]" * 63 + b"}"  # 64 levels with the body object
    body = parse_json_body(raw, 64)
    assert not bounded_json.depth_exceeds(body, 64) and bounded_json.depth_exceeds(body, 63)
    with pytest.raises(InvalidRequest, match="more than 63 levels"):
        parse_json_body(raw, 63)


@pytest.mark.parametrize(("raw", "what"), [(b"{", "not valid JSON"), (b"\xff", "not valid UTF-8"), (b"[1,]", "JSON")])
def test_text_that_is_not_json_stays_invalid_json(raw: bytes, what: str) -> None:
    with pytest.raises(InvalidRequest) as info:
        bounded_json.loads(raw, 64)
    assert info.value.code == "invalid_json" and what in info.value.message


def test_the_deepest_body_the_config_allows_survives_the_encoder_and_deepcopy() -> None:
    """One limit for parser, validation and encoder: whatever passes the check at the largest
    allowed setting can still be encoded by orjson (255 levels) and copied by deepcopy."""
    top = ServerSettings.model_fields["max_json_depth"].metadata
    allowed = max(m.le for m in top if getattr(m, "le", None) is not None)
    value = bounded_json.loads(orjson.dumps(nested(allowed)), allowed)
    assert orjson.loads(orjson.dumps(copy.deepcopy(value))) == value
    with pytest.raises(ValidationError):
        ServerSettings(max_json_depth=allowed + 1)


def test_the_documented_default_is_the_code_default() -> None:
    assert ServerSettings().max_json_depth == bounded_json.DEFAULT_MAX_DEPTH == 64
    assert ServerSettings().max_admin_body_bytes == 1024 * 1024


# --- the body limit outside /v1 and the admin JSON reader ------------------------------------


@pytest.fixture
def app() -> Iterator[tuple[TestClient, list[Any]]]:
    seen: list[Any] = []
    refused: list[str] = []

    async def echo(request: Request) -> Response:
        try:
            body = await read_json(request)
        except GatewayError as err:
            return error_response(err)
        seen.append(body)
        return json_response({"ok": True})

    inner = Starlette(routes=[Route("/admin/echo", echo, methods=["POST"])])
    bounded = BoundedRequests(inner, lambda: RequestLimits(2048, 8, refused.append))
    with TestClient(bounded) as client:
        yield client, [seen, refused]


def test_an_announced_oversize_is_refused_before_the_route_runs(app: tuple[TestClient, list[Any]]) -> None:
    client, (seen, refused) = app
    resp = client.post("/admin/echo", content=b"x" * 4096, headers={"content-type": "application/json"})
    assert resp.status_code == 413 and resp.json()["error"]["code"] == "request_too_large"
    assert resp.headers["connection"] == "close"
    assert seen == [] and refused == ["request_too_large"]


def test_a_chunked_body_is_read_up_to_the_limit_and_refused_past_it(app: tuple[TestClient, list[Any]]) -> None:
    client, (seen, refused) = app

    def chunks() -> Iterator[bytes]:
        yield b'{"a": "'
        for _ in range(10):
            yield b"x" * 512
        yield b'"}'

    resp = client.post("/admin/echo", content=chunks())
    assert resp.status_code == 413 and resp.json()["error"]["code"] == "request_too_large"
    assert seen == [] and refused == ["request_too_large"]


def test_within_the_limits_the_route_gets_its_body(app: tuple[TestClient, list[Any]]) -> None:
    client, (seen, refused) = app
    assert client.post("/admin/echo", json={"a": [1, {"b": 2}]}).status_code == 200
    assert client.post("/admin/echo").status_code == 200
    assert seen == [{"a": [1, {"b": 2}]}, None] and refused == []


def test_admin_json_past_the_depth_is_400_json_too_deep(app: tuple[TestClient, list[Any]]) -> None:
    client, (seen, refused) = app
    resp = client.post("/admin/echo", content=orjson.dumps(nested(9)))
    assert resp.status_code == 400
    assert resp.json()["error"] == {
        "message": "the request body is nested more than 8 levels deep (server.max_json_depth)",
        "type": "invalid_request_error",
        "param": "body",
        "code": "json_too_deep",
    }
    bad = client.post("/admin/echo", content=b"{nope")
    assert bad.json()["error"]["code"] == "invalid_json"
    assert seen == [] and refused == ["json_too_deep"]


def test_read_json_without_the_wrapper_uses_the_default_limits() -> None:
    async def echo(request: Request) -> Response:
        try:
            return json_response({"got": await read_json(request)})
        except GatewayError as err:
            return error_response(err)

    with TestClient(Starlette(routes=[Route("/e", echo, methods=["POST"])])) as client:
        assert client.post("/e", content=orjson.dumps(nested(64))).status_code == 200
        assert client.post("/e", content=orjson.dumps(nested(65))).json()["error"]["code"] == "json_too_deep"
        too_big = client.post("/e", content=b"1" * (1024 * 1024 + 1))
        assert too_big.status_code == 413
