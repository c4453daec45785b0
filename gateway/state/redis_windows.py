"""Fixed-window counters and concurrency slots on Redis (the Redis backend's
``hit_windows``/``adjust_windows`` and slots): two Lua scripts, one at the
start and one at the end of a request, batched per event-loop turn.

Keys: windows ``gw:win:{w}:<key>`` and slots ``gw:win:{w}:slot:<key>`` (one
hash tag, so a Cluster runs each script on one node). Arguments and answers
are one JSON string each way: far cheaper for the client than dozens of RESP
items.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import orjson

from gateway.state.base import SlotSpec, WindowAdjust, WindowHit, WindowSpec
from gateway.state.lru import Lru
from gateway.state.redis_client import RedisConnection
from gateway.state.script_batch import ScriptBatch
from gateway.state.script_transport import ScriptTransport

ENCODED_MAX = 100_000
"""Window and slot keys kept encoded (least recently used evicted)."""

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
# Fixed windows and concurrency slots, all or none in one round trip.
# KEYS: the n windows, then the slots. ARGV[1]:
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


def window_key(key: str) -> str:
    return f"gw:win:{{w}}:{key}"  # one hash tag: a Cluster runs the script on one node


def slot_key(key: str) -> str:
    return f"gw:win:{{w}}:slot:{key}"  # the windows' hash tag: one script takes both


class RedisWindows:
    """The windows and slots of one Redis backend (see the module docstring)."""

    def __init__(self, connection: RedisConnection, transport: ScriptTransport) -> None:
        client = connection.client
        self._connection = connection
        self._acquire = client.register_script(_ACQUIRE_LUA)
        self._hit = client.register_script(_HIT_WINDOWS_LUA)
        self._adjust = client.register_script(_ADJUST_WINDOWS_LUA)
        self.batch = ScriptBatch(client, connection.deadline_s, transport)
        self._encoded: Lru[str, bytes] = Lru(ENCODED_MAX)  # window and slot keys, ready for the wire

    def _wire(self, key: str, slot: bool = False) -> bytes:
        """A window's (or slot's) Redis key, encoded once (a request sends about ten)."""
        name = ("s:" if slot else "w:") + key
        found = self._encoded.get(name)
        if found is None:
            found = self._encoded.put(name, (slot_key(key) if slot else window_key(key)).encode())
        return found

    async def hit_windows(self, windows: Sequence[WindowSpec], slots: Sequence[SlotSpec] = ()) -> WindowHit:
        wire = self._wire
        keys = [wire(w.key) for w in windows] + [wire(slot.key, True) for slot in slots]
        spec = (
            [[max(1, int(w.period_s * 1000)), w.amount, w.limit] for w in windows],
            [[slot.limit, max(1, int(slot.ttl_s * 1000))] for slot in slots],
        )
        answer = await self.batch.submit(self._hit, keys, [orjson.dumps(spec)])
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
            await self.batch.submit(self._adjust, keys, [orjson.dumps(spec)])

    async def acquire_slot(self, key: str, limit: int, ttl_s: float) -> bool:
        call = self._acquire(keys=[slot_key(key)], args=[limit, max(1, int(ttl_s * 1000))])
        return bool(await self._connection.call(call))

    async def release_slot(self, key: str) -> None:
        await self.adjust_windows((), (key,))

    async def aclose(self) -> None:
        await self.batch.transport.aclose()
