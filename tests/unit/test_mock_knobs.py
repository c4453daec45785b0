"""The mock's behaviour knobs over real loopback HTTP: errors, timing, disconnects,
garbage, reply/output_tokens. (Auth, precedence and control: ``test_mock_control.py``.)

Timing assertions are lower bounds only.
"""

from __future__ import annotations

import json
import time
from typing import Any

import aiohttp
import httpx
import openai
import pytest

from gateway.mock.testing import Fmt, MockServer, chat_request, parse_sse
from tests.unit.conftest import call

FORMATS: tuple[Fmt, ...] = ("openai", "anthropic", "gemini")
# uvloop (libuv) timers have millisecond granularity, so a sleep may end up to ~1 ms early
TIMER_SLACK_S = 0.005


def is_content(fmt: Fmt, event: str, data: str) -> bool:
    """Whether an SSE event carries generated content (what the stream knobs count)."""
    if fmt == "anthropic":
        return event == "content_block_delta"
    if fmt == "gemini":
        return True
    if data == "[DONE]":
        return False
    choices = json.loads(data)["choices"]
    delta = choices[0]["delta"] if choices else {}
    return "role" not in delta and bool(delta.get("content") or delta.get("tool_calls"))


async def timed_events(url: str, fmt: Fmt, headers: dict[str, str], model: str = "m") -> list[tuple[float, str, str]]:
    """``(seconds since the request, event, data)`` of each SSE event as it arrives."""
    path, body = chat_request(fmt, model, stream=True)
    events: list[tuple[float, str, str]] = []
    name = "message"
    start = time.perf_counter()
    async with aiohttp.ClientSession() as session, session.post(url + path, json=body, headers=headers) as resp:
        async for raw in resp.content:
            line = raw.decode().rstrip("\r\n")
            if line.startswith("event: "):
                name = line[7:]
            elif line.startswith("data: "):
                events.append((time.perf_counter() - start, name, line[6:]))
                name = "message"
    return events


# --- errors -----------------------------------------------------------------------------------

ERROR_BODIES: list[tuple[Fmt, int, Any]] = [
    (
        "openai",
        429,
        {
            "error": {
                "message": "Rate limit reached for requests (mock).",
                "type": "requests",
                "param": None,
                "code": "rate_limit_exceeded",
            }
        },
    ),
    ("anthropic", 529, {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}),
    (
        "gemini",
        503,
        {
            "error": {
                "code": 503,
                "message": "The model is overloaded. Please try again later.",
                "status": "UNAVAILABLE",
            }
        },
    ),
]


@pytest.mark.parametrize(("fmt", "status", "expected"), ERROR_BODIES)
@pytest.mark.parametrize("stream", [False, True])
def test_error_status_has_the_formats_body(
    http: httpx.Client, fmt: Fmt, status: int, expected: Any, stream: bool
) -> None:
    resp = call(http, fmt, {"x-mock-error-status": str(status)}, stream=stream)
    assert resp.status_code == status
    assert resp.headers["content-type"] == "application/json"
    body = resp.json()
    if fmt == "anthropic":
        assert body.pop("request_id").startswith("req_")
    assert body == expected


def test_openai_sdk_sees_typed_errors(mock: MockServer, http: httpx.Client) -> None:
    with openai.OpenAI(base_url=mock.url + "/v1", api_key="k", max_retries=0) as sdk:
        with pytest.raises(openai.RateLimitError) as limited:
            sdk.chat.completions.create(
                model="m", messages=[{"role": "user", "content": "x"}], extra_headers={"x-mock-error-status": "429"}
            )
        assert limited.value.code == "rate_limit_exceeded"
        with pytest.raises(openai.InternalServerError) as broken:
            sdk.embeddings.create(model="e", input="x", extra_headers={"x-mock-error-status": "500"})
        assert broken.value.status_code == 500 and broken.value.type == "server_error"


def test_error_rate(http: httpx.Client) -> None:
    always = [call(http, "openai", {"x-mock-error-rate": "1"}).status_code for _ in range(3)]
    assert always == [500, 500, 500]
    chosen = [
        call(http, "gemini", {"x-mock-error-rate": "1.0", "x-mock-error-status": "429"}).status_code for _ in range(2)
    ]
    assert chosen == [429, 429]
    never = [
        call(http, "anthropic", {"x-mock-error-rate": "0", "x-mock-error-status": "529"}).status_code for _ in range(3)
    ]
    assert never == [200, 200, 200]


@pytest.mark.parametrize("fmt", FORMATS)
def test_fail_times_then_success(http: httpx.Client, fmt: Fmt) -> None:
    assert http.put("/_mock/behaviours/m", json={"fail_times": 2}).status_code == 200
    statuses = [call(http, fmt).status_code for _ in range(4)]
    assert statuses == [503, 503, 200, 200]
    assert http.get("/_mock/stats").json()["by_model"] == {"m": 4}


def test_fail_times_with_sdk_retries(mock: MockServer, http: httpx.Client) -> None:
    http.put("/_mock/behaviours/m", json={"fail_times": 2, "error_status": 429, "retry_after": 0.01})
    with openai.OpenAI(base_url=mock.url + "/v1", api_key="k", max_retries=2) as sdk:
        done = sdk.chat.completions.create(model="m", messages=[{"role": "user", "content": "x"}])
    assert done.choices[0].finish_reason == "stop"
    assert http.get("/_mock/stats").json() == {"total": 3, "by_model": {"m": 3}, "by_route": {"openai.chat": 3}}


def test_retry_after_header(http: httpx.Client) -> None:
    headers = {"x-mock-error-status": "429", "x-mock-retry-after": "2"}
    resp = call(http, "openai", headers)
    assert (resp.headers["retry-after"], resp.headers["retry-after-ms"]) == ("2", "2000")
    gemini = call(http, "gemini", headers)
    assert gemini.headers["retry-after"] == "2"
    assert gemini.json()["error"]["details"][0]["retryDelay"] == "2s"
    assert "retry-after" not in call(http, "openai", {"x-mock-error-status": "500"}).headers


# --- timing -----------------------------------------------------------------------------------


def test_latency_ms_delays_the_answer(http: httpx.Client) -> None:
    start = time.perf_counter()
    resp = call(http, "anthropic", {"x-mock-latency-ms": "150"})
    assert resp.status_code == 200
    assert time.perf_counter() - start >= 0.15 - TIMER_SLACK_S


async def test_ttft_ms_delays_the_first_event(mock: MockServer, http: httpx.Client) -> None:
    events = await timed_events(mock.url, "openai", {"x-mock-ttft-ms": "150"})
    assert events[0][0] >= 0.15 - TIMER_SLACK_S
    assert events[-1][2] == "[DONE]"


async def test_tokens_per_s_paces_content(mock: MockServer, http: httpx.Client) -> None:
    headers = {"x-mock-tokens-per-s": "50", "x-mock-output-tokens": "6"}
    content = [
        t for t, name, data in await timed_events(mock.url, "anthropic", headers) if name == "content_block_delta"
    ]
    assert len(content) == 6
    assert content[-1] - content[0] >= 5 / 50 - TIMER_SLACK_S


async def test_hang_ms_stalls_after_first_chunk(mock: MockServer, http: httpx.Client) -> None:
    events = await timed_events(mock.url, "gemini", {"x-mock-hang-ms": "200", "x-mock-output-tokens": "3"})
    assert len(events) == 3
    assert events[1][0] - events[0][0] >= 0.2 - TIMER_SLACK_S


@pytest.mark.parametrize("fmt", FORMATS)
async def test_disconnect_after_chunks(mock: MockServer, http: httpx.Client, fmt: Fmt) -> None:
    with pytest.raises(aiohttp.ClientPayloadError):
        await timed_events(mock.url, fmt, {"x-mock-disconnect-after-chunks": "2"})
    # what arrived before the drop: exactly two content events
    path, body = chat_request(fmt, stream=True)
    seen: list[bytes] = []
    async with aiohttp.ClientSession() as session:
        resp = await session.post(mock.url + path, json=body, headers={"x-mock-disconnect-after-chunks": "2"})
        with pytest.raises(aiohttp.ClientPayloadError):
            async for line in resp.content:
                seen.append(line)
        resp.release()
        async with session.get(mock.url + "/_mock/stats") as stats:
            assert (await stats.json())["by_model"] == {"m": 2}
    events = parse_sse(b"".join(seen))
    assert sum(is_content(fmt, name, data) for name, data in events) == 2


def test_disconnect_seen_by_httpx(http: httpx.Client) -> None:
    with pytest.raises(httpx.RemoteProtocolError):
        call(http, "openai", {"x-mock-disconnect-after-chunks": "50"}, stream=True)


# --- garbage ----------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("stream", [False, True])
def test_garbage_json(http: httpx.Client, fmt: Fmt, stream: bool) -> None:
    resp = call(http, fmt, {"x-mock-garbage": "json"}, stream=stream)
    assert resp.status_code == 200
    payload = parse_sse(resp.content)[0][1] if stream else resp.text
    assert resp.headers["content-type"].startswith("text/event-stream" if stream else "application/json")
    with pytest.raises(json.JSONDecodeError):
        json.loads(payload)


@pytest.mark.parametrize("fmt", FORMATS)
def test_garbage_content_type(http: httpx.Client, fmt: Fmt) -> None:
    resp = call(http, fmt, {"x-mock-garbage": "content_type"}, stream=fmt == "gemini")
    assert resp.status_code == 200
    assert resp.headers["content-type"].startswith("text/html")
    assert resp.text.startswith("<html>")


@pytest.mark.parametrize("fmt", FORMATS)
def test_garbage_truncate_stream_lacks_terminal_marker(http: httpx.Client, fmt: Fmt) -> None:
    resp = call(http, fmt, {"x-mock-garbage": "truncate", "x-mock-output-tokens": "4"}, stream=True)
    assert resp.status_code == 200
    events = parse_sse(resp.content)
    assert sum(is_content(fmt, name, data) for name, data in events) == 4
    if fmt == "openai":
        assert events[-1][1] != "[DONE]"
        assert all(json.loads(d)["choices"][0]["finish_reason"] is None for _, d in events)
    elif fmt == "anthropic":
        assert events[-1][0] == "content_block_delta"
        assert "message_stop" not in {name for name, _ in events}
    else:
        assert all("finishReason" not in json.loads(d)["candidates"][0] for _, d in events)


def test_garbage_truncate_plain_body_is_cut(http: httpx.Client) -> None:
    resp = call(http, "openai", {"x-mock-garbage": "truncate"})
    assert resp.status_code == 200 and resp.text.startswith('{"id":"chatcmpl-')
    with pytest.raises(json.JSONDecodeError):
        resp.json()


def test_reply_and_output_tokens_knobs(http: httpx.Client) -> None:
    fixed = call(http, "anthropic", {"x-mock-reply": "Fixed answer."}).json()
    assert fixed["content"][0]["text"] == "Fixed answer." and fixed["usage"]["output_tokens"] == 2
    short = call(http, "gemini", {"x-mock-output-tokens": "2"}).json()
    assert short["candidates"][0]["content"]["parts"][0]["text"] == "Mock reply"
