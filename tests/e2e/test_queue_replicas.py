"""The admission queue across two replicas on one Redis: the gateway-wide concurrency cap
stays global (its slots live in Redis) while each replica queues its own waiters, which
find slots freed by the other replica by polling (``queue.poll_interval_s``).

The upstream is a small loopback server that answers with a recorded OpenAI chat
completion after a pause and counts how many requests it holds at once."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.harness import MASTER_KEY, GatewayProcess
from tests.redis_server import RedisServer
from tests.unit.fixtures import load_bytes

CAP = 3
HOLD_S = 0.3


class CountingUpstream:
    """Answers every POST with the recorded completion after ``HOLD_S``; ``peak`` is the most
    requests it held at once."""

    def __init__(self) -> None:
        self.body = load_bytes("openai/chat_completion_text_after_tool_result.json")
        self.lock = threading.Lock()
        self.now = self.peak = self.total = 0
        upstream = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("content-length") or 0))
                with upstream.lock:
                    upstream.now += 1
                    upstream.total += 1
                    upstream.peak = max(upstream.peak, upstream.now)
                time.sleep(HOLD_S)
                with upstream.lock:
                    upstream.now -= 1
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(upstream.body)))
                self.end_headers()
                self.wfile.write(upstream.body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def upstream() -> Iterator[CountingUpstream]:
    server = CountingUpstream()
    yield server
    server.close()


def config(redis: RedisServer, upstream: CountingUpstream) -> str:
    return f"""
state: {{backend: redis, url: '{redis.url}', flush_interval_s: 0.2, refresh_interval_s: 0.2}}
auth: {{master_key: "${{GATEWAY_MASTER_KEY}}"}}
limits: {{max_concurrent: {CAP}}}
queue: {{max_wait_s: 20, poll_interval_s: 0.02}}
models:
  capped: {{deployments: [{{provider: openai, model: gpt-4.1-mini, base_url: '{upstream.url}', api_key: k}}]}}
"""


def test_the_gateway_wide_cap_holds_across_replicas_while_each_queues(
    upstream: CountingUpstream, tmp_path: Path
) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    with RedisServer() as redis:
        a = GatewayProcess(config(redis, upstream), tmp_path / "a")
        b = GatewayProcess(config(redis, upstream), tmp_path / "b")
        try:

            async def one(client: httpx.AsyncClient, gw: GatewayProcess) -> int:
                resp = await client.post(
                    gw.url + "/v1/chat/completions",
                    json={"model": "capped", "messages": [{"role": "user", "content": "hi"}]},
                    headers={"authorization": f"Bearer {MASTER_KEY}"},
                )
                return resp.status_code

            async def run() -> list[int]:
                async with httpx.AsyncClient(timeout=30, limits=httpx.Limits(max_connections=50)) as client:
                    return await asyncio.gather(*(one(client, gw) for gw in [a, b] * 6))

            started = time.monotonic()
            statuses = asyncio.run(run())
            took = time.monotonic() - started
        finally:
            a.stop()
            b.stop()
    assert statuses == [200] * 12, statuses  # every request waited for a slot, none refused
    assert upstream.total == 12
    assert upstream.peak <= CAP, f"{upstream.peak} requests at once past a cap of {CAP}"
    assert upstream.peak == CAP  # and the cap was used, not undershot
    assert took >= (12 / CAP) * HOLD_S * 0.9  # four rounds of 0.3 s at least
