"""The PostgreSQL state backend's metrics and alert on a live Prometheus: a gateway on
PostgreSQL + Redis (real servers on loopback), scraped every second by a real
Prometheus that loads alerts/rules with time compressed 60-fold (as the live stack
does); PostgreSQL killed (SIGKILL) brings ``gateway_state_postgres_up`` to 0 and
``GatewayPostgresDown`` to firing while client traffic goes on; restarted, both clear.
The request-detail tier's rows show there too."""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from scripts.stack import prometheus_config, scale_rules
from tests.e2e.conftest import Mock
from tests.e2e.harness import GatewayProcess, e2e_config, wait_until
from tests.live_stack import (
    SCRAPE_INTERVAL,
    TIME_SCALE,
    PanelQuery,
    Prometheus,
    has_value,
    postgres_panels,
    substitute,
)
from tests.ports import free_port
from tests.postgres_server import PostgresServer
from tests.redis_server import RedisServer

ROOT = Path(__file__).resolve().parents[2]


def start_prometheus(tmp: Path, target: str) -> tuple[subprocess.Popen[bytes], Prometheus]:
    exe = shutil.which("prometheus")
    if exe is None:
        pytest.skip("prometheus is not installed; `make test` installs it (scripts/install-os-deps.sh)")
    rules = tmp / "rules"
    rules.mkdir(parents=True)
    for source in sorted((ROOT / "alerts" / "rules").glob("*.yml")):
        (rules / source.name).write_text(scale_rules(source.read_text(), TIME_SCALE))
    conf = tmp / "prometheus.yml"
    conf.write_text(
        prometheus_config(
            (ROOT / "deploy" / "prometheus.yml").read_text(),
            gateways=[target],
            alertmanager=f"127.0.0.1:{free_port()}",  # none listens: alerts are read from Prometheus itself
            rule_files=sorted(rules.glob("*.yml")),
            scrape_interval=SCRAPE_INTERVAL,
            evaluation_interval=SCRAPE_INTERVAL,
        )
    )
    port = free_port()
    argv = [
        exe,
        f"--config.file={conf}",
        f"--storage.tsdb.path={tmp / 'data'}",
        f"--web.listen-address=127.0.0.1:{port}",
    ]
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"

    def ready() -> bool:
        try:
            return httpx.get(url + "/-/ready", timeout=1, trust_env=False).status_code == 200
        except httpx.HTTPError:
            return False

    if not wait_until(ready, timeout=30):
        proc.kill()
        raise AssertionError("prometheus did not become ready")
    return proc, Prometheus(url)


def panel_has_data(prometheus: Prometheus, query: PanelQuery, started: float) -> bool:
    """As the live stack's check: the panel's query as Grafana sends it, over this run."""
    now = time.time()
    expr = substitute(query.expr, range_s=int(now - started) + 30)
    if query.instant:
        return has_value(prometheus.query(expr, at=now))
    return has_value(prometheus.query_range(expr, started, now, step=1))


def value(prometheus: Prometheus, expr: str) -> float | None:
    result = prometheus.query(expr)
    return float(result[0]["value"][1]) if result else None


def test_postgres_down_fires_its_alert_and_traffic_goes_on(mock: Mock, tmp_path: Path) -> None:
    with PostgresServer() as pg, RedisServer() as redis:
        replica = PostgresServer(replica_of=pg)  # a read replica, so its lag is on the dashboard too
        replica.start()
        replica_url = pg.url.replace(f":{pg.port}/", f":{replica.port}/")
        retention = f"retention: {{archive_dir: '{tmp_path / 'archive'}', interval_s: 1}}"
        state = (
            f"state: {{backend: postgres, url: '{redis.url}', path: '{tmp_path / 'state.db'}',"
            f" flush_interval_s: 0.2, refresh_interval_s: 0.2,"
            f" postgres: {{url: '{pg.url}', read_url: '{replica_url}', connect_timeout_s: 0.5,"
            f" statement_timeout_s: 2, {retention}}}}}\n"
        )
        gw = GatewayProcess(state + e2e_config(mock.url), tmp_path)
        prom_proc: subprocess.Popen[bytes] | None = None
        prometheus: Prometheus | None = None
        try:
            key = gw.http.post("/admin/keys", json={"name": "live-pg"}).json()["key"]
            chat = {"model": "chat", "messages": [{"role": "user", "content": "hi"}]}
            auth = {"authorization": f"Bearer {key}"}
            assert gw.http.post("/v1/chat/completions", json=chat, headers=auth).status_code == 200
            prom_proc, prometheus = start_prometheus(tmp_path / "prom", f"127.0.0.1:{gw.port}")
            prom = prometheus
            assert wait_until(lambda: value(prom, "gateway_state_postgres_up") == 1.0, timeout=30)
            assert value(prom, 'gateway_state_postgres_pool_connections{state="max"}') == 20.0
            assert (value(prom, 'gateway_state_postgres_pool_connections{state="open"}') or 0) >= 1
            # the request-detail tier: the chat above written behind to gw_requests
            assert wait_until(
                lambda: (value(prom, 'gateway_request_detail_rows_total{outcome="written"}') or 0) >= 1, timeout=30
            )
            assert value(prom, 'gateway_request_detail_rows_total{outcome="dropped"}') == 0.0
            assert wait_until(lambda: value(prom, "gateway_state_postgres_replica_lag_seconds") == 0.0, timeout=30)
            assert wait_until(lambda: (value(prom, "gateway_retention_last_success_timestamp_seconds") or 0) > 0, 30)
            started = time.time() - 60
            panels = postgres_panels()
            assert len(panels) >= 8

            def empty() -> list[tuple[str, str, str]]:  # rates need a few scrapes of the new series
                return [q.key for q in panels if not panel_has_data(prom, q, started)]

            assert wait_until(lambda: not empty(), timeout=30, interval=0.5), f"panels without data: {empty()}"

            pg.kill()
            assert wait_until(lambda: value(prom, "gateway_state_postgres_up") == 0.0, timeout=30)
            assert wait_until(lambda: prom.alert_states().get("GatewayPostgresDown") == "firing", timeout=30)
            statuses = [gw.http.post("/v1/chat/completions", json=chat, headers=auth).status_code for _ in range(5)]
            assert statuses == [200] * 5, "client traffic goes on: the key is read through Redis's copy"
            refused = gw.http.post("/admin/keys", json={"name": "while-down"})
            assert refused.status_code == 503
            assert refused.json()["error"]["code"] == "state_backend_unavailable"
            assert (value(prom, "gateway_state_postgres_errors_total") or 0) >= 1

            pg.start()
            assert wait_until(lambda: value(prom, "gateway_state_postgres_up") == 1.0, timeout=30)
            assert wait_until(lambda: "GatewayPostgresDown" not in prom.alert_states(), timeout=30)
            assert gw.http.post("/admin/keys", json={"name": "after"}).status_code == 201
        finally:
            replica.stop()
            if prometheus is not None:
                prometheus.close()
            if prom_proc is not None:
                prom_proc.terminate()
                prom_proc.wait(timeout=20)
            gw.stop()
