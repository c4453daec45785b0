"""Spend on Redis: batches applied once, and the budget reservations every
replica publishes (the Redis backend's ``apply_spend`` and ``read_budget``).

Keys (one hash tag, ``{s}``, so a Cluster runs each script on one node):

- ``gw:spend:{s}:<counter>``: the totals (INCRBYFLOAT; the same keys as ``incr_spend``);
- ``gw:spendseq:{s}:<owner>``: the last batch ``seq`` applied for one ledger; it
  lives :data:`MARK_TTL_S` after its last batch (an owner writes its batches in
  order, one at a time, and retries one within a flush interval of Redis coming
  back, so a week outlives any retry);
- ``gw:resv:{s}:<counter>``: a hash, one field per owner holding reservations on
  that counter, valued ``"<usd> <expires, epoch ms>"``; readers ignore expired
  fields and every write drops them, so a crashed replica's reservations vanish
  after ``reserved_ttl_s``.

Both are one Lua script each: the check of the batch ``seq`` and the increments
are atomic, so a timed-out call that Redis applies late and its retry (same
owner and ``seq``) count once.

With ``state.spend_replicas`` (N > 0) a batch is sent with ``WAIT N`` behind it on
the same connection (on a Cluster: a client of the node serving ``{s}``), and
counts as written only when N replicas acknowledged it; otherwise the ledger
keeps it and writes it again under the same ``seq``. Replication is
asynchronous: a master that fails before its replica got the batch takes it
along, and the retry applies it on the promoted replica (whose mark is older);
a batch the replica did get is skipped there by the mark. Either way, once.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from typing import Any

from redis.exceptions import NoScriptError

from gateway.state.base import BackendUnavailable, SpendBatch
from gateway.state.redis_client import REDIS_ERRORS, RedisConnection, unavailable
from gateway.state.script_batch import ScriptBatch

MARK_TTL_S = 7 * 24 * 3600

# KEYS[1] the owner's mark; KEYS[2 .. n+1] the counters (a shared budget's hold, ``gw:hold:``, is a
# hash: the owner's field); KEYS[n+2 ..] reservation hashes. ARGV: seq, n, owner, mark ttl ms,
# reservation ttl ms, the n amounts, then one per hash.
_APPLY_LUA = """
local seq, n, owner = tonumber(ARGV[1]), tonumber(ARGV[2]), ARGV[3]
local applied = 0
if n > 0 then
  local last = tonumber(redis.call('GET', KEYS[1]) or '-1')
  if seq > last then
    for i = 1, n do
      local key = KEYS[1 + i]
      if string.sub(key, 1, 8) == 'gw:hold:' then
        local left = tonumber(redis.call('HINCRBYFLOAT', key, owner, ARGV[5 + i]))
        if math.abs(left) < 1e-12 then redis.call('HDEL', key, owner) end
      else
        redis.call('INCRBYFLOAT', key, ARGV[5 + i])
      end
    end
    redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[4])
    applied = 1
  else
    redis.call('PEXPIRE', KEYS[1], ARGV[4])
  end
end
if #KEYS > n + 1 then
  local t = redis.call('TIME')
  local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  local ttl = tonumber(ARGV[5])
  for j = n + 2, #KEYS do
    local amount = ARGV[j + 4]
    if tonumber(amount) > 0 then
      redis.call('HSET', KEYS[j], owner, amount .. ' ' .. string.format('%d', now + ttl))
      if redis.call('PTTL', KEYS[j]) < ttl then redis.call('PEXPIRE', KEYS[j], ttl) end
    else
      redis.call('HDEL', KEYS[j], owner)
    end
    local fields = redis.call('HGETALL', KEYS[j])
    for f = 1, #fields, 2 do
      local expires = tonumber(string.match(fields[f + 1], ' (%d+)$') or '0')
      if expires <= now then redis.call('HDEL', KEYS[j], fields[f]) end
    end
  end
end
return applied
"""
# KEYS[1] the owners' expiry hash; KEYS[2 .. n+1] the counters, then their n hold hashes (owner ->
# USD held). ARGV: the owner, USD, TTL ms, then the n limits. Admits when every counter has
# total < limit and, beside what the live owners hold on it, room for USD (BudgetPolicy.check's
# rule); then adds USD to the owner's hold on each and renews its expiry. An owner whose expiry
# passed (a process that died) counts no more and its holds are dropped. Answers
# [1 admitted / 0 refused, [total per counter], [held per counter]].
_RESERVE_LUA = """
local n = (#KEYS - 1) / 2
local owner, usd, ttl = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local live = {}
local expiries = redis.call('HGETALL', KEYS[1])
for f = 1, #expiries, 2 do
  if tonumber(expiries[f + 1]) > now then live[expiries[f]] = true else redis.call('HDEL', KEYS[1], expiries[f]) end
end
local totals, held, ok = {}, {}, 1
for i = 1, n do
  local total = tonumber(redis.call('GET', KEYS[1 + i]) or '0')
  local sum = 0
  local holds = redis.call('HGETALL', KEYS[1 + n + i])
  for f = 1, #holds, 2 do
    if live[holds[f]] then sum = sum + tonumber(holds[f + 1]) else redis.call('HDEL', KEYS[1 + n + i], holds[f]) end
  end
  if sum < 1e-12 then sum = 0 end
  local limit = tonumber(ARGV[3 + i])
  if not (total < limit and (sum <= 0 or total + sum + usd <= limit)) then ok = 0 end
  totals[i], held[i] = string.format('%.17g', total), string.format('%.17g', sum)
end
if ok == 1 and usd > 0 then
  for i = 1, n do
    redis.call('HINCRBYFLOAT', KEYS[1 + n + i], owner, ARGV[2])
    redis.call('PEXPIRE', KEYS[1 + n + i], ttl)
  end
  redis.call('HSET', KEYS[1], owner, string.format('%d', now + ttl))
  redis.call('PEXPIRE', KEYS[1], ttl)
end
return {ok, totals, held}
"""
# KEYS: n counters, then their n reservation hashes; ARGV[1] the reading owner.
# Answers [[total per counter], [reserved by the other owners per counter]].
_READ_LUA = """
local n = #KEYS / 2
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local totals, held = {}, {}
for i = 1, n do
  totals[i] = redis.call('GET', KEYS[i]) or '0'
  local sum = 0
  local fields = redis.call('HGETALL', KEYS[n + i])
  for f = 1, #fields, 2 do
    if fields[f] ~= ARGV[1] then
      local amount, expires = string.match(fields[f + 1], '^(%S+) (%d+)$')
      if amount and tonumber(expires) > now then sum = sum + tonumber(amount) end
    end
  end
  held[i] = string.format('%.17g', sum)
end
return {totals, held}
"""


def spend_key(counter: str) -> str:
    return f"gw:spend:{{s}}:{counter}"


HOLD_PREFIX = "hold:"
"""A ledger counter ``hold:<counter>``: this owner's shared-budget hold on ``<counter>`` (its
increments, negative, release what requests charged or ended held; shared_budgets.py)."""
HOLD_EXPIRY = "gw:holdexp:{s}"
"""owner -> when its holds stop counting (epoch ms), renewed by each of its reservations."""


def hold_key(counter: str) -> str:
    return f"gw:hold:{{s}}:{counter}"


def counter_key(name: str) -> str:
    """The Redis key of a ledger counter: a spend total, or an owner's hold (a hash field)."""
    return hold_key(name[len(HOLD_PREFIX) :]) if name.startswith(HOLD_PREFIX) else spend_key(name)


def reservation_key(counter: str) -> str:
    return f"gw:resv:{{s}}:{counter}"


def mark_key(owner: str) -> str:
    return f"gw:spendseq:{{s}}:{owner}"


class RedisSpend:
    """``apply_spend`` and ``read_budget`` of one Redis backend (see the module docstring)."""

    def __init__(
        self,
        connection: RedisConnection,
        batch: ScriptBatch,
        *,
        replicas: int = 0,
        replica_wait_s: float = 0.2,
    ) -> None:
        self._connection = connection
        self._batch = batch
        """The request path's scripts of one event-loop turn, one pipeline (budget checks go with them)."""
        self.replicas = replicas
        self._wait_ms = max(1, int(replica_wait_s * 1000))
        client = connection.client
        self._apply = client.register_script(_APPLY_LUA)
        self._read = client.register_script(_READ_LUA)
        self._reserve = client.register_script(_RESERVE_LUA)
        self.seed = RedisSeed(connection)
        """Copying the system of record's totals into a Redis that lost them (the postgres backend)."""

    async def apply(self, batch: SpendBatch) -> bool:
        reserved = batch.reserved or {}
        if not batch.increments and not reserved:
            return False
        keys = [mark_key(batch.owner)]
        keys += [counter_key(k) for k in batch.increments]
        keys += [reservation_key(k) for k in reserved]
        ttl_ms = max(1, int(batch.reserved_ttl_s * 1000))
        args: list[str | int] = [batch.seq, len(batch.increments), batch.owner, MARK_TTL_S * 1000, ttl_ms]
        args += [repr(float(v)) for v in batch.increments.values()]
        args += [repr(max(0.0, float(v))) for v in reserved.values()]
        if self.replicas:
            return await self._apply_replicated(keys, args)
        applied = await self._connection.call(self._apply(keys=keys, args=args))
        return bool(applied)

    async def _apply_replicated(self, keys: list[str], args: list[str | int]) -> bool:
        """The script, then ``WAIT replicas``, in one pipeline (one connection) to the node of ``{s}``."""
        conn = self._connection
        try:
            async with asyncio.timeout(conn.deadline_s):
                node = await conn.node_client(keys[0])
                replies = await self._send(node, keys, args)
                if isinstance(replies[0], NoScriptError):  # a node that never ran it (a promoted replica, ...)
                    await node.script_load(_APPLY_LUA)
                    replies = await self._send(node, keys, args)
        except REDIS_ERRORS as exc:
            await self._forget_topology()
            raise unavailable(exc) from exc
        applied, acked = replies
        for reply in replies:
            if isinstance(reply, Exception):  # MOVED after a failover, READONLY, CLUSTERDOWN, ...
                await self._forget_topology()
                raise unavailable(reply)
        if int(acked) < self.replicas:
            raise BackendUnavailable(
                f"redis: the spend batch reached {int(acked)} of state.spend_replicas={self.replicas} replicas "
                f"within {self._wait_ms} ms; it is written again"
            )
        return bool(applied)

    async def _send(self, node: Any, keys: list[str], args: list[str | int]) -> list[Any]:
        pipe = node.pipeline(transaction=False)
        pipe.evalsha(self._apply.sha, len(keys), *keys, *args)
        pipe.execute_command("WAIT", self.replicas, self._wait_ms)
        replies: list[Any] = await pipe.execute(raise_on_error=False)
        return replies

    async def _forget_topology(self) -> None:
        with contextlib.suppress(BackendUnavailable):  # no node answers: the next write tries again
            await self._connection.call(self._connection.forget_topology())

    async def reserve(
        self, counters: Sequence[str], limits: Sequence[float], owner: str, usd: float, ttl_s: float
    ) -> tuple[bool, list[float], list[float]]:
        """Check the budgets of ``counters`` (their ``limits``) and add ``usd`` to ``owner``'s hold
        on each, in one step for every replica (see ``_RESERVE_LUA``): (admitted, the totals, what
        the live owners held beside this request)."""
        keys = [HOLD_EXPIRY.encode(), *(spend_key(c).encode() for c in counters)]
        keys += [hold_key(c).encode() for c in counters]
        args = [owner.encode(), repr(float(usd)).encode(), str(max(1, int(ttl_s * 1000))).encode()]
        args += [repr(float(x)).encode() for x in limits]
        ok, totals, held = await self._batch.submit(self._reserve, keys, args)
        return bool(ok), [float(x) for x in totals], [float(x) for x in held]

    async def read(self, keys: Sequence[str], owner: str) -> tuple[dict[str, float], dict[str, float]]:
        if not keys:
            return {}, {}
        wire = [spend_key(k) for k in keys] + [reservation_key(k) for k in keys]
        totals, held = await self._connection.call(self._read(keys=wire, args=[owner]))
        spend = {k: float(v) for k, v in zip(keys, totals, strict=True)}
        others = {k: float(v) for k, v in zip(keys, held, strict=True) if float(v) > 0}
        return spend, others


SEED_MARK = "gw:spendseed:{s}"
"""Present while Redis holds PostgreSQL's totals; gone with a Redis that lost its data.
The hash tag of the counters and marks (one Cluster slot for the scripts)."""
SEED_CLAIM = "gw:spendseeding:{s}"
"""The token of the replica copying the totals into Redis (SET NX, expiring)."""
SEED_CLAIM_TTL_MS = 30_000
_SEED_CHUNK = 500

# KEYS[1] the claim, KEYS[2] the seed mark, KEYS[3..] the keys to set; ARGV[1] the claim's token,
# ARGV[2] '1' on the last chunk, then per key its value and its TTL in ms ('0': none). Writes only while
# the token holds the claim (else 0: it expired, or Redis restarted since) and the mark is absent (else
# -1: another replica seeded first); the last chunk sets the mark. The claim is dropped unless 0.
_SEED_LUA = """
local mine = redis.call('GET', KEYS[1]) == ARGV[1]
if redis.call('EXISTS', KEYS[2]) == 1 then
  if mine then redis.call('DEL', KEYS[1]) end
  return -1
end
if not mine then return 0 end
for i = 3, #KEYS do
  local value, ttl = ARGV[2 * i - 3], ARGV[2 * i - 2]
  if ttl == '0' then redis.call('SET', KEYS[i], value) else redis.call('SET', KEYS[i], value, 'PX', ttl) end
end
if ARGV[2] == '1' then
  redis.call('SET', KEYS[2], '1')
  redis.call('DEL', KEYS[1])
end
return 1
"""
_RELEASE_LUA = "if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end return 0"


class RedisSeed:
    """The Redis side of re-seeding spend from the system of record (the postgres backend's
    ``postgres_spend.py`` drives it): the seed mark, the claim one replica holds while it
    copies, and the copy itself, written only while the claim holds and no other replica
    finished first."""

    def __init__(self, connection: RedisConnection) -> None:
        self._connection = connection
        client = connection.client
        self._write = client.register_script(_SEED_LUA)
        self._release = client.register_script(_RELEASE_LUA)

    async def done(self) -> bool:
        """Whether Redis holds the totals (its seed mark is there)."""
        return await self._connection.call(self._connection.client.get(SEED_MARK)) is not None

    async def claim(self, token: str) -> bool:
        """Take the claim (SET NX, expiring after :data:`SEED_CLAIM_TTL_MS`); False if another holds it."""
        client = self._connection.client
        return bool(await self._connection.call(client.set(SEED_CLAIM, token, nx=True, px=SEED_CLAIM_TTL_MS)))

    async def release(self, token: str) -> None:
        await self._connection.call(self._release(keys=[SEED_CLAIM], args=[token]))

    async def write(self, token: str, totals: Sequence[tuple[str, float]], marks: Sequence[tuple[str, int]]) -> bool:
        """Overwrite the counters and the owners' marks with the snapshot, then set the seed mark;
        True when Redis holds the totals now (this copy, or another replica's that finished first)."""
        items = [(spend_key(c), repr(float(usd)), "0") for c, usd in totals]
        items += [(mark_key(owner), str(seq), str(MARK_TTL_S * 1000)) for owner, seq in marks]
        for start in range(0, max(1, len(items)), _SEED_CHUNK):
            chunk = items[start : start + _SEED_CHUNK]
            last = "1" if start + _SEED_CHUNK >= len(items) else "0"
            keys = [SEED_CLAIM, SEED_MARK, *(key for key, _, _ in chunk)]
            args = [token, last, *(x for _, value, ttl in chunk for x in (value, ttl))]
            done = int(await self._connection.call(self._write(keys=keys, args=args)))
            if done != 1:
                return done == -1  # -1: another replica seeded first; 0: the claim was lost
        return True
