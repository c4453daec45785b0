"""The Redis state backend: standalone, Sentinel or Cluster, so every replica
shares limits, cache, spend and key revocation.

URLs: ``redis://`` / ``rediss://`` (``Redis.from_url``),
``redis+sentinel://[:password@]h1:p1,h2:p2/service_name[/db]`` (the master of
``service_name``, found through the sentinels) and
``redis+cluster://[:password@]h1:p1[,h2:p2]`` (``RedisCluster``). Query
parameters (``?ssl_cert_reqs=...``) are honoured for ``redis://`` and
``rediss://`` only.

Keys (all under ``gw:``; the ``{...}`` part is a Cluster hash tag, so every
multi-key command below stays on one slot):

- records: ``gw:rec:{<table>}:<id>`` (a JSON string) plus the set index
  ``gw:idx:{<table>}``; put/delete update both in one MULTI;
- spend: ``gw:spend:{s}:<key>``, INCRBYFLOAT in one MULTI, read with MGET;
- cache: ``gw:cache:<key>`` (SET PX / GET);
- rate-limit windows and concurrency slots: fixed windows ``gw:win:{w}:<key>``
  and slots ``gw:win:{w}:slot:<key>`` (one Lua script charges every window and
  takes every slot of a request in one round trip; another corrects the token
  charges and gives the slots back at the end); the other strategies'
  ``gw:limits:...`` keys are written by the ``limits`` library.

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
timeouts. The storage is created with ``wrap_exceptions=True``: when Redis is
down, a limiter call raises :class:`limits.errors.StorageError` (the library's
own error, not :class:`BackendUnavailable`); the rate-limit policy must treat
both as "backend unavailable".
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, TypeVar, cast
from urllib.parse import unquote

import orjson
from limits.aio.storage import RedisStorage, Storage
from limits.storage import storage_from_string
from redis.asyncio import Redis, RedisCluster, Sentinel
from redis.asyncio.cluster import ClusterNode
from redis.asyncio.connection import Connection, SSLConnection
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError

from gateway.state.base import Record, SlotSpec, WindowAdjust, WindowHit, WindowSpec
from gateway.state.resp import RespPipe
from gateway.state.script_batch import REDIS_ERRORS, Client, ScriptBatch, unavailable

T = TypeVar("T")

_PREFIX = "gw:"
_LIMITS_PREFIX = "gw:limits"
_MGET_CHUNK = 1000

# KEYS[1] slot counter; ARGV[1] limit, ARGV[2] ttl in ms. 1 = taken, 0 = full.
_ACQUIRE_LUA = """
local n = redis.call('INCR', KEYS[1])
local ok = 1
if n > tonumber(ARGV[1]) then
  redis.call('DECR', KEYS[1])
  ok = 0
end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return ok
"""
# Fixed windows and concurrency slots, all or none in one round trip. Arguments
# and answer are JSON (one string each way: far cheaper for the client than
# dozens of RESP items). KEYS: the n windows, then the slots. ARGV[1]:
# [[[period_ms, amount, limit] per window], [[limit, ttl_ms] per slot]].
# Answers [refused (0 = none; > n: a slot), [counts], [pttls]] of the windows.
_HIT_WINDOWS_LUA = """
local spec = cjson.decode(ARGV[1])
local windows, slots = spec[1], spec[2]
local n = #windows
local counts, ttls = {}, {}
for i = 1, n do
  counts[i] = tonumber(redis.call('GET', KEYS[i]) or '0')
  ttls[i] = redis.call('PTTL', KEYS[i])
end
for i = 1, n do
  local amount, limit = windows[i][2], windows[i][3]
  local over
  if amount > 0 then over = counts[i] + amount > limit else over = counts[i] >= limit end
  if over then return cjson.encode({i, counts, ttls}) end
end
for k = 1, #slots do
  if tonumber(redis.call('GET', KEYS[n + k]) or '0') >= slots[k][1] then
    return cjson.encode({n + k, counts, ttls})
  end
end
for k = 1, #slots do
  redis.call('INCR', KEYS[n + k])
  redis.call('PEXPIRE', KEYS[n + k], slots[k][2])
end
for i = 1, n do
  local amount = windows[i][2]
  if amount > 0 then
    counts[i] = redis.call('INCRBY', KEYS[i], amount)
    if ttls[i] < 0 then
      redis.call('PEXPIRE', KEYS[i], windows[i][1])
      ttls[i] = windows[i][1]
    end
  end
end
return cjson.encode({0, counts, ttls})
"""
# KEYS: n windows, then the slots to give back. ARGV[1]: JSON [[period_ms,
# delta, the ms left of the charged window as the caller sees it] per window]
# (a refund applies only if the key's PTTL matches: the same window). A slot
# counter never goes below 0 (one that expired with crashed holders).
_ADJUST_WINDOWS_LUA = """
local spec = cjson.decode(ARGV[1])
local n = #spec
for i = 1, n do
  local delta = spec[i][2]
  local ttl = redis.call('PTTL', KEYS[i])
  if delta > 0 then
    redis.call('INCRBY', KEYS[i], delta)
    if ttl < 0 then redis.call('PEXPIRE', KEYS[i], spec[i][1]) end
  elseif ttl > 0 and math.abs(ttl - spec[i][3]) < 250 then
    local count = tonumber(redis.call('GET', KEYS[i]) or '0')
    redis.call('SET', KEYS[i], math.max(0, count + delta), 'KEEPTTL')
  end
end
for j = n + 1, #KEYS do
  local held = tonumber(redis.call('GET', KEYS[j]) or '0')
  if held <= 1 then
    redis.call('DEL', KEYS[j])
  else
    redis.call('DECR', KEYS[j])
  end
end
return 1
"""


def _parse_hosts(url: str, default_port: int) -> tuple[dict[str, str], list[tuple[str, int]], list[str]]:
    """``scheme://[user:password@]h1:p1,h2:p2/a/b`` -> (auth, hosts, path parts)."""
    rest = url.split("://", 1)[1].split("?", 1)[0]
    netloc, _, path = rest.partition("/")
    auth: dict[str, str] = {}
    if "@" in netloc:
        creds, netloc = netloc.rsplit("@", 1)
        user, _, password = creds.partition(":")
        auth = {k: unquote(v) for k, v in (("username", user), ("password", password)) if v}
    hosts = []
    for loc in netloc.split(","):
        host, _, port = loc.rpartition(":") if ":" in loc else (loc, "", "")
        hosts.append((host, int(port or default_port)))
    return auth, hosts, [p for p in path.split("/") if p]


class RedisBackend:
    """State on Redis (standalone, Sentinel or Cluster); see the module docstring."""

    kind = "redis"

    def __init__(self, url: str, *, socket_timeout_s: float = 0.5, max_connections: int = 1000) -> None:
        self.url = url
        self._timeout_s = socket_timeout_s
        self._max_connections = max_connections
        self._deadline_s = 4 * socket_timeout_s
        self._sentinel: Sentinel | None = None
        self._service = ""
        self._client: Client = self._connect(url)
        self._acquire = self._client.register_script(_ACQUIRE_LUA)
        self._hit = self._client.register_script(_HIT_WINDOWS_LUA)
        self._adjust = self._client.register_script(_ADJUST_WINDOWS_LUA)
        self._pipe = self._lean_pipe()
        self._batch = ScriptBatch(self._client, self._deadline_s, self._pipe)
        self._encoded: dict[str, bytes] = {}  # window and slot keys, ready for the wire
        self._limits: RedisStorage | None = None

    def _options(self) -> dict[str, Any]:
        return {
            "socket_timeout": self._timeout_s,
            "socket_connect_timeout": self._timeout_s,
            "max_connections": self._max_connections,
            # One quick retry for a dropped connection (a pooled socket that died
            # with a Redis restart); never on a timeout, which would double the wait.
            "retry": Retry(ExponentialBackoff(cap=0.05, base=0.01), 1, supported_errors=(RedisConnectionError,)),
        }

    def _connect(self, url: str) -> Client:
        if url.startswith("redis+sentinel://"):
            auth, hosts, path = _parse_hosts(url, 26379)
            if not path:
                raise ValueError("redis+sentinel:// needs a service name: redis+sentinel://host:port/service_name")
            options = self._options()  # for the sentinels too: a burst of new connections asks them
            connection: dict[str, Any] = {**options, **auth}
            self._sentinel = Sentinel(hosts, sentinel_kwargs=options, **connection)
            db = int(path[1]) if len(path) > 1 else 0
            self._service = path[0]
            return cast(Redis, self._sentinel.master_for(path[0], db=db))
        if url.startswith("redis+cluster://"):
            auth, hosts, _ = _parse_hosts(url, 6379)
            nodes = [ClusterNode(host, port) for host, port in hosts]
            user, password = auth.get("username"), auth.get("password")
            return RedisCluster(startup_nodes=nodes, username=user, password=password, **self._options())
        return Redis.from_url(url, **self._options())

    def _lean_pipe(self) -> RespPipe | None:
        """The lean connection for the request-path scripts, where plain TCP
        with AUTH and SELECT is all it takes (see resp.py); None elsewhere."""
        if isinstance(self._client, RedisCluster) or self.url.startswith("rediss://"):
            return None
        pool = self._client.connection_pool
        if not issubclass(pool.connection_class, Connection) or issubclass(pool.connection_class, SSLConnection):
            return None  # a unix socket or TLS: redis-py's pipeline
        kw = pool.connection_kwargs
        sentinel, service = self._sentinel, self._service
        host, port = str(kw.get("host", "localhost")), int(kw.get("port", 6379))

        async def address() -> tuple[str, int]:
            if sentinel is not None:
                master: tuple[str, int] = await sentinel.discover_master(service)
                return master
            return host, port

        return RespPipe(
            address,
            username=kw.get("username"),
            password=kw.get("password"),
            db=int(kw.get("db") or 0),
            connect_timeout_s=self._timeout_s,
        )

    async def _do(self, aw: Awaitable[T]) -> T:
        try:
            async with asyncio.timeout(self._deadline_s):
                return await aw
        except REDIS_ERRORS as exc:
            raise unavailable(exc) from exc

    async def _multi(self, fill: Callable[[Any], object]) -> list[Any]:
        """Run the commands ``fill`` queues on a pipeline as one MULTI/EXEC."""
        if isinstance(self._client, RedisCluster):
            # redis-py 8.1: a pipeline created before the slot map is loaded fails
            # ("attached to a different loop"); initialize() is a no-op once loaded.
            await self._client.initialize()
        pipe = self._client.pipeline(transaction=True)
        fill(pipe)
        result: list[Any] = await pipe.execute()
        return result

    # --- records ---------------------------------------------------------------
    @staticmethod
    def _rec(table: str, id: str) -> str:
        return f"{_PREFIX}rec:{{{table}}}:{id}"

    @staticmethod
    def _idx(table: str) -> str:
        return f"{_PREFIX}idx:{{{table}}}"

    async def get(self, table: str, id: str) -> Record | None:
        raw = await self._do(self._client.get(self._rec(table, id)))
        return None if raw is None else _load(raw)

    async def put(self, table: str, id: str, record: Record) -> None:
        rec, idx, text = self._rec(table, id), self._idx(table), orjson.dumps(record)
        await self._do(self._multi(lambda p: (p.set(rec, text), p.sadd(idx, id))))

    async def delete(self, table: str, id: str) -> bool:
        rec, idx = self._rec(table, id), self._idx(table)
        deleted, _ = await self._do(self._multi(lambda p: (p.delete(rec), p.srem(idx, id))))
        return bool(deleted)

    async def scan(self, table: str) -> list[Record]:
        ids = sorted(_text(m) for m in await self._do(self._client.smembers(self._idx(table))))
        out: list[Record] = []
        for i in range(0, len(ids), _MGET_CHUNK):
            keys = [self._rec(table, id_) for id_ in ids[i : i + _MGET_CHUNK]]
            out.extend(_load(raw) for raw in await self._do(self._client.mget(keys)) if raw is not None)
        return out

    # --- spend -----------------------------------------------------------------
    @staticmethod
    def _spend(key: str) -> str:
        return f"{_PREFIX}spend:{{s}}:{key}"

    async def incr_spend(self, increments: Mapping[str, float]) -> None:
        if not increments:
            return

        def fill(pipe: Any) -> None:
            for key, usd in increments.items():
                pipe.incrbyfloat(self._spend(key), float(usd))

        await self._do(self._multi(fill))

    async def read_spend(self, keys: Sequence[str]) -> dict[str, float]:
        if not keys:
            return {}
        values = await self._do(self._client.mget([self._spend(k) for k in keys]))
        return {k: float(v) if v is not None else 0.0 for k, v in zip(keys, values, strict=True)}

    # --- response cache ------------------------------------------------------------
    async def cache_get(self, key: str) -> bytes | None:
        value = await self._do(self._client.get(f"{_PREFIX}cache:{key}"))
        return value.encode() if isinstance(value, str) else value

    async def cache_set(self, key: str, value: bytes, ttl_s: float) -> None:
        await self._do(self._client.set(f"{_PREFIX}cache:{key}", value, px=max(1, int(ttl_s * 1000))))

    # --- rate-limit windows and concurrency slots ------------------------------
    @staticmethod
    def _win(key: str) -> str:
        return f"{_PREFIX}win:{{w}}:{key}"  # one hash tag: a Cluster runs the script on one node

    @staticmethod
    def _slot(key: str) -> str:
        return f"{_PREFIX}win:{{w}}:slot:{key}"  # the windows' hash tag: one script takes both

    def _wire(self, key: str, slot: bool = False) -> bytes:
        """A window's (or slot's) Redis key, encoded once (a request sends about ten)."""
        name = ("s:" if slot else "w:") + key
        found = self._encoded.get(name)
        if found is None:
            if len(self._encoded) > 100_000:
                self._encoded.clear()
            found = self._encoded[name] = (self._slot(key) if slot else self._win(key)).encode()
        return found

    async def hit_windows(self, windows: Sequence[WindowSpec], slots: Sequence[SlotSpec] = ()) -> WindowHit:
        wire = self._wire
        keys = [wire(w.key) for w in windows] + [wire(slot.key, True) for slot in slots]
        spec = (
            [[max(1, int(w.period_s * 1000)), w.amount, w.limit] for w in windows],
            [[slot.limit, max(1, int(slot.ttl_s * 1000))] for slot in slots],
        )
        answer = await self._batch.submit(self._hit, keys, [orjson.dumps(spec)])
        refused, counts, ttls = orjson.loads(answer)
        if not windows:  # cjson writes an empty list as {}
            counts, ttls = [], []
        resets = [t / 1000 if t > 0 else w.period_s for t, w in zip(ttls, windows, strict=True)]
        return WindowHit(int(refused) - 1, [int(c) for c in counts], resets)

    async def adjust_windows(self, adjustments: Sequence[WindowAdjust], release: Sequence[str] = ()) -> None:
        now = time.time()
        keys: list[bytes] = []
        spec: list[list[int]] = []
        for a in adjustments:
            left_ms = int((a.window_end - now) * 1000)
            if a.delta < 0 and left_ms <= 0:
                continue  # that window is over: nothing to refund
            keys.append(self._wire(a.key))
            spec.append([max(1, int(a.period_s * 1000)), a.delta, left_ms])
        keys += [self._wire(key, True) for key in release]
        if keys:
            await self._batch.submit(self._adjust, keys, [orjson.dumps(spec)])

    async def acquire_slot(self, key: str, limit: int, ttl_s: float) -> bool:
        taken = await self._do(self._acquire(keys=[self._slot(key)], args=[limit, max(1, int(ttl_s * 1000))]))
        return bool(taken)

    async def release_slot(self, key: str) -> None:
        await self.adjust_windows((), (key,))

    def limits_storage(self) -> Storage:
        if self._limits is None:
            self._limits = self._make_limits()
        return self._limits

    def _make_limits(self) -> RedisStorage:
        common: dict[str, Any] = {"implementation": "redispy", "wrap_exceptions": True, "key_prefix": _LIMITS_PREFIX}
        if isinstance(self._client, RedisCluster):
            uri = "async+" + self.url.split("?", 1)[0]
            storage = storage_from_string(uri, **common, **self._options())
            assert isinstance(storage, RedisStorage)
            return storage
        common["connection_pool"] = self._client.connection_pool
        return RedisStorage("async+redis://", **common)

    async def ping(self) -> bool:
        return bool(await self._do(self._client.ping()))

    async def aclose(self) -> None:
        if self._pipe is not None:
            await self._pipe.aclose()
        if self._limits is not None and isinstance(self._client, RedisCluster):
            own = getattr(self._limits.bridge, "storage", None)
            if isinstance(own, RedisCluster):
                await own.aclose()
        await self._client.aclose()
        if self._sentinel is not None:
            for sentinel in self._sentinel.sentinels:
                await sentinel.aclose()

    # --- append-only logs ------------------------------------------------------------
    # A Redis stream per log, ``gw:log:{<stream>}``, entries with the id
    # ``<seq>-0`` where ``seq`` comes from ``INCR gw:logseq:{<stream>}`` in the
    # same script (one slot: the hash tag), so sequence numbers are plain
    # increasing integers shared by every replica. Nothing here trims or deletes.
    _APPEND_LOG_LUA = """
local seq = redis.call('INCR', KEYS[1])
redis.call('XADD', KEYS[2], seq .. '-0', 'r', ARGV[1])
return seq
"""

    async def append_log(self, stream: str, record: Record) -> int:
        keys = [f"{_PREFIX}logseq:{{{stream}}}", f"{_PREFIX}log:{{{stream}}}"]
        script = self._client.register_script(self._APPEND_LOG_LUA)
        return int(await self._do(script(keys=keys, args=[orjson.dumps(record)])))

    async def read_log(self, stream: str, limit: int, before: int | None = None) -> list[Record]:
        if limit <= 0 or (before is not None and before <= 1):
            return []
        end = "+" if before is None else str(before - 1)
        entries = await self._do(self._client.xrevrange(f"{_PREFIX}log:{{{stream}}}", end, "-", count=limit))
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
