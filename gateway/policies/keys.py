"""Client keys ("virtual keys") and teams, kept in the state backend.

A key is ``sk-gw-`` followed by 40 random URL-safe characters (240 bits),
shown once at creation and stored only as its SHA-256. Records live in three
tables: ``keys`` (by hash: what a request looks up), ``key_ids`` (id -> hash,
for the admin API) and ``teams`` (by team id).

Each replica caches lookups for ``refresh_interval_s`` (1 s by default), so a
revoked, expired or edited key stops working on every replica within that
time, while a busy key costs one backend read per replica per interval.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Annotated, Any

import orjson
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError

from gateway.config.loader import format_loc
from gateway.errors import InvalidRequest, NotFound
from gateway.state.base import BackendUnavailable, Record, StateBackend
from gateway.state.lru import Lru

KEY_PREFIX = "sk-gw-"
NAME = Annotated[str, Field(min_length=1, max_length=200, pattern=r"^[^\x00-\x1f]+$")]
TEAM_ID = Annotated[str, Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9._-]+$")]
Positive = Annotated[int, Field(ge=1)] | None
Usd = Annotated[float, Field(gt=0)] | None
CACHED_MAX = 100_000
"""Lookups kept per table (least recently used evicted; unknown keys are cached too)."""


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class _Allowance(_Body):
    """What keys and teams both carry: allowed aliases, limits and budgets."""

    models: list[str] | None = None
    rpm: Positive = None
    tpm: Positive = None
    max_concurrent: Positive = None
    budget_daily_usd: Usd = None
    budget_monthly_usd: Usd = None
    priority: Annotated[str, Field(pattern=r"^[a-z][a-z0-9_-]{0,31}$")] | None = None
    """The admission queue's priority class (``queue.classes``); a key's wins over its team's."""


class KeyFields(_Allowance):
    """What an admin may set on a key (POST takes ``name``; PATCH any subset)."""

    name: NAME
    team: TEAM_ID | None = None
    owner: NAME | None = None
    expires_at: AwareDatetime | None = None
    enabled: bool = True


class TeamFields(_Allowance):
    id: TEAM_ID
    name: NAME | None = None
    weight: Annotated[float, Field(gt=0, le=1000)] | None = None
    """The team's share against other teams waiting in the same priority class (default 1)."""


def parse_body(model: type[_Body], body: Any) -> dict[str, Any]:
    """Validate an admin request body; InvalidRequest naming every bad field.
    (A PATCH validates the stored fields merged with the changes.)"""
    if not isinstance(body, dict):
        raise InvalidRequest("the request body must be a JSON object", param="body", code="invalid_json")
    try:
        # JSON-mode strict validation: no coercion of JSON types (true is not 1,
        # "10" is not 10), while ISO 8601 strings still parse as datetimes.
        return model.model_validate_json(orjson.dumps(body), strict=True).model_dump(mode="json")
    except ValidationError as exc:
        errors = exc.errors(include_url=False)
        problems = [
            f"{format_loc(tuple(e['loc']))}: {'unknown field' if e['type'] == 'extra_forbidden' else e['msg']}"
            for e in errors
        ]
        raise InvalidRequest(
            "invalid field(s): " + "; ".join(problems), param=format_loc(tuple(errors[0]["loc"])), code="invalid_field"
        ) from None


def editable(model: type[_Body], record: Record) -> dict[str, Any]:
    """The fields of a stored record that ``model`` lets an admin set."""
    return {k: v for k, v in record.items() if k in model.model_fields}


def key_digest(token: bytes | str) -> bytes:
    """A key's SHA-256: what static keys are configured by (hex) and the key store files keys
    under (:func:`hash_key`); the key itself is never kept."""
    raw = token.encode() if isinstance(token, str) else token
    return hashlib.sha256(raw).digest()


def hash_key(token: bytes | str) -> str:
    return key_digest(token).hex()


def new_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(30)


def _hint(token: str) -> str:
    """Enough of a key to recognise it in a listing, not to use it."""
    return token[: len(KEY_PREFIX) + 4] + "..." + token[-4:]


def public(record: Record) -> Record:
    """A key record as the admin API shows it: never the hash."""
    return {k: v for k, v in record.items() if k != "hash"}


class KeyStore:
    """Keys and teams over a state backend, with a short per-replica cache."""

    def __init__(
        self, backend: StateBackend, *, refresh_interval_s: float = 1.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._backend = backend
        self._ttl = refresh_interval_s
        self._clock = clock
        self._by_hash: Lru[str, tuple[float, Record | None]] = Lru(CACHED_MAX)
        self._teams: Lru[str, tuple[float, Record | None]] = Lru(CACHED_MAX)

    # --- request path -------------------------------------------------------

    async def lookup(self, key_hash: str) -> Record | None:
        """The key record for a hash (enabled or not), cached for the refresh
        interval. While the backend is unreachable a key seen before is served
        from the cache; otherwise BackendUnavailable propagates."""
        return await self._cached(self._by_hash, "keys", key_hash)

    async def team(self, team_id: str) -> Record | None:
        return await self._cached(self._teams, "teams", team_id)

    async def _cached(self, cache: Lru[str, tuple[float, Record | None]], table: str, id: str) -> Record | None:
        now = self._clock()
        hit = cache.get(id)
        if hit is not None and now - hit[0] < self._ttl:
            return hit[1]
        try:
            record = await self._backend.get(table, id)
        except BackendUnavailable:
            if hit is not None and hit[1] is not None:
                return hit[1]
            raise
        cache.put(id, (now, record))
        return record

    # --- admin --------------------------------------------------------------

    async def create(self, fields: dict[str, Any]) -> tuple[Record, str]:
        token = new_key()
        record = {
            "id": "key_" + secrets.token_hex(8),
            **fields,
            "key_hint": _hint(token),
            "hash": hash_key(token),
            "created_at": _now_iso(),
            "revoked_at": None,
        }
        await self._backend.put("keys", record["hash"], record)
        await self._backend.put("key_ids", record["id"], {"id": record["id"], "hash": record["hash"]})
        return record, token

    async def get(self, key_id: str) -> Record:
        ref = await self._backend.get("key_ids", key_id)
        record = await self._backend.get("keys", ref["hash"]) if ref else None
        if record is None:
            raise NotFound(f"no key with id {key_id!r}", code="key_not_found", param="id")
        return record

    async def all(self) -> list[Record]:
        return sorted(await self._backend.scan("keys"), key=lambda r: str(r.get("created_at", "")))

    async def update(self, key_id: str, changes: dict[str, Any]) -> Record:
        record = {**await self.get(key_id), **changes}
        await self._backend.put("keys", record["hash"], record)
        self._by_hash.pop(record["hash"])
        return record

    async def revoke(self, key_id: str) -> Record:
        return await self.update(key_id, {"enabled": False, "revoked_at": _now_iso()})

    async def rotate(self, key_id: str) -> tuple[Record, str]:
        """A new secret for the same key id; the old secret stops working at once."""
        old = await self.get(key_id)
        token = new_key()
        record = {**old, "hash": hash_key(token), "key_hint": _hint(token), "rotated_at": _now_iso()}
        await self._backend.put("keys", record["hash"], record)
        await self._backend.put("key_ids", key_id, {"id": key_id, "hash": record["hash"]})
        await self._backend.delete("keys", old["hash"])
        self._by_hash.pop(old["hash"])
        return record, token

    async def put_team(self, fields: dict[str, Any]) -> Record:
        record = {**fields, "updated_at": _now_iso()}
        await self._backend.put("teams", record["id"], record)
        self._teams.pop(record["id"])
        return record

    async def get_team(self, team_id: str) -> Record:
        record = await self._backend.get("teams", team_id)
        if record is None:
            raise NotFound(f"no team {team_id!r}", code="team_not_found", param="id")
        return record

    async def list_teams(self) -> list[Record]:
        return sorted(await self._backend.scan("teams"), key=lambda r: str(r["id"]))

    async def delete_team(self, team_id: str) -> None:
        if not await self._backend.delete("teams", team_id):
            raise NotFound(f"no team {team_id!r}", code="team_not_found", param="id")
        self._teams.pop(team_id)


def key_state(record: Record, now: datetime | None = None) -> str | None:
    """Why a key may not be used ("revoked", "disabled", "expired"), or None."""
    if record.get("revoked_at"):
        return "revoked"
    if not record.get("enabled", True):
        return "disabled"
    expires = record.get("expires_at")
    if expires and datetime.fromisoformat(expires) <= (now or datetime.now(UTC)):
        return "expired"
    return None


def _now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")
