"""Two gateway replicas sharing one real Redis: global limits, shared cache,
budgets and revocation seen everywhere, and no spend lost when Redis dies."""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from gateway.state.redis import RedisBackend
from tests.e2e.conftest import Mock
from tests.e2e.harness import GatewayProcess, e2e_config, sent_when_refused, wait_until
from tests.redis_server import RedisServer

HELLO: Any = [{"role": "user", "content": "Hello there"}]


@pytest.fixture(scope="module")
def redis_server() -> Iterator[RedisServer]:
    with RedisServer(persist=True) as server:
        yield server


def redis_config(mock: Mock, server: RedisServer) -> str:
    state = f"state: {{backend: redis, url: '{server.url}', flush_interval_s: 0.2, refresh_interval_s: 0.2}}\n"
    return state + e2e_config(mock.url)


@pytest.fixture(scope="module")
def replicas(
    mock: Mock, redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[GatewayProcess, GatewayProcess]]:
    a = GatewayProcess(redis_config(mock, redis_server), Path(tmp_path_factory.mktemp("replica-a")))
    b = GatewayProcess(redis_config(mock, redis_server), Path(tmp_path_factory.mktemp("replica-b")))
    yield a, b
    a.stop()
    b.stop()


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def call(gw: GatewayProcess, key: str, body: Any = None) -> httpx.Response:
    return httpx.post(
        gw.url + "/v1/chat/completions",
        json=body or {"model": "chat", "messages": HELLO},
        headers={"authorization": f"Bearer {key}"},
        timeout=30,
    )


def test_rpm_limit_is_global_across_replicas(replicas: tuple[GatewayProcess, GatewayProcess]) -> None:
    a, b = replicas
    key = a.http.post("/admin/keys", json={"name": unique("rpm"), "rpm": 60}).json()["key"]
    statuses = [call(a if i % 2 else b, key).status_code for i in range(100)]
    admitted = statuses.count(200)
    assert 58 <= admitted <= 62, f"two replicas sharing a 60 RPM key admitted {admitted}"
    assert statuses.count(429) == 100 - admitted


def test_cache_is_shared(replicas: tuple[GatewayProcess, GatewayProcess], mock: Mock) -> None:
    a, b = replicas
    body = {"model": "chat", "messages": [{"role": "user", "content": unique("shared")}], "temperature": 0}
    miss = call(a, a.http.headers["authorization"][7:], body)
    assert miss.headers["x-gateway-cache"] == "miss"
    assert a.finished(miss)  # the answer is stored in the cache after it is sent
    hit = call(b, b.http.headers["authorization"][7:], body)
    assert hit.headers["x-gateway-cache"] == "hit"
    assert mock.calls("mock-gpt") == 1


def test_team_budget_is_refused_on_every_replica(replicas: tuple[GatewayProcess, GatewayProcess]) -> None:
    a, b = replicas
    team = unique("team")
    assert a.http.post("/admin/teams", json={"id": team, "budget_daily_usd": 0.000001}).status_code == 201
    key = a.http.post("/admin/keys", json={"name": unique("k"), "team": team}).json()["key"]
    assert call(a, key).status_code == 200
    for replica in (a, b):
        assert wait_until(lambda r=replica: call(r, key).status_code == 429, timeout=3)
        assert call(replica, key).json()["error"]["code"] == "insufficient_quota"


def test_revocation_reaches_every_replica_within_a_second(replicas: tuple[GatewayProcess, GatewayProcess]) -> None:
    a, b = replicas
    created = a.http.post("/admin/keys", json={"name": unique("rev")}).json()
    assert call(b, created["key"]).status_code == 200  # now cached on b
    assert a.http.delete(f"/admin/keys/{created['id']}").status_code == 200
    revoked_at = time.monotonic()
    refused_at = sent_when_refused(lambda: call(b, created["key"]).status_code)
    assert refused_at is not None and refused_at - revoked_at < 1.0 + 0.5  # refresh 0.2 s here; by default 1 s


def test_redis_outage_loses_no_spend(mock: Mock, tmp_path: Path) -> None:
    with RedisServer(persist=True) as server:
        (tmp_path / "a").mkdir()
        (tmp_path / "b").mkdir()
        a = GatewayProcess(redis_config(mock, server), tmp_path / "a")
        b = GatewayProcess(redis_config(mock, server), tmp_path / "b")
        try:
            team = unique("outage")
            first_day = datetime.now(UTC).strftime("%Y-%m-%d")  # the load may run past UTC midnight
            a.http.post("/admin/teams", json={"id": team}).raise_for_status()
            key = a.http.post("/admin/keys", json={"name": unique("k"), "team": team}).json()["key"]
            results: list[tuple[int, float]] = []
            stop = threading.Event()

            def load() -> None:
                i = 0
                while not stop.is_set():
                    resp = call(a if i % 2 else b, key)
                    results.append((resp.status_code, float(resp.headers.get("x-gateway-cost-usd", 0))))
                    i += 1

            worker = threading.Thread(target=load)
            worker.start()
            time.sleep(1.0)
            server.kill()
            during_from = len(results)
            time.sleep(1.5)
            during = results[during_from:]
            server.start()  # same port and data directory: the AOF is replayed
            time.sleep(1.0)
            stop.set()
            worker.join(timeout=30)
        finally:
            a.stop()
            b.stop()  # graceful stop: a final flush
        assert during and all(status == 200 for status, _ in during), "fail-open: served during the outage"
        assert all(status == 200 for status, _ in results)
        expected = sum(cost for _, cost in results)
        assert expected > 0
        days = {first_day, datetime.now(UTC).strftime("%Y-%m-%d")}
        stored = sum(asyncio.run(read_spend(server.url, f"spend:team:{team}:{day}")) for day in days)
        assert stored == pytest.approx(expected, rel=1e-6, abs=1e-9), "every request's cost reached Redis"


async def read_spend(url: str, key: str) -> float:
    backend = RedisBackend(url)
    try:
        return (await backend.read_spend([key]))[key]
    finally:
        await backend.aclose()
