"""Connection tests and scheduled health checks, end to end: a real gateway
process and the mock upstream on loopback.

- ``POST /admin/models/{alias}/test``: four results and a score, on the shipped
  config's demo aliases; failing and half-failing deployments (mock knobs) give
  failing results with their reasons; nothing steerable is accepted.
- ``POST /admin/models/test-all`` streams one NDJSON line per test as it goes.
- Scheduled checks route around a failing deployment (only the healthy one gets
  traffic) and bring it back once the mock recovers.
- Probes bypass traffic control: not rate limited, not cached, not charged to the
  spend ledger or budgets; their cost has its own metric.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from gateway.mock import MockConfig
from gateway.mock.testing import MockServer
from tests.e2e.conftest import Mock
from tests.e2e.harness import LIMITED_KEY, MASTER_KEY, ROOT, GatewayProcess, sha256_hex, wait_until

HELLO: Any = [{"role": "user", "content": "Hello there"}]
NAMES = ["basic", "korean", "evaluation", "analysis"]


@pytest.fixture(scope="module")
def upstream() -> Iterator[Mock]:
    """This module's own mock: its gateways probe in the background, so they must
    not touch the call counts of the rest of the suite."""
    with MockServer(MockConfig()) as server:
        m = Mock(server)
        yield m
        m.http.close()


@pytest.fixture(autouse=True)
def _fresh(upstream: Mock) -> None:
    upstream.reset()


def checked_config(mock_url: str) -> str:
    """Scheduled checks every 0.2 s: degraded after 2 failed of the last 3, back after 2 passing."""
    v1 = f"{mock_url}/v1"

    def oa(model: str) -> str:
        return f"{{provider: openai, model: {model}, base_url: '{v1}', api_key: k}}"

    return f"""
auth:
  master_key: "${{GATEWAY_MASTER_KEY}}"
  keys: [{{name: limited, sha256: {sha256_hex(LIMITED_KEY)}}}]
router:
  retry: {{max_retries: 0, backoff_initial_s: 0.01, backoff_max_s: 0.02, max_attempts: 4}}
  breaker: {{consecutive_failures: 1000, error_ratio: 1.0, window_s: 30, min_requests: 1000, cooldown_s: 1}}
health_checks: {{enabled: true, interval_s: 0.2, timeout_s: 3, window: 3, failures: 2, recover_after: 2}}
models:
  pair: {{strategy: round_robin, deployments: [{oa("hc-good")}, {oa("hc-bad")}]}}
  broken: {{deployments: [{oa("hc-broken")}]}}
  english: {{deployments: [{oa("hc-english")}]}}
  vectors: {{kind: embedding, deployments: [{oa("hc-embed")}]}}
"""


@pytest.fixture(scope="module")
def gateway(upstream: Mock, tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    gw = GatewayProcess(checked_config(upstream.url), tmp_path_factory.mktemp("health"))
    yield gw
    gw.stop()


def shipped_config(tmp: Path) -> str:
    """config/gateway.yaml as shipped, with its embedded state in ``tmp``."""
    text = (ROOT / "config" / "gateway.yaml").read_text()
    assert text.count("\nstate:\n") == 1
    return text.replace("\nstate:\n", f"\nstate:\n  path: '{tmp / 'state.db'}'\n", 1)


@pytest.fixture(scope="module")
def demo(upstream: Mock, tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    tmp = tmp_path_factory.mktemp("demo")
    gw = GatewayProcess(shipped_config(tmp), tmp, extra_env={"MOCK_BASE_URL": upstream.url})
    yield gw
    gw.stop()


def metric(gw: GatewayProcess, series: str) -> float | None:
    """The value of one exact series line of /metrics, or None when absent."""
    text = gw.http.get("/metrics").text
    match = re.search(rf"^{re.escape(series)} (\S+)$", text, re.M)
    return float(match.group(1)) if match else None


def health_of(gw: GatewayProcess, deployment: str) -> dict[str, Any]:
    rows = gw.http.get("/admin/health").json()["deployments"]
    return next(r for r in rows if r["id"] == deployment)


def served(gw: GatewayProcess, alias: str) -> tuple[str, str]:
    raw = gw.client().chat.completions.with_raw_response.create(model=alias, messages=HELLO)
    return raw.headers["x-gateway-deployment"], raw.headers["x-gateway-attempts"]


# --- the connection test ------------------------------------------------------------------


@pytest.mark.parametrize("alias", ["demo-gpt", "demo-claude", "demo-gemini"])
def test_demo_alias_passes_all_four_tests(demo: GatewayProcess, alias: str) -> None:
    resp = demo.http.post(f"/admin/models/{alias}/test")
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["health_score"] == 100
    assert [t["name"] for t in body["tests"]] == NAMES
    for t in body["tests"]:
        assert t["passed"] is True, t
        assert isinstance(t["latency_ms"], float) and t["latency_ms"] > 0
        assert t["reason"] and t["deployment"] == f"{alias}/0"
    assert body["alias"] == alias and body["deployment"] is None
    assert body["probe_cost_usd"] > 0, "the demo deployments are priced"
    records = demo.http.get("/admin/audit").json()["data"]
    assert any(r["action"] == "models.test" and r["target"] == f"models/{alias}" for r in records), records[:3]


def test_a_test_asked_for_as_ndjson_streams_each_result_then_the_score(demo: GatewayProcess) -> None:
    lines = []
    with demo.http.stream("POST", "/admin/models/demo-gpt/test", headers={"accept": "application/x-ndjson"}) as resp:
        assert resp.status_code == 200 and resp.headers["content-type"].startswith("application/x-ndjson")
        lines = [json.loads(line) for line in resp.iter_lines() if line]
    assert [x["event"] for x in lines] == ["test", "test", "test", "test", "done"]
    assert [x["name"] for x in lines[:4]] == NAMES and all(x["passed"] for x in lines[:4])
    assert lines[-1]["health_score"] == 100 and lines[-1]["alias"] == "demo-gpt"


def test_shipped_config_turns_scheduled_checks_on(demo: GatewayProcess) -> None:
    status = demo.http.get("/admin/health").json()
    assert (status["enabled"], status["interval_s"], status["probes"]) == (True, 60.0, ["basic"])
    kinds = {r["id"]: r["kind"] for r in status["deployments"]}
    assert kinds["demo-gpt/0"] == "chat" and kinds["demo-embed/0"] == "embeddings"


def test_failing_deployment_fails_every_test_with_the_reason(gateway: GatewayProcess, upstream: Mock) -> None:
    upstream.behave("hc-broken", error_status=500)
    body = gateway.http.post("/admin/models/broken/test", params={"deployment": "broken/0"}).json()
    assert body["health_score"] == 0 and body["deployment"] == "broken/0"
    assert [t["name"] for t in body["tests"]] == NAMES
    for t in body["tests"]:
        assert t["passed"] is False
        assert t["reason"].startswith("upstream_error"), t["reason"]
        assert "500" in t["reason"] or "server" in t["reason"].lower(), t["reason"]


def test_failing_alias_fails_through_the_router(gateway: GatewayProcess, upstream: Mock) -> None:
    upstream.behave("hc-broken", error_status=503)
    body = gateway.http.post("/admin/models/broken/test").json()
    assert body["health_score"] == 0 and body["deployment"] is None
    assert all(not t["passed"] and t["reason"] for t in body["tests"])


def test_english_only_deployment_fails_the_korean_test(gateway: GatewayProcess, upstream: Mock) -> None:
    upstream.behave("hc-english", reply="I only ever answer in English.")
    body = gateway.http.post("/admin/models/english/test").json()
    results = {t["name"]: t for t in body["tests"]}
    assert results["korean"]["passed"] is False
    assert "not Korean" in results["korean"]["reason"]
    assert results["basic"]["passed"] and results["evaluation"]["passed"] and results["analysis"]["passed"]
    assert body["health_score"] == 75


@pytest.mark.parametrize(
    ("path", "kwargs", "status", "code"),
    [
        ("/admin/models/nope/test", {}, 404, "model_not_found"),
        ("/admin/models/vectors/test", {}, 400, "wrong_model_kind"),
        ("/admin/models/pair/test", {"params": {"deployment": "broken/0"}}, 404, "deployment_not_found"),
        ("/admin/models/pair/test", {"params": {"base_url": "http://169.254.169.254"}}, 400, "unknown_parameter"),
        ("/admin/models/pair/test", {"params": {"api_key": "${OPENAI_API_KEY}"}}, 400, "unknown_parameter"),
        ("/admin/models/pair/test", {"json": {"provider": "openai", "base_url": "file:///etc/passwd"}}, 400, None),
        ("/admin/models/pair/test", {"json": {"api_key_env": "GATEWAY_MASTER_KEY"}}, 400, "unexpected_body"),
        ("/admin/models/test-all", {"params": {"alias": "pair"}}, 400, "unknown_parameter"),
    ],
)
def test_bad_test_requests_are_refused(
    gateway: GatewayProcess, upstream: Mock, path: str, kwargs: dict[str, Any], status: int, code: str | None
) -> None:
    resp = gateway.http.post(path, **kwargs)
    assert resp.status_code == status, resp.text
    error = resp.json()["error"]
    assert error["code"] == (code or "unexpected_body") and error["message"]


@pytest.mark.parametrize(
    "kwargs",
    [{"json": {"base_url": "http://127.0.0.1:1"}}, {"params": {"deployment": "demo-gpt/0", "env": "HOME"}}],
)
def test_nothing_is_sent_for_a_refused_test(demo: GatewayProcess, upstream: Mock, kwargs: dict[str, Any]) -> None:
    """A test request that tries to steer it is refused before any probe is sent
    (this gateway's scheduled checks wait a minute, so the count is exact)."""
    resp = demo.http.post("/admin/models/demo-gpt/test", **kwargs)
    assert resp.status_code == 400, resp.text
    assert upstream.calls("mock-gpt") == 0


@pytest.mark.parametrize(
    ("headers", "status", "code"),
    [({}, 401, None), ({"authorization": f"Bearer {LIMITED_KEY}"}, 403, None)],
)
def test_test_needs_an_operator(gateway: GatewayProcess, headers: dict[str, str], status: int, code: None) -> None:
    with httpx.Client(base_url=gateway.url, timeout=10) as anon:
        for method, path in (("POST", "/admin/models/pair/test"), ("POST", "/admin/models/test-all")):
            resp = anon.request(method, path, headers=headers)
            assert resp.status_code == status, (path, resp.text)
            assert resp.json()["error"]["code"]
        assert anon.get("/admin/health", headers=headers).status_code == status


# --- test all -----------------------------------------------------------------------------


def test_test_all_streams_one_line_per_test(gateway: GatewayProcess, upstream: Mock) -> None:
    upstream.behave("hc-broken", error_status=500)
    upstream.behave("hc-english", reply="English only.")
    chat = ["pair/0", "pair/1", "broken/0", "english/0"]
    events: list[dict[str, Any]] = []
    with gateway.http.stream("POST", "/admin/models/test-all") as resp:
        assert resp.status_code == 200
        assert resp.headers["content-type"].startswith("application/x-ndjson")
        assert "content-length" not in resp.headers, "streamed, not buffered"
        for line in resp.iter_lines():
            if line:
                events.append(orjson.loads(line))
    kinds = [e["event"] for e in events]
    assert kinds[0] == "start" and kinds[-1] == "done"
    assert events[0] == {"event": "start", "deployments": 4, "tests": 16}
    tests = [e for e in events if e["event"] == "test"]
    assert sorted((e["deployment"], e["name"]) for e in tests) == sorted((d, n) for d in chat for n in NAMES)
    for e in tests:
        assert set(e) >= {"alias", "deployment", "name", "passed", "latency_ms", "reason"}
    scores = {e["deployment"]: e["health_score"] for e in events if e["event"] == "deployment"}
    assert scores == {"pair/0": 100, "pair/1": 100, "broken/0": 0, "english/0": 75}
    for dep in chat:  # each deployment's score line comes after its four test lines
        positions = [i for i, e in enumerate(events) if e.get("deployment") == dep]
        assert [events[i]["event"] for i in positions] == ["test"] * 4 + ["deployment"]
    assert events[-1] == {"event": "done", "deployments": 4, "healthy": 2, "health_score": 69}


def test_test_all_lines_arrive_before_the_run_ends(upstream: Mock, tmp_path: Path) -> None:
    """The first test line reaches the client while a slow deployment's probes are
    still being made (its four take a second each; no scheduled checks here)."""
    v1 = f"{upstream.url}/v1"
    config = f"""
auth: {{master_key: "${{GATEWAY_MASTER_KEY}}"}}
models:
  fast: {{deployments: [{{provider: openai, model: ta-fast, base_url: '{v1}', api_key: k}}]}}
  slow: {{deployments: [{{provider: openai, model: ta-slow, base_url: '{v1}', api_key: k}}]}}
"""
    upstream.behave("ta-slow", latency_ms=1000)
    gw = GatewayProcess(config, tmp_path)
    try:
        with gw.http.stream("POST", "/admin/models/test-all") as resp:
            lines = resp.iter_lines()
            assert orjson.loads(next(lines))["event"] == "start"
            first = orjson.loads(next(lines))
            slow_calls_then = upstream.calls("ta-slow")
            rest = [orjson.loads(line) for line in lines if line]
        assert first["event"] == "test" and first["deployment"] == "fast/0"
        assert slow_calls_then < 4, "the first line came before the slow deployment's probes were all made"
        assert upstream.calls("ta-slow") == 4
        assert rest[-1]["event"] == "done" and rest[-1]["healthy"] == 2
    finally:
        gw.stop()


def test_slow_deployment_fails_on_the_probe_timeout(upstream: Mock, tmp_path: Path) -> None:
    v1 = f"{upstream.url}/v1"
    config = f"""
auth: {{master_key: "${{GATEWAY_MASTER_KEY}}"}}
health_checks: {{timeout_s: 0.3}}
models:
  slowpoke: {{deployments: [{{provider: openai, model: to-slow, base_url: '{v1}', api_key: k}}]}}
"""
    upstream.behave("to-slow", latency_ms=2000)
    gw = GatewayProcess(config, tmp_path)
    try:
        body = gw.http.post("/admin/models/slowpoke/test", params={"deployment": "slowpoke/0"}).json()
        assert body["health_score"] == 0
        for t in body["tests"]:
            assert not t["passed"] and t["reason"].startswith("upstream_timeout"), t
    finally:
        gw.stop()


# --- scheduled checks ----------------------------------------------------------------------


def test_scheduled_checks_route_around_a_failing_deployment_and_bring_it_back(
    gateway: GatewayProcess, upstream: Mock
) -> None:
    assert wait_until(lambda: health_of(gateway, "pair/1")["checks"] >= 1, timeout=15)
    assert {served(gateway, "pair")[0] for _ in range(4)} == {"pair/0", "pair/1"}, "round robin uses both"

    upstream.behave("hc-bad", error_status=500)
    assert wait_until(lambda: health_of(gateway, "pair/1")["degraded"], timeout=20), gateway.log()[-2000:]
    row = health_of(gateway, "pair/1")
    assert row["health_score"] < 100 and row["last"][0]["passed"] is False
    assert "500" in row["last"][0]["reason"] or "upstream" in row["last"][0]["reason"]
    assert metric(gateway, 'gateway_deployment_degraded{deployment="pair/1"}') == 1.0
    assert gateway.deployments()["pair/1"]["degraded"] is True
    assert metric(gateway, 'gateway_deployment_degraded{deployment="pair/0"}') == 0.0
    assert metric(gateway, 'gateway_deployment_health_score{deployment="pair/0"}') == 100.0
    assert (metric(gateway, 'gateway_probes_total{deployment="pair/1",probe="basic",result="fail"}') or 0) >= 2

    good_before = upstream.calls("hc-good")
    answers = [served(gateway, "pair") for _ in range(6)]
    assert answers == [("pair/0", "1")] * 6, "every request to the healthy one, at the first attempt"
    assert upstream.calls("hc-good") - good_before >= 6
    assert "deployment pair/1 degraded by health checks" in gateway.log()

    upstream.http.delete("/_mock/behaviours/hc-bad").raise_for_status()
    assert wait_until(lambda: not health_of(gateway, "pair/1")["degraded"], timeout=20), gateway.log()[-2000:]
    assert metric(gateway, 'gateway_deployment_degraded{deployment="pair/1"}') == 0.0
    assert {served(gateway, "pair")[0] for _ in range(4)} == {"pair/0", "pair/1"}, "back in rotation"
    assert "deployment pair/1 restored" in gateway.log()


def test_scheduled_probes_are_metered(gateway: GatewayProcess) -> None:
    assert wait_until(lambda: health_of(gateway, "pair/0")["checks"] >= 1, timeout=15)
    text = gateway.http.get("/metrics").text
    assert re.search(r'^gateway_probes_total\{deployment="pair/0",probe="basic",result="pass"\} [1-9]', text, re.M)
    assert re.search(r'^gateway_probe_duration_seconds_count\{deployment="pair/0",probe="basic"\} [1-9]', text, re.M)
    assert re.search(r'^gateway_probe_tokens_total\{deployment="pair/0",type="input"\} [1-9]', text, re.M)
    assert 'deployment="vectors/0"' not in text.split("# HELP gateway_probes_total")[1].split("# HELP")[0]
    assert health_of(gateway, "vectors/0")["checks"] == 0, "embedding deployments are not checked"


# --- probes bypass traffic control -----------------------------------------------------------


def test_probes_are_not_limited_cached_nor_charged(upstream: Mock, tmp_path: Path) -> None:
    v1 = f"{upstream.url}/v1"
    config = f"""
auth: {{master_key: "${{GATEWAY_MASTER_KEY}}"}}
budgets: {{daily_usd: 100}}
cache: {{enabled: true}}
models:
  costly:
    limits: {{rpm: 2}}
    deployments:
      - provider: openai
        model: tc-costly
        base_url: '{v1}'
        api_key: k
        price: {{input_per_1m: 5, output_per_1m: 20}}
"""
    gw = GatewayProcess(config, tmp_path)
    try:
        for _ in range(2):  # 8 probes against an alias limited to 2 requests a minute
            body = gw.http.post("/admin/models/costly/test").json()
            assert body["health_score"] == 100, body
        assert upstream.calls("tc-costly") == 8, "temperature-0 probes are never answered from the cache"
        probe_cost = metric(gw, 'gateway_probe_cost_usd_total{deployment="costly/0"}')
        assert probe_cost is not None and probe_cost == pytest.approx(2 * body["probe_cost_usd"])
        assert metric(gw, 'gateway_cost_usd_total{alias="costly",team=""}') is None, "no user spend from probes"
        assert metric(gw, 'gateway_tokens_total{alias="costly",team="",type="input"}') is None

        raw = gw.client().chat.completions.with_raw_response.create(model="costly", messages=HELLO)
        assert raw.http_response.status_code == 200, "the probes used none of the alias's rpm"
        cost = float(raw.headers["x-gateway-cost-usd"])
        assert metric(gw, 'gateway_cost_usd_total{alias="costly",team=""}') == pytest.approx(cost)
        spent = metric(gw, 'gateway_budget_spent_usd{period="daily",scope="global",team=""}')
        assert spent == pytest.approx(cost), "the global budget saw the client request only"
    finally:
        gw.stop()


# --- the CLI -------------------------------------------------------------------------------


def cli(*args: str, key: str | None = MASTER_KEY) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("GATEWAY_MASTER_KEY", "GATEWAY_URL")}
    if key is not None:
        env["GATEWAY_MASTER_KEY"] = key
    return subprocess.run(
        [sys.executable, "-m", "gateway", "models", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_cli_test_passes_with_exit_0(demo: GatewayProcess) -> None:
    done = cli("test", "demo-gpt", "--url", demo.url)
    assert done.returncode == 0, done.stderr
    for name in NAMES:
        assert re.search(rf"^  PASS  {name} ", done.stdout, re.M), done.stdout
    assert "health score: 100/100" in done.stdout


def test_cli_test_below_the_threshold_exits_3(gateway: GatewayProcess, upstream: Mock) -> None:
    upstream.behave("hc-english", reply="English only, sorry.")
    done = cli("test", "english", "--deployment", "english/0", "--url", gateway.url)
    assert done.returncode == 3, done.stdout + done.stderr
    assert re.search(r"^  FAIL  korean .*not Korean", done.stdout, re.M), done.stdout
    assert "health score: 75/100 (needed: 100)" in done.stdout
    lenient = cli("test", "english", "--min-score", "75", "--url", gateway.url, "--json")
    assert lenient.returncode == 0, lenient.stderr
    assert orjson.loads(lenient.stdout)["health_score"] == 75


@pytest.mark.parametrize(
    ("args", "key", "code", "message"),
    [
        (("test", "nope"), MASTER_KEY, 1, "HTTP 404: no model alias 'nope' is configured"),
        (("test", "pair", "--deployment", "x/9"), MASTER_KEY, 1, "HTTP 404: 'pair' has no deployment 'x/9'"),
        (("test", "pair"), "sk-wrong-key-000000", 1, "HTTP 401"),
        (("test", "pair"), None, 2, "GATEWAY_MASTER_KEY is not set"),
        (("test", "pair", "--min-score", "101"), MASTER_KEY, 2, "must be from 0 to 100"),
        (("list", "--config", "/nonexistent/gateway.yaml"), MASTER_KEY, 2, "cannot read"),
        (("frobnicate",), MASTER_KEY, 2, "invalid choice"),
    ],
)
def test_cli_errors(gateway: GatewayProcess, args: tuple[str, ...], key: str | None, code: int, message: str) -> None:
    done = cli(*args, "--url", gateway.url, key=key) if args[0] == "test" else cli(*args, key=key)
    assert done.returncode == code, done.stdout + done.stderr
    assert message in done.stderr, done.stderr


def test_cli_unreachable_gateway_exits_1() -> None:
    done = cli("test", "demo-gpt", "--url", "http://127.0.0.1:9")
    assert done.returncode == 1
    assert "cannot reach the gateway at http://127.0.0.1:9" in done.stderr


def test_cli_list_from_the_gateway(gateway: GatewayProcess) -> None:
    assert wait_until(lambda: health_of(gateway, "pair/0")["checks"] >= 1, timeout=15)
    done = cli("list", "--url", gateway.url)
    assert done.returncode == 0, done.stderr
    assert "health checks: on (every 0.2 s: basic)" in done.stdout
    assert re.search(r"^pair\s+pair/0\s+openai\s+hc-good\s+(ok|degraded)\s+\d+$", done.stdout, re.M), done.stdout
    assert re.search(r"^vectors\s+vectors/0\s+openai\s+hc-embed\s+-\s+-$", done.stdout, re.M), done.stdout
    as_json = orjson.loads(cli("list", "--url", gateway.url, "--json").stdout)
    assert {r["id"] for r in as_json["deployments"]} >= {"pair/0", "pair/1", "broken/0", "vectors/0"}


def test_cli_list_from_a_config_file() -> None:
    done = cli("list", "--config", "config/gateway.yaml", key="sk-only-for-interpolation")
    assert done.returncode == 0, done.stderr
    assert re.search(r"^demo-gpt\s+chat\s+demo-gpt/0\s+openai\s+mock-gpt$", done.stdout, re.M), done.stdout
    assert re.search(r"^demo-embed\s+embedding\s+demo-embed/0", done.stdout, re.M)


@pytest.mark.parametrize("args", [(), ("list",), ("test",)])
def test_cli_help(args: tuple[str, ...]) -> None:
    done = cli(*args, "--help")
    assert done.returncode == 0 and "usage: gateway models" in done.stdout
