"""The benchmark's client APIs (chat completions, Anthropic Messages, Responses):
their request builders, the wrk script's environment, the routes ``bench.ratio
--apis`` compares and the canned Anthropic answers nginx serves. No timing."""

from __future__ import annotations

import json
import shutil
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from bench import canned
from bench.apis import CHAT, MESSAGES, RESPONSES, RESPONSES_STATELESS, Api, request_body, request_headers, wrk_env
from bench.gateway_proc import CLAUDE_JSON_ALIAS, CLAUDE_SSE_ALIAS, JSON_ALIAS, SSE_ALIAS, probe
from bench.nginx import MESSAGES_PATH, SSE_PREFIX, NginxServer, render_config
from bench.procs import Pinning
from bench.scenarios import ANTHROPIC, NATIVE_API, OPENAI, ROUTES
from bench.wrk import SCRIPT, run_wrk
from gateway.dialects import responses
from gateway.dialects.anthropic import parse_messages

FIXTURES = Path(__file__).resolve().parents[3] / "shared" / "fixtures"
TURN = [{"role": "user", "content": "Say hello"}]


def _body(api: Api, stream: bool) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(request_body(api, "m", stream=stream))
    return loaded


# --- request builders ---------------------------------------------------------------


def test_every_api_carries_the_same_turn_and_cap() -> None:
    assert _body(CHAT, False) == {"model": "m", "messages": TURN, "max_tokens": 16}
    assert _body(MESSAGES, False) == {"model": "m", "messages": TURN, "max_tokens": 16}
    assert _body(RESPONSES, False) == {"model": "m", "input": TURN, "max_output_tokens": 16}


def test_streams_ask_each_api_its_own_way() -> None:
    assert _body(CHAT, True)["stream_options"] == {"include_usage": True}
    assert _body(MESSAGES, True) == {"model": "m", "messages": TURN, "max_tokens": 16, "stream": True}
    assert _body(RESPONSES, True) == {"model": "m", "input": TURN, "max_output_tokens": 16, "stream": True}
    assert json.loads(request_body(MESSAGES, "m", stream=False, temperature=0))["temperature"] == 0


def test_the_gateway_reads_each_body_as_the_chat_request() -> None:
    # Same payload on every route: the gateway's own parsers turn the Messages and the
    # Responses bodies into the chat-completions request the baseline sends.
    for stream in (False, True):
        chat = _body(CHAT, stream)
        assert responses.parse_responses(_body(RESPONSES, stream), []) == chat
        from_messages = parse_messages(_body(MESSAGES, stream))
        assert from_messages == {**{k: v for k, v in chat.items() if k != "stream_options"}, "stream": stream}


def test_messages_send_the_key_as_anthropic_clients_do() -> None:
    headers = request_headers(MESSAGES, "sk-1", stream=True)
    assert headers == {
        "Content-Type": "application/json",
        "Accept": "text/event-stream",
        "anthropic-version": "2023-06-01",
        "x-api-key": "sk-1",
    }
    assert request_headers(RESPONSES, "sk-1", stream=False)["Authorization"] == "Bearer sk-1"
    assert request_headers(CHAT, "sk-1", stream=False)["Accept"] == "application/json"
    assert "Authorization" not in request_headers(CHAT, "", stream=False)  # nginx direct: no key
    assert "x-api-key" not in request_headers(MESSAGES, "", stream=False)


def test_wrk_env_is_what_the_lua_script_reads() -> None:
    env = wrk_env(MESSAGES, "bench-claude-sse", stream=True, key="sk-1")
    assert env["BENCH_BODY"].encode() == request_body(MESSAGES, "bench-claude-sse", stream=True)
    assert env["BENCH_MARKER"] == "event: message_stop"
    lines = env["BENCH_HEADERS"].split("\n")
    assert dict(line.split(": ", 1) for line in lines) == request_headers(MESSAGES, "sk-1", stream=True)
    assert wrk_env(RESPONSES, "m", stream=False, key="")["BENCH_MARKER"] == '"object":"response"'
    lua = SCRIPT.read_text()
    assert all(f'os.getenv("{name}")' in lua for name in env)


# --- routes ----------------------------------------------------------------------------


def test_the_routes_and_their_aliases() -> None:
    table = {r.name: (r.api.path, r.alias(False), r.alias(True)) for r in ROUTES}
    assert table == {
        "chat": ("/v1/chat/completions", JSON_ALIAS, SSE_ALIAS),
        "messages-claude": ("/v1/messages", CLAUDE_JSON_ALIAS, CLAUDE_SSE_ALIAS),
        "messages-gpt": ("/v1/messages", JSON_ALIAS, SSE_ALIAS),
        "responses-gpt": ("/v1/responses", JSON_ALIAS, SSE_ALIAS),
        "responses-gpt-nostore": ("/v1/responses", JSON_ALIAS, SSE_ALIAS),
    }
    assert ROUTES[0].name == "chat"  # the baseline comes first
    assert dict(NATIVE_API) == {OPENAI: CHAT, ANTHROPIC: MESSAGES}


# --- canned Anthropic answers -------------------------------------------------------------


def _events(text: str) -> list[tuple[str, dict[str, Any]]]:
    out = []
    for block in text.strip().split("\n\n"):
        name, data = block.split("\n", 1)
        out.append((name.removeprefix("event: "), json.loads(data.removeprefix("data: "))))
    return out


def test_canned_message_and_stream_agree() -> None:
    msg = json.loads(canned.message_body())
    assert msg["content"] == [{"type": "text", "text": "Hello! How can I help?"}]
    assert msg["usage"]["input_tokens"] == canned.PROMPT_TOKENS and msg["usage"]["output_tokens"] == 6
    events = _events(canned.message_sse_body())
    assert [name for name, data in events] == [data["type"] for name, data in events]
    text = "".join(data["delta"]["text"] for name, data in events if name == "content_block_delta")
    assert text == "Hello! How can I help?"
    assert events[-1] == ("message_stop", {"type": "message_stop"})
    assert events[-2][1]["usage"]["output_tokens"] == 6


@pytest.mark.skipif(not (FIXTURES / "anthropic").is_dir(), reason=f"no recorded fixtures at {FIXTURES}")
def test_canned_anthropic_answers_have_the_recorded_shapes() -> None:
    recorded = json.loads((FIXTURES / "anthropic" / "messages_text_with_sampling.json").read_text())
    ours = canned.message()
    assert set(ours) == set(recorded)
    assert set(ours["usage"]) == set(recorded["usage"])
    rec_events = _events((FIXTURES / "anthropic" / "stream_text.sse").read_text())
    our_events = _events(canned.message_sse_body())
    assert [n for n, _ in our_events if n != "content_block_delta"] == [
        n for n, _ in rec_events if n != "content_block_delta"
    ]
    for (name, data), (rec_name, rec_data) in zip(our_events, rec_events, strict=False):
        if name == rec_name and name != "ping":  # the recorded ping is {"type": "ping"}
            assert set(data) == set(rec_data), name
    assert set(our_events[0][1]["message"]) == set(rec_events[0][1]["message"])
    rec_delta = next(d for n, d in rec_events if n == "message_delta")
    assert set(our_events[-2][1]["usage"]) == set(rec_delta["usage"])


def test_nginx_config_answers_messages(tmp_path: Path) -> None:
    conf = render_config(port=18080, workdir=tmp_path, as_root=False)
    assert f"location = {SSE_PREFIX}{MESSAGES_PATH}" in conf
    assert "event: message_stop\\ndata: " in conf


@pytest.mark.skipif(shutil.which("nginx") is None, reason="nginx is not installed")
def test_nginx_answers_every_upstream_format_and_the_probe_accepts_it(tmp_path: Path) -> None:
    with NginxServer(tmp_path, Pinning(False, "test")) as nginx:
        for upstream, api in NATIVE_API.items():
            for stream in (False, True):
                got = probe(nginx.url(upstream, stream=stream), key="", model="m", stream=stream, api=api)
                assert got.ok, (upstream, stream, got.problem, got.body_sample)
        req = urllib.request.Request(nginx.url(ANTHROPIC, stream=True), data=b"{}", method="POST")
        with urllib.request.urlopen(req, timeout=5) as resp:
            assert resp.read().decode() == canned.message_sse_body()
        wrong = probe(nginx.url(OPENAI, stream=False), key="", model="m", stream=False, api=MESSAGES)
        assert not wrong.ok and "type" in wrong.problem


@pytest.mark.skipif(shutil.which("nginx") is None or shutil.which("wrk") is None, reason="needs nginx and wrk")
def test_the_wrk_script_sends_and_checks_each_format(tmp_path: Path) -> None:
    pinning = Pinning(False, "test")
    with NginxServer(tmp_path, pinning) as nginx:
        good = run_wrk(
            nginx.url(ANTHROPIC, stream=True),
            scenario="t",
            target="nginx",
            connections=1,
            duration_s=1,
            pinning=pinning,
            model="m",
            stream=True,
            api=MESSAGES,
        )
        assert good.requests > 0 and not good.has_errors
        wrong = run_wrk(
            nginx.url(OPENAI, stream=False),
            scenario="t",
            target="nginx",
            connections=1,
            duration_s=1,
            pinning=pinning,
            model="m",
            stream=False,
            api=RESPONSES,
        )
        assert wrong.bad_bodies == wrong.requests > 0  # a chat completion is not a Responses object


def test_stateless_responses_send_store_false_and_the_default_stores() -> None:
    stateless = json.loads(request_body(RESPONSES_STATELESS, "m", stream=False))
    assert stateless["store"] is False and stateless["input"] == [{"role": "user", "content": "Say hello"}]
    assert "store" not in json.loads(request_body(RESPONSES, "m", stream=False))  # the API's default: stored
