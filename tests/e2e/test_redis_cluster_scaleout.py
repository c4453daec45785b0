"""Scale-out on this machine (docs/deployment.md "Scale-out on Redis Cluster"): three gateway
replicas behind nginx (deploy/nginx.conf, a third upstream added) on one Redis Cluster of
three masters with a replica each, all real processes on loopback. Under load: a key's RPM
and a team's budget hold across the replicas; kill -9 of a replica fails only what was in
flight on it, with nginx's JSON error; a Redis master killed and failed over loses no spend
(``state.spend_replicas: 1``: a spend batch counts as written once a replica has it, by
``WAIT``). Bounded in requests and time; the figures are printed (``-s``)."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import httpx
import pytest
import redis

from scripts.stack import nginx_config
from tests.e2e.conftest import Mock
from tests.e2e.harness import ROOT, GatewayProcess, wait_until
from tests.e2e.test_replicas import unique
from tests.e2e.test_spend_exact import BODY, MODEL, NANO, Load, config
from tests.ports import free_port
from tests.redis_cluster import RedisClusterServers

SPEND_SLOT_KEY = "gw:spend:{s}:x"  # every spend counter shares this hash tag: one master holds them all
NGINX_TEMP = ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")


@dataclass
class Fleet:
    cluster: RedisClusterServers
    gateways: list[GatewayProcess]
    texts: list[str]
    workdirs: list[Path]
    front: str
    """nginx's URL."""

    def restart(self, i: int) -> None:
        """Replica ``i`` again, on its port and workdir (its spend journal is replayed)."""
        self.gateways[i].stop()
        self.gateways[i] = GatewayProcess(self.texts[i], self.workdirs[i], port=self.gateways[i].port)

    def spend(self, prefix: str) -> Decimal:
        """The sum of the cluster's daily spend counters ``<prefix>YYYY-MM-DD``."""
        client = redis.Redis(port=self.cluster.master_of(SPEND_SLOT_KEY))
        try:
            keys = [k for k in client.scan_iter(match=f"gw:spend:{{s}}:{prefix}*") if len(k.rsplit(b":", 1)[1]) == 10]
            values = client.mget(keys) if keys else []
            texts = [v.decode() if isinstance(v, bytes) else v for v in values if v is not None]
            return sum((Decimal(t) for t in texts), Decimal(0))
        finally:
            client.close()


def cluster_state(url: str, workdir: Path) -> str:
    return (
        f"state: {{backend: redis, url: '{url}', path: '{workdir / 'state.db'}', flush_interval_s: 0.2,"
        " refresh_interval_s: 0.2, spend_replicas: 1, spend_journal: true}\n"
    )


def start_nginx(upstreams: list[int], workdir: Path) -> tuple[subprocess.Popen[bytes], str]:
    exe = shutil.which("nginx") or "/usr/sbin/nginx"
    text = (ROOT / "deploy" / "nginx.conf").read_text()
    # deploy/nginx.conf lists the compose stack's replicas; a third one joins them here
    last = re.findall(r"^(\s*server\s+gateway-(\d+):8080[^\n]*)$", text, re.M)[-1]
    extra = "\n" + last[0].replace(f"gateway-{last[1]}:", f"gateway-{int(last[1]) + 1}:")
    text = text.replace(last[0], last[0] + extra, 1)
    for name in NGINX_TEMP:
        (workdir / f"tmp_{name}").mkdir(parents=True, exist_ok=True)
    port = free_port()
    conf = workdir / "nginx.conf"
    conf.write_text(nginx_config(text, listen=port, upstreams=upstreams, workdir=workdir, as_root=os.geteuid() == 0))
    argv = [exe, "-c", str(conf), "-p", str(workdir), "-e", str(workdir / "error.log")]
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"

    def up() -> bool:
        try:
            return httpx.get(url + "/ready", timeout=1).status_code == 200
        except httpx.TransportError:
            return False

    assert wait_until(up, timeout=10), (workdir / "error.log").read_text()
    return proc, url


@pytest.fixture(scope="module")
def fleet(mock: Mock, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    mock.behave(MODEL, latency_ms=5)
    tmp = tmp_path_factory.mktemp("cluster-fleet")
    with RedisClusterServers() as cluster:
        workdirs = [tmp / f"gw{i}" for i in range(3)]
        texts = []
        for workdir in workdirs:
            workdir.mkdir()
            texts.append(config(mock.url, cluster_state(cluster.url, workdir)))
        gateways: list[GatewayProcess] = []
        nginx = None
        try:
            for text, workdir in zip(texts, workdirs, strict=True):
                gateways.append(GatewayProcess(text, workdir))
            nginx, front = start_nginx([g.port for g in gateways], tmp / "nginx")
            yield Fleet(cluster, gateways, texts, workdirs, front)
        finally:
            if nginx is not None:
                nginx.terminate()
                nginx.wait(timeout=10)
            for gw in gateways:
                gw.stop()


def burst(url: str, key: str, count: int, threads: int) -> list[httpx.Response]:
    """``count`` requests with ``key``, ``threads`` at a time, through ``url``."""
    out: list[httpx.Response] = []
    lock = threading.Lock()
    todo = iter(range(count))

    def run() -> None:
        with httpx.Client(base_url=url, headers={"authorization": f"Bearer {key}"}, timeout=30) as client:
            while True:
                with lock:
                    if next(todo, None) is None:
                        return
                resp = client.post("/v1/chat/completions", json=BODY)
                with lock:
                    out.append(resp)

    workers = [threading.Thread(target=run) for _ in range(threads)]
    for t in workers:
        t.start()
    for t in workers:
        t.join(timeout=60)
    return out


def replicas_served(fleet: Fleet) -> list[float]:
    """Each replica's count of answered chat requests (its /metrics)."""
    counts = []
    for gw in fleet.gateways:
        total = 0.0
        for line in gw.http.get("/metrics").text.splitlines():
            if line.startswith("gateway_requests_total{") and 'status_class="2xx"' in line:
                total += float(line.rsplit(" ", 1)[1])
        counts.append(total)
    return counts


def test_a_keys_rpm_holds_across_three_replicas(fleet: Fleet) -> None:
    created = fleet.gateways[0].http.post("/admin/keys", json={"name": unique("rpm"), "rpm": 30})
    assert created.status_code == 201, created.text
    before = replicas_served(fleet)
    answers = burst(fleet.front, created.json()["key"], 60, threads=6)
    statuses = [r.status_code for r in answers]
    # A replica counts a request once its answer is sent (settlement ends after the last byte), so
    # a scrape right after the answers may miss the last few: wait (bounded) until all are counted.
    wait_until(lambda: sum(replicas_served(fleet)) - sum(before) >= statuses.count(200), 10)
    after = replicas_served(fleet)
    spread = [round(b - a) for a, b in zip(before, after, strict=True)]
    print(
        f"\nRPM 30 over 3 replicas: {statuses.count(200)} of 60 admitted, {statuses.count(429)} refused; "
        f"per replica {spread}"
    )
    assert statuses.count(200) == 30 and statuses.count(429) == 30
    assert all(n > 0 for n in spread), "nginx spread the key's requests over every replica"
    assert all(r.json()["error"]["type"] == "rate_limit_error" for r in answers if r.status_code == 429)


def test_a_teams_budget_holds_across_three_replicas(fleet: Fleet) -> None:
    gw = fleet.gateways[1]
    team = unique("team")
    probe = burst(fleet.front, gw.http.headers["authorization"][7:], 1, threads=1)[0]
    cost = Decimal(probe.headers["x-gateway-cost-usd"])
    budget = cost * 40 + cost / 2  # room for 40 requests and a half
    assert gw.http.post("/admin/teams", json={"id": team, "budget_daily_usd": float(budget)}).status_code == 201
    key = gw.http.post("/admin/keys", json={"name": unique("tk"), "team": team}).json()["key"]
    answers = burst(fleet.front, key, 120, threads=6)
    served = [r for r in answers if r.status_code == 200]
    refused = [r for r in answers if r.status_code == 429]
    answered = sum((Decimal(r.headers["x-gateway-cost-usd"]) for r in served), Decimal(0))
    assert wait_until(lambda: abs(fleet.spend(f"spend:team:{team}:") - answered) < NANO, timeout=10)
    recorded = fleet.spend(f"spend:team:{team}:")
    print(
        f"\nteam budget {budget} USD (40.5 requests of {cost}) over 3 replicas, 6 clients: {len(served)} served, "
        f"{len(refused)} refused; recorded {recorded} USD = answered {answered} USD; overshoot "
        f"{max(Decimal(0), recorded - budget) / cost:.1f} requests"
    )
    assert len(served) + len(refused) == 120
    assert all(r.json()["error"]["code"] == "insufficient_quota" for r in refused)
    # a request passes only while every replica's spend and reservations leave room for it (one
    # script in Redis decides): the burst ends within the budget, or one request past it (a request
    # that finds no reservation is admitted while the budget is not spent, on one process as on many)
    assert recorded <= budget + cost
    after = 0
    for i in range(6):  # then one at a time, each charge flushed first: admitted while the budget is not spent
        time.sleep(0.5)
        if burst(fleet.gateways[i % 3].url, key, 1, threads=1)[0].status_code != 200:
            break
        after += 1
    print(f"then {after} more one at a time; spend {fleet.spend(f'spend:team:{team}:')} USD")
    assert len(served) + after == 41, "a request is admitted while the spend is under the budget: 41 of 40.5"
    held = [metric_sum(gw, "gateway_budget_reservations", "") for gw in fleet.gateways]
    assert held == [0, 0, 0], "every reservation given back"
    for replica in fleet.gateways:  # and every replica refuses the team now: the budget is spent
        answer = burst(replica.url, key, 1, threads=1)[0]
        assert answer.status_code == 429 and answer.json()["error"]["code"] == "insufficient_quota"
        assert "is spent" in answer.json()["error"]["message"]


def test_kill_9_of_a_replica_fails_only_its_requests_in_flight(fleet: Fleet, mock: Mock) -> None:
    mock.behave(MODEL, latency_ms=40)  # requests in flight on the replica when it dies
    victim = fleet.gateways[2]
    start = fleet.spend("spend:global:all:")
    load = Load(fleet.front, concurrency=12, limit=900).start()
    try:
        load.wait_for(150)
        os.kill(victim.proc.pid, signal.SIGKILL)
        victim.proc.wait(timeout=10)
        load.wait_for(450)
        fleet.restart(2)  # on its port and workdir: its journal replays what it had not flushed
        load.wait_for(600)
    finally:
        load.stop()
        mock.behave(MODEL, latency_ms=5)
    answered = load.answered()
    failed = [(s, c) for s, c in load.results if s != 200]
    assert wait_until(lambda: fleet.spend("spend:global:all:") - start - answered > -NANO, timeout=10)
    recorded = fleet.spend("spend:global:all:") - start
    cost = Decimal(next(c for s, c in load.results if s == 200 and c))
    print(
        f"\nkill -9 of 1 of 3 replicas under 12 clients: {load.count(200)} answered, {len(failed)} failed "
        f"({sorted({s for s, _ in failed})}); recorded - answered = {recorded - answered} USD"
    )
    assert load.count(200) >= 590
    assert 1 <= len(failed) <= 12 and {s for s, _ in failed} <= {502}, "only its requests in flight failed"
    for body in load.errors:  # nginx's error_page: the gateway's JSON shape, saying what happened
        assert httpx.Response(502, content=body).json()["error"]["code"] == "replica_unavailable", body
    assert recorded - answered > -NANO, "no answered cent lost"
    extra = (recorded - answered) / cost  # charged as it died, answer never sent: whole requests
    assert abs(extra - round(extra)) < Decimal("1e-6") and 0 <= round(extra) <= len(failed)


def test_a_redis_master_failover_under_load_loses_no_spend(fleet: Fleet) -> None:
    """The master of the spend counters killed under load: its replica takes over (about 2 s);
    batches it had not replicated are written again, once (``WAIT`` + the batch marks); the
    killed node comes back as a replica, after which spend_replicas: 1 is met again."""
    start = fleet.spend("spend:global:all:")
    master = fleet.cluster.master_of(SPEND_SLOT_KEY)
    load = Load(fleet.front, concurrency=8, limit=1200).start()
    try:
        load.wait_for(200)
        fleet.cluster.kill(master)
        killed_at = time.monotonic()
        assert wait_until(lambda: fleet.cluster.serving(SPEND_SLOT_KEY) not in (None, master), timeout=15)
        failover_s = time.monotonic() - killed_at
        load.wait_for(600)
        fleet.cluster.start_node(master)  # rejoins as the new master's replica
        fleet.cluster.wait_healthy()
        load.wait_for(800)
    finally:
        load.stop()
    answered = load.answered()
    assert wait_until(lambda: abs(fleet.spend("spend:global:all:") - start - answered) < NANO, timeout=15)
    recorded = fleet.spend("spend:global:all:") - start
    failed = load.count(200) - len(load.results)
    print(
        f"\nRedis master of the spend slot killed under 8 clients: failover in {failover_s:.1f} s; "
        f"{load.count(200)} answered, {-failed} failed; recorded {recorded} USD = answered {answered} USD"
    )
    assert load.count(200) == len(load.results) >= 800, "every request answered through the failover"
    assert abs(recorded - answered) < NANO
    errors = sum(
        metric_sum(gw, "gateway_state_backend_errors_total", 'operation="spend_flush"') for gw in fleet.gateways
    )
    assert errors > 0, "the spend writes failed while the slot had no master, or no replica, and were written again"


def metric_sum(gw: GatewayProcess, name: str, label: str) -> float:
    """The sum of ``name``'s series (those whose labels contain ``label``) on ``gw``'s /metrics."""
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in gw.http.get("/metrics").text.splitlines()
        if line.startswith((name + "{", name + " ")) and label in line
    )
