"""The postgres backend's retention tiers against a real PostgreSQL (and Redis where
the backend needs it): schema version 1 migrated to 2 with its data, request detail
older than ``detail_days`` archived then deleted (a rerun and an interrupted run
neither lose nor duplicate a row), an archive loaded back and queried, a tampered
one refused, a year of reports from the daily aggregates after the detail is gone,
and the detail of real requests through a gateway process written behind."""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import itertools
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import asyncpg
import httpx
import pytest

from gateway.config.loader import parse_config
from gateway.observability.logs import RequestRecord
from gateway.policies.keys import KeyStore
from gateway.reports.builder import ReportSources, make_report
from gateway.reports.store import StatsStore, table_of
from gateway.state.postgres import PostgresBackend
from gateway.state.postgres_client import Pool
from gateway.state.postgres_schema import MIGRATIONS, migrate, version_of
from gateway.state.redis import RedisBackend
from gateway.state.request_archive import ArchiveError, ArchiveReader
from gateway.state.request_detail import COLUMN_NAMES, DetailWriter
from gateway.state.retention import Retention, load_archive
from tests.e2e.conftest import Mock
from tests.e2e.harness import MASTER_KEY, ROOT, GatewayProcess, wait_until
from tests.postgres_server import PostgresServer
from tests.redis_server import RedisServer

_databases = itertools.count()
NOW = datetime(2026, 6, 15, 12, 0, tzinfo=UTC)
"""The clock of the retention and report tests: detail before 2026-06-08 is archived."""


@pytest.fixture(scope="module")
def pg() -> Iterator[PostgresServer]:
    with PostgresServer() as server:
        yield server


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    with RedisServer() as server:
        yield server


async def new_database(pg: PostgresServer) -> str:
    name = f"r{next(_databases)}_{int(time.time() * 1000) % 10**8}"
    conn = await asyncpg.connect(pg.url)
    try:
        await conn.execute(f"CREATE DATABASE {name}")
    finally:
        await conn.close()
    return pg.url.rsplit("/", 1)[0] + "/" + name


@pytest.fixture
async def db_url(pg: PostgresServer) -> str:
    return await new_database(pg)


@pytest.fixture
async def pool(db_url: str) -> AsyncIterator[Pool]:
    p = Pool(db_url)
    yield p
    await p.aclose()


def request(ts: datetime, n: int, **fields: Any) -> RequestRecord:
    """A finished request as the gateway records it (``ts`` to the millisecond: exact in PostgreSQL)."""
    base: dict[str, Any] = {
        "ts": round(ts.timestamp(), 3),
        "request_id": f"req-{n}",
        "route": "chat",
        "status": 200,
        "latency_ms": 100.0 + n,
        "key_id": "k1",
        "team": "red",
        "alias": "rep-chat",
        "deployment": "rep-chat/0",
        "provider": "openai",
        "model": "rep-model",
        "attempts": 1,
        "prompt_tokens": 10 + n,
        "completion_tokens": 5,
        "cost_usd": 0.001 * (n + 1),
        "cache": "miss",
        "stream": n % 2 == 1,
    }
    return RequestRecord(**{**base, **fields})


async def write(pool: Pool, records: list[RequestRecord]) -> None:
    writer = DetailWriter(pool)
    for rec in records:
        writer.record(rec)
    assert await writer.flush()
    assert (writer.written, writer.dropped) == (len(records), 0)


async def request_ids(conn: Any, table: str = "gw_requests") -> set[str]:
    return {row[0] for row in await conn.fetch(f"SELECT request_id FROM {table}")}


async def test_the_write_behind_keeps_rows_while_postgres_fails_within_its_bound(pg: PostgresServer) -> None:
    name = f"later{next(_databases)}_{int(time.time() * 1000) % 10**8}"
    url = pg.url.rsplit("/", 1)[0] + "/" + name  # no such database yet: every write fails
    pool = Pool(url, connect_timeout_s=2.0)
    writer = DetailWriter(pool, max_rows=5)
    try:
        for n in range(3):
            writer.record(request(NOW, n))
        assert await writer.flush() is False
        assert (writer.pending, writer.flush_failures, writer.dropped) == (3, 1, 0)
        for n in range(3, 7):
            writer.record(request(NOW, n))
        assert (writer.pending, writer.dropped) == (5, 2)  # full: the oldest two went
        conn = await asyncpg.connect(pg.url)
        try:
            await conn.execute(f"CREATE DATABASE {name}")
        finally:
            await conn.close()
        assert await writer.flush() is True
        assert (writer.pending, writer.written) == (0, 5)
        assert await pool.run(request_ids) == {f"req-{n}" for n in range(2, 7)}
        writer.record(request(NOW, 2))  # written again (a retry whose answer was lost): no second row
        assert await writer.flush() is True
        assert await pool.run(lambda c: c.fetchval("SELECT count(*) FROM gw_requests")) == 5
    finally:
        await pool.aclose()


# --- (a) the migration from the previous schema ---------------------------------------------------


async def test_a_version_1_database_is_migrated_with_its_data_intact(db_url: str, redis_server: RedisServer) -> None:
    conn = await asyncpg.connect(db_url)
    try:
        assert await migrate(conn, MIGRATIONS[:1]) == 1
        assert await conn.fetchval("SELECT to_regclass('gw_requests')") is None
        await conn.execute("INSERT INTO gw_records (tbl, id, record) VALUES ('keys', 'h1', '{\"name\": \"ci\"}')")
        await conn.execute("INSERT INTO gw_spend_totals VALUES ('spend:team:red:2026-06', 1.25)")
        await conn.execute("INSERT INTO gw_log_seq VALUES ('audit', 1)")
        await conn.execute("INSERT INTO gw_logs (stream, seq, record) VALUES ('audit', 1, '{\"action\": \"k\"}')")
    finally:
        await conn.close()

    backend = PostgresBackend(Pool(db_url), RedisBackend(redis_server.url, socket_timeout_s=3.0))
    try:
        assert await backend.get("keys", "h1") == {"name": "ci"}  # the first call migrates
        assert await backend.read_spend(["spend:team:red:2026-06"]) == {"spend:team:red:2026-06": 1.25}
        assert [r["action"] for r in await backend.read_log("audit", 10)] == ["k"]
        assert await backend.append_log("audit", {"action": "after"}) == 2
        await write(backend.pg, [request(NOW, 1), request(NOW, 2, status=500, error_code="upstream_error")])
    finally:
        await backend.aclose()

    conn = await asyncpg.connect(db_url)
    try:
        assert await version_of(conn) == len(MIGRATIONS) == 2
        row = await conn.fetchrow("SELECT status, error_code, ts FROM gw_requests WHERE request_id = 'req-2'")
        assert row is not None
        assert (row["status"], row["error_code"], row["ts"]) == (500, "upstream_error", NOW)
        with pytest.raises(asyncpg.RaiseError, match="gw_logs is append-only"):  # the v1 trigger still holds
            await conn.execute("DELETE FROM gw_logs")
    finally:
        await conn.close()


# --- (b) detail archived, deleted, loaded back ---------------------------------------------------------


def day_records() -> list[RequestRecord]:
    """Three requests a day from 10 days before NOW to NOW (33), one of them on the last
    millisecond before the cutoff and one on the cutoff itself."""
    out = []
    n = 0
    for back in range(10, -1, -1):
        for hour in (1, 9, 23):
            out.append(request(NOW - timedelta(days=back) + timedelta(hours=hour - 12), n))
            n += 1
    cutoff = datetime(2026, 6, 8, tzinfo=UTC)
    out.append(request(cutoff - timedelta(milliseconds=1), 900))
    out.append(request(cutoff, 901))
    return out


def old(records: list[RequestRecord]) -> list[RequestRecord]:
    return [r for r in records if r.ts < datetime(2026, 6, 8, tzinfo=UTC).timestamp()]


def files_state(directory: Path) -> dict[str, tuple[str, int]]:
    return {p.name: (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns) for p in directory.iterdir()}


async def test_old_detail_is_archived_then_deleted_and_loads_back(pool: Pool, db_url: str, tmp_path: Path) -> None:
    records = day_records()
    await write(pool, records)
    archive_dir = tmp_path / "archive"
    retention = Retention(pool, detail_days=7, archive_dir=archive_dir, clock=NOW.timestamp)

    first = await retention.run()
    archived = old(records)
    assert first.cutoff == datetime(2026, 6, 8, tzinfo=UTC)
    assert [d.day for d in first.days] == ["2026-06-05", "2026-06-06", "2026-06-07"]
    assert sum(d.deleted for d in first.days) == len(archived) == 10 and first.failed == []
    assert sorted(p.name for p in archive_dir.iterdir()) == [f"requests-2026-06-0{d}.jsonl.gz" for d in (5, 6, 7)]
    conn = await asyncpg.connect(db_url)
    try:
        assert await request_ids(conn) == {r.request_id for r in records} - {r.request_id for r in archived}
        in_files = {
            row["request_id"] for p in archive_dir.iterdir() for chunk in ArchiveReader(p).chunks() for row in chunk
        }
        assert in_files == {r.request_id for r in archived}

        # a rerun finds nothing older than the cutoff: nothing changes, not even a file's time
        before = files_state(archive_dir)
        again = await retention.run()
        assert (again.days, again.failed) == ([], [])
        assert files_state(archive_dir) == before
        assert len(await request_ids(conn)) == len(records) - len(archived)

        # an interrupted run (the file renamed, the delete not committed) leaves the file and the rows:
        # the next run carries the file over, adds a row that came meanwhile, and deletes
        june6 = [r for r in archived if datetime.fromtimestamp(r.ts, UTC).date() == date(2026, 6, 6)]
        late = request(datetime(2026, 6, 6, 15, tzinfo=UTC), 500)
        await write(pool, [*june6, late])
        third = await retention.run()
        assert [(d.day, d.deleted) for d in third.days] == [("2026-06-06", len(june6) + 1)]
        file6 = archive_dir / "requests-2026-06-06.jsonl.gz"
        ids6 = [row["request_id"] for chunk in ArchiveReader(file6).chunks() for row in chunk]
        assert sorted(ids6) == sorted([r.request_id for r in june6] + ["req-500"])  # each once
        assert ArchiveReader(file6).verify().rows == len(june6) + 1
        assert not [p for p in archive_dir.iterdir() if p.name.startswith(".")]  # no temporary file left

        # loaded back (twice: the second adds nothing), a query returns the original rows
        file7 = archive_dir / "requests-2026-06-07.jsonl.gz"
        june7 = [r for r in archived if datetime.fromtimestamp(r.ts, UTC).date() == date(2026, 6, 7)]
        loaded = await load_archive(pool, file7)
        assert (loaded.day, loaded.rows, loaded.inserted) == ("2026-06-07", len(june7), len(june7))
        assert (await load_archive(pool, file7)).inserted == 0
        rows = await conn.fetch(
            "SELECT * FROM gw_requests_loaded WHERE archive = $1 ORDER BY ts, request_id", file7.name
        )
        assert [_as_record(row) for row in rows] == sorted(june7, key=lambda r: (r.ts, r.request_id))
        assert await conn.fetchval("SELECT count(*) FROM gw_requests_loaded") == len(june7)

        # a tampered archive (one status changed, its gzip rewritten) is refused by name; nothing loaded
        tampered = tmp_path / "requests-2026-06-05.jsonl.gz"
        text = gzip.decompress((archive_dir / tampered.name).read_bytes()).decode()
        assert '"status":200' in text
        tampered.write_bytes(gzip.compress(text.replace('"status":200', '"status":503', 1).encode()))
        with pytest.raises(ArchiveError, match=r"requests-2026-06-05\.jsonl\.gz: altered or damaged"):
            await load_archive(pool, tampered)
        truncated = tmp_path / "requests-truncated.jsonl.gz"
        truncated.write_bytes(gzip.compress("\n".join(text.splitlines()[:-1]).encode() + b"\n"))
        with pytest.raises(ArchiveError, match=r"requests-truncated\.jsonl\.gz: truncated"):
            await load_archive(pool, truncated)
        assert await conn.fetchval("SELECT count(*) FROM gw_requests_loaded") == len(june7)
    finally:
        await conn.close()


def _as_record(row: Any) -> RequestRecord:
    fields = dict(row)
    fields.pop("archive")
    fields["ts"] = fields["ts"].timestamp()
    return RequestRecord(**fields)


async def test_without_archive_old_days_are_deleted_only(pool: Pool, db_url: str, tmp_path: Path) -> None:
    records = day_records()
    await write(pool, records)
    result = await Retention(pool, detail_days=7, archive_dir=None, clock=NOW.timestamp).run()
    assert sum(d.deleted for d in result.days) == len(old(records)) and all(d.archive is None for d in result.days)
    conn = await asyncpg.connect(db_url)
    try:
        assert len(await request_ids(conn)) == len(records) - len(old(records))
    finally:
        await conn.close()


async def test_a_bad_archive_left_by_an_earlier_run_keeps_its_day_in_postgres(
    pool: Pool, db_url: str, tmp_path: Path
) -> None:
    records = day_records()
    await write(pool, records)
    archive_dir = tmp_path / "archive"
    archive_dir.mkdir()
    (archive_dir / "requests-2026-06-06.jsonl.gz").write_bytes(gzip.compress(b"not an archive\n"))
    result = await Retention(pool, detail_days=7, archive_dir=archive_dir, clock=NOW.timestamp).run()
    assert [d.day for d in result.days] == ["2026-06-05", "2026-06-07"]
    [(day, why)] = result.failed
    assert day == "2026-06-06" and "requests-2026-06-06.jsonl.gz: not a request archive" in why
    conn = await asyncpg.connect(db_url)
    try:
        left = await conn.fetchval("SELECT count(*) FROM gw_requests WHERE ts < '2026-06-07'::timestamptz")
        assert left == 3  # the day whose archive was not as written
    finally:
        await conn.close()


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gateway", *args], cwd=ROOT, capture_output=True, text=True, timeout=60, check=False
    )


async def test_the_commands(pool: Pool, db_url: str, tmp_path: Path) -> None:
    recent = datetime.now(UTC)
    await write(pool, [request(recent - timedelta(days=9), 1), request(recent - timedelta(days=9), 2)])
    await write(pool, [request(recent, 3)])
    archive_dir = tmp_path / "archive"
    config = tmp_path / "gateway.yaml"
    config.write_text(
        "state:\n  backend: postgres\n  url: redis://127.0.0.1:1/0\n"
        f"  postgres: {{url: '{db_url}', retention: {{archive_dir: '{archive_dir}'}}}}\n"
        "models: {a: {deployments: [{provider: openai, model: m, api_key: k}]}}\n"
    )
    done = await asyncio.to_thread(cli, "retention", "run", "--config", str(config))
    assert done.returncode == 0, done.stderr
    [archive] = list(archive_dir.iterdir())
    assert f"2 request(s) archived to {archive}" in done.stdout
    again = await asyncio.to_thread(cli, "retention", "run", "--config", str(config))
    assert (again.returncode, again.stdout.startswith("no request detail before")) == (0, True), again.stdout
    ok = await asyncio.to_thread(cli, "archive", "verify", str(archive))
    assert ok.returncode == 0 and "OK" in ok.stdout and "2 request(s)" in ok.stdout
    loaded = await asyncio.to_thread(cli, "archive", "load", str(archive), "--config", str(config))
    assert loaded.returncode == 0 and "2 row(s) added to gw_requests_loaded" in loaded.stdout, loaded.stderr
    bad = tmp_path / archive.name
    bad.write_bytes(archive.read_bytes()[:-20])  # the gzip cut short
    for args in (("verify", str(bad)), ("load", str(bad), "--config", str(config))):
        refused = await asyncio.to_thread(cli, "archive", *args)
        assert refused.returncode == 1 and f"{bad}: " in refused.stderr and "refused" in refused.stderr
    embedded = tmp_path / "embedded.yaml"
    embedded.write_text("models: {a: {deployments: [{provider: openai, model: m, api_key: k}]}}\n")
    wrong = await asyncio.to_thread(cli, "retention", "run", "--config", str(embedded))
    assert wrong.returncode == 2 and "postgres backend only" in wrong.stderr


# --- (c) a year of reports from the aggregates ---------------------------------------------------------


REPORT_CONFIG = """
budgets: {timezone: UTC}
models:
  rep-chat: {deployments: [{provider: openai, model: rep-model, api_key: k}]}
  rep-other: {deployments: [{provider: openai, model: other-model, api_key: k}]}
"""


def months_back(count: int) -> list[date]:
    """The 10th of each of the last ``count`` months up to NOW's, oldest first."""
    out = []
    year, month = NOW.year, NOW.month
    for _ in range(count):
        out.append(date(year, month, 10))
        year, month = (year, month - 1) if month > 1 else (year - 1, 12)
    return out[::-1]


async def test_a_year_of_reports_comes_from_the_aggregates_after_the_detail_is_gone(
    db_url: str, redis_server: RedisServer, tmp_path: Path
) -> None:
    settings = parse_config(REPORT_CONFIG, env={}).settings
    tz = ZoneInfo("UTC")
    backend = PostgresBackend(Pool(db_url), RedisBackend(redis_server.url, socket_timeout_s=3.0))
    try:
        expected: dict[str, tuple[int, int, float]] = {}  # month -> (requests, server errors, cost)
        records: list[RequestRecord] = []
        n = 0
        for i, day in enumerate(months_back(12)):
            month = f"{day:%Y-%m}"
            for j in range(i + 2):  # 2 in the oldest month ... 13 in this one
                at = datetime(day.year, day.month, day.day, 8 + j % 10, tzinfo=UTC)
                failed = j == 0
                rec = request(at, n, status=500 if failed else 200, alias="rep-chat" if j % 3 else "rep-other")
                if failed:
                    rec.error_code, rec.cost_usd = "upstream_error", None
                records.append(rec)
                n += 1
                req, errs, cost = expected.get(month, (0, 0, 0.0))
                expected[month] = (req + 1, errs + failed, cost + (rec.cost_usd or 0.0))
        too_old = request(NOW - timedelta(days=405), 9999)  # past reports.retention_days (400)

        stats = StatsStore(backend, tz=tz, retention_days=400, replica_id="r1", clock=NOW.timestamp)
        for rec in [*records, too_old]:
            stats.record(rec)
        assert await stats.flush()
        await write(backend.pg, [*records, too_old])
        result = await Retention(backend.pg, detail_days=7, archive_dir=tmp_path, clock=NOW.timestamp).run()
        before_cutoff = [r for r in records if r.ts < datetime(2026, 6, 8, tzinfo=UTC).timestamp()]
        assert len(before_cutoff) == len(records) - 13  # all but June 10th's
        assert sum(d.deleted for d in result.days) == len(before_cutoff) + 1  # and the one 405 days back
        conn = await asyncpg.connect(db_url)
        try:
            assert await conn.fetchval("SELECT count(*) FROM gw_requests WHERE ts < '2026-06-01'") == 0
        finally:
            await conn.close()

        # the reports read the aggregates, by another process (nothing of this one's memory)
        reader = StatsStore(backend, tz=tz, replica_id="reader", clock=NOW.timestamp)
        sources = ReportSources(
            stats=reader,
            read_spend=backend.read_spend,
            teams=KeyStore(backend, refresh_interval_s=1.0).list_teams,
            aliases=lambda: ["rep-chat", "rep-other"],
        )
        totals = [0, 0, 0.0]
        for day in months_back(12):
            report = await make_report("monthly", day, settings, sources, now=NOW)
            want = expected[f"{day:%Y-%m}"]
            got = report.total
            assert (got.requests, got.server_errors) == want[:2], day
            assert got.cost_usd == pytest.approx(want[2], rel=1e-9)
            assert sum(row.requests for row in report.by_alias) == want[0]
            totals[0] += got.requests
            totals[1] += got.server_errors
            totals[2] += got.cost_usd
        assert totals[:2] == [len(records), 12]
        assert totals[2] == pytest.approx(sum(r.cost_usd or 0.0 for r in records), rel=1e-9)
        years = sorted({int(month[:4]) for month in expected})
        assert len(years) == 2  # the twelve months span two calendar years
        for year in years:
            months = [v for m, v in expected.items() if m.startswith(f"{year}-")]
            yearly = await make_report("yearly", date(year, 6, 30), settings, sources, now=NOW)
            assert (yearly.label, yearly.start, yearly.end) == (str(year), f"{year}-01-01", f"{year}-12-31")
            counts = (yearly.total.requests, yearly.total.server_errors)
            assert counts == (sum(m[0] for m in months), sum(m[1] for m in months)), year
            assert yearly.total.cost_usd == pytest.approx(sum(m[2] for m in months), rel=1e-9)
        weekly = await make_report("weekly", months_back(12)[3], settings, sources, now=NOW)
        assert weekly.total.requests == 5  # a period of any kind inside the year
        old_day = f"{NOW.date() - timedelta(days=405):%Y-%m-%d}"
        assert await backend.scan(table_of(old_day)) == []  # aggregates are kept a year (400 days), not more
    finally:
        await backend.aclose()


# --- (d) the detail of real requests through a gateway ---------------------------------------------------


def gateway_config(mock_url: str, redis_url: str, db_url: str, workdir: Path) -> str:
    return f"""
state:
  backend: postgres
  url: '{redis_url}'
  path: '{workdir / "state.db"}'
  flush_interval_s: 0.1
  postgres: {{url: '{db_url}', retention: {{archive_dir: '{workdir / "archive"}', interval_s: 0.5}}}}
auth: {{master_key: "${{GATEWAY_MASTER_KEY}}"}}
models:
  rep-chat: {{deployments: [{{provider: openai, model: rep-model, base_url: '{mock_url}/v1', api_key: k,
    price: {{input_per_1m: 1000, output_per_1m: 2000}}}}]}}
"""


def test_requests_through_a_gateway_land_in_gw_requests_and_old_days_are_archived(
    mock: Mock, pg: PostgresServer, redis_server: RedisServer, tmp_path: Path
) -> None:
    db_url = asyncio.run(new_database(pg))
    ten_days_ago = datetime.now(UTC) - timedelta(days=10)
    asyncio.run(_write_to(db_url, [request(ten_days_ago, 1), request(ten_days_ago, 2)]))
    gw = GatewayProcess(gateway_config(mock.url, redis_server.url, db_url, tmp_path), tmp_path)
    sent: dict[str, tuple[int, str]] = {}
    try:
        with httpx.Client(base_url=gw.url, timeout=30, headers={"authorization": f"Bearer {MASTER_KEY}"}) as http:
            for i in range(4):
                body = {"model": "rep-chat", "messages": [{"role": "user", "content": f"hello {i}"}]}
                resp = http.post("/v1/chat/completions", json={**body, "stream": i == 3})
                assert resp.status_code == 200, resp.text
                sent[resp.headers["x-request-id"]] = (200, "rep-chat")
            resp = http.post(
                "/v1/chat/completions", json={"model": "nope", "messages": [{"role": "user", "content": "x"}]}
            )
            assert resp.status_code == 404
            sent[resp.headers["x-request-id"]] = (404, "unknown")  # the access log's alias of an unknown model

        def rows() -> list[Any]:
            return asyncio.run(_fetch(db_url, "SELECT * FROM gw_requests ORDER BY ts"))

        # the gateway's retention job (every 0.5 s here) archives the old day and deletes it
        archive = tmp_path / "archive" / f"requests-{ten_days_ago:%Y-%m-%d}.jsonl.gz"
        assert wait_until(archive.exists, timeout=10, interval=0.1), gw.log()
        assert ArchiveReader(archive).verify().rows == 2

        assert wait_until(lambda: len(rows()) == len(sent), timeout=10, interval=0.2), gw.log()
        found = {row["request_id"]: row for row in rows()}
        assert {rid: (row["status"], row["alias"]) for rid, row in found.items()} == sent
        answered = [row for row in found.values() if row["status"] == 200]
        assert all(row["prompt_tokens"] and row["cost_usd"] and row["provider"] == "openai" for row in answered)
        assert sorted(row["stream"] for row in answered) == [False, False, False, True]
        assert next(row for row in found.values() if row["status"] == 404)["error_code"] == "model_not_found"
        assert set(next(iter(found.values())).keys()) == set(COLUMN_NAMES)  # no prompt or answer column
    finally:
        gw.stop()


async def _write_to(url: str, records: list[RequestRecord]) -> None:
    pool = Pool(url)
    try:
        await write(pool, records)
    finally:
        await pool.aclose()


async def _fetch(url: str, sql: str) -> list[Any]:
    conn = await asyncpg.connect(url)
    try:
        return list(await conn.fetch(sql))
    finally:
        await conn.close()
