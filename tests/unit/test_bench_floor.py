"""The floor app (``bench.floor`` running ``bench.clients_app``) in front of the bench nginx,
and the standing check's tables and README line (``bench/standing.py``). No load is
generated and nothing is timed."""

from __future__ import annotations

import re
import shutil
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from bench import canned
from bench.floor import FloorServer
from bench.gateway_proc import chat_body
from bench.nginx import NginxServer
from bench.procs import Pinning, free_port
from bench.ratio import run_label
from bench.rounds import TARGETS, Rounds
from bench.scenarios import scenarios
from bench.standing import (
    ADDED_P50_MS,
    FLOOR,
    FLOOR_SHARE,
    README_HEADER,
    REDIS_SHARE,
    cpu_table,
    readme_row,
    standing_rounds,
)

UNPINNED = Pinning(False, "test")
VARIANTS = [FLOOR, "bare", "embedded", "redis"]
needs_nginx = pytest.mark.skipif(shutil.which("nginx") is None, reason="nginx is not installed")


def _post(url: str, *, stream: bool) -> tuple[int, str, str]:
    headers = {"Content-Type": "application/json", "Accept": "text/event-stream" if stream else "application/json"}
    req = urllib.request.Request(url, data=chat_body("m", stream=stream), headers=headers, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, resp.headers["content-type"], resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers["content-type"], exc.read().decode()


@needs_nginx
@pytest.mark.parametrize("client", ["aiohttp", "httpx"])
def test_the_floor_forwards_answers_and_relays_streams_verbatim(tmp_path: Path, client: str) -> None:
    with (
        NginxServer(tmp_path, UNPINNED) as nginx,
        FloorServer(tmp_path, UNPINNED, json_url=nginx.json_url, sse_url=nginx.sse_url, client=client) as floor,
    ):
        assert _post(floor.chat_url, stream=False) == (200, "application/json", canned.json_body())
        assert _post(floor.chat_url, stream=True) == (200, "text/event-stream", canned.sse_body())
        assert floor.pid > 0


@needs_nginx
def test_a_restart_is_a_new_process_serving_on_the_same_port(tmp_path: Path) -> None:
    """``bench.ratio --fresh`` restarts every server between rounds: the old process is gone,
    the new one answers at the same address."""
    with NginxServer(tmp_path, UNPINNED) as nginx, FloorServer(tmp_path, UNPINNED, json_url=nginx.json_url) as floor:
        old = floor.proc
        assert old is not None
        floor.restart()
        assert old.poll() is not None, "the first process was stopped"
        assert floor.proc is not None and floor.proc.pid != old.pid
        assert _post(floor.chat_url, stream=False) == (200, "application/json", canned.json_body())


@needs_nginx
def test_without_a_stream_upstream_every_request_goes_to_the_json_one(tmp_path: Path) -> None:
    with NginxServer(tmp_path, UNPINNED) as nginx, FloorServer(tmp_path, UNPINNED, json_url=nginx.json_url) as floor:
        assert _post(floor.chat_url, stream=True) == (200, "application/json", canned.json_body())


@pytest.mark.parametrize("stream", [False, True])
def test_an_upstream_that_is_down_is_a_502_naming_the_error(tmp_path: Path, stream: bool) -> None:
    down = f"http://127.0.0.1:{free_port()}/v1/chat/completions"  # nothing listens there
    with FloorServer(tmp_path, UNPINNED, json_url=down, sse_url=down) as floor:
        status, ctype, body = _post(floor.chat_url, stream=stream)
    assert (status, ctype) == (502, "text/plain")
    assert body.startswith("upstream error: ") and "Connect" in body, body
    assert floor.proc is None  # stopped on leaving


def test_the_floor_refuses_to_report_a_pid_when_not_running(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match="not running"):
        _ = FloorServer(tmp_path, UNPINNED, json_url="http://127.0.0.1:1/").pid


def test_each_scenario_carries_the_performance_issue_targets() -> None:
    json_sc, one_conn, sse = scenarios(16)
    throughput = standing_rounds(json_sc, VARIANTS)
    assert throughput.base == "bare" and throughput.targets == TARGETS
    assert throughput.pairs == {("embedded", FLOOR): FLOOR_SHARE, ("redis", "embedded"): REDIS_SHARE}
    assert (FLOOR_SHARE, REDIS_SHARE, ADDED_P50_MS) == (0.70, 0.85, 0.5)
    streams = standing_rounds(sse, VARIANTS)
    assert streams.targets == {} and streams.pairs == throughput.pairs
    latency = standing_rounds(one_conn, VARIANTS)
    assert latency.lower_is_better and latency.limits == {"embedded": ADDED_P50_MS} and latency.unit == "ms"
    with_pg = standing_rounds(json_sc, [*VARIANTS, "postgres"])
    assert with_pg.pairs["postgres", "redis"] == 0.95


def _filled() -> dict[str, Rounds]:
    json_sc, one_conn, sse = scenarios(16)
    tables = {sc.name: standing_rounds(sc, VARIANTS) for sc in (json_sc, one_conn, sse)}
    tables["json"].rps = {FLOOR: [4000.0, 5000.0, 4400.0], "bare": [2400.0, 3000.0, 2600.0]}
    tables["json"].rps |= {"embedded": [2800.0, 3000.0, 3300.0], "redis": [2500.0, 2500.0, 2700.0]}
    tables["sse"].rps = {FLOOR: [3000.0], "bare": [1600.0], "embedded": [1500.0], "redis": [1200.0]}
    tables["json-1conn"].rps = {FLOOR: [0.2, 0.25], "bare": [0.4, 0.45], "embedded": [0.5, 0.6], "redis": [0.7, 0.8]}
    return tables


def test_the_verdicts_weigh_embedded_against_the_floor_and_redis_against_embedded() -> None:
    tables = _filled()
    json_text = "\n".join(tables["json"].lines())
    # per round: embedded/floor 70 %, 60 %, 75 %; redis/embedded 89.3 %, 83.3 %, 81.8 %
    assert "embedded/floor: median of the per-round ratios 70.0% (target >= 70%): met" in json_text
    assert "redis/embedded: median of the per-round ratios 83.3% (target >= 85%): NOT MET" in json_text
    assert "embedded: median of the per-round ratios 116.7% (target >= 80%): met" in json_text
    latency_text = "\n".join(tables["json-1conn"].lines())
    assert "embedded: median 0.550 ms (target <= 0.500 ms): NOT MET" in latency_text
    assert tables["json-1conn"].to_json()["median"] == {"embedded": pytest.approx(0.55)}


def test_the_readme_line_has_a_cell_per_column_and_dashes_for_what_was_not_measured() -> None:
    tables = _filled()
    row = readme_row(tables, "2026-12-07 abc1234")
    assert row == (
        "| 2026-12-07 abc1234 | 4,400 | 2,600 | 3,000 (70.0% of floor) | 2,500 (83.3% of embedded) "
        "| 3,000 | 1,600 | 1,500 (50.0% of floor) | 1,200 (80.0% of embedded) | 0.550 | 0.750 |"
    )
    assert row.count("|") == README_HEADER.splitlines()[0].count("|")
    only_json = readme_row({"json": tables["json"]}, "x")
    assert only_json.endswith("| - | - | - (- of floor) | - (- of embedded) | - | - |")


def test_a_run_is_labelled_by_date_and_commit() -> None:
    assert re.fullmatch(r"\d{4}-\d\d-\d\d [0-9a-f]{7,}\+?", run_label()), run_label()


def test_cpu_per_request_is_weighed_against_the_floor_apps() -> None:
    cpu = cpu_table(VARIANTS)
    cpu.rps = {FLOOR: [250.0, 270.0], "bare": [400.0, 405.0], "embedded": [500.0, 540.0], "redis": [600.0, 650.0]}
    text = "\n".join(cpu.lines())
    assert cpu.lower_is_better and cpu.targets == {}
    assert "bare/floor" in text.splitlines()[0] and "floor/" not in text.splitlines()[0]
    assert "median        260        402        520        625" in text
    assert "200.0%" in text.splitlines()[-1]  # embedded 520 µs is twice the floor app's 260
