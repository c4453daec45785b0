"""The live view with ``reports.prometheus_url``: a real Prometheus (Debian's ``prometheus``)
scraping a real gateway every second; GET /admin/live carries the last minute over every
replica as Prometheus computes it, and the console's Live view shows it next to the
replica's own figures. An unreachable Prometheus is an ``error`` (and a note), not a failure.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from playwright.sync_api import expect, sync_playwright

from tests.e2e.conftest import Mock
from tests.e2e.console_pages import CHROMIUM, go, have_chromium, open_page, shot, sign_in
from tests.e2e.harness import GatewayProcess, wait_until
from tests.ports import free_port

USER, PASSWORD = "prom-admin", "console-Pass-12345"


def config(mock_url: str, prometheus_url: str) -> str:
    return f"""
auth: {{master_key: "${{GATEWAY_MASTER_KEY}}"}}
admin: {{scrypt_n: 16384}}
reports: {{prometheus_url: "{prometheus_url}", prometheus_timeout_s: 2}}
models:
  prom-chat:
    deployments: [{{provider: openai, model: prom-model, base_url: '{mock_url}/v1', api_key: k}}]
"""


def live(gw: GatewayProcess) -> dict[str, Any]:
    resp = gw.http.get("/admin/live")
    assert resp.status_code == 200, resp.text
    return dict(resp.json())


def test_unreachable_prometheus_is_a_note(mock: Mock, tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    gw = GatewayProcess(config(mock.url, url), tmp_path)
    try:
        prom = live(gw)["prometheus"]
        assert prom["url"] == url and "cannot reach Prometheus" in prom["error"]
        assert "summary" in live(gw)  # the replica's own figures are still there
    finally:
        gw.stop()


def test_live_view_shows_every_replica_from_prometheus(mock: Mock, tmp_path: Path) -> None:
    exe = shutil.which("prometheus")
    if exe is None:
        pytest.skip("prometheus is not installed (make test installs it)")
    if not have_chromium():
        pytest.skip(f"no chromium at {CHROMIUM}: run scripts/install-os-deps.sh")
    web = free_port()
    gw = GatewayProcess(config(mock.url, f"http://127.0.0.1:{web}"), tmp_path)
    target = gw.url.removeprefix("http://")
    scrape = {"job_name": "gateway", "static_configs": [{"targets": [target]}]}
    (tmp_path / "prometheus.yml").write_text(
        yaml.safe_dump({"global": {"scrape_interval": "1s"}, "scrape_configs": [scrape]})
    )
    log = (tmp_path / "prometheus.log").open("wb")
    argv = [exe, f"--config.file={tmp_path / 'prometheus.yml'}", f"--storage.tsdb.path={tmp_path / 'tsdb'}"]
    prom = subprocess.Popen([*argv, f"--web.listen-address=127.0.0.1:{web}"], stdout=log, stderr=subprocess.STDOUT)
    try:
        made = gw.http.post("/admin/users", json={"username": USER, "password": PASSWORD, "role": "admin"})
        assert made.status_code == 201, made.text
        key = gw.http.post("/admin/keys", json={"name": "prom-client"}).json()["key"]
        body = {"model": "prom-chat", "messages": [{"role": "user", "content": "hi"}]}

        def counted() -> bool:  # requests keep coming until Prometheus has seen some (a few scrapes)
            sent = httpx.post(f"{gw.url}/v1/chat/completions", json=body, headers={"authorization": f"Bearer {key}"})
            assert sent.status_code == 200, sent.text
            found = live(gw)["prometheus"]
            return "error" not in found and found["rps"] > 0

        assert wait_until(counted, timeout=45, interval=1.0), (tmp_path / "prometheus.log").read_text()[-2000:]
        figures = live(gw)["prometheus"]
        assert figures["error_rate"] == 0.0 and figures["p95_ms"] is not None and figures["p95_ms"] > 0

        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True)
            with open_page(browser) as page:
                sign_in(page, gw, USER, PASSWORD, "admin")
                go(page, "live")
                expect(page.locator("#live-prometheus")).to_be_visible()
                expect(page.locator("#live-prom-tiles .tile")).to_have_count(5)
                expect(page.locator("#live-prom-note")).to_contain_text(f"127.0.0.1:{web}")
                shot(page, "live-07-prometheus")
            browser.close()
    finally:
        prom.terminate()
        prom.wait(timeout=15)
        log.close()
        gw.stop()
