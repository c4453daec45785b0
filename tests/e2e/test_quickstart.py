"""The README's quick start: `make run` with no variables set (the default config, the gateway
starting its own mock upstream, development secrets made once), then the README's curl request,
the openai SDK demo script against the four demo aliases, and a model added in the console
with a pasted provider key."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import expect, sync_playwright

from tests.e2e.harness import ROOT
from tests.ports import free_port

KEY = "sk-gateway-local-dev"
"""The documented development master key, which `make run` (``gateway serve --dev``) uses."""
CHROMIUM = os.environ.get("CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
# What the quick start must work without: none of these is set in the shell that runs `make run`.
UNSET = ("GATEWAY_MASTER_KEY", "GATEWAY_SECRETS_KEY", "GATEWAY_JWT_SECRET", "MOCK_BASE_URL", "GATEWAY_URL")
PROVIDER_KEYS = ("OPENAI_API_KEY", "ANTHROPIC_API_KEY", "GEMINI_API_KEY", "NOVITA_API_KEY")


@pytest.fixture(scope="module")
def ports() -> tuple[int, int]:
    return free_port(), free_port()


@pytest.fixture(scope="module")
def mock_port(ports: tuple[int, int]) -> int:
    return ports[1]


@pytest.fixture(scope="module")
def quickstart(tmp_path_factory: pytest.TempPathFactory, ports: tuple[int, int]) -> Iterator[str]:
    """`make run` exactly as the README says, on free ports (PORT and MOCK_PORT)."""
    port, mock_port = ports
    log_path = tmp_path_factory.mktemp("quickstart") / "make-run.log"
    log = log_path.open("wb")
    env = {k: v for k, v in os.environ.items() if k not in (*UNSET, *PROVIDER_KEYS) and not k.startswith("MAKE")}
    proc = subprocess.Popen(
        ["make", "-s", "run", f"PORT={port}", f"MOCK_PORT={mock_port}"],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # make and the gateway and mock it starts: one process group to stop
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                if httpx.get(url + "/ready").status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.2)
        assert proc.poll() is None, log_path.read_text()
        yield url
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=15)
        log.close()
    said = log_path.read_text()
    assert "development secrets" in said and ".dev/secrets.env" in said, said


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
    # GATEWAY_URL with /v1 (the SDK's base URL) and without it (the CLI's) mean the same gateway.
    env = {**os.environ, "GATEWAY_URL": quickstart + "/v1", "GATEWAY_MASTER_KEY": KEY}
    proc = subprocess.run(
        [sys.executable, "examples/demo.py"], check=False, cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for alias in ("demo-gpt", "demo-claude", "demo-gemini"):
        assert f"{alias:12} tool   : get_weather" in proc.stdout
    assert "demo-embed   embed  : 2 vectors" in proc.stdout


def test_agent_sdks_demo_script(quickstart: str) -> None:
    # The anthropic SDK, the Responses API, google-genai and LangChain against the default config's
    # demo aliases (every upstream format) and provider names, with no provider key set.
    env = {**os.environ, "GATEWAY_URL": quickstart, "GATEWAY_MASTER_KEY": KEY}
    proc = subprocess.run(
        [sys.executable, "examples/agents_demo.py"],
        check=False,
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    upstream = {"demo-gpt": "mock-gpt", "demo-claude": "mock-claude", "demo-gemini": "mock-gemini"}
    upstream |= {"claude-sonnet-4-5-20250929": "mock-claude", "gpt-5.1-codex": "mock-gpt"}
    upstream |= {"gemini-2.5-flash": "mock-gemini"}
    for name, model in upstream.items():
        for what in ("messages  :", "m.stream  :", "responses :", "genai     :", "langchain :"):
            line = next(x for x in proc.stdout.splitlines() if x.startswith(f"{name:27} {what}"))
            assert f"Mock reply from {model}" in line, line
    assert f"{'demo-embed':27} genai     : 2 vectors" in proc.stdout


def test_demo_script_follows_port(quickstart: str) -> None:
    # No GATEWAY_URL: the demo finds the gateway through PORT, as `make run PORT=...` serves it.
    env = {k: v for k, v in os.environ.items() if k not in UNSET}
    env["PORT"] = quickstart.rsplit(":", 1)[1]
    proc = subprocess.run(
        [sys.executable, "examples/demo.py"], check=False, cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "demo-gpt     chat" in proc.stdout


def test_cli_takes_gateway_url_with_or_without_v1(quickstart: str) -> None:
    for url in (quickstart, quickstart + "/v1", quickstart + "/v1/"):
        env = {**os.environ, "GATEWAY_URL": url, "GATEWAY_MASTER_KEY": KEY}
        proc = subprocess.run(
            [sys.executable, "-m", "gateway", "keys", "list", "--json"],
            check=False,
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert proc.returncode == 0, (url, proc.stderr)
        assert proc.stdout.lstrip().startswith("["), proc.stdout


def test_console_adds_a_model_with_a_pasted_key(quickstart: str, mock_port: int) -> None:
    """The whole quick start in the console: sign in with the development master key and add a
    model whose provider key is pasted in (sealed with the development secrets key)."""
    if not Path(CHROMIUM).exists():
        pytest.skip(f"no chromium at {CHROMIUM}: run scripts/install-os-deps.sh")
    alias = f"pasted-{uuid.uuid4().hex[:8]}"  # the repository's data/ state outlives a run
    pasted = f"sk-pasted-{uuid.uuid4().hex}"
    base_url = f"http://127.0.0.1:{mock_port}/v1"  # the mock that `make run` started
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True)
        try:
            page = browser.new_page()
            page.set_default_timeout(15_000)
            page.goto(quickstart + "/console/")
            page.fill("#key-form [name=key]", KEY)
            page.click("#key-form button[type=submit]")
            expect(page.locator("#who")).to_have_text("master (admin)")
            expect(page.locator("#live-view")).to_be_visible()  # the view after sign-in
            page.click("#nav a[data-view=models]")
            page.click("#add-model")
            form = page.locator("#model-form")
            form.locator("[name=name]").fill(alias)
            row = page.locator("#deployments-table tbody tr").first
            row.locator("[name=provider]").select_option("openai")
            row.locator("[name=model]").fill("mock-gpt")
            row.locator("[name=base_url]").fill(base_url)
            row.locator("[name=api_key]").fill(pasted)
            form.locator("button[type=submit]").click()
            expect(page.locator("#status")).to_have_text(f"Saved {alias}.")
        finally:
            browser.close()
    stored = httpx.get(quickstart + f"/admin/models/{alias}", headers={"authorization": f"Bearer {KEY}"})
    assert stored.status_code == 200 and pasted not in stored.text, stored.text
    answer = httpx.post(
        quickstart + "/v1/chat/completions",
        headers={"authorization": f"Bearer {KEY}"},
        json={"model": alias, "messages": [{"role": "user", "content": "Hello!"}]},
        timeout=30,
    )
    assert answer.status_code == 200, answer.text


@pytest.mark.parametrize(
    ("alias", "variable"), [("gpt-4o-mini", "OPENAI_API_KEY"), ("claude-haiku", "ANTHROPIC_API_KEY")]
)
def test_an_alias_switched_off_names_the_variable_to_set(quickstart: str, alias: str, variable: str) -> None:
    answer = httpx.post(
        quickstart + "/v1/chat/completions",
        headers={"authorization": f"Bearer {KEY}"},
        json={"model": alias, "messages": [{"role": "user", "content": "Hello!"}]},
    )
    assert answer.status_code == 404, answer.text
    error = answer.json()["error"]
    assert error["code"] == "model_not_configured"
    assert variable in error["message"] and "switched off" in error["message"]
    unknown = httpx.post(
        quickstart + "/v1/chat/completions",
        headers={"authorization": f"Bearer {KEY}"},
        json={"model": "no-such-alias", "messages": [{"role": "user", "content": "Hello!"}]},
    )
    assert unknown.status_code == 404 and unknown.json()["error"]["code"] == "model_not_found"
