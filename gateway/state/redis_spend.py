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
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from gateway.state.base import SpendBatch
from gateway.state.redis_client import RedisConnection

MARK_TTL_S = 7 * 24 * 3600

# KEYS[1] the owner's mark; KEYS[2 .. n+1] the counters; KEYS[n+2 ..] reservation hashes.
# ARGV: seq, n, owner, mark ttl ms, reservation ttl ms, the n amounts, then one per hash.
_APPLY_LUA = """
local seq, n, owner = tonumber(ARGV[1]), tonumber(ARGV[2]), ARGV[3]
local applied = 0
if n > 0 then
  local last = tonumber(redis.call('GET', KEYS[1]) or '-1')
  if seq > last then
    for i = 1, n do redis.call('INCRBYFLOAT', KEYS[1 + i], ARGV[5 + i]) end
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


# KEYS: counters; ARGV: their totals. Sets those that do not exist; answers how many.
_SEED_LUA = """
local set = 0
for i = 1, #KEYS do
  if redis.call('SET', KEYS[i], ARGV[i], 'NX') then set = set + 1 end
end
return set
"""
_SEED_CHUNK = 500


def spend_key(counter: str) -> str:
    return f"gw:spend:{{s}}:{counter}"


def reservation_key(counter: str) -> str:
    return f"gw:resv:{{s}}:{counter}"


def mark_key(owner: str) -> str:
    return f"gw:spendseq:{{s}}:{owner}"


class RedisSpend:
    """``apply_spend`` and ``read_budget`` of one Redis backend (see the module docstring)."""

    def __init__(self, connection: RedisConnection) -> None:
        self._connection = connection
        client = connection.client
        self._apply = client.register_script(_APPLY_LUA)
        self._read = client.register_script(_READ_LUA)
        self._seed = client.register_script(_SEED_LUA)

    async def seed(self, totals: Mapping[str, float]) -> int:
        """Set each counter Redis does not hold to its total (a Redis that lost its data,
        re-seeded from the system of record); how many were set."""
        items, done = list(totals.items()), 0
        for start in range(0, len(items), _SEED_CHUNK):
            chunk = items[start : start + _SEED_CHUNK]
            keys = [spend_key(k) for k, _ in chunk]
            done += int(await self._connection.call(self._seed(keys=keys, args=[repr(float(v)) for _, v in chunk])))
        return done

    async def apply(self, batch: SpendBatch) -> bool:
        reserved = batch.reserved or {}
        if not batch.increments and not reserved:
            return False
        keys = [mark_key(batch.owner)]
        keys += [spend_key(k) for k in batch.increments]
        keys += [reservation_key(k) for k in reserved]
        ttl_ms = max(1, int(batch.reserved_ttl_s * 1000))
        args: list[str | int] = [batch.seq, len(batch.increments), batch.owner, MARK_TTL_S * 1000, ttl_ms]
        args += [repr(float(v)) for v in batch.increments.values()]
        args += [repr(max(0.0, float(v))) for v in reserved.values()]
        applied = await self._connection.call(self._apply(keys=keys, args=args))
        return bool(applied)

    async def read(self, keys: Sequence[str], owner: str) -> tuple[dict[str, float], dict[str, float]]:
        if not keys:
            return {}, {}
        wire = [spend_key(k) for k in keys] + [reservation_key(k) for k in keys]
        totals, held = await self._connection.call(self._read(keys=wire, args=[owner]))
        spend = {k: float(v) for k, v in zip(keys, totals, strict=True)}
        others = {k: float(v) for k, v in zip(keys, held, strict=True) if float(v) > 0}
        return spend, others
