"""gateway.admin.audit_query: the filters of GET /admin/audit (actor exact, action
exact or dotted prefix, since/until as ISO 8601 or epoch seconds), their 400s, and
paging through a real embedded backend's log with them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from gateway.admin import audit_query
from gateway.admin.access import Actor
from gateway.admin.audit import AuditLog
from gateway.admin.audit_query import AuditQuery, parse_query, read_page
from gateway.errors import InvalidRequest
from gateway.security.roles import Role
from gateway.state.base import Record
from gateway.state.embedded import EmbeddedBackend

T0 = 1_800_000_000.0  # 2027-01-15T08:00:00Z


@pytest.mark.parametrize(
    ("params", "param"),
    [
        ({"limit": "0"}, "limit"),
        ({"limit": "1001"}, "limit"),
        ({"limit": "ten"}, "limit"),
        ({"before": "-3"}, "before"),
        ({"actor": ""}, "actor"),
        ({"actor": " alice"}, "actor"),
        ({"actor": "a" * 201}, "actor"),
        ({"action": ""}, "action"),
        ({"action": "keys create"}, "action"),
        ({"action": "keys.*"}, "action"),
        ({"since": "yesterday"}, "since"),
        ({"since": "2026-13-01"}, "since"),
        ({"until": "1e9"}, "until"),
        ({"until": "-5"}, "until"),
        ({"since": "2027-01-15T09:00:00Z", "until": "2027-01-15T08:00:00Z"}, "until"),
    ],
)
def test_bad_values_are_400_naming_the_parameter(params: dict[str, str], param: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        parse_query(params)
    err = caught.value
    assert (err.http_status, err.param, err.code) == (400, param, "invalid_field")
    assert err.to_body()["error"]["param"] == param


def test_values_are_parsed() -> None:
    assert parse_query({}) == AuditQuery(limit=100)
    q = parse_query({"limit": "5", "before": "9", "actor": "alice", "action": "keys.", "since": str(int(T0))})
    assert q == AuditQuery(limit=5, before=9, actor="alice", action="keys", since=T0)
    for text in ("2027-01-15T08:00:00Z", "2027-01-15T08:00:00+00:00", "2027-01-15T09:00:00+01:00", "2027-01-15T08:00"):
        assert parse_query({"until": text}).until == T0, text
    assert parse_query({"since": "2027-01-15"}).since == T0 - 8 * 3600
    assert parse_query({"since": "1800000000.25"}).since == T0 + 0.25


def test_matching() -> None:
    record: Record = {"actor": "alice", "action": "keys.create", "ts": T0}
    assert AuditQuery(actor="alice").matches(record) and not AuditQuery(actor="Alice").matches(record)
    assert not AuditQuery(actor="ali").matches(record)  # exact, not a substring
    for action, hit in (("keys", True), ("keys.create", True), ("keys.cr", False), ("key", False), ("teams", False)):
        assert AuditQuery(action=action).matches(record) is hit, action
    assert AuditQuery(since=T0, until=T0).matches(record)  # both bounds inclusive
    assert not AuditQuery(since=T0 + 0.001).matches(record) and not AuditQuery(until=T0 - 0.001).matches(record)
    assert not AuditQuery(since=0).matches({"actor": "alice"})  # no ts: outside any time range


async def _log(tmp_path: Path) -> tuple[EmbeddedBackend, AuditLog, list[Record]]:
    """30 records a minute apart: alice and bob alternating keys.* and teams.* actions."""
    backend = EmbeddedBackend(str(tmp_path / "gw.db"))
    now = [T0]
    log = AuditLog(backend, clock=lambda: now[0])
    for i in range(30):
        now[0] = T0 + 60 * i
        who = Actor("alice" if i % 2 else "bob", Role.admin, "token")
        await log.write(who, ("keys.create", "teams.update", "keys.rotate")[i % 3], f"x/{i}")
    return backend, log, await log.read(1000)


async def _all_pages(log: AuditLog, params: dict[str, str]) -> tuple[list[Record], int]:
    rows: list[Record] = []
    before: int | None = None
    for pages in range(1, 50):
        query = parse_query({**params, **({"before": str(before)} if before else {})})
        page, before = await read_page(log.read, query)
        assert len(page) <= query.limit
        rows += page
        if before is None:
            return rows, pages
    raise AssertionError("paging did not end")


@pytest.mark.parametrize(
    "params",
    [
        {"actor": "alice"},
        {"action": "keys"},
        {"action": "keys.rotate", "actor": "bob"},
        {"since": str(T0 + 600), "until": "2027-01-15T08:20:00Z"},
        {"actor": "nobody"},
    ],
)
async def test_pages_of_matches_are_the_filtered_log(
    tmp_path: Path, params: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(audit_query, "CHUNK", 4)  # small reads, so pages span several of them
    backend, log, everything = await _log(tmp_path)
    query = parse_query(params)
    expected = [r for r in everything if query.matches(r)]
    rows, _ = await _all_pages(log, {**params, "limit": "3"})
    assert [r["seq"] for r in rows] == [r["seq"] for r in expected]
    if params == {"action": "keys"}:
        assert {r["action"] for r in rows} == {"keys.create", "keys.rotate"} and len(rows) == 20
    if "since" in params:
        assert [r["target"] for r in rows] == [f"x/{i}" for i in range(20, 9, -1)]
    await backend.aclose()


async def test_unfiltered_paging_is_unchanged(tmp_path: Path) -> None:
    backend, log, everything = await _log(tmp_path)
    rows, pages = await _all_pages(log, {"limit": "10"})
    assert rows == everything and pages == 4  # three full pages, then an empty one
    await backend.aclose()


async def test_a_request_reads_at_most_max_scan_records(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(audit_query, "CHUNK", 4)
    monkeypatch.setattr(audit_query, "MAX_SCAN", 10)
    backend, log, everything = await _log(tmp_path)
    read: list[int] = []

    async def counted(limit: int, before: int | None = None) -> list[Record]:
        rows = await log.read(limit, before)
        read.append(len(rows))
        return rows

    page, cursor = await read_page(counted, parse_query({"actor": "nobody"}))
    assert page == [] and sum(read) == 10 and cursor == everything[9]["seq"]  # go on from there
    page, cursor = await read_page(counted, parse_query({"actor": "nobody", "before": str(cursor)}))
    assert page == [] and sum(read) == 20 and cursor == everything[19]["seq"]
    page, cursor = await read_page(counted, parse_query({"actor": "nobody", "before": str(cursor)}))
    assert page == [] and sum(read) == 30 and cursor is None  # the end of the log
    await backend.aclose()


async def test_reading_stops_past_since(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(audit_query, "CHUNK", 2)
    backend, log, _ = await _log(tmp_path)
    read: list[Any] = []

    async def counted(limit: int, before: int | None = None) -> list[Record]:
        rows = await log.read(limit, before)
        read.extend(rows)
        return rows

    page, cursor = await read_page(counted, parse_query({"since": str(T0 + 60 * 25)}))
    assert [r["target"] for r in page] == [f"x/{i}" for i in range(29, 24, -1)] and cursor is None
    # records 29..25 match; 24 is within the clock slack (60 s); 23 is past it: the last one read
    assert [r["target"] for r in read] == [f"x/{i}" for i in range(29, 21, -1)]
    await backend.aclose()
