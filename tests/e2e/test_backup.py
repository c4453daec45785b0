"""Backups (issue 16): the restore drill on every state shape (embedded, Redis, PostgreSQL +
Redis) with real servers: state made through a real gateway (keys, a team, a user, spend from
requests to the mock upstream, audit records, a stored response), ``gateway backup``, a fresh
backend, ``gateway restore``, then every record, spend total, mark, stored response and audit
record is back with its sequence number, and a gateway started on the restored state serves
the restored key. Then the refusals, each by name and with exit 1 (a changed byte, a cut file,
another installation's key, a newer format, a non-empty target), and retention."""

from __future__ import annotations

import asyncio
import base64
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest
import yaml

from gateway.config.settings import Settings
from gateway.config.state import StateSettings
from gateway.state.backup import archives, backup_job, write_backup
from gateway.state.backup_archive import FORMAT
from gateway.state.base import StateBackend
from gateway.state.embedded import EmbeddedBackend
from gateway.state.factory import create_backend
from tests.e2e.conftest import Mock
from tests.e2e.harness import MASTER_KEY, ROOT, GatewayProcess
from tests.postgres_server import PostgresServer
from tests.redis_server import RedisServer


def _key() -> str:
    return base64.b64encode(os.urandom(32)).decode()


KEYS = {"GATEWAY_BACKUP_KEY": _key(), "GATEWAY_SECRETS_KEY": _key()}
PRICE = "{input_per_1m: 1.5, output_per_1m: 6.0}"
PASSWORD = "backup drill password 4821"


def gateway_config(mock_url: str, state: str) -> str:
    dep = f"{{provider: openai, model: backup-model, base_url: '{mock_url}/v1', api_key: k, price: {PRICE}}}"
    return f"""{state}
auth: {{master_key: "${{GATEWAY_MASTER_KEY}}"}}
router:
  timeouts: {{connect_s: 2, first_byte_s: 10, idle_s: 10, total_s: 20}}
  retry: {{max_retries: 0}}
models:
  paid: {{deployments: [{dep}]}}
"""


def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gateway", *args],
        check=False,
        cwd=ROOT,
        env={**os.environ, "GATEWAY_MASTER_KEY": MASTER_KEY, **KEYS, **(env or {})},
        capture_output=True,
        text=True,
        timeout=120,
    )


async def snapshot(state: StateSettings) -> dict[str, Any]:
    """Everything a backend holds, through its enumeration (compared before and after)."""
    backend = create_backend(state, cache_max_bytes=1 << 20)
    try:
        return await _collect(backend)
    finally:
        await backend.aclose()


async def _collect(backend: StateBackend) -> dict[str, Any]:
    records = {table: await backend.scan_items(table) for table in await backend.tables()}
    logs = {stream: await backend.read_log(stream, 100_000) for stream in await backend.log_streams()}
    blobs = {key: value async for key, value, _ in backend.blob_items()}
    return {
        "records": records,
        "spend": await backend.spend_counters(),
        "marks": await backend.spend_marks(),
        "logs": logs,
        "blobs": blobs,
    }


def state_of(config: Path) -> StateSettings:
    return StateSettings.model_validate(yaml.safe_load(config.read_text())["state"])


# --- the shapes: a source state and a fresh target for each ------------------------------------


@pytest.fixture(scope="module")
def pg() -> Iterator[PostgresServer]:
    with PostgresServer() as server:
        yield server


async def _database(pg: PostgresServer, name: str) -> str:
    conn = await asyncpg.connect(pg.url)
    try:
        await conn.execute(f"CREATE DATABASE {name}")
    finally:
        await conn.close()
    return pg.url.rsplit("/", 1)[0] + "/" + name


@pytest.fixture(params=["embedded", "redis", "postgres"])
def shape(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, str]]:
    """The ``state:`` line of the source and of the fresh target."""
    common = "flush_interval_s: 0.1, refresh_interval_s: 0.2"
    if request.param == "embedded":
        yield (
            f"state: {{path: '{tmp_path / 'a' / 'state.db'}', {common}}}",
            f"state: {{path: '{tmp_path / 'b' / 'state.db'}', {common}}}",
        )
        return
    with RedisServer() as source_redis, RedisServer() as target_redis:
        if request.param == "redis":
            yield (
                f"state: {{backend: redis, url: '{source_redis.url}', {common}}}",
                f"state: {{backend: redis, url: '{target_redis.url}', {common}}}",
            )
            return
        server: PostgresServer = request.getfixturevalue("pg")
        stamp = int(time.time() * 1000) % 10**9
        lines = []
        for side, redis in (("a", source_redis), ("b", target_redis)):
            db = asyncio.run(_database(server, f"backup_{side}_{stamp}"))
            lines.append(
                f"state: {{backend: postgres, url: '{redis.url}', path: '{tmp_path / side / 'state.db'}',"
                f" {common}, postgres: {{url: '{db}', connect_timeout_s: 2}}}}"
            )
        yield lines[0], lines[1]


def test_the_restore_drill(shape: tuple[str, str], mock: Mock, tmp_path: Path) -> None:
    source_state, target_state = shape
    (tmp_path / "a").mkdir(exist_ok=True)
    (tmp_path / "b").mkdir(exist_ok=True)
    backups = tmp_path / "backups"
    source = GatewayProcess(gateway_config(mock.url, source_state), tmp_path / "a", extra_env=KEYS)
    try:
        team = source.http.post("/admin/teams", json={"id": "drill-team", "name": "Drill"})
        assert team.status_code in (200, 201), team.text
        made = source.http.post("/admin/keys", json={"name": "drill-key", "team": "drill-team"})
        assert made.status_code == 201, made.text
        key, key_id = made.json()["key"], made.json()["id"]
        user = source.http.post("/admin/users", json={"username": "drill-user", "password": PASSWORD, "role": "viewer"})
        assert user.status_code in (200, 201), user.text
        client = source.client(key)
        for _ in range(3):
            client.chat.completions.create(model="paid", messages=[{"role": "user", "content": "spend a little"}])
        stored = client.responses.create(model="paid", input="keep this answer")
        audit_before = source.http.get("/admin/audit", params={"limit": 1000}).json()
    finally:
        source.stop()  # flushes the spend ledger and the stored responses written behind
    source_config = tmp_path / "a" / "gateway.yaml"
    before = asyncio.run(snapshot(state_of(source_config)))
    assert any(v > 0 for k, v in before["spend"].items() if "drill-team" in k), before["spend"]
    assert {"keys", "teams", "users"} <= set(before["records"]) and before["blobs"] and before["logs"]["audit"]

    made_backup = cli("backup", "--config", str(source_config), "--out", str(backups))
    assert made_backup.returncode == 0, made_backup.stderr
    [archive] = list(backups.glob("gateway-*.gwbak"))
    assert str(archive) in made_backup.stdout

    target_config = tmp_path / "b" / "gateway.yaml"
    target_config.write_text(gateway_config(mock.url, target_state))
    restored = cli("restore", str(archive), "--config", str(target_config), "--yes")
    assert restored.returncode == 0, restored.stderr
    after = asyncio.run(snapshot(state_of(target_config)))
    assert after == before, "every record, spend total, mark, stored response and log record is back"

    target = GatewayProcess(target_config.read_text(), tmp_path / "b", extra_env=KEYS)
    try:
        again = target.client(key)
        answer = again.chat.completions.create(model="paid", messages=[{"role": "user", "content": "still here"}])
        assert answer.choices[0].message.content
        assert again.responses.retrieve(stored.id).output_text == stored.output_text
        assert target.http.get(f"/admin/keys/{key_id}").json()["team"] == "drill-team"
        assert target.http.get("/admin/teams/drill-team").status_code == 200
        assert target.http.get("/admin/users/drill-user").status_code == 200
        audit_after = target.http.get("/admin/audit", params={"limit": 1000}).json()
        assert audit_after == audit_before, "the audit log, in order, with its sequence numbers"
    finally:
        target.stop()


# --- refusals and retention: the embedded shape, no gateway ---------------------------------------


@pytest.fixture
def made(tmp_path: Path) -> tuple[Path, Path]:
    """A config whose state holds a little of everything, and an archive of it."""
    config = tmp_path / "gateway.yaml"
    config.write_text(
        f"auth: {{master_key: sk-refusals-0001}}\nstate: {{path: '{tmp_path / 'state.db'}'}}\n"
        f"backup: {{dir: '{tmp_path / 'backups'}', keep: 2}}\n"
    )

    async def fill() -> None:
        backend = EmbeddedBackend(str(tmp_path / "state.db"))
        await backend.put("keys", "h1", {"id": "k1", "team": "t"})
        await backend.incr_spend({"team:t": 1.25})
        await backend.append_log("audit", {"action": "keys.create"})
        await backend.blob_put("resp:k1:r1", os.urandom(3 << 20), 3600)  # several frames
        await backend.aclose()

    asyncio.run(fill())
    done = cli("backup", "--config", str(config))
    assert done.returncode == 0, done.stderr
    [archive] = list((tmp_path / "backups").glob("*.gwbak"))
    return config, archive


def fresh_target(tmp_path: Path, name: str) -> Path:
    config = tmp_path / f"{name}.yaml"
    config.write_text(f"auth: {{master_key: sk-refusals-0001}}\nstate: {{path: '{tmp_path / name / 'state.db'}'}}\n")
    return config


def refused(archive: Path, target: Path, reason: str, env: dict[str, str] | None = None) -> None:
    result = cli("restore", str(archive), "--config", str(target), "--yes", env=env)
    assert result.returncode == 1, result.stdout + result.stderr
    assert f"refused ({reason})" in result.stderr, result.stderr
    held = asyncio.run(snapshot(state_of(target)))
    assert held == {"records": {}, "spend": {}, "marks": {}, "logs": {}, "blobs": {}}, "nothing was written"


def test_a_changed_byte_anywhere_is_refused(made: tuple[Path, Path], tmp_path: Path) -> None:
    _, archive = made
    raw = archive.read_bytes()
    target = fresh_target(tmp_path, "t")
    for at in (20, 8 + 4096 + 3, len(raw) // 2, len(raw) - 1):  # header, its tag, a frame, the last tag
        changed = tmp_path / f"changed-{at}.gwbak"
        changed.write_bytes(raw[:at] + bytes([raw[at] ^ 0x01]) + raw[at + 1 :])
        refused(changed, target, "tampered")


def test_a_truncated_archive_is_refused(made: tuple[Path, Path], tmp_path: Path) -> None:
    _, archive = made
    raw = archive.read_bytes()
    target = fresh_target(tmp_path, "t")
    for keep in (len(raw) - 1, len(raw) // 2, 3000):
        cut = tmp_path / f"cut-{keep}.gwbak"
        cut.write_bytes(raw[:keep])
        refused(cut, target, "truncated")
    not_one = tmp_path / "notes.gwbak"
    not_one.write_text("not a backup")
    refused(not_one, target, "not_an_archive")


def test_another_installation_and_a_newer_format_are_refused(made: tuple[Path, Path], tmp_path: Path) -> None:
    _, archive = made
    target = fresh_target(tmp_path, "t")
    refused(archive, target, "other_installation", env={"GATEWAY_BACKUP_KEY": _key()})
    newer_dir = tmp_path / "newer"

    async def newer() -> Path:
        backend = EmbeddedBackend(str(tmp_path / "state.db"))
        try:
            key = base64.b64decode(KEYS["GATEWAY_BACKUP_KEY"])
            path, _ = await write_backup(backend, newer_dir, key, format_version=FORMAT + 1)
            return path
        finally:
            await backend.aclose()

    refused(asyncio.run(newer()), target, "newer_format")
    ok = cli("restore", str(archive), "--config", str(target), "--yes")
    assert ok.returncode == 0, ok.stderr  # the same target takes a good archive


def test_a_target_holding_state_is_refused_unless_forced(made: tuple[Path, Path], tmp_path: Path) -> None:
    _, archive = made
    target = fresh_target(tmp_path, "t")
    assert cli("restore", str(archive), "--config", str(target), "--yes").returncode == 0
    first = asyncio.run(snapshot(state_of(target)))
    again = cli("restore", str(archive), "--config", str(target), "--yes")
    assert again.returncode == 1 and "not empty" in again.stderr, again.stderr
    assert asyncio.run(snapshot(state_of(target))) == first
    unasked = cli("restore", str(archive), "--config", str(target))  # no terminal, no --yes
    assert unasked.returncode == 2 and "--yes" in unasked.stderr
    forced = cli("restore", str(archive), "--config", str(target), "--yes", "--force")
    assert forced.returncode == 0, forced.stderr
    assert "new sequence numbers in log stream(s) audit" in forced.stdout, forced.stdout
    over = asyncio.run(snapshot(state_of(target)))
    assert over["records"] == first["records"] and over["spend"] == first["spend"]
    assert [r["action"] for r in over["logs"]["audit"]] == ["keys.create", "keys.create"]


def test_retention_keeps_the_newest(made: tuple[Path, Path], tmp_path: Path) -> None:
    config, first = made
    written = [first]
    for _ in range(3):
        done = cli("backup", "--config", str(config))
        assert done.returncode == 0, done.stderr
        written.append(Path(done.stdout.split()[1]))
    assert sorted((tmp_path / "backups").glob("*.gwbak")) == sorted(written[-2:])  # keep: 2

    async def job() -> str:
        settings = Settings.model_validate(yaml.safe_load(config.read_text()))
        backend = EmbeddedBackend(str(tmp_path / "state.db"))
        try:
            return await backup_job(settings, backend, KEYS)
        finally:
            await backend.aclose()

    summary = asyncio.run(job())
    assert summary.startswith(f"wrote {tmp_path / 'backups'}/gateway-") and summary.endswith("; 2 kept"), summary
    assert "1 records in 1 tables, 1 spend counters, 1 log records, 1 stored responses" in summary
    left = archives(tmp_path / "backups")  # oldest first, by the time in their names
    assert left[0] == written[-1] and str(left[1]) in summary
