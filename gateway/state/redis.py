"""The Redis state backend: standalone, Sentinel or Cluster, so every replica
shares limits, cache, spend and key revocation.

It is three pieces: the connection (``redis_client.py``: the URL, timeouts,
errors), the rate-limit windows and concurrency slots (``redis_windows.py``:
two Lua scripts batched per event-loop turn, sent by one of the transports of
``script_transport.py``), and here the records, spend, cache, logs and the
``limits`` storage.

Keys (all under ``gw:``; the ``{...}`` part is a Cluster hash tag, so every
multi-key command below stays on one slot):

- records: ``gw:rec:{<table>}:<id>`` (a JSON string) plus the set index
  ``gw:idx:{<table>}``; put/delete update both in one MULTI;
- spend: ``gw:spend:{s}:<key>``, INCRBYFLOAT in one MULTI, read with MGET;
  the ledger's batches (applied once each) and the budget reservations:
  ``redis_spend.py``;
- cache: ``gw:cache:<key>`` (SET PX / GET);
- blobs: ``gw:blob:<key>`` (SET PX / GET / DEL): a namespace of its own, so
  a blob and a cache entry of the same key never meet;
- rate-limit windows and concurrency slots: ``gw:win:{w}:...``
  (``redis_windows.py``); the other strategies' ``gw:limits:...`` keys are
  written by the ``limits`` library;
- logs: ``gw:log:{<stream>}`` and its counter ``gw:logseq:{<stream>}``.

Failures: every Redis error (connection refused, timeout, ``ResponseError``,
``ClusterDown``...) becomes :class:`BackendUnavailable`. Socket and connect
timeouts are ``socket_timeout_s`` and a timeout is not retried (a dropped
connection is, once, at once), so a hung or unreachable Redis costs a call
about ``socket_timeout_s``; a hard deadline of ``4 * socket_timeout_s`` per
call bounds every other path (Sentinel discovery, Cluster re-discovery).
The connection pool reconnects by itself when Redis comes back. A request
holds at most one connection at a time, so ``max_connections`` (per node)
should be at least the gateway's concurrency; beyond it a call fails with
:class:`BackendUnavailable` instead of queueing.

Rate limits: one client library. ``limits`` 5.8 can drive redis-py instead of
its default coredis (``implementation="redispy"``), so coredis is not needed
(``limits`` imports it when installed, but never uses it here). For standalone and
Sentinel the ``limits`` storage is built on *this* backend's connection pool
(its documented ``connection_pool`` option), so windows share our timeouts,
retry policy, auth and Sentinel failover handling, and are always read from the
master (``limits``' own Sentinel mode would read windows from replicas). For
Cluster, ``limits`` builds its own ``RedisCluster`` from the same URL and
timeouts. The storage is created with ``wrap_exceptions=True`` and its base
exceptions widened to every client failure (``redis_client.REDIS_ERRORS``: a
closed transport's ``RuntimeError`` included): when Redis is down, a limiter
call raises :class:`limits.errors.StorageError` (the library's own error, not
:class:`BackendUnavailable`); the rate-limit policy must treat both as
"backend unavailable".
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any, cast

import orjson
from limits.aio.storage import RedisClusterStorage, RedisStorage, Storage
from redis.asyncio import RedisCluster

from gateway.state.base import Record, SlotSpec, SpendBatch, WindowAdjust, WindowHit, WindowSpec
from gateway.state.redis_blobs import RedisBlobs
from gateway.state.redis_client import REDIS_ERRORS, RedisConnection
from gateway.state.redis_dump import RedisDump
from gateway.state.redis_spend import RedisSpend, spend_key
from gateway.state.redis_windows import RedisWindows
from gateway.state.script_transport import choose_transport

log = logging.getLogger("gateway.state.redis")

_PREFIX = "gw:"
_LIMITS_PREFIX = "gw:limits"
_MGET_CHUNK = 1000

# A Redis stream per log, ``gw:log:{<stream>}``, entries with the id ``<seq>-0``
# where ``seq`` comes from ``INCR gw:logseq:{<stream>}`` in the same script (one
# slot: the hash tag), so sequence numbers are plain increasing integers shared
# by every replica. Nothing here trims or deletes.
_APPEND_LOG_LUA = """
local seq = redis.call('INCR', KEYS[1])
redis.call('XADD', KEYS[2], seq .. '-0', 'r', ARGV[1])
return seq
"""


def _rec(table: str, id: str) -> str:
    return f"{_PREFIX}rec:{{{table}}}:{id}"


def _idx(table: str) -> str:
    return f"{_PREFIX}idx:{{{table}}}"


def _spend(key: str) -> str:
    return spend_key(key)


class _Storage(RedisStorage):
    """``limits``' Redis storage, wrapping every client failure in ``StorageError``."""

    @property
    def base_exceptions(self) -> tuple[type[Exception], ...]:
        return REDIS_ERRORS


class _ClusterStorage(RedisClusterStorage):
    """``limits``' Redis Cluster storage, wrapping every client failure in ``StorageError``."""

    @property
    def base_exceptions(self) -> tuple[type[Exception], ...]:
        return REDIS_ERRORS


class RedisBackend(RedisBlobs, RedisDump):
    """State on Redis (standalone, Sentinel or Cluster); see the module docstring (enumeration
    and restore for backups: :class:`RedisDump`)."""

    kind = "redis"

    def __init__(
        self,
        url: str,
        *,
        socket_timeout_s: float = 0.5,
        max_connections: int = 1000,
        spend_replicas: int = 0,
        spend_replica_wait_s: float = 0.2,
    ) -> None:
        self.url = url
        self._conn = RedisConnection(url, socket_timeout_s=socket_timeout_s, max_connections=max_connections)
        self._client = self._conn.client
        self.windows = RedisWindows(self._conn, choose_transport(self._conn))
        self.spend = RedisSpend(
            self._conn, self.windows.batch, replicas=spend_replicas, replica_wait_s=spend_replica_wait_s
        )
        self.reserve_budget = self.spend.reserve
        """Check and hold shared budgets in one step (the ledger's ``shared_budgets``)."""
        self._append = self._client.register_script(_APPEND_LOG_LUA)
        self._limits: RedisStorage | None = None

    @property
    def script_transport(self) -> str:
        """How the request-path scripts travel: "redis-py" (a pipeline per batch) or "cluster"."""
        return self.windows.batch.transport.name

    # --- records ---------------------------------------------------------------
    async def get(self, table: str, id: str) -> Record | None:
        raw = await self._conn.call(self._client.get(_rec(table, id)))
        return None if raw is None else _load(raw)

    async def put(self, table: str, id: str, record: Record) -> None:
        rec, idx, text = _rec(table, id), _idx(table), orjson.dumps(record)
        await self._conn.call(self._conn.multi(lambda p: (p.set(rec, text), p.sadd(idx, id))))

    async def delete(self, table: str, id: str) -> bool:
        rec, idx = _rec(table, id), _idx(table)
        deleted, _ = await self._conn.call(self._conn.multi(lambda p: (p.delete(rec), p.srem(idx, id))))
        return bool(deleted)

    async def scan(self, table: str) -> list[Record]:
        ids = sorted(_text(m) for m in await self._conn.call(self._client.smembers(_idx(table))))
        out: list[Record] = []
        for i in range(0, len(ids), _MGET_CHUNK):
            keys = [_rec(table, id_) for id_ in ids[i : i + _MGET_CHUNK]]
            out.extend(_load(raw) for raw in await self._conn.call(self._client.mget(keys)) if raw is not None)
        return out

    # --- spend -----------------------------------------------------------------
    async def incr_spend(self, increments: Mapping[str, float]) -> None:
        if not increments:
            return

        def fill(pipe: Any) -> None:
            for key, usd in increments.items():
                pipe.incrbyfloat(_spend(key), float(usd))

        await self._conn.call(self._conn.multi(fill))

    async def read_spend(self, keys: Sequence[str]) -> dict[str, float]:
        if not keys:
            return {}
        values = await self._conn.call(self._client.mget([_spend(k) for k in keys]))
        return {k: float(v) if v is not None else 0.0 for k, v in zip(keys, values, strict=True)}

    async def apply_spend(self, batch: SpendBatch) -> bool:
        return await self.spend.apply(batch)

    async def read_budget(self, keys: Sequence[str], owner: str) -> tuple[dict[str, float], dict[str, float]]:
        return await self.spend.read(keys, owner)

    # --- response cache ------------------------------------------------------------
    async def cache_get(self, key: str) -> bytes | None:
        value = await self._conn.call(self._client.get(f"{_PREFIX}cache:{key}"))
        return value.encode() if isinstance(value, str) else value

    async def cache_set(self, key: str, value: bytes, ttl_s: float) -> None:
        await self._conn.call(self._client.set(f"{_PREFIX}cache:{key}", value, px=max(1, int(ttl_s * 1000))))

    # --- rate-limit windows and concurrency slots: redis_windows.py ------------------
    async def hit_windows(self, windows: Sequence[WindowSpec], slots: Sequence[SlotSpec] = ()) -> WindowHit:
        return await self.windows.hit_windows(windows, slots)

    async def adjust_windows(self, adjustments: Sequence[WindowAdjust], release: Sequence[str] = ()) -> None:
        await self.windows.adjust_windows(adjustments, release)

    async def acquire_slot(self, key: str, limit: int, ttl_s: float) -> bool:
        return await self.windows.acquire_slot(key, limit, ttl_s)

    async def release_slot(self, key: str) -> None:
        await self.windows.release_slot(key)

    def limits_storage(self) -> Storage:
        if self._limits is None:
            self._limits = self._make_limits()
        return self._limits

    def _make_limits(self) -> RedisStorage:
        common: dict[str, Any] = {"implementation": "redispy", "wrap_exceptions": True, "key_prefix": _LIMITS_PREFIX}
        if isinstance(self._client, RedisCluster):
            uri = "async+" + self.url.split("?", 1)[0]
            return _ClusterStorage(uri, **common, **self._conn.options())
        common["connection_pool"] = self._client.connection_pool
        return _Storage("async+redis://", **common)

    async def ping(self) -> bool:
        return bool(await self._conn.call(self._client.ping()))

    async def aclose(self) -> None:
        await self.windows.aclose()
        if self._limits is not None and isinstance(self._client, RedisCluster):
            own = getattr(self._limits.bridge, "storage", None)
            if isinstance(own, RedisCluster):
                await own.aclose()
        await self._conn.aclose()

    # --- append-only logs ------------------------------------------------------------
    async def append_log(self, stream: str, record: Record) -> int:
        keys = [f"{_PREFIX}logseq:{{{stream}}}", f"{_PREFIX}log:{{{stream}}}"]
        return int(await self._conn.call(self._append(keys=keys, args=[orjson.dumps(record)])))

    async def read_log(self, stream: str, limit: int, before: int | None = None) -> list[Record]:
        if limit <= 0 or (before is not None and before <= 1):
            return []
        end = "+" if before is None else str(before - 1)
        entries = await self._conn.call(self._client.xrevrange(f"{_PREFIX}log:{{{stream}}}", end, "-", count=limit))
        out: list[Record] = []
        for entry_id, fields in cast(list[Any], entries or []):
            raw = fields.get(b"r", fields.get("r"))
            out.append({**_load(raw), "seq": int(_text(entry_id).split("-")[0])})
        return out


def _load(raw: bytes | str) -> Record:
    record: Record = orjson.loads(raw)
    return record


def _text(raw: bytes | str) -> str:
    return raw.decode() if isinstance(raw, bytes) else raw
