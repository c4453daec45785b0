"""The README's quick start, as `make run` does it: the default config, the
gateway starting its own mock upstream, then the README's curl request and the
openai SDK demo script against the four demo aliases."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator

import httpx
import pytest

from tests.e2e.harness import ROOT, free_port

KEY = "sk-gateway-local-dev"


@pytest.fixture(scope="module")
def quickstart(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    port, mock_port = free_port(), free_port()
    log = (tmp_path_factory.mktemp("quickstart") / "gateway.log").open("wb")
    env = {**os.environ, "GATEWAY_MASTER_KEY": KEY}
    env.pop("MOCK_BASE_URL", None)
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gateway",
            "serve",
            "--config",
            "config/gateway.yaml",
            "--port",
            str(port),
            "--mock-port",
            str(mock_port),
            "--log-level",
            "warning",
        ],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                if httpx.get(url + "/ready").status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.1)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=15)
        log.close()


def test_readme_curl(quickstart: str) -> None:
    # Mirrors the curl command in README.md.
    resp = httpx.post(
        quickstart + "/v1/chat/completions",
        headers={"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"},
        content=b'{"model": "demo-gpt", "messages": [{"role": "user", "content": "Hello!"}]}',
    )
    assert resp.status_code == 200, resp.text
    assert resp.json()["choices"][0]["message"]["content"].startswith("Mock reply")


def test_sdk_demo_script(quickstart: str) -> None:
    env = {**os.environ, "GATEWAY_URL": quickstart + "/v1", "GATEWAY_MASTER_KEY": KEY}
    proc = subprocess.run(
        [sys.executable, "examples/demo.py"], check=False, cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for alias in ("demo-gpt", "demo-claude", "demo-gemini"):
        assert f"{alias:12} tool   : get_weather" in proc.stdout
    assert "demo-embed   embed  : 2 vectors" in proc.stdout
