"""Real servers on loopback for end-to-end tests: the gateway as a subprocess
(``python -m gateway serve``), the mock upstream as a uvicorn server."""

from __future__ import annotations

import hashlib
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx
import openai

from gateway.config.jobs import JOB_NAMES
from gateway.security import totp
from tests.ports import free_port

ROOT = Path(__file__).resolve().parents[2]
MASTER_KEY = "sk-e2e-master-key-0001"
LIMITED_KEY = "sk-e2e-limited-key-0001"


def sha256_hex(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


NO_CLOCK_JOBS = "jobs: {schedule: {" + ", ".join(f"{name}: {{cron: '0 0 29 2 *'}}" for name in JOB_NAMES) + "}}\n"
"""Every job scheduled at midnight on a leap day: scheduled (metrics, /admin/status), never run by the clock."""


class GatewayProcess:
    """A gateway subprocess on a free port; its log is kept for failure reports."""

    def __init__(
        self,
        config_text: str,
        workdir: Path,
        *,
        extra_env: dict[str, str] | None = None,
        extra_args: Sequence[str] = (),
        port: int | None = None,
    ) -> None:
        """``port``: a given one (a replica restarted where its load balancer expects it); else a free one."""
        self.config_path = workdir / "gateway.yaml"
        if not re.search(r"^state:", config_text, re.M):  # every test gateway gets its own embedded state
            config_text = f"state: {{path: '{workdir / 'state.db'}'}}\n" + config_text
        if not re.search(r"^jobs:", config_text, re.M):  # no job's cron time may come during a test run
            config_text = NO_CLOCK_JOBS + config_text
        self.config_path.write_text(config_text)
        self.log_path = workdir / "gateway.log"
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {**os.environ, "GATEWAY_MASTER_KEY": MASTER_KEY, **(extra_env or {})}
        self._log = self.log_path.open("wb")
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "gateway",
                "serve",
                "--config",
                str(self.config_path),
                "--port",
                str(self.port),
                "--log-level",
                "info",
                *extra_args,
            ],
            cwd=ROOT,
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        self.http = httpx.Client(base_url=self.url, timeout=30, headers={"authorization": f"Bearer {MASTER_KEY}"})
        self._clients: dict[str, openai.OpenAI] = {}
        self._wait_ready()

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                log = self.log()
                self.stop()  # closes its log file too
                raise RuntimeError(f"gateway exited with {self.proc.returncode}:\n{log}")
            try:
                if self.http.get("/ready").status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.05)
        log = self.log()
        self.stop()
        raise RuntimeError(f"gateway did not become ready:\n{log}")

    def client(self, key: str = MASTER_KEY) -> openai.OpenAI:
        """An openai SDK client for ``key`` (one per key, closed by :meth:`stop`)."""
        if key not in self._clients:
            self._clients[key] = openai.OpenAI(base_url=self.url + "/v1", api_key=key, max_retries=0)
        return self._clients[key]

    def deployments(self) -> dict[str, dict[str, Any]]:
        rows = self.http.get("/admin/deployments").json()["deployments"]
        return {row["id"]: row for row in rows}

    def sighup(self) -> None:
        self.proc.send_signal(signal.SIGHUP)

    def log(self) -> str:
        self._log.flush()
        return self.log_path.read_text(errors="replace")

    def finished(self, answer: httpx.Response, timeout: float = 5.0) -> bool:
        """Whether the request of ``answer`` has finished on this gateway: its access line is
        written once the handler is done, after what follows the answer (the cache store,
        the slots given back), within the log's 0.1 s buffer."""
        request_id = answer.headers["x-request-id"]
        return wait_until(lambda: f'"request_id":"{request_id}"' in self.log(), timeout)

    def stop(self) -> None:
        self.http.close()
        for client in self._clients.values():
            client.close()
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()


def clear_of_a_step_boundary(margin_s: float = 2.0) -> float:
    """Now, or just past the next TOTP step boundary when it is less than ``margin_s`` away.

    A code one step from now is accepted while the gateway's clock stays in the same step, so a
    test that sends such codes starts with at least ``margin_s`` of the step left.
    """
    left = totp.STEP_S - time.time() % totp.STEP_S
    if left < margin_s:
        time.sleep(left + 0.05)
    return time.time()


def sent_when_refused(status: Any, refused: int = 401, timeout: float = 3.0) -> float | None:
    """Call ``status`` (a request, its status code) until it answers ``refused``: when that
    request was sent (monotonic), not when its answer came; None if none was within ``timeout``."""
    sent_at: list[float] = []

    def refused_now() -> bool:
        sent = time.monotonic()
        if status() != refused:
            return False
        sent_at.append(sent)
        return True

    return sent_at[0] if wait_until(refused_now, timeout=timeout) else None


def wait_until(predicate: Any, timeout: float = 5.0, interval: float = 0.02) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return bool(predicate())


def e2e_config(mock_url: str, *, breaker: str | None = None) -> str:
    """The standard test configuration: every alias answered by the mock; each
    resilience scenario has its own upstream model names so tests do not share state.
    Upstream pacing is off (tests/e2e/test_pacing.py runs its own gateway with it on)."""
    breaker = (
        breaker or "{consecutive_failures: 1000, error_ratio: 1.0, window_s: 30, min_requests: 1000, cooldown_s: 1}"
    )
    v1 = f"{mock_url}/v1"

    def oa(model: str, extra: str = "") -> str:
        return f"{{provider: openai, model: {model}, base_url: '{v1}', api_key: k{extra}}}"

    return f"""
server: {{max_body_bytes: 65536}}
auth:
  master_key: "${{GATEWAY_MASTER_KEY}}"
  keys:
    - {{name: limited, sha256: {sha256_hex(LIMITED_KEY)}, models: [chat]}}
router:
  timeouts: {{connect_s: 2, first_byte_s: 5, idle_s: 5, total_s: 15}}
  retry: {{max_retries: 1, backoff_initial_s: 0.01, backoff_max_s: 0.05, max_retry_after_s: 2, max_attempts: 8}}
  breaker: {breaker}
  pacing: {{enabled: false}}  # one gateway serves the whole session: a 429 must not pace the next test
model_aliases:
  "claude-*": claude
  "gpt-*": chat
  "gemini-embedding*": gemini-embed
  "gemini-*": gemini
models:
  chat: {{deployments: [{oa("mock-gpt")}]}}
  claude:
    deployments: [{{provider: anthropic, model: mock-claude, base_url: '{v1}', api_key: k}}]
  gemini:
    deployments: [{{provider: gemini, model: mock-gemini, base_url: '{mock_url}/v1beta', api_key: k}}]
  embed: {{kind: embedding, deployments: [{oa("mock-embed")}]}}
  gemini-embed:
    kind: embedding
    deployments: [{{provider: gemini, model: mock-gemini-embed, base_url: '{mock_url}/v1beta', api_key: k}}]
  ratelimited: {{deployments: [{oa("rl-model")}]}}
  retry-after: {{deployments: [{oa("ra-model")}]}}
  failing: {{deployments: [{oa("fail-model")}]}}
  failover:
    deployments: [{oa("primary-a", ", priority: 0")}, {oa("backup-b", ", priority: 1")}]
  flaky:
    retry: {{max_retries: 2, backoff_initial_s: 0.01, backoff_max_s: 0.05}}
    deployments: [{oa("flaky-model")}]
  fb-primary: {{deployments: [{oa("fb-primary-model")}], fallbacks: [fb-secondary]}}
  fb-secondary:
    deployments: [{{provider: anthropic, model: fb-secondary-model, base_url: '{v1}', api_key: k}}]
  badreq: {{deployments: [{oa("badreq-model")}], fallbacks: [chat]}}
  slow:
    deployments: [{oa("slow-model", ", timeouts: {first_byte_s: 0.3}")}]
    fallbacks: [chat]
  idle: {{deployments: [{oa("idle-model", ", timeouts: {idle_s: 0.3}")}]}}
  garbage: {{deployments: [{oa("garbage-model", ", priority: 0")}, {oa("garbage-backup", ", priority: 1")}]}}
  cut: {{deployments: [{oa("cut-model")}], fallbacks: [chat]}}
  hold: {{deployments: [{oa("hold-model")}]}}
  small-ctx:
    context_window: 20
    context_window_fallbacks: [big-ctx]
    deployments: [{oa("small-model")}]
  big-ctx: {{deployments: [{oa("big-model")}]}}
  rr: {{strategy: round_robin, deployments: [{oa("rr-a")}, {oa("rr-b")}]}}
  weighted:
    strategy: weighted
    deployments: [{oa("w-a", ", weight: 3")}, {oa("w-b", ", weight: 1")}]
  breaker: {{deployments: [{oa("brk-model", ", priority: 0")}, {oa("brk-backup", ", priority: 1")}]}}
  resp-api: {{deployments: [{oa("mock-gpt", ", api: responses")}]}}
"""
