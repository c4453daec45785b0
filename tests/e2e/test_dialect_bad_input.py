"""Bad input on the new client API routes (Anthropic Messages, OpenAI Responses, Gemini),
sent raw with httpx: every refusal is a 4xx (never a 5xx) in the error envelope of the
route's own dialect, and its message (or its param / Google ``fieldViolations``) names
the offending field. Also: the Gemini routes take their key as ``x-goog-api-key`` or
``?key=``, and a ``key=`` value never reaches the gateway's log."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.e2e.harness import LIMITED_KEY, MASTER_KEY, GatewayProcess
from tests.e2e.test_traces_logs import access_line
from tests.e2e.test_traffic import create_key

MESSAGES = "/v1/messages"
COUNT = "/v1/messages/count_tokens"
RESPONSES = "/v1/responses"
INPUT_TOKENS = "/v1/responses/input_tokens"
GEMINI = "/v1beta/models/gemini"
GENERATE = f"{GEMINI}:generateContent"
STREAM = f"{GEMINI}:streamGenerateContent?alt=sse"
COUNT_TOKENS = f"{GEMINI}:countTokens"
EMBED = "/v1beta/models/gemini-embed:embedContent"
BATCH = "/v1beta/models/gemini-embed:batchEmbedContents"

MSGS = [{"role": "user", "content": "hi"}]
CONTENTS = [{"role": "user", "parts": [{"text": "hi"}]}]
VALID: dict[str, dict[str, Any]] = {
    MESSAGES: {"model": "claude", "messages": MSGS, "max_tokens": 5},
    COUNT: {"model": "claude", "messages": MSGS},
    RESPONSES: {"model": "chat", "input": "hi"},
    INPUT_TOKENS: {"model": "chat", "input": "hi"},
    GENERATE: {"contents": CONTENTS},
    STREAM: {"contents": CONTENTS},
    COUNT_TOKENS: {"contents": CONTENTS},
    EMBED: {"content": {"parts": [{"text": "hi"}]}},
    BATCH: {"requests": [{"model": "models/gemini-embed", "content": {"parts": [{"text": "hi"}]}}]},
}
"""Each route and a body it accepts: the base of its bad variants."""
ROUTES = list(VALID)

ANTHROPIC_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    405: "invalid_request_error",
    413: "request_too_large",
    429: "rate_limit_error",
}
GOOGLE_STATUSES = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    429: "RESOURCE_EXHAUSTED",
}


def dialect(path: str) -> str:
    if path.startswith("/v1beta/"):
        return "gemini"
    return "anthropic" if path.startswith(MESSAGES) else "openai"


def send(
    gw: GatewayProcess,
    path: str,
    body: Any,
    *,
    method: str = "POST",
    key: str | None = MASTER_KEY,
    headers: dict[str, str] | None = None,
) -> httpx.Response:
    """``body`` as JSON, or as it is when it is bytes (or an iterator of bytes: chunked)."""
    sent = {"authorization": f"Bearer {key}"} if key else {}
    sent.update(headers or {})
    if isinstance(body, dict | list):
        return httpx.request(method, gw.url + path, json=body, headers=sent, timeout=30)
    sent["content-type"] = "application/json"
    return httpx.request(method, gw.url + path, content=body, headers=sent, timeout=30)


def error_of(resp: httpx.Response, path: str) -> tuple[str, str | None]:
    """(message, param) of an error answer, once its envelope is the one of ``path``'s dialect."""
    assert "Traceback" not in resp.text
    body = resp.json()
    status = resp.status_code
    kind = dialect(path)
    if kind == "anthropic":
        assert body["type"] == "error" and set(body) == {"type", "error"}, body
        error = body["error"]
        assert set(error) == {"type", "message"}, body
        assert error["type"] == ANTHROPIC_TYPES[status], body
        return str(error["message"]), None
    error = body["error"]
    if kind == "openai":
        assert set(body) == {"error"} and set(error) == {"message", "type", "param", "code"}, body
        assert isinstance(error["type"], str) and isinstance(error["code"], str), body
        return str(error["message"]), error["param"]
    assert set(body) == {"error"} and {"code", "message", "status"} <= set(error), body
    assert error["code"] == status and re.fullmatch(r"[A-Z_]+", error["status"]), body
    assert error["status"] == GOOGLE_STATUSES.get(status, error["status"]), body
    violations = [v["field"] for d in error.get("details", ()) for v in d.get("fieldViolations", ())]
    return str(error["message"]), violations[0] if violations else None


def assert_refused(resp: httpx.Response, path: str, status: int, field: str) -> None:
    """A ``status`` refusal in ``path``'s envelope that names ``field`` (in its message or param)."""
    assert resp.status_code == status, resp.text
    assert 400 <= status < 500
    message, param = error_of(resp, path)
    assert param == field or field in message, (field, message, param)
    assert resp.headers["content-type"].startswith("application/json")


# --- the body itself -------------------------------------------------------------------------


def chunked_oversized(path: str) -> Iterator[bytes]:
    """``path``'s valid body padded past the 64 KiB cap, sent without a Content-Length."""
    yield json.dumps(VALID[path])[:-1].encode() + b', "pad": "'
    for _ in range(70):
        yield b"x" * 1000
    yield b'"}'


BODIES: list[tuple[str, Any, int]] = [
    # (case, body, status): each is refused naming the body
    ("malformed_json", b'{"model": "claude", "messages": [', 400),
    ("empty", b"", 400),
    ("array", [{"model": "claude"}], 400),
    ("too_deep", b"[" * 200 + b"]" * 200, 400),
    ("too_deep_object", b'{"a":' * 100 + b"1" + b"}" * 100, 400),
    ("oversized", None, 413),
    ("oversized_chunked", None, 413),
]


@pytest.mark.parametrize("path", ROUTES)
@pytest.mark.parametrize(("case", "body", "status"), BODIES, ids=[b[0] for b in BODIES])
def test_a_bad_body_is_refused_in_the_dialect(
    gateway: GatewayProcess, path: str, case: str, body: Any, status: int
) -> None:
    if case == "oversized":
        body = {**VALID[path], "pad": "x" * 70_000}
    elif case == "oversized_chunked":
        body = chunked_oversized(path)
    resp = send(gateway, path, body)
    assert_refused(resp, path, status, "body")
    if status == 413:
        assert "65536" in resp.text  # the limit is named


# --- fields ---------------------------------------------------------------------------------

M, C, R = VALID[MESSAGES], VALID[COUNT], VALID[RESPONSES]
NOPE = "no-such-model-e2e"
VIDEO = [{"role": "user", "content": [{"type": "video"}]}]
"""A block type Anthropic's API does not have: it goes only to an Anthropic deployment as it
is, so it is refused for alias ``chat`` (an OpenAI deployment)."""
IMAGE = [{"role": "user", "content": [{"type": "image"}]}]


def url(model: str, method: str) -> str:
    return f"/v1beta/models/{model}:{method}"


def batch(model: str, parts: Any) -> dict[str, Any]:
    return {"requests": [{"model": f"models/{model}", "content": {"parts": parts}}]}


Case = tuple[str, str, dict[str, Any], int, str]
"""(case, path, body, status, the field the answer must name)."""
ANTHROPIC_CASES: list[Case] = [
    ("messages_not_array", MESSAGES, {**M, "messages": "x"}, 400, "messages"),
    ("max_tokens_string", MESSAGES, {**M, "max_tokens": "10"}, 400, "max_tokens"),
    ("stream_string", MESSAGES, {**M, "stream": "yes"}, 400, "stream"),
    ("stream_bad_field", MESSAGES, {**M, "messages": "x", "stream": True}, 400, "messages"),
    ("system_number", MESSAGES, {**M, "system": 5}, 400, "system"),
    ("tools_string", MESSAGES, {**M, "tools": "x"}, 400, "tools"),
    ("temperature_string", MESSAGES, {**M, "temperature": "hot"}, 400, "temperature"),
    ("bad_role", MESSAGES, {**M, "messages": [{"role": "wizard", "content": "x"}]}, 400, "messages.0.role"),
    ("content_number", MESSAGES, {**M, "messages": [{"role": "user", "content": 5}]}, 400, "messages.0.content"),
    ("image_no_source", MESSAGES, {**M, "model": "chat", "messages": IMAGE}, 400, "messages.0.content.0.source"),
    ("unknown_block", MESSAGES, {**M, "model": "chat", "messages": VIDEO}, 400, "video"),
    ("missing_model", MESSAGES, {"messages": MSGS, "max_tokens": 5}, 400, "model"),
    ("missing_messages", MESSAGES, {"model": "claude", "max_tokens": 5}, 400, "messages"),
    ("missing_max_tokens", MESSAGES, {"model": "claude", "messages": MSGS}, 400, "max_tokens"),
    ("unknown_model", MESSAGES, {**M, "model": NOPE}, 404, NOPE),
    ("embedding_model", MESSAGES, {**M, "model": "embed"}, 400, "embed"),
    ("count_messages_not_array", COUNT, {**C, "messages": "x"}, 400, "messages"),
    ("count_tools_string", COUNT, {**C, "tools": "x"}, 400, "tools"),
    ("count_unknown_block", COUNT, {"model": "chat", "messages": VIDEO}, 400, "video"),
    ("count_missing_model", COUNT, {"messages": MSGS}, 400, "model"),
    ("count_missing_messages", COUNT, {"model": "claude"}, 400, "messages"),
    ("count_unknown_model", COUNT, {**C, "model": NOPE}, 404, NOPE),
]
RESPONSES_BODIES: list[tuple[str, dict[str, Any], int, str]] = [
    ("input_number", {**R, "input": 5}, 400, "input"),
    ("max_output_tokens_string", {**R, "max_output_tokens": "10"}, 400, "max_output_tokens"),
    ("stream_bad_field", {**R, "stream": True, "max_output_tokens": "x"}, 400, "max_output_tokens"),
    ("tools_string", {**R, "tools": "x"}, 400, "tools"),
    ("unknown_item", {**R, "input": [{"type": "foo_item"}]}, 400, "input.0.type"),
    (
        "unknown_content",
        {**R, "input": [{"role": "user", "content": [{"type": "input_video"}]}]},
        400,
        "input.0.content.0.type",
    ),
    ("previous_id_number", {**R, "previous_response_id": 5}, 400, "previous_response_id"),
    ("missing_model", {"input": "hi"}, 400, "model"),
    ("missing_input", {"model": "chat"}, 400, "input"),
    ("unknown_model", {**R, "model": NOPE}, 404, "model"),
    ("embedding_model", {**R, "model": "embed"}, 400, "model"),
]
CONTENTS_BODIES: list[tuple[str, dict[str, Any], str]] = [
    ("contents_object", {"contents": {}}, "contents"),
    ("contents_string", {"contents": "x"}, "contents"),
    ("parts_string", {"contents": [{"role": "user", "parts": "x"}]}, "contents.0.parts"),
    ("text_number", {"contents": [{"role": "user", "parts": [{"text": 5}]}]}, "contents.0.parts.0.text"),
    ("unknown_part", {"contents": [{"role": "user", "parts": [{"fooPart": 1}]}]}, "contents.0.parts.0.fooPart"),
    ("missing_contents", {}, "contents"),
]
TOKENS_STRING = {"contents": CONTENTS, "generationConfig": {"maxOutputTokens": "10"}}
GEMINI_CASES: list[Case] = [
    ("config_string", GENERATE, {"contents": CONTENTS, "generationConfig": "x"}, 400, "generationConfig"),
    ("max_output_tokens_string", GENERATE, TOKENS_STRING, 400, "generationConfig.maxOutputTokens"),
    ("embed_content_string", EMBED, {"content": "x"}, 400, "content"),
    ("embed_no_parts", EMBED, {"content": {}}, 400, "content.parts"),
    ("embed_unknown_part", EMBED, {"content": {"parts": [{"fooPart": 1}]}}, 400, "content.parts.0.fooPart"),
    ("embed_missing_content", EMBED, {}, 400, "content"),
    ("batch_requests_object", BATCH, {"requests": {}}, 400, "requests"),
    ("batch_missing_content", BATCH, {"requests": [{}]}, 400, "requests.0.content"),
    ("batch_parts_string", BATCH, batch("gemini-embed", "x"), 400, "requests.0.content.parts"),
    ("batch_other_model", BATCH, batch("other", [{"text": "a"}]), 400, "requests.0.model"),
    ("batch_missing_requests", BATCH, {}, 400, "requests"),
    # the model and the method are in the URL
    ("unknown_model_generate", url(NOPE, "generateContent"), VALID[GENERATE], 404, "model"),
    ("unknown_model_count", url(NOPE, "countTokens"), VALID[GENERATE], 404, "model"),
    ("unknown_model_embed", url(NOPE, "embedContent"), VALID[EMBED], 404, "model"),
    ("unknown_model_batch", url(NOPE, "batchEmbedContents"), batch(NOPE, [{"text": "a"}]), 404, "model"),
    ("embedding_model_generate", url("gemini-embed", "generateContent"), VALID[GENERATE], 400, "model"),
    ("chat_model_embed", url("gemini", "embedContent"), VALID[EMBED], 400, "model"),
    ("unknown_method", url("gemini", "fooBar"), VALID[GENERATE], 404, "fooBar"),
    ("stream_without_alt", url("gemini", "streamGenerateContent"), VALID[GENERATE], 400, "alt"),
    ("stream_alt_json", url("gemini", "streamGenerateContent?alt=json"), VALID[GENERATE], 400, "alt"),
]
CASES: list[Case] = [
    *ANTHROPIC_CASES,
    *[(f"{p.rsplit('/', 1)[1]}_{c}", p, b, s, f) for p in (RESPONSES, INPUT_TOKENS) for c, b, s, f in RESPONSES_BODIES],
    *[
        (f"{p.rsplit(':', 1)[1][:8]}_{c}", p, b, 400, f)
        for p in (GENERATE, STREAM, COUNT_TOKENS)
        for c, b, f in CONTENTS_BODIES
    ],
    *GEMINI_CASES,
]


@pytest.mark.parametrize(("case", "path", "body", "status", "field"), CASES, ids=[c[0] for c in CASES])
def test_a_bad_field_is_named_in_the_dialect(
    gateway: GatewayProcess, case: str, path: str, body: Any, status: int, field: str
) -> None:
    resp = send(gateway, path, body)
    assert_refused(resp, path, status, field)


def test_an_unknown_anthropic_block_is_named_by_its_path(gateway: GatewayProcess) -> None:
    body = {**M, "model": "chat", "messages": [{"role": "user", "content": [{"type": "video"}]}]}
    message, _ = error_of(send(gateway, MESSAGES, body), MESSAGES)
    assert "messages.0.content.0.type" in message


# --- methods --------------------------------------------------------------------------------

METHODS = [
    pytest.param(MESSAGES, "GET", id="messages-GET"),
    pytest.param(MESSAGES, "PUT", id="messages-PUT"),
    pytest.param(COUNT, "GET", id="count_tokens-GET"),
    pytest.param(RESPONSES, "GET", id="responses-GET"),
    pytest.param(RESPONSES, "PUT", id="responses-PUT"),
    pytest.param(INPUT_TOKENS, "PUT", id="input_tokens-PUT"),
    pytest.param(INPUT_TOKENS, "GET", id="input_tokens-GET"),
    *[
        pytest.param(path, method, id=f"{path.rsplit(':', 1)[1].split('?')[0]}-{method}")
        for path in (GENERATE, STREAM, COUNT_TOKENS, EMBED, BATCH)
        for method in ("GET", "PUT")
    ],
]


@pytest.mark.parametrize(("path", "method"), METHODS)
def test_a_wrong_method_is_405_with_allow(gateway: GatewayProcess, path: str, method: str) -> None:
    resp = send(gateway, path, VALID[path] if method == "PUT" else b"", method=method)
    assert resp.status_code == 405, resp.text
    assert resp.headers["allow"] == "POST"
    message, _ = error_of(resp, path)
    assert method in message


# --- previous_response_id -------------------------------------------------------------------


@pytest.fixture(scope="module")
def stored_response(gateway: GatewayProcess) -> str:
    """The id of a response stored for the master key."""
    resp = send(gateway, RESPONSES, VALID[RESPONSES])
    assert resp.status_code == 200, resp.text
    return str(resp.json()["id"])


@pytest.mark.parametrize("path", [RESPONSES, INPUT_TOKENS])
@pytest.mark.parametrize("whose", ["unknown", "another_keys"])
def test_a_previous_response_the_key_cannot_see_is_404(
    gateway: GatewayProcess, stored_response: str, path: str, whose: str
) -> None:
    if whose == "unknown":
        key, previous = MASTER_KEY, "resp_" + "0" * 48
    else:
        key, previous = create_key(gateway)["key"], stored_response
    resp = send(gateway, path, {**VALID[RESPONSES], "previous_response_id": previous}, key=key)
    assert_refused(resp, path, 404, "previous_response_id")
    assert resp.json()["error"]["code"] == "previous_response_not_found"
    assert previous in resp.json()["error"]["message"]
    # the owner still continues from it
    assert send(gateway, path, {**VALID[RESPONSES], "previous_response_id": stored_response}).status_code == 200


def test_another_keys_stored_response_cannot_be_read_or_deleted(gateway: GatewayProcess, stored_response: str) -> None:
    other = create_key(gateway)["key"]
    for method in ("GET", "DELETE"):
        resp = send(gateway, f"{RESPONSES}/{stored_response}", b"", method=method, key=other)
        assert_refused(resp, RESPONSES, 404, "response_id")
    assert send(gateway, f"{RESPONSES}/{stored_response}", b"", method="GET").status_code == 200


# --- keys -----------------------------------------------------------------------------------


@pytest.mark.parametrize("path", [GENERATE, STREAM, COUNT_TOKENS, EMBED, BATCH])
@pytest.mark.parametrize("how", ["x-goog-api-key", "key="])
def test_gemini_keys_work_and_key_query_is_never_logged(gateway: GatewayProcess, path: str, how: str) -> None:
    key = create_key(gateway)["key"]
    if how == "key=":
        resp = send(gateway, path + ("&" if "?" in path else "?") + f"key={key}", VALID[path], key=None)
    else:
        resp = send(gateway, path, VALID[path], key=None, headers={"x-goog-api-key": key})
    assert resp.status_code == 200, resp.text
    line = access_line(gateway, resp.headers["x-request-id"])
    assert key not in json.dumps(line)
    assert line["key_id"] not in (None, "master")
    assert key not in gateway.log()


def test_a_wrong_key_query_is_refused_and_not_logged(gateway: GatewayProcess) -> None:
    wrong = "sk-e2e-wrong-key-query-0001"
    resp = send(gateway, f"{EMBED}?key={wrong}", VALID[EMBED], key=None)
    assert_refused(resp, EMBED, 401, "API key")
    assert resp.json()["error"]["details"][0]["reason"] == "API_KEY_INVALID"
    assert access_line(gateway, resp.headers["x-request-id"])["error_code"] == "invalid_api_key"
    assert wrong not in gateway.log()


def test_key_query_is_only_for_the_gemini_routes(gateway: GatewayProcess) -> None:
    resp = send(gateway, f"{MESSAGES}?key={MASTER_KEY}", VALID[MESSAGES], key=None)
    assert_refused(resp, MESSAGES, 401, "API key")
    assert MASTER_KEY not in gateway.log()


@pytest.mark.parametrize("path", ROUTES)
def test_a_key_without_the_model_gets_403_in_the_dialect(gateway: GatewayProcess, path: str) -> None:
    """LIMITED_KEY may use alias ``chat`` only."""
    body = VALID[path]
    if path in (RESPONSES, INPUT_TOKENS):
        body = {**body, "model": "claude"}
    resp = send(gateway, path, body, key=LIMITED_KEY)
    model = "claude" if dialect(path) != "gemini" else path.removeprefix("/v1beta/models/").partition(":")[0]
    assert_refused(resp, path, 403, model)


def test_gateway_still_serves_after_bad_input(gateway: GatewayProcess) -> None:
    for path in ROUTES:
        resp = send(gateway, path, VALID[path])
        assert resp.status_code == 200, (path, resp.text)
    assert "Traceback" not in gateway.log()
