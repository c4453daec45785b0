"""Reports end to end: a real gateway and mock, traffic with errors, then the
admin API's report and the ``gateway report`` command show the right counts
and spend."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.conftest import Mock
from tests.e2e.harness import MASTER_KEY, ROOT, GatewayProcess, wait_until
from tests.redis_server import RedisServer

EVIL = "<img src=x onerror=alert(1)>"
ESCAPED = "&lt;img src=x onerror=alert(1)&gt;"


def report_config(mock_url: str, state: Path, more_models: str = "") -> str:
    v1 = f"{mock_url}/v1"
    price = "{input_per_1m: 1000, output_per_1m: 2000}"
    return f"""
state: {{path: '{state}', flush_interval_s: 0.1}}
auth: {{master_key: "${{GATEWAY_MASTER_KEY}}"}}
reports: {{flush_interval_s: 0.1}}
router:
  retry: {{max_retries: 0, backoff_initial_s: 0.01, backoff_max_s: 0.01}}
models:
  rep-chat: {{deployments: [{{provider: openai, model: rep-model, base_url: '{v1}', api_key: k, price: {price}}}]}}
  rep-fail: {{deployments: [{{provider: openai, model: rep-fail-model, base_url: '{v1}', api_key: k}}]}}
  rep-idle: {{deployments: [{{provider: openai, model: rep-idle-model, base_url: '{v1}', api_key: k}}]}}
{more_models}"""


@pytest.fixture
def setup(mock: Mock, tmp_path: Path) -> Iterator[tuple[GatewayProcess, Path]]:
    mock.behave("rep-fail-model", error_status=500)
    gw = GatewayProcess(report_config(mock.url, tmp_path / "state.db"), tmp_path)
    yield gw, tmp_path
    gw.stop()


def traffic(gw: GatewayProcess) -> float:
    """6 answered (4 by a key of team red), 2 upstream failures (5xx), 1
    unknown model (404); returns the spend the answers reported."""
    assert gw.http.post("/admin/teams", json={"id": "red", "budget_daily_usd": 50.0}).status_code == 201
    key = gw.http.post("/admin/keys", json={"name": "rep", "team": "red"}).json()["key"]
    body: dict[str, Any] = {"model": "rep-chat", "messages": [{"role": "user", "content": "hello there"}]}
    cost = 0.0
    with httpx.Client(base_url=gw.url, timeout=30) as client:
        for i in range(6):
            resp = client.post(
                "/v1/chat/completions",
                json={**body, "temperature": 0.5 + i / 10},  # not cacheable: every one goes upstream
                headers={"authorization": f"Bearer {key if i < 4 else MASTER_KEY}"},
            )
            assert resp.status_code == 200, resp.text
            cost += float(resp.headers["x-gateway-cost-usd"])
        for _ in range(2):
            resp = client.post(
                "/v1/chat/completions", json={**body, "model": "rep-fail"}, headers={"authorization": f"Bearer {key}"}
            )
            assert resp.status_code >= 500, resp.text
        resp = client.post(
            "/v1/chat/completions", json={**body, "model": "nope"}, headers={"authorization": f"Bearer {key}"}
        )
        assert resp.status_code == 404
    return cost


def reported_requests(gw: GatewayProcess) -> int:
    """Today's request count in the admin report."""
    return int(gw.http.get("/admin/reports/daily", params={"format": "json"}).json()["total"]["requests"])


def test_admin_report_counts_requests_errors_and_spend(setup: tuple[GatewayProcess, Path]) -> None:
    gw, _ = setup
    cost = traffic(gw)
    # A request is counted once its answer is sent (settlement ends after the last byte), so a
    # report right after the answers may miss the last: wait (bounded) until all 9 are counted.
    wait_until(lambda: reported_requests(gw) >= 9, 10)
    resp = gw.http.get("/admin/reports/daily", params={"format": "json"})
    assert resp.status_code == 200, resp.text
    report = resp.json()
    total = report["total"]
    assert (total["requests"], total["ok"], total["server_errors"], total["client_errors"]) == (9, 6, 2, 1)
    assert total["cost_usd"] == pytest.approx(cost, rel=1e-6)
    assert cost > 0
    teams = {row["name"]: row for row in report["by_team"]}
    assert teams["red"]["requests"] == 7 and teams["(no team)"]["requests"] == 2
    assert teams["red"]["cost_usd"] + teams["(no team)"]["cost_usd"] == pytest.approx(cost, rel=1e-6)
    aliases = {row["name"]: row for row in report["by_alias"]}
    assert aliases["rep-chat"]["requests"] == 6 and aliases["rep-fail"]["server_errors"] == 2
    assert [lu["alias"] for lu in report["low_use"]] == ["rep-idle"]  # configured, never used
    budget = next(b for b in report["budgets"] if b["id"] == "red")
    assert budget["spent_usd"] == pytest.approx(teams["red"]["cost_usd"], rel=1e-6)
    assert budget["limit_usd"] == 50.0 and budget["status"] == "ok"
    error_codes = {e["code"]: e["count"] for e in report["top_errors"]}
    assert error_codes["model_not_found"] == 1 and sum(error_codes.values()) == 3
    kpis = {k["name"]: k for k in report["kpis"]}
    assert kpis["error_rate"]["value"] == pytest.approx(2 / 9)
    assert kpis["availability"]["value"] == pytest.approx(6 / 8)

    md = gw.http.get("/admin/reports/daily")
    assert md.headers["content-type"].startswith("text/markdown")
    assert "| 9 | 6 | 1 | 2 |" in md.text  # the traffic table: requests, OK, 4xx, 5xx
    html = gw.http.get("/admin/reports/weekly", params={"format": "html"})
    assert html.headers["content-type"].startswith("text/html")
    assert "script-src" not in html.headers["content-security-policy"]
    assert "default-src 'none'" in html.headers["content-security-policy"]
    assert "<svg" in html.text and "<script" not in html.text


class Elements(HTMLParser):
    """The element names a browser would build from a page."""

    def __init__(self, page: str) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.feed(page)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)


def test_names_from_users_are_text_in_every_html_report(mock: Mock, tmp_path: Path) -> None:
    v1 = f"{mock.url}/v1"
    alias = (
        f"  {json.dumps(EVIL)}: {{deployments: [{{provider: openai, model: rep-model, base_url: '{v1}', api_key: k}}]}}"
    )
    gw = GatewayProcess(report_config(mock.url, tmp_path / "state.db", alias), tmp_path)
    try:
        # a team id cannot carry markup (letters, digits, '.', '_', '-'); a team's and a key's name can
        refused = gw.http.post("/admin/teams", json={"id": EVIL})
        assert refused.status_code == 400 and refused.json()["error"]["param"] == "id"
        team = gw.http.post("/admin/teams", json={"id": "xss", "name": EVIL, "budget_daily_usd": 50.0})
        assert team.status_code == 201, team.text
        created = gw.http.post("/admin/keys", json={"name": EVIL, "team": "xss"})
        assert created.status_code == 201, created.text
        assert created.json()["name"] == EVIL
        headers = {"authorization": f"Bearer {created.json()['key']}"}
        with httpx.Client(base_url=gw.url, timeout=30, headers=headers) as client:
            for i in range(3):
                body = {"model": EVIL, "temperature": i / 10, "messages": [{"role": "user", "content": "hi"}]}
                resp = client.post("/v1/chat/completions", json=body)
                assert resp.status_code == 200, resp.text
        wait_until(lambda: reported_requests(gw) >= 3, 10)  # each counted once its answer is sent
        data = gw.http.get("/admin/reports/daily", params={"format": "json"}).json()
        assert {r["name"]: r["requests"] for r in data["by_alias"]}[EVIL] == 3  # the name itself, unchanged
        assert [(r["name"], r["display_name"], r["requests"]) for r in data["by_team"]] == [("xss", EVIL, 3)]
        assert [(b["id"], b["display_name"]) for b in data["budgets"]] == [("xss", EVIL)]
        for period in ("daily", "weekly", "monthly"):
            resp = gw.http.get(f"/admin/reports/{period}", params={"format": "html"})
            assert resp.status_code == 200 and resp.headers["content-type"].startswith("text/html")
            page = resp.text
            assert EVIL not in page and "<img" not in page, period
            assert "img" not in Elements(page).tags, period
            assert f"<td>{ESCAPED}</td>" in page, period  # the by-alias table
            assert f"<tr><td>xss</td><td>{ESCAPED}</td><td>3</td>" in page, period  # by team: id, name, requests
            assert f"<tr><td>team</td><td>xss</td><td>{ESCAPED}</td><td>daily</td>" in page, period  # budget
            assert f"<title>{ESCAPED}: 3</title>" in page, period  # the requests-by-alias chart
            assert ">&lt;img src=x onerror=alert(1</text>" in page, period  # its label, cut to 26 characters
    finally:
        gw.stop()


@pytest.mark.parametrize(
    ("path", "param"),
    [
        ("/admin/reports/hourly", "period"),
        ("/admin/reports/daily?format=pdf", "format"),
        ("/admin/reports/daily?date=2026-02-30", "date"),
    ],
)
def test_bad_report_requests_name_the_parameter(setup: tuple[GatewayProcess, Path], path: str, param: str) -> None:
    gw, _ = setup
    resp = gw.http.get(path)
    assert resp.status_code == 400
    assert resp.json()["error"]["param"] == param


def test_reports_need_an_admin_credential(setup: tuple[GatewayProcess, Path]) -> None:
    gw, _ = setup
    with httpx.Client(base_url=gw.url, timeout=10) as anon:
        assert anon.get("/admin/reports/daily").status_code == 401


def cli(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gateway", "report", *args],
        check=False,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": "/usr/bin:/bin", "GATEWAY_MASTER_KEY": MASTER_KEY, "PYTHONPATH": str(ROOT)},
    )


def test_cli_report_reads_what_the_gateway_wrote(setup: tuple[GatewayProcess, Path]) -> None:
    gw, tmp = setup
    cost = traffic(gw)
    gw.stop()  # the final flush writes the statistics
    done = cli("daily", "--config", str(gw.config_path), "--format", "json")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert (report["total"]["requests"], report["total"]["server_errors"]) == (9, 2)
    assert report["total"]["cost_usd"] == pytest.approx(cost, rel=1e-6)
    out = tmp / "report.html"
    done = cli("monthly", "--config", str(gw.config_path), "--format", "html", "--out", str(out))
    assert done.returncode == 0, done.stderr
    assert "<svg" in out.read_text()
    done = cli("weekly", "--config", str(gw.config_path))
    assert done.returncode == 0 and "| 9 | 6 | 1 | 2 |" in done.stdout


def test_cli_errors_and_exit_codes(tmp_path: Path) -> None:
    good = tmp_path / "g.yaml"
    good.write_text(f"state: {{path: '{tmp_path / 'missing.db'}'}}\n")
    bad_period = cli("hourly", "--config", str(good))
    assert bad_period.returncode == 2 and "invalid choice: 'hourly'" in bad_period.stderr
    bad_date = cli("daily", "--date", "26.11.2026", "--config", str(good))
    assert bad_date.returncode == 2 and "invalid date '26.11.2026'; use YYYY-MM-DD" in bad_date.stderr
    no_state = cli("daily", "--config", str(good))
    assert no_state.returncode == 1 and "no gateway state at" in no_state.stderr
    broken = tmp_path / "b.yaml"
    broken.write_text("reports: {low_use_ratio: 2}\n")
    bad_config = cli("daily", "--config", str(broken))
    assert bad_config.returncode == 2 and "reports.low_use_ratio" in bad_config.stderr
    helped = cli("--help")
    assert helped.returncode == 0 and "--format {md,html,json}" in helped.stdout


def test_two_replicas_on_redis_add_up(mock: Mock, tmp_path: Path) -> None:
    mock.behave("rep-fail-model", error_status=500)
    with RedisServer() as redis:
        config = report_config(mock.url, tmp_path / "unused.db").replace(
            f"state: {{path: '{tmp_path / 'unused.db'}', flush_interval_s: 0.1}}",
            f"state: {{backend: redis, url: '{redis.url}', flush_interval_s: 0.1, refresh_interval_s: 0.1}}",
        )
        (tmp_path / "a").mkdir()
        (tmp_path / "b").mkdir()
        a = GatewayProcess(config, tmp_path / "a")
        try:
            b = GatewayProcess(config, tmp_path / "b")
        except Exception:
            a.stop()
            raise
        try:
            body: dict[str, Any] = {"model": "rep-chat", "messages": [{"role": "user", "content": "hi"}]}
            for i in range(3):
                assert a.http.post("/v1/chat/completions", json={**body, "temperature": i / 10}).status_code == 200
            assert b.http.post("/v1/chat/completions", json=body).status_code == 200
            assert b.http.post("/v1/chat/completions", json={**body, "model": "rep-fail"}).status_code >= 500

            def totals(gw: GatewayProcess) -> tuple[int, int]:
                total = gw.http.get("/admin/reports/daily", params={"format": "json"}).json()["total"]
                return total["requests"], total["server_errors"]

            assert wait_until(lambda: totals(a) == (5, 1) and totals(b) == (5, 1), timeout=10), (totals(a), totals(b))
            done = cli("daily", "--config", str(a.config_path), "--format", "json")
            assert done.returncode == 0, done.stderr
            assert json.loads(done.stdout)["total"]["requests"] == 5
        finally:
            a.stop()
            b.stop()
