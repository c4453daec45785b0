"""``gateway serve --workers 2``: each worker serves its own /metrics on a port
of its own, and the sum over those targets is exact; the shared main port
refuses /metrics with a message naming them."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from tests.e2e.conftest import Mock
from tests.e2e.harness import MASTER_KEY, ROOT, GatewayProcess, e2e_config, wait_until
from tests.ports import free_port, free_port_run
from tests.redis_server import RedisServer

REQUESTS = 40


@pytest.fixture(scope="module")
def redis_server() -> Iterator[RedisServer]:
    with RedisServer() as server:
        yield server


def chat_requests(text: str) -> float:
    """The sum of ``gateway_requests_total`` for the chat route in one exposition."""
    pattern = re.compile(r'^gateway_requests_total\{[^}]*route="chat"[^}]*\} (\S+)$', re.M)
    return sum(float(v) for v in pattern.findall(text))


def test_each_worker_serves_its_own_metrics_and_the_sum_is_exact(
    mock: Mock, redis_server: RedisServer, tmp_path: Path
) -> None:
    # both metrics ports free, or the second worker finds no port of its own; the main port apart from them
    *ports, main_port = free_port_run(3)
    metrics_port = ports[0]
    state = f"state: {{backend: redis, url: '{redis_server.url}'}}\n"
    gw = GatewayProcess(
        state + e2e_config(mock.url),
        tmp_path,
        port=main_port,
        extra_args=["--workers", "2", "--metrics-port", str(metrics_port)],
    )
    try:
        last: dict[int, str] = {}  # what each port last answered: the failure message says it

        def scrape(port: int) -> str | None:
            try:
                resp = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=3)
            except httpx.TransportError as exc:
                last[port] = f"{type(exc).__name__}: {exc}"
                return None
            last[port] = f"HTTP {resp.status_code}: {resp.text[:200]!r}"
            return resp.text if resp.status_code == 200 else None

        assert wait_until(lambda: all(scrape(p) is not None for p in ports), timeout=30), (
            f"ports {ports}, main port {gw.port}: {last}\n{gw.log()[-3000:]}"
        )
        before = sum(chat_requests(scrape(p) or "") for p in ports)
        body = {"model": "chat", "messages": [{"role": "user", "content": "hello"}]}

        def one(_: int) -> int:  # a connection of its own, eight at a time: both workers take some
            return httpx.post(
                gw.url + "/v1/chat/completions", json=body, headers=gw.http.headers, timeout=30
            ).status_code

        with ThreadPoolExecutor(8) as pool:
            assert set(pool.map(one, range(REQUESTS))) == {200}
        # A worker counts a request once its answer is sent (settlement ends after the last
        # byte), so a scrape right after the answers may miss the last few: wait (bounded)
        # until every answer is counted.
        wait_until(lambda: sum(chat_requests(scrape(p) or "") for p in ports) - before >= REQUESTS, 10)
        per_worker = [chat_requests(scrape(p) or "") for p in ports]
        assert sum(per_worker) - before == REQUESTS, per_worker
        assert min(per_worker) > 0, f"one worker took every request: {per_worker}"
        pids = {re.search(r"^process_start_time_seconds (\S+)$", scrape(p) or "", re.M) is not None for p in ports}
        assert pids == {True}, "each worker exports its own process metrics"

        main = gw.http.get("/metrics")
        assert main.status_code == 404
        error = main.json()["error"]
        assert error["code"] == "metrics_per_worker" and f"{metrics_port}-{metrics_port + 1}" in error["message"]
    finally:
        gw.stop()


def serve(redis_server: RedisServer, tmp_path: Path, port: int, *args: str) -> subprocess.CompletedProcess[str]:
    config = tmp_path / "gateway.yaml"
    config.write_text(f"state: {{backend: redis, url: '{redis_server.url}'}}\n" + e2e_config("http://127.0.0.1:9"))
    return subprocess.run(
        [sys.executable, "-m", "gateway", "serve", "--config", str(config), "--port", str(port), *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        env={"GATEWAY_MASTER_KEY": MASTER_KEY, "PATH": "/usr/bin:/bin"},
        check=False,
    )


@pytest.mark.parametrize(
    ("args", "problem"),
    [
        (["--workers", "2"], "--workers > 1 needs --metrics-port"),
        (["--workers", "2", "--metrics-port", "65535"], "must be within 1-65535"),
    ],
)
def test_several_workers_without_usable_metrics_ports_are_refused(
    redis_server: RedisServer, tmp_path: Path, args: list[str], problem: str
) -> None:
    done = serve(redis_server, tmp_path, free_port(), *args)
    assert done.returncode == 2, done.stderr
    assert problem in done.stderr


def test_the_main_port_may_not_be_among_the_metrics_ports(redis_server: RedisServer, tmp_path: Path) -> None:
    port = free_port()
    done = serve(redis_server, tmp_path, port, "--workers", "2", "--metrics-port", str(port - 1))
    assert done.returncode == 2 and "must not include the main port" in done.stderr, done.stderr
