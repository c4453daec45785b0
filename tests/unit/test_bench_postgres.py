"""``bench.ratio --postgres``: the postgres/redis ratio round by round, the refused
combination, the gateway's state section, and the bench's throwaway PostgreSQL (a real
server on loopback, where one is installed). Nothing is timed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench.gateway_proc import render_gateway_config
from bench.postgres_proc import PostgresServer, postgres_args, postgres_bin, postgres_url
from bench.procs import BenchError, Pinning
from bench.ratio import parser, run
from bench.rounds import POSTGRES, POSTGRES_TARGET, Rounds, order
from bench.traffic import postgres_state, traffic_config
from gateway.config.loader import parse_config


def _rounds(postgres: list[float]) -> Rounds:
    rps = {"bare": [2000.0, 2000.0, 1000.0], "embedded": [1600.0, 1600.0, 800.0], "redis": [1400.0, 1000.0, 700.0]}
    return Rounds({**rps, POSTGRES: postgres}, pairs={(POSTGRES, "redis"): POSTGRES_TARGET})


def test_postgres_is_weighed_against_redis_round_by_round() -> None:
    rounds = _rounds([1330.0, 1000.0, 630.0])  # 95 %, 100 %, 90 % of redis
    assert rounds.ratios(POSTGRES, to="redis") == [0.95, 1.0, 0.9]
    lines = rounds.lines()
    assert lines[0].split()[-2:] == ["postgres/bare", "postgres/redis"]
    assert lines[1].endswith("  66.5%           95.0%")  # postgres/bare, then postgres/redis
    assert lines[4].startswith("median") and lines[4].endswith("95.0%")
    assert "postgres/redis: median of the per-round ratios 95.0% (target >= 95%): met" in lines
    assert not any(line.startswith("postgres:") for line in lines)  # no target against bare
    data = rounds.to_json()
    assert data["ratios"]["postgres/redis"] == [0.95, 1.0, 0.9]
    assert data["median_ratio"]["postgres/redis"] == 0.95
    assert set(data["median_ratio"]) == {"embedded", "redis", "postgres/redis"}


def test_postgres_more_than_five_percent_below_redis_is_not_met() -> None:
    lines = _rounds([1300.0, 1000.0, 600.0]).lines()  # 92.9 %, 100 %, 85.7 %
    assert "postgres/redis: median of the per-round ratios 92.9% (target >= 95%): NOT MET" in lines


def test_the_postgres_variant_rotates_with_the_others() -> None:
    assert order(3, ["bare", "embedded", "redis", POSTGRES]) == [POSTGRES, "bare", "embedded", "redis"]


def test_postgres_does_not_combine_with_apis() -> None:
    assert parser().parse_args(["--postgres"]).postgres
    with pytest.raises(BenchError, match="does not combine with --apis"):
        run(parser().parse_args(["--apis", "--postgres"]), out=lambda _: None)


def test_the_postgres_gateway_config_is_valid(tmp_path: Path) -> None:
    bare = render_gateway_config(
        port=9999, json_base_url="http://127.0.0.1:1/json/v1", sse_base_url="http://127.0.0.1:1/sse/v1"
    )
    state = postgres_state("redis://127.0.0.1:6390/1", postgres_url(5999), tmp_path)
    config = json.dumps(traffic_config(bare, state=state))  # JSON is YAML
    settings = parse_config(config, env={"GATEWAY_MASTER_KEY": "bench-key-123"}).settings
    assert settings.state.backend == "postgres"
    assert settings.state.url == "redis://127.0.0.1:6390/1"
    assert settings.state.postgres is not None
    assert settings.state.postgres.url == "postgresql://gateway@127.0.0.1:5999/postgres"
    assert settings.state.path == str(tmp_path / "traffic-postgres.db")
    assert settings.cache.enabled and settings.limits.max_concurrent is not None


def test_the_newest_installed_server_is_picked(tmp_path: Path) -> None:
    assert postgres_bin(tmp_path) is None
    for version in ("9", "15", "13"):
        (tmp_path / version / "bin").mkdir(parents=True)
        (tmp_path / version / "bin" / "postgres").touch()
    (tmp_path / "16" / "bin").mkdir(parents=True)  # client tools only, no server
    assert postgres_bin(tmp_path) == tmp_path / "15" / "bin"


def test_the_server_listens_on_loopback_only(tmp_path: Path) -> None:
    args = postgres_args(Path("/pg/bin"), data=tmp_path / "data", port=5999, socket_dir=tmp_path)
    assert args[:5] == ["/pg/bin/postgres", "-D", str(tmp_path / "data"), "-p", "5999"]
    assert "listen_addresses=127.0.0.1" in args
    assert f"unix_socket_directories={tmp_path}" in args


@pytest.mark.skipif(postgres_bin() is None, reason="PostgreSQL is not installed")
def test_the_throwaway_server_answers_and_is_removed(tmp_path: Path) -> None:
    server = PostgresServer(tmp_path, Pinning(False, "unpinned in tests"))
    with server:
        assert server.dir is not None and (server.dir / "data" / "PG_VERSION").is_file()
        data_dir = server.dir
        assert server.count("pg_database") >= 1
        with pytest.raises(BenchError, match="counting no_such_table failed"):
            server.count("no_such_table")
    assert server.proc is None and not data_dir.exists()
