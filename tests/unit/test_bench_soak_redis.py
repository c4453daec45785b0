"""bench.soak_redis: its argument checks, the gateway config and admin bodies it makes
(valid as the gateway reads them), its verdict and report lines, and the wrk script that
takes the client keys in turn (real wrk against a loopback server)."""

from __future__ import annotations

import json
import shutil
import threading
from collections import Counter
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from bench.gateway_proc import render_gateway_config
from bench.procs import BenchError, Pinning
from bench.soak import SoakResult
from bench.soak_redis import KEYS_SCRIPT, Plan, key_bodies, keys_env, parser, plan_of, soak_config, verdict
from bench.wrk import run_wrk
from gateway.config.loader import parse_config
from gateway.policies.keys import KeyFields, parse_body

ENV = {"GATEWAY_MASTER_KEY": "sk-bench-key-123"}


def plan(*argv: str) -> Plan:
    return plan_of(parser().parse_args(list(argv)))


def soak(growth: float | None, *, errors: int = 0, requests: int = 200_000) -> SoakResult:
    end = None if growth is None else 80.0 + growth
    return SoakResult(requests, requests, requests - errors, 100.0, errors, [], 80.0, end, 90.0, "reached the count")


def test_the_defaults_are_the_issues_soak() -> None:
    assert plan() == Plan(requests=1_000_000, connections=64)
    small = plan("--requests", "200000", "--keys", "10", "--teams", "2", "--refresh-interval", "0.2")
    assert (small.requests, small.keys, small.teams, small.refresh_interval_s) == (200_000, 10, 2, 0.2)


@pytest.mark.parametrize(
    ("argv", "problem"),
    [
        (["--requests", "0"], "--requests must be at least 1"),
        (["--connections", "0"], "--connections must be at least 1"),
        (["--keys", "0"], "--keys must be at least 1"),
        (["--teams", "0"], "--teams must be at least 1"),
        (["--warmup", "0"], "--warmup must be at least 1"),
        (["--keys", "2", "--teams", "3"], "--teams must not be more than --keys"),
        (["--refresh-interval", "0"], "--refresh-interval must be more than 0"),
        (["--max-seconds", "-1"], "--max-seconds must be more than 0"),
    ],
)
def test_bad_arguments_are_refused(argv: list[str], problem: str) -> None:
    with pytest.raises(BenchError, match=problem):
        plan(*argv)


def test_every_bad_argument_is_named_at_once() -> None:
    with pytest.raises(BenchError) as err:
        plan("--requests", "0", "--refresh-interval", "0")
    assert "--requests" in str(err.value) and "--refresh-interval" in str(err.value)


def test_the_config_is_traffic_control_on_redis_reading_keys_again_often() -> None:
    bare = render_gateway_config(port=1, json_base_url="http://127.0.0.1:9/json/v1", sse_base_url="http://x/sse/v1")
    config = soak_config(bare, "redis://127.0.0.1:6399/0", 0.05)
    settings = parse_config(json.dumps(config), env=ENV).settings
    assert settings.state.backend == "redis" and settings.state.url == "redis://127.0.0.1:6399/0"
    assert settings.state.refresh_interval_s == 0.05
    assert settings.cache.enabled and settings.limits.max_concurrent and settings.budgets.daily_usd
    assert all(alias.limits is not None for alias in settings.models.values())
    assert "refresh_interval_s" not in bare.get("state", {})  # the bare config is left as it was


def test_the_keys_are_spread_over_the_teams_and_valid_for_the_admin_api() -> None:
    bodies = key_bodies(7, 3)
    assert len({b["name"] for b in bodies}) == 7
    assert Counter(b["team"] for b in bodies) == {"bench-team-0": 3, "bench-team-1": 2, "bench-team-2": 2}
    for body in bodies:
        assert parse_body(KeyFields, body)["team"] == body["team"]


def test_the_verdict_holds_the_growth_to_the_target() -> None:
    p = Plan(requests=200_000)
    met, lines = verdict(p, soak(0.4))
    assert met and "+0.40 MiB over 200,000 requests (target < 2 MiB): met" in lines[-1]
    assert "200 keys in 4 teams" in lines[0] and "every 0.05 s" in lines[0]
    met, lines = verdict(p, soak(2.5))
    assert not met and lines[-1].endswith("NOT met")
    met, lines = verdict(p, soak(0.1, errors=3))
    assert not met and "requests failed" in lines[-1]
    met, lines = verdict(p, soak(None))
    assert not met and "RSS could not be read" in lines[-1]


def test_the_report_gives_the_growth_per_100k_requests() -> None:
    result = soak(0.5)
    assert result.growth_per_100k_mib == pytest.approx(0.25)
    assert any("+0.5 MiB (+0.250 MiB per 100k requests)" in line for line in result.lines())
    assert result.to_json()["growth_per_100k_mib"] == pytest.approx(0.25)
    assert soak(None).growth_per_100k_mib is None


def test_the_wrk_variables_name_the_post_script_and_every_key() -> None:
    env = keys_env(["sk-gw-a", "sk-gw-b"])
    assert Path(env["BENCH_POST_SCRIPT"]).is_file()
    assert env["BENCH_KEY_HEADER"] == "Authorization"
    assert env["BENCH_KEYS"].splitlines() == ["Bearer sk-gw-a", "Bearer sk-gw-b"]


ANSWER = b'{"object":"chat.completion","choices":[]}'


@pytest.fixture
def recorder() -> Iterator[tuple[str, Counter[str]]]:
    """A loopback server answering a chat completion, counting the Authorization headers."""
    seen: Counter[str] = Counter()
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("content-length", "0")))
            with lock:
                seen[self.headers.get("authorization", "")] += 1
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(ANSWER)))
            self.end_headers()
            self.wfile.write(ANSWER)

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/v1/chat/completions", seen
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.skipif(shutil.which("wrk") is None, reason="wrk is not installed")
def test_the_wrk_script_takes_the_keys_in_turn(recorder: tuple[str, Counter[str]]) -> None:
    url, seen = recorder
    result = run_wrk(
        url,
        scenario="t",
        target="loopback",
        connections=1,
        duration_s=1,
        pinning=Pinning(False, "test"),
        model="m",
        stream=False,
        script=KEYS_SCRIPT,
        extra_env=keys_env(["sk-gw-a", "sk-gw-b", "sk-gw-c"]),
    )
    assert result.requests > 3 and not result.has_errors
    assert set(seen) == {"Bearer sk-gw-a", "Bearer sk-gw-b", "Bearer sk-gw-c"}
    assert max(seen.values()) - min(seen.values()) <= 1  # in turn: evenly


@pytest.mark.skipif(shutil.which("wrk") is None, reason="wrk is not installed")
def test_the_wrk_script_refuses_an_empty_key_list(recorder: tuple[str, Counter[str]]) -> None:
    url, _ = recorder
    env = {**keys_env(["x"]), "BENCH_KEYS": ""}
    with pytest.raises(BenchError, match="BENCH_KEYS must list"):
        run_wrk(
            url,
            scenario="t",
            target="loopback",
            connections=1,
            duration_s=1,
            pinning=Pinning(False, "test"),
            model="m",
            stream=False,
            script=KEYS_SCRIPT,
            extra_env=env,
        )
