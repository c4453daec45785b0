"""POST /admin/teams creates and never replaces, over a real gateway process: an
existing id is 409 team_exists (also for creations racing each other), PATCH is the
update path, and the benchmark's provisioning (bench/traffic.py put_team) runs twice
on one gateway, the second time through PATCH."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from bench.traffic import put_team
from tests.e2e.conftest import Mock
from tests.e2e.harness import MASTER_KEY, GatewayProcess, e2e_config


@pytest.fixture(scope="module")
def gw(mock: Mock, tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    g = GatewayProcess(e2e_config(mock.url), Path(tmp_path_factory.mktemp("teams-create")))
    yield g
    g.stop()


def test_racing_creations_make_one_team(gw: GatewayProcess) -> None:
    def create(i: int) -> httpx.Response:
        headers = {"authorization": f"Bearer {MASTER_KEY}"}
        return httpx.post(f"{gw.url}/admin/teams", json={"id": "race", "rpm": i + 1}, headers=headers, timeout=30)

    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(create, range(8)))
    assert sorted(a.status_code for a in answers) == [201] + [409] * 7
    won = next(a.json() for a in answers if a.status_code == 201)
    for lost in (a for a in answers if a.status_code == 409):
        error = lost.json()["error"]
        assert (error["code"], error["param"], error["type"]) == ("team_exists", "id", "invalid_request_error")
        assert "'race'" in error["message"]
    assert gw.http.get("/admin/teams/race").json()["rpm"] == won["rpm"]
    created = gw.http.get("/admin/audit", params={"action": "teams.create"}).json()["data"]
    assert [r["target"] for r in created] == ["teams/race"]


def test_bench_provisioning_creates_then_updates(gw: GatewayProcess) -> None:
    put_team(gw.url, MASTER_KEY, {"id": "bench-t", "rpm": 100, "budget_daily_usd": 5.0})
    assert gw.http.get("/admin/teams/bench-t").json()["rpm"] == 100
    put_team(gw.url, MASTER_KEY, {"id": "bench-t", "rpm": 200, "budget_daily_usd": 5.0})  # a 409, then PATCH
    team = gw.http.get("/admin/teams/bench-t").json()
    assert (team["rpm"], team["budget_daily_usd"]) == (200, 5.0)
    actions = [r["action"] for r in gw.http.get("/admin/audit", params={"actor": "master", "limit": 2}).json()["data"]]
    assert actions == ["teams.update", "teams.create"]
