"""Who may read ``/metrics``, over real ``gateway serve`` processes: the bearer token
(``metrics.bearer_token``), the listener of its own (``metrics.port``, the client port
answering 404 naming it), both at once, a taken port failing the start, and a real
Prometheus scraping with the token from a ``credentials_file`` as docs/security.md
shows (and failing with a wrong one)."""

from __future__ import annotations

import shutil
import socket
import subprocess
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.e2e.conftest import Mock
from tests.e2e.harness import GatewayProcess, e2e_config, wait_until
from tests.ports import free_port

TOKEN = "metrics-e2e-token-4f9b2c7d1e0a"
TOKEN_CONFIG = 'metrics: {bearer_token: "${METRICS_TOKEN}"}\n'


def refused_count(text: str, reason: str) -> float:
    for line in text.splitlines():
        if line.startswith(f'gateway_metrics_refused_total{{reason="{reason}"}} '):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"no gateway_metrics_refused_total{{reason={reason!r}}} in the exposition")


def test_the_token_guards_metrics_on_the_client_port(mock: Mock, tmp_path: Path) -> None:
    gw = GatewayProcess(e2e_config(mock.url) + TOKEN_CONFIG, tmp_path, extra_env={"METRICS_TOKEN": TOKEN})
    try:
        none = httpx.get(f"{gw.url}/metrics", timeout=10)
        assert none.status_code == 401 and none.json()["error"]["code"] == "missing_metrics_token"
        assert none.headers["www-authenticate"] == 'Bearer realm="metrics"'
        assert "gateway_" not in none.text and TOKEN not in none.text
        master = gw.http.get("/metrics")  # the master key is no metrics token
        assert master.status_code == 401 and master.json()["error"]["code"] == "invalid_metrics_token"
        ok = httpx.get(f"{gw.url}/metrics", headers={"authorization": f"Bearer {TOKEN}"}, timeout=10)
        assert ok.status_code == 200 and "gateway_build_info" in ok.text
        assert refused_count(ok.text, "missing_metrics_token") == 1
        assert refused_count(ok.text, "invalid_metrics_token") == 1
        assert httpx.get(f"{gw.url}/health", timeout=10).status_code == 200, "the other operational routes stay open"
    finally:
        gw.stop()


def test_a_metrics_port_of_its_own_and_the_client_port_names_it(mock: Mock, tmp_path: Path) -> None:
    port = free_port()
    gw = GatewayProcess(e2e_config(mock.url) + f"metrics: {{port: {port}}}\n", tmp_path)
    try:
        elsewhere = httpx.get(f"{gw.url}/metrics", timeout=10)
        assert elsewhere.status_code == 404 and elsewhere.json()["error"]["code"] == "metrics_elsewhere"
        assert f"http://127.0.0.1:{port}/metrics" in elsewhere.json()["error"]["message"]
        assert "gateway_" not in elsewhere.text
        gw.client().chat.completions.create(model="chat", messages=[{"role": "user", "content": "hello"}])
        own = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10)
        assert own.status_code == 200 and 'route="chat"' in own.text, "the listener serves this process's metrics"
        assert httpx.get(f"http://127.0.0.1:{port}/admin/keys", timeout=10).status_code == 404, "metrics only"
    finally:
        gw.stop()


def test_the_port_and_the_token_together(mock: Mock, tmp_path: Path) -> None:
    port = free_port()
    config = e2e_config(mock.url) + f'metrics: {{port: {port}, bearer_token: "${{METRICS_TOKEN}}"}}\n'
    gw = GatewayProcess(config, tmp_path, extra_env={"METRICS_TOKEN": TOKEN})
    try:
        url = f"http://127.0.0.1:{port}/metrics"
        denied = httpx.get(url, timeout=10)
        assert denied.status_code == 401 and "gateway_" not in denied.text
        ok = httpx.get(url, headers={"authorization": f"Bearer {TOKEN}"}, timeout=10)
        assert ok.status_code == 200 and refused_count(ok.text, "missing_metrics_token") == 1
        assert httpx.get(f"{gw.url}/metrics", timeout=10).status_code == 404
    finally:
        gw.stop()


def test_a_taken_metrics_port_fails_the_start(mock: Mock, tmp_path: Path) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        with pytest.raises(RuntimeError, match=rf"metrics\.port: cannot listen on http://127\.0\.0\.1:{port}/metrics"):
            GatewayProcess(e2e_config(mock.url) + f"metrics: {{port: {port}}}\n", tmp_path)


def test_a_short_token_is_refused_without_echoing_it(mock: Mock, tmp_path: Path) -> None:
    short = "tiny-secret-9"
    with pytest.raises(RuntimeError) as refused:
        GatewayProcess(e2e_config(mock.url) + TOKEN_CONFIG, tmp_path, extra_env={"METRICS_TOKEN": short})
    assert "metrics.bearer_token: must be 16 to 4096 characters" in str(refused.value)
    assert short not in str(refused.value)


# --- a real Prometheus, scraping with the token from a file ------------------------------------------


def _prometheus_up(api: httpx.Client) -> dict[str, float]:
    body: dict[str, Any] = api.get("/api/v1/query", params={"query": "up"}).json()
    return {r["metric"]["job"]: float(r["value"][1]) for r in body["data"]["result"]}


def test_prometheus_scrapes_with_the_token_from_a_credentials_file(mock: Mock, tmp_path: Path) -> None:
    exe = shutil.which("prometheus")
    if exe is None:
        pytest.skip("prometheus is not installed (make test installs it)")
    port = free_port()
    config = e2e_config(mock.url) + f'metrics: {{port: {port}, bearer_token: "${{METRICS_TOKEN}}"}}\n'
    gw = GatewayProcess(config, tmp_path, extra_env={"METRICS_TOKEN": TOKEN})
    (tmp_path / "token").write_text(TOKEN + "\n")  # a file as a secret mount holds it, newline and all
    (tmp_path / "wrong").write_text("not-the-metrics-token-at-all\n")

    def job(name: str, credentials: str) -> dict[str, Any]:
        auth = {"credentials_file": str(tmp_path / credentials)}
        return {"job_name": name, "authorization": auth, "static_configs": [{"targets": [f"127.0.0.1:{port}"]}]}

    prom_config = {
        "global": {"scrape_interval": "1s"},
        "scrape_configs": [job("gateway", "token"), job("bad", "wrong")],
    }
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(prom_config))
    web = free_port()
    log = (tmp_path / "prometheus.log").open("wb")
    argv = [exe, f"--config.file={tmp_path / 'prometheus.yml'}", f"--storage.tsdb.path={tmp_path / 'tsdb'}"]
    prom = subprocess.Popen([*argv, f"--web.listen-address=127.0.0.1:{web}"], stdout=log, stderr=subprocess.STDOUT)
    api = httpx.Client(base_url=f"http://127.0.0.1:{web}", timeout=10, trust_env=False)
    try:

        def both_scraped() -> bool:
            try:
                return set(_prometheus_up(api)) == {"gateway", "bad"}
            except (httpx.TransportError, KeyError, ValueError):
                return False

        assert wait_until(both_scraped, timeout=30, interval=0.25), (tmp_path / "prometheus.log").read_text()[-2000:]
        assert _prometheus_up(api) == {"gateway": 1.0, "bad": 0.0}, "the token opens it; a wrong one does not"
        found = api.get("/api/v1/query", params={"query": 'gateway_build_info{job="gateway"}'}).json()
        assert found["data"]["result"], found
    finally:
        api.close()
        prom.terminate()
        prom.wait(timeout=15)
        log.close()
        gw.stop()
