"""Config reload on SIGHUP, and the command line."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import Mock
from tests.e2e.harness import ROOT, GatewayProcess, e2e_config, wait_until

HELLO: Any = [{"role": "user", "content": "hi"}]


@pytest.fixture
def own_gateway(mock: Mock, tmp_path: Path) -> Iterator[GatewayProcess]:
    gw = GatewayProcess(e2e_config(mock.url), tmp_path)
    yield gw
    gw.stop()


def model_ids(gw: GatewayProcess) -> set[str]:
    return {m["id"] for m in gw.http.get("/v1/models").json()["data"]}


def test_sighup_applies_new_config_without_dropping_in_flight(own_gateway: GatewayProcess, mock: Mock) -> None:
    gw = own_gateway
    mock.behave("hold-model", latency_ms=1500)
    result: dict[str, int] = {}

    def slow_request() -> None:
        result["status"] = gw.http.post("/v1/chat/completions", json={"model": "hold", "messages": HELLO}).status_code

    worker = threading.Thread(target=slow_request)
    worker.start()
    time.sleep(0.3)  # the request is now waiting on the upstream
    text = gw.config_path.read_text()
    gw.config_path.write_text(
        text + f"  added-alias: {{deployments: [{{provider: openai, model: m, base_url: '{mock.url}/v1'}}]}}\n"
    )
    gw.sighup()
    assert wait_until(lambda: "added-alias" in model_ids(gw), timeout=5)
    worker.join(timeout=10)
    assert result["status"] == 200, "the request in flight during the reload must complete"
    assert gw.http.post("/v1/chat/completions", json={"model": "added-alias", "messages": HELLO}).status_code == 200
    assert gw.http.get("/ready").json()["reloads"] == 1


def test_bad_config_on_reload_is_rejected_and_old_one_kept(own_gateway: GatewayProcess) -> None:
    gw = own_gateway
    before = model_ids(gw)
    gw.config_path.write_text(
        gw.config_path.read_text() + "  broken: {deployments: [{provider: openai, model: m, weight: -1}]}\n"
    )
    gw.sighup()
    assert wait_until(lambda: "config reload rejected" in gw.log(), timeout=5)
    assert "models.broken.deployments[0].weight" in gw.log()
    assert model_ids(gw) == before
    assert gw.http.get("/ready").json()["reloads"] == 0
    assert gw.http.post("/v1/chat/completions", json={"model": "chat", "messages": HELLO}).status_code == 200


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gateway", *args],
        check=False,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )


def test_check_config_accepts_the_default_config() -> None:
    proc = run_cli("check-config", "config/gateway.yaml", env={**os.environ, "GATEWAY_MASTER_KEY": "sk-test-1234"})
    assert proc.returncode == 0, proc.stderr
    assert "demo-gpt" in proc.stdout and "demo-embed" in proc.stdout


def test_check_config_names_the_bad_path(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("""
models:
  gpt-4o:
    deployments:
      - {provider: openai, model: gpt-4o}
      - {provider: openai, model: gpt-4o, weight: "heavy", colour: blue}
    fallbacks: [missing-alias]
""")
    proc = run_cli("check-config", str(bad))
    assert proc.returncode == 2
    assert "models.gpt-4o.deployments[1].weight" in proc.stderr
    assert "models.gpt-4o.deployments[1].colour: unknown key" in proc.stderr


def test_check_config_dangling_reference(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("models:\n  a: {deployments: [{provider: openai, model: x}], fallbacks: [nope]}\n")
    proc = run_cli("check-config", str(bad))
    assert proc.returncode == 2
    assert "models.a.fallbacks[0]: unknown model alias 'nope'" in proc.stderr


def test_check_config_missing_file() -> None:
    proc = run_cli("check-config", "/nonexistent/gateway.yaml")
    assert proc.returncode == 2
    assert "cannot read" in proc.stderr


def test_serve_refuses_a_bad_config(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("server: {port: not-a-port}\n")
    proc = run_cli("serve", "--config", str(bad))
    assert proc.returncode == 2
    assert "server.port" in proc.stderr


def test_help_and_usage_errors() -> None:
    assert "check-config" in run_cli("--help").stdout
    proc = run_cli("frobnicate")
    assert proc.returncode == 2
    assert "invalid choice" in proc.stderr


def test_serve_refuses_a_bad_port(tmp_path: Path) -> None:
    good = tmp_path / "ok.yaml"
    good.write_text("models: {}\n")
    proc = run_cli("serve", "--config", str(good), env={**os.environ, "PORT": "eighty"})
    assert proc.returncode == 2
    assert "PORT must be a number" in proc.stderr


def test_serve_refuses_workers_on_the_embedded_backend(tmp_path: Path) -> None:
    good = tmp_path / "ok.yaml"
    good.write_text("models: {}\n")
    proc = run_cli("serve", "--config", str(good), "--workers", "2")
    assert proc.returncode == 2
    assert "--workers > 1 needs the redis or postgres state backend" in proc.stderr
