"""SIGTERM to a real ``gateway serve`` (what a container stop sends): the listening socket closes
at once, so new connections are refused, while a streamed and a plain request already in flight
finish in full; then the process exits. A request still running after ``server.shutdown_grace_s``
is cut at about that time instead of being waited for.

The mock upstream is made slow per upstream model (``latency_ms``, ``tokens_per_s``, ``hang_ms``).
Every wait is bounded; the only times asserted are the grace itself (a cut must not come before
it, and must come long before the slow upstream would have answered)."""

from __future__ import annotations

import signal
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import orjson

from tests.e2e.conftest import Mock
from tests.e2e.harness import MASTER_KEY, GatewayProcess, wait_until
from tests.ports import free_port_run
from tests.redis_server import RedisServer

WAIT_S = 30.0
WORDS = [f"w{i}" for i in range(1, 13)]
REPLY = " ".join(WORDS)
SINGLE_EXIT = 128 + signal.SIGTERM
"""One process re-raises the SIGTERM once it has shut down (gateway/cli/serve.py)."""


def config(mock_url: str, grace_s: float) -> str:
    def alias(name: str) -> str:
        deployment = f"{{provider: openai, model: {name}-model, base_url: '{mock_url}/v1', api_key: k}}"
        return f"  {name}: {{deployments: [{deployment}]}}\n"

    return (
        f"server: {{shutdown_grace_s: {grace_s}}}\n"
        'auth: {master_key: "${GATEWAY_MASTER_KEY}"}\n'
        "router:\n"
        "  timeouts: {connect_s: 2, first_byte_s: 25, idle_s: 25, total_s: 28}\n"
        "  retry: {max_retries: 0}\n"
        "  pacing: {enabled: false}\n"
        "health_checks: {enabled: false}\n"
        "models:\n" + "".join(alias(n) for n in ("drain-plain", "drain-stream", "cut-plain", "cut-stream"))
    )


@dataclass
class Call:
    """One client request run in a thread: what came back and when it ended."""

    alias: str
    stream: bool
    status: int | None = None
    body: bytes = b""
    events: list[bytes] = field(default_factory=list)
    error: str | None = None
    ended_at: float | None = None
    first_event: threading.Event = field(default_factory=threading.Event)
    done: threading.Event = field(default_factory=threading.Event)

    def run(self, url: str) -> None:
        payload = {"model": self.alias, "messages": [{"role": "user", "content": "hi"}], "stream": self.stream}
        headers = {"authorization": f"Bearer {MASTER_KEY}"}
        try:
            with (
                httpx.Client(timeout=WAIT_S) as client,
                client.stream("POST", url + "/v1/chat/completions", json=payload, headers=headers) as resp,
            ):
                self.status = resp.status_code
                if not self.stream:
                    self.body = resp.read()
                    return
                for line in resp.iter_lines():
                    if line.startswith("data: "):
                        self.events.append(line[6:].encode())
                        self.first_event.set()
        except httpx.HTTPError as exc:
            self.error = f"{type(exc).__name__}: {exc}"
        finally:
            self.ended_at = time.monotonic()
            self.done.set()

    def start(self, url: str) -> threading.Thread:
        thread = threading.Thread(target=self.run, args=(url,), daemon=True)
        thread.start()
        return thread

    def streamed_text(self) -> str:
        chunks = [orjson.loads(e) for e in self.events if e != b"[DONE]"]
        return "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c.get("choices"))


def refused(url: str) -> bool:
    """True when a new connection to the gateway is refused."""
    try:
        httpx.get(url + "/ready", timeout=2)
    except httpx.ConnectError:
        return True
    except httpx.HTTPError:
        return False
    return False


def start_gateway(mock: Mock, tmp_path: Path, grace_s: float) -> GatewayProcess:
    return GatewayProcess(config(mock.url, grace_s), tmp_path)


def test_sigterm_drains_a_stream_and_a_request_in_flight_then_exits(mock: Mock, tmp_path: Path) -> None:
    # About 4 s each: the plain answer after 4 s, the stream's 12 words at 3 a second.
    mock.behave("drain-plain-model", latency_ms=4000, reply=REPLY)
    mock.behave("drain-stream-model", tokens_per_s=3, reply=REPLY)
    gw = start_gateway(mock, tmp_path, grace_s=20)
    try:
        plain, stream = Call("drain-plain", stream=False), Call("drain-stream", stream=True)
        threads = [plain.start(gw.url), stream.start(gw.url)]
        assert stream.first_event.wait(WAIT_S), gw.log()
        assert wait_until(lambda: mock.calls("drain-plain-model") == 1, timeout=WAIT_S), gw.log()
        assert not plain.done.is_set() and not stream.done.is_set()

        gw.proc.send_signal(signal.SIGTERM)
        # New connections are refused while both requests are still being answered.
        assert wait_until(lambda: refused(gw.url), timeout=5.0), gw.log()
        assert not plain.done.is_set() and not stream.done.is_set(), "the requests must still be in flight"

        for thread in threads:
            thread.join(WAIT_S)
        assert plain.error is None and plain.status == 200, (plain.error, plain.status, plain.body)
        assert orjson.loads(plain.body)["choices"][0]["message"]["content"] == REPLY
        assert stream.error is None and stream.status == 200, (stream.error, gw.log())
        assert stream.events[-1] == b"[DONE]"
        assert stream.streamed_text().split() == WORDS
        assert mock.calls("drain-plain-model") == 1 and mock.calls("drain-stream-model") == 1

        assert gw.proc.wait(timeout=WAIT_S) == SINGLE_EXIT, gw.log()
        assert "timeout graceful shutdown exceeded" not in gw.log()
    finally:
        gw.stop()


def cut_in_flight(mock: Mock, gw: GatewayProcess, grace_s: float, exit_code: int) -> None:
    """A plain request and a stream that would each take 20 s, SIGTERM: both are cut at about
    ``grace_s`` and the gateway exits with ``exit_code``."""
    # A plain answer that comes after 20 s; a stream that stalls 20 s after its first word.
    mock.behave("cut-plain-model", latency_ms=20_000, reply=REPLY)
    mock.behave("cut-stream-model", hang_ms=20_000, reply=REPLY)
    plain, stream = Call("cut-plain", stream=False), Call("cut-stream", stream=True)
    threads = [plain.start(gw.url), stream.start(gw.url)]
    assert stream.first_event.wait(WAIT_S), gw.log()
    assert wait_until(lambda: mock.calls("cut-plain-model") == 1, timeout=WAIT_S), gw.log()

    sent_at = time.monotonic()
    gw.proc.send_signal(signal.SIGTERM)
    for thread in threads:
        thread.join(WAIT_S)
    try:
        exited = gw.proc.wait(timeout=WAIT_S)
    except subprocess.TimeoutExpired:
        raise AssertionError(f"the gateway did not exit:\n{gw.log()}") from None

    # Cut, not answered: the plain request gets uvicorn's 500 (or a closed connection), the
    # stream ends without its last words and [DONE].
    assert plain.status != 200, (plain.status, plain.body)
    assert plain.status == 500 or plain.error is not None, (plain.status, plain.error)
    assert b"[DONE]" not in stream.events and stream.streamed_text().split() != WORDS
    # ... at about the grace: not before it, and long before the upstream's 20 s.
    for call in (plain, stream):
        assert call.ended_at is not None
        waited = call.ended_at - sent_at
        assert grace_s - 0.5 <= waited <= grace_s + 8, (call.alias, waited)
    assert exited == exit_code, gw.log()
    assert "timeout graceful shutdown exceeded" in gw.log()


def test_a_request_longer_than_the_grace_is_cut_at_about_the_grace(mock: Mock, tmp_path: Path) -> None:
    gw = start_gateway(mock, tmp_path, grace_s=2.0)
    try:
        cut_in_flight(mock, gw, grace_s=2.0, exit_code=SINGLE_EXIT)
    finally:
        gw.stop()


def test_each_worker_applies_the_grace(mock: Mock, tmp_path: Path) -> None:
    """``--workers 2``: the supervisor passes SIGTERM on to its workers, and each cuts what it
    still runs after ``server.shutdown_grace_s`` (the workers need a shared state backend)."""
    with RedisServer() as redis_server:
        state = f"state: {{backend: redis, url: '{redis_server.url}'}}\n"
        metrics_port = free_port_run(2)[0]
        gw = GatewayProcess(
            state + config(mock.url, 2.0),
            tmp_path,
            extra_args=["--workers", "2", "--metrics-port", str(metrics_port)],
        )
        try:
            cut_in_flight(mock, gw, grace_s=2.0, exit_code=0)  # the supervisor ends normally
        finally:
            gw.stop()
