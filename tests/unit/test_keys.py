"""gateway.policies.keys: key format, hashing, the store over the embedded
backend (lookup cache, stale reads in an outage, rotate, revoke), key_state
and the admin body parser."""

from __future__ import annotations

import base64
import hashlib
import re
import sqlite3
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import orjson
import pytest

from gateway.errors import InvalidRequest, NotFound
from gateway.policies.keys import (
    KEY_PREFIX,
    KeyFields,
    KeyStore,
    TeamFields,
    editable,
    hash_key,
    key_state,
    new_key,
    parse_body,
    public,
)
from gateway.state.base import BackendUnavailable, Record
from tests.unit.fixtures import Clock, FlakyBackend

KEY_RE = re.compile(r"^sk-gw-[A-Za-z0-9_-]{40}$")


@pytest.fixture
async def backend(tmp_path: Path) -> AsyncIterator[FlakyBackend]:
    b = FlakyBackend(str(tmp_path / "state" / "gateway.db"))
    yield b
    await b.aclose()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def store(backend: FlakyBackend, clock: Clock) -> KeyStore:
    return KeyStore(backend, refresh_interval_s=5.0, clock=clock)


async def found(store: KeyStore, key_hash: str) -> Record:
    record = await store.lookup(key_hash)
    assert record is not None
    return record


def _all_cells(db: Path) -> list[str]:
    """Every value of every column of every table of the SQLite file, as text."""
    out: list[str] = []
    with sqlite3.connect(db) as conn:
        tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        assert "records" in tables
        for table in tables:
            for row in conn.execute(f'SELECT * FROM "{table}"'):  # names from sqlite_master
                out.extend(str(cell) for cell in row)
    conn.close()
    return out


# --- format and hashing ---------------------------------------------------------------------------


def test_new_key_format_and_entropy() -> None:
    keys = [new_key() for _ in range(1000)]
    for key in keys:
        assert key.startswith(KEY_PREFIX)
        assert len(key) == len(KEY_PREFIX) + 40
        assert KEY_RE.match(key), key
    assert len(set(keys)) == 1000
    # 40 URL-safe base64 characters are exactly 30 random bytes (240 bits): no padding, all decodable
    assert all(len(base64.urlsafe_b64decode(k[len(KEY_PREFIX) :] + "==")) == 30 for k in keys[:50])
    # the random part is not a counter: the characters vary at every position
    assert all(len({k[len(KEY_PREFIX) + i] for k in keys}) > 20 for i in range(40))


def test_hash_key_is_sha256_hex_of_str_and_bytes() -> None:
    token = "sk-gw-" + "a" * 40
    expected = hashlib.sha256(token.encode()).hexdigest()
    assert hash_key(token) == expected
    assert hash_key(token.encode()) == expected
    assert hash_key("x") != hash_key("y")


def test_public_hides_only_the_hash() -> None:
    record: Record = {"id": "key_1", "hash": "ab" * 32, "name": "n", "key_hint": "sk-gw-abcd...wxyz"}
    shown = public(record)
    assert "hash" not in shown
    assert shown == {"id": "key_1", "name": "n", "key_hint": "sk-gw-abcd...wxyz"}
    assert record["hash"] == "ab" * 32  # the stored record is not mutated


# --- the store --------------------------------------------------------------------------------------


async def test_create_stores_only_the_sha256(store: KeyStore, backend: FlakyBackend) -> None:
    record, token = await store.create({"name": "ci", "rpm": 10})
    assert KEY_RE.match(token)
    assert record["hash"] == hash_key(token)
    assert record["id"].startswith("key_")
    assert record["revoked_at"] is None
    assert record["name"] == "ci" and record["rpm"] == 10
    hint = record["key_hint"]
    assert hint == token[:10] + "..." + token[-4:]
    assert token not in hint
    assert datetime.fromisoformat(record["created_at"]).tzinfo is not None

    _, token2 = await store.rotate(record["id"])
    assert token2 != token

    # the backend was never handed the plaintext: not in any record it was given ...
    for t in (token, token2):
        assert all(t not in orjson.dumps(w).decode() for w in backend.written)
        assert all(t[len(KEY_PREFIX) :] not in orjson.dumps(w).decode() for w in backend.written)
    # ... and not anywhere in the SQLite file (every table, every column)
    cells = _all_cells(Path(backend.path))
    assert any(hash_key(token2) in c for c in cells)
    for t in (token, token2):
        assert not any(t[len(KEY_PREFIX) :] in c for c in cells)
    # nor in the raw bytes of the database files (WAL included)
    for f in Path(backend.path).parent.iterdir():
        raw = f.read_bytes()
        assert token.encode() not in raw and token2.encode() not in raw


async def test_get_and_all(store: KeyStore) -> None:
    a, _ = await store.create({"name": "a"})
    b, _ = await store.create({"name": "b"})
    assert (await store.get(a["id"]))["name"] == "a"
    assert {r["id"] for r in await store.all()} == {a["id"], b["id"]}
    with pytest.raises(NotFound) as err:
        await store.get("key_missing")
    assert err.value.code == "key_not_found" and err.value.param == "id" and err.value.http_status == 404


async def test_lookup_cache_honours_refresh_interval(store: KeyStore, backend: FlakyBackend, clock: Clock) -> None:
    record, token = await store.create({"name": "a", "rpm": 1})
    h = hash_key(token)
    assert (await store.lookup(h)) == record
    # an edit straight in the backend (another replica's) ...
    await backend.put("keys", h, {**record, "rpm": 99})
    clock.now += 4.999
    assert (await found(store, h))["rpm"] == 1  # ... is not seen within the interval
    clock.now += 0.001
    assert (await found(store, h))["rpm"] == 99  # ... and is seen once it has passed
    reads = backend.gets
    assert (await found(store, h))["rpm"] == 99
    assert backend.gets == reads  # cached again: no backend read


async def test_unknown_key_is_cached_for_the_interval(store: KeyStore, backend: FlakyBackend, clock: Clock) -> None:
    h = hash_key("sk-gw-unknown")
    assert await store.lookup(h) is None
    await backend.put("keys", h, {"id": "key_x", "hash": h, "name": "x"})
    assert await store.lookup(h) is None
    clock.now += 5.0
    assert (await store.lookup(h)) == {"id": "key_x", "hash": h, "name": "x"}


async def test_stale_record_served_while_backend_down(store: KeyStore, backend: FlakyBackend, clock: Clock) -> None:
    record, token = await store.create({"name": "a"})
    h = hash_key(token)
    assert await store.lookup(h) == record
    backend.down = True
    clock.now += 60.0  # long past the interval
    reads = backend.gets
    assert await store.lookup(h) == record  # stale but served
    assert backend.gets == reads + 1  # the backend was tried
    # a key never seen: the outage propagates
    with pytest.raises(BackendUnavailable):
        await store.lookup(hash_key("sk-gw-never-seen"))
    # back up: fresh reads again
    backend.down = False
    await backend.put("keys", h, {**record, "name": "renamed"})
    assert (await found(store, h))["name"] == "renamed"


async def test_known_unknown_key_is_not_served_from_cache_in_outage(
    store: KeyStore, backend: FlakyBackend, clock: Clock
) -> None:
    h = hash_key("sk-gw-nope")
    assert await store.lookup(h) is None
    backend.down = True
    assert await store.lookup(h) is None  # within the interval: the cached answer
    clock.now += 5.0
    with pytest.raises(BackendUnavailable):  # expired negative entry: never admitted, the outage shows
        await store.lookup(h)


async def test_team_lookup_cached_and_stale(store: KeyStore, backend: FlakyBackend, clock: Clock) -> None:
    await store.put_team({"id": "t1", "models": ["chat"]})
    team = await store.team("t1")
    assert team is not None and team["models"] == ["chat"]
    await backend.put("teams", "t1", {"id": "t1", "models": []})
    assert (await store.team("t1")) == team
    backend.down = True
    clock.now += 10
    assert (await store.team("t1")) == team
    with pytest.raises(BackendUnavailable):
        await store.team("t2")


async def test_update_is_seen_at_once_on_this_replica(store: KeyStore) -> None:
    record, token = await store.create({"name": "a", "rpm": 1})
    h = hash_key(token)
    assert (await found(store, h))["rpm"] == 1
    updated = await store.update(record["id"], {"rpm": 7})
    assert updated["rpm"] == 7 and updated["hash"] == h and updated["id"] == record["id"]
    assert (await found(store, h))["rpm"] == 7  # the local cache was dropped


async def test_rotate_removes_old_hash_and_keeps_id(store: KeyStore, backend: FlakyBackend) -> None:
    record, old = await store.create({"name": "a", "team": None, "rpm": 3})
    assert await store.lookup(hash_key(old)) is not None  # cached
    rotated, new = await store.rotate(record["id"])
    assert new != old and KEY_RE.match(new)
    assert rotated["id"] == record["id"]
    assert rotated["hash"] == hash_key(new)
    assert rotated["key_hint"] == new[:10] + "..." + new[-4:]
    assert rotated["rpm"] == 3 and rotated["name"] == "a" and rotated["created_at"] == record["created_at"]
    assert "rotated_at" in rotated
    assert await backend.get("keys", hash_key(old)) is None
    assert await store.lookup(hash_key(old)) is None  # at once, despite the cached entry
    assert (await found(store, hash_key(new)))["id"] == record["id"]
    assert await backend.get("key_ids", record["id"]) == {"id": record["id"], "hash": hash_key(new)}
    assert (await store.get(record["id"]))["hash"] == hash_key(new)
    assert [r["id"] for r in await store.all()] == [record["id"]]  # no orphan record


async def test_revoke_marks_and_disables(store: KeyStore) -> None:
    record, token = await store.create({"name": "a"})
    assert key_state(record) is None
    assert (await store.lookup(hash_key(token))) is not None
    revoked = await store.revoke(record["id"])
    assert revoked["enabled"] is False
    revoked_at = datetime.fromisoformat(revoked["revoked_at"])
    assert revoked_at.tzinfo is not None
    assert abs((datetime.now(UTC) - revoked_at).total_seconds()) < 60
    seen = await store.lookup(hash_key(token))
    assert seen is not None and key_state(seen) == "revoked"
    assert (await store.get(record["id"]))["revoked_at"] == revoked["revoked_at"]  # kept for audit


async def test_teams_crud(store: KeyStore) -> None:
    saved = await store.put_team({"id": "t1", "name": "Team 1"})
    assert saved["id"] == "t1" and "updated_at" in saved
    assert (await store.get_team("t1"))["name"] == "Team 1"
    await store.put_team({"id": "a0"})
    assert [t["id"] for t in await store.list_teams()] == ["a0", "t1"]
    await store.delete_team("t1")
    assert await store.team("t1") is None
    with pytest.raises(NotFound) as err:
        await store.get_team("t1")
    assert err.value.code == "team_not_found"
    with pytest.raises(NotFound):
        await store.delete_team("t1")


async def test_delete_team_drops_cached_team(store: KeyStore) -> None:
    await store.put_team({"id": "t1"})
    assert await store.team("t1") is not None
    await store.delete_team("t1")
    assert await store.team("t1") is None


# --- key_state -----------------------------------------------------------------------------------

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("record", "state"),
    [
        ({}, None),
        ({"enabled": True, "revoked_at": None, "expires_at": None}, None),
        ({"revoked_at": "2026-11-01T00:00:00+00:00", "enabled": False}, "revoked"),
        ({"revoked_at": "2026-11-01T00:00:00+00:00", "enabled": True}, "revoked"),
        ({"enabled": False}, "disabled"),
        ({"enabled": False, "expires_at": "2020-01-01T00:00:00Z"}, "disabled"),
        ({"expires_at": "2026-11-26T11:59:59Z"}, "expired"),
        ({"expires_at": "2026-11-26T12:00:00Z"}, "expired"),  # expiry instant itself
        ({"expires_at": "2026-11-26T12:00:01Z"}, None),
        # another offset, same instant: 21:00 in Seoul is 12:00 UTC
        ({"expires_at": "2026-11-26T21:00:00+09:00"}, "expired"),
        ({"expires_at": "2026-11-26T21:00:01+09:00"}, None),
        ({"expires_at": "2026-11-26T04:00:01-08:00"}, None),
    ],
)
def test_key_state(record: Record, state: str | None) -> None:
    assert key_state(record, NOW) == state


def test_key_state_default_now_is_aware() -> None:
    past = (datetime.now(UTC) - timedelta(minutes=1)).isoformat()
    future = (datetime.now(timezone(timedelta(hours=5))) + timedelta(hours=1)).isoformat()
    assert key_state({"expires_at": past}) == "expired"
    assert key_state({"expires_at": future}) is None


# --- parse_body ----------------------------------------------------------------------------------


def _invalid(model: type[KeyFields] | type[TeamFields], body: Any) -> InvalidRequest:
    with pytest.raises(InvalidRequest) as err:
        parse_body(model, body)
    assert err.value.http_status == 400
    return err.value


def test_parse_body_valid_fills_defaults() -> None:
    fields = parse_body(KeyFields, {"name": "ci", "rpm": 5, "expires_at": "2030-01-01T09:00:00+09:00"})
    assert fields["name"] == "ci" and fields["rpm"] == 5
    assert fields["enabled"] is True and fields["team"] is None and fields["models"] is None
    assert datetime.fromisoformat(fields["expires_at"]) == datetime(2030, 1, 1, tzinfo=UTC)
    assert key_state(fields, datetime(2029, 12, 31, 23, 59, tzinfo=UTC)) is None
    assert parse_body(TeamFields, {"id": "t-1.a_b"})["id"] == "t-1.a_b"


@pytest.mark.parametrize(
    ("body", "param", "says"),
    [
        ({"name": "a", "colour": "red"}, "colour", "colour: unknown field"),
        ({"name": "a", "models": "chat"}, "models", "models: "),
        ({"name": 5}, "name", "name: "),
        ({"name": "a", "rpm": 0}, "rpm", "rpm: "),
        ({"name": "a", "tpm": -1}, "tpm", "tpm: "),
        ({"name": "a", "max_concurrent": 0}, "max_concurrent", "max_concurrent: "),
        ({"name": "a", "budget_daily_usd": 0}, "budget_daily_usd", "budget_daily_usd: "),
        ({"name": "a", "rpm": 1.5}, "rpm", "rpm: "),
        ({"name": "a", "expires_at": "2030-01-01T00:00:00"}, "expires_at", "expires_at: Input should have timezone"),
        ({"name": "a", "team": "a b"}, "team", "team: "),
        ({"name": ""}, "name", "name: "),
        ({"rpm": 1}, "name", "name: Field required"),
        ({"name": "a", "models": ["chat", 3]}, "models[1]", "models[1]: "),
    ],
)
def test_parse_body_names_the_bad_field(body: Any, param: str, says: str) -> None:
    err = _invalid(KeyFields, body)
    assert err.param == param
    assert err.code == "invalid_field"
    assert says in err.message


def test_parse_body_names_every_bad_field() -> None:
    err = _invalid(KeyFields, {"name": "a", "rpm": 0, "tpm": "lots", "expires_at": "2030-01-01T00:00:00", "x": 1})
    assert err.code == "invalid_field"
    for part in ("rpm: ", "tpm: ", "expires_at: ", "x: unknown field"):
        assert part in err.message
    assert err.param in {"rpm", "tpm", "expires_at", "x"}


@pytest.mark.parametrize("body", [None, [], "name", 3])
def test_parse_body_not_an_object(body: Any) -> None:
    err = _invalid(KeyFields, body)
    assert err.param == "body" and err.code == "invalid_json"


def test_parse_body_team_fields() -> None:
    err = _invalid(TeamFields, {"name": "t"})
    assert err.param == "id"
    err = _invalid(TeamFields, {"id": "t", "budget_monthly_usd": -5})
    assert err.param == "budget_monthly_usd"
    err = _invalid(TeamFields, {"id": "t", "enabled": True})  # keys only
    assert err.param == "enabled" and "unknown field" in err.message


@pytest.mark.parametrize(
    "body",
    [
        {"name": "a", "rpm": True},  # a JSON boolean is not a count
        {"name": "a", "rpm": "10"},  # nor is a string
        {"name": "a", "enabled": "yes"},  # a string is not a boolean
    ],
)
def test_parse_body_refuses_wrong_json_types(body: Any) -> None:
    """KeyFields is declared strict: a wrong JSON type is a 400 naming the
    field, not silently coerced (``"rpm": true`` must not become rpm 1)."""
    field = next(k for k in body if k != "name")
    err = _invalid(KeyFields, body)
    assert err.param == field


def test_editable_keeps_only_model_fields() -> None:
    record: Record = {"id": "key_1", "hash": "h", "name": "n", "rpm": 3, "created_at": "x", "revoked_at": None}
    assert editable(KeyFields, record) == {"name": "n", "rpm": 3}
    assert editable(TeamFields, {"id": "t", "updated_at": "x"}) == {"id": "t"}
