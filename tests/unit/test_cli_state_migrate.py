"""``gateway state migrate`` against a real PostgreSQL (tests/postgres_server.py): a new
database is brought to the newest schema version and a second run applies nothing; the URL
from an environment variable or from the config; an unreachable server, a database migrated
by a newer release and a config without the postgres backend each end with a clear message and
a non-zero exit, the password never printed."""

from __future__ import annotations

import asyncio
import itertools
import socket
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest

from gateway.cli.main import main
from gateway.state.postgres_schema import MIGRATIONS, version_of
from tests.postgres_server import PostgresServer, postgres_bin

pytestmark = pytest.mark.skipif(
    postgres_bin() is None, reason="PostgreSQL is not installed (make test installs it: scripts/install-os-deps.sh)"
)

_databases = itertools.count()


@pytest.fixture(scope="module")
def pg() -> Iterator[PostgresServer]:
    with PostgresServer() as server:
        yield server


async def _sql(url: str, statement: str) -> None:
    conn = await asyncpg.connect(url, timeout=10)
    try:
        await conn.execute(statement)
    finally:
        await conn.close()


async def _version(url: str) -> int:
    conn = await asyncpg.connect(url, timeout=10)
    try:
        return await version_of(conn)
    finally:
        await conn.close()


@pytest.fixture
def database(pg: PostgresServer) -> str:
    """A new, empty database of the server; its URL."""
    name = f"migrate_{next(_databases)}"
    asyncio.run(_sql(pg.url, f"CREATE DATABASE {name}"))
    return pg.url.rsplit("/", 1)[0] + f"/{name}"


def test_migrates_a_new_database_then_finds_it_current(
    database: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("GW_TEST_PG_URL", database)
    assert asyncio.run(_version(database)) == 0

    assert main(["state", "migrate", "--url-env", "GW_TEST_PG_URL", "--timeout", "60"]) == 0
    out = capsys.readouterr().out
    assert f"schema version 0 -> {len(MIGRATIONS)}" in out
    for number, step in enumerate(MIGRATIONS, start=1):
        assert f"applied step {number}: {step.does}" in out
    assert asyncio.run(_version(database)) == len(MIGRATIONS)
    asyncio.run(_sql(database, "SELECT count(*) FROM gw_records"))  # the tables are there

    assert main(["state", "migrate", "--url-env", "GW_TEST_PG_URL"]) == 0
    assert f"schema version {len(MIGRATIONS)}, current: nothing to apply" in capsys.readouterr().out


def test_the_url_from_the_config(
    database: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "gateway.yaml"
    # Redis is named because the postgres backend requires it; migrate never connects to it.
    config.write_text(
        "state:\n  backend: postgres\n  url: redis://127.0.0.1:1/0\n  postgres:\n    url: ${GW_TEST_PG_URL}\n"
    )
    monkeypatch.setenv("GW_TEST_PG_URL", database)
    assert main(["state", "migrate", "--config", str(config)]) == 0
    assert f"-> {len(MIGRATIONS)}" in capsys.readouterr().out
    assert asyncio.run(_version(database)) == len(MIGRATIONS)


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])  # nothing listens once it is closed


def test_an_unreachable_server_is_a_clear_error_and_exit_1(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    secret = "pw-not-to-be-printed"
    monkeypatch.setenv("GW_TEST_PG_URL", f"postgresql://gateway:{secret}@127.0.0.1:{_closed_port()}/gateway")
    code = main(["state", "migrate", "--url-env", "GW_TEST_PG_URL", "--connect-timeout", "5"])
    captured = capsys.readouterr()
    assert code == 1
    assert "error: cannot reach PostgreSQL at postgresql://gateway:***@127.0.0.1:" in captured.err
    assert secret not in captured.err + captured.out
    assert captured.out == ""


def test_a_database_of_a_newer_release_is_refused_untouched(
    database: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    newer = len(MIGRATIONS) + 5
    schema = f"CREATE TABLE gw_schema (version integer NOT NULL); INSERT INTO gw_schema VALUES ({newer})"
    asyncio.run(_sql(database, schema))
    monkeypatch.setenv("GW_TEST_PG_URL", database)
    assert main(["state", "migrate", "--url-env", "GW_TEST_PG_URL"]) == 1
    err = capsys.readouterr().err
    assert f"schema version {newer}" in err
    assert "migrated by a newer release" in err
    assert asyncio.run(_version(database)) == newer


@pytest.mark.parametrize(
    ("env", "says"),
    [
        ({}, "GW_TEST_PG_URL (--url-env) is not set or empty"),
        ({"GW_TEST_PG_URL": "mysql://db/gateway"}, "must hold a PostgreSQL URL"),
    ],
)
def test_a_missing_or_foreign_url_is_bad_usage(
    env: dict[str, str], says: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("GW_TEST_PG_URL", raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert main(["state", "migrate", "--url-env", "GW_TEST_PG_URL"]) == 2
    assert says in capsys.readouterr().err


def test_a_config_without_the_postgres_backend_is_bad_usage(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "gateway.yaml"
    config.write_text("state:\n  backend: redis\n  url: redis://127.0.0.1:1/0\n")
    assert main(["state", "migrate", "--config", str(config)]) == 2
    assert "state.backend is redis; only the postgres backend has schema migrations" in capsys.readouterr().err
