"""The StateBackend contract: assertions every backend must pass, shared by the
embedded unit tests and the Redis end-to-end tests."""

from __future__ import annotations

import asyncio
import time

from limits import RateLimitItemPerMinute
from limits.aio.strategies import FixedWindowRateLimiter, MovingWindowRateLimiter, SlidingWindowCounterRateLimiter

from gateway.state.base import SpendBatch, StateBackend, WindowAdjust, WindowSpec


async def check_records(b: StateBackend) -> None:
    assert await b.get("keys", "k1") is None
    assert await b.scan("keys") == []
    await b.put("keys", "k1", {"id": "k1", "team": "a", "roles": ["user"], "n": 1.5})
    await b.put("keys", "k2", {"id": "k2", "team": "b"})
    await b.put("teams", "k1", {"id": "team-record"})
    assert await b.get("keys", "k1") == {"id": "k1", "team": "a", "roles": ["user"], "n": 1.5}
    await b.put("keys", "k1", {"id": "k1", "team": "c"})
    assert await b.get("keys", "k1") == {"id": "k1", "team": "c"}
    assert sorted(r["id"] for r in await b.scan("keys")) == ["k1", "k2"]
    assert await b.scan("teams") == [{"id": "team-record"}]
    assert await b.delete("keys", "k1") is True
    assert await b.delete("keys", "k1") is False
    assert await b.get("keys", "k1") is None
    assert await b.scan("keys") == [{"id": "k2", "team": "b"}]
    assert await b.get("teams", "k1") == {"id": "team-record"}


async def check_records_are_copies(b: StateBackend) -> None:
    await b.put("keys", "k", {"roles": ["user"]})
    got = await b.get("keys", "k")
    assert got is not None
    got["roles"].append("admin")
    assert await b.get("keys", "k") == {"roles": ["user"]}


async def check_spend(b: StateBackend) -> None:
    assert await b.read_spend([]) == {}
    assert await b.read_spend(["team:a"]) == {"team:a": 0.0}
    await b.incr_spend({})
    await b.incr_spend({"team:a": 0.25, "key:x": 1.5})
    await b.incr_spend({"team:a": 0.5})
    assert await b.read_spend(["team:a", "key:x", "never"]) == {"team:a": 0.75, "key:x": 1.5, "never": 0.0}


async def check_spend_concurrent(b: StateBackend, n: int = 200) -> None:
    await asyncio.gather(*(b.incr_spend({"team:c": 0.125, f"key:{i % 4}": 0.5}) for i in range(n)))
    totals = await b.read_spend(["team:c", "key:0", "key:3"])
    assert totals == {"team:c": n * 0.125, "key:0": n / 4 * 0.5, "key:3": n / 4 * 0.5}


async def check_spend_batches(b: StateBackend) -> None:
    """Each batch ``(owner, seq)`` is applied at most once; a later ``seq`` of the
    owner applies, an earlier one is skipped; owners are independent."""
    first = SpendBatch("contract-a", 1, {"batch:x": 0.5, "batch:y": 0.25})
    assert await b.apply_spend(first) is True
    assert await b.apply_spend(first) is False, "the same batch again (a retry after a timeout)"
    assert await b.apply_spend(SpendBatch("contract-b", 1, {"batch:x": 1.0})) is True, "another owner"
    assert await b.apply_spend(SpendBatch("contract-a", 3, {"batch:x": 0.125})) is True, "seq may skip"
    assert await b.apply_spend(SpendBatch("contract-a", 2, {"batch:x": 9.0})) is False, "older than the last"
    assert await b.apply_spend(SpendBatch("contract-a", 4, {})) is False, "nothing to add"
    again = SpendBatch("contract-c", 7, {"batch:x": 0.0625})
    assert sorted(await asyncio.gather(*(b.apply_spend(again) for _ in range(10)))) == [False] * 9 + [True]
    assert await b.read_spend(["batch:x", "batch:y"]) == {"batch:x": 1.6875, "batch:y": 0.25}
    totals, others = await b.read_budget(["batch:x", "never"], "contract-a")
    assert (totals, others) == ({"batch:x": 1.6875, "never": 0.0}, {})
    assert await b.read_budget([], "contract-a") == ({}, {})


async def check_reservations(b: StateBackend) -> None:
    """A shared backend shows each owner the reservations of the others (not its
    own); 0 drops one; a reservation lapses after its TTL (a crashed replica's).
    A one-process backend keeps none (its ledger holds them all)."""
    await b.apply_spend(SpendBatch("resv-a", 1, {}, {"budget:k": 0.5}, 30))
    await b.apply_spend(SpendBatch("resv-b", 1, {"budget:spent": 2.0}, {"budget:k": 0.25, "budget:j": 1.0}, 0.2))
    totals, by_a = await b.read_budget(["budget:k", "budget:j", "budget:spent"], "resv-a")
    _, by_c = await b.read_budget(["budget:k"], "resv-c")
    assert totals == {"budget:k": 0.0, "budget:j": 0.0, "budget:spent": 2.0}
    if b.kind == "embedded":
        assert by_a == by_c == {}
        return
    assert by_a == {"budget:k": 0.25, "budget:j": 1.0}, "the other owners' only"
    assert by_c == {"budget:k": 0.75}
    await asyncio.sleep(0.3)  # resv-b stopped publishing: its reservations lapse
    assert (await b.read_budget(["budget:k", "budget:j"], "resv-c"))[1] == {"budget:k": 0.5}
    await b.apply_spend(SpendBatch("resv-a", 2, {}, {"budget:k": 0.0}, 30))
    assert (await b.read_budget(["budget:k"], "resv-c"))[1] == {}, "released"


async def check_cache(b: StateBackend) -> None:
    assert await b.cache_get("c1") is None
    await b.cache_set("c1", b"\x00payload\xff", 60)
    assert await b.cache_get("c1") == b"\x00payload\xff"
    await b.cache_set("c1", b"v2", 60)
    assert await b.cache_get("c1") == b"v2"
    await b.cache_set("short", b"v", 0.02)
    assert await b.cache_get("short") == b"v"
    await asyncio.sleep(0.05)
    assert await b.cache_get("short") is None
    assert await b.cache_get("c1") == b"v2"


async def check_blobs(b: StateBackend) -> None:
    """Durable values with a TTL: put, get, overwrite, delete, expiry; any bytes,
    megabytes included; a namespace apart from the cache's."""
    assert await b.blob_get("resp_1") is None
    assert await b.blob_delete("resp_1") is False
    await b.blob_put("resp_1", b'{"id":"resp_1","output":[]}', 30 * 86400)  # kept 30 days
    assert await b.blob_get("resp_1") == b'{"id":"resp_1","output":[]}'
    await b.blob_put("resp_1", b'{"id":"resp_1","v":2}', 60)
    assert await b.blob_get("resp_1") == b'{"id":"resp_1","v":2}', "overwritten"
    binary = bytes(range(256)) * 4  # NUL, invalid UTF-8: stored as bytes, not text
    await b.blob_put("bin", binary, 60)
    assert await b.blob_get("bin") == binary
    big = bytes(range(256)) * 8192 + b"end"  # 2 MiB and a tail: nothing truncated
    await b.blob_put("big", big, 60)
    assert await b.blob_get("big") == big
    await b.cache_set("same-key", b"cache", 60)
    await b.blob_put("same-key", b"blob", 60)
    assert (await b.cache_get("same-key"), await b.blob_get("same-key")) == (b"cache", b"blob"), "apart"
    assert await b.blob_delete("resp_1") is True
    assert await b.blob_delete("resp_1") is False
    assert await b.blob_get("resp_1") is None
    assert await b.blob_get("bin") == binary, "only the key deleted"
    await b.blob_put("bin", b"x", 0)  # no time to live: removed, not stored
    assert await b.blob_get("bin") is None
    await b.blob_put("short", b"v", 0.05)
    assert await b.blob_get("short") == b"v"
    await b.blob_put("short-unread", b"v", 0.05)
    await b.blob_put("short-but-renewed", b"v1", 0.05)
    await b.blob_put("short-but-renewed", b"v2", 60)  # an overwrite takes the new TTL
    await b.blob_put("many-gone", b"old", 60)
    many = [("many-1", b"one", 60.0), ("many-2", binary, 60.0), ("many-gone", b"new", 0.0), ("many-short", b"s", 0.05)]
    await b.blob_put_many(many)  # several at once: each as blob_put (a TTL of 0 removes)
    got = [await b.blob_get(key) for key, *_ in many]
    assert got == [b"one", binary, None, b"s"]
    await b.blob_put_many([("many-1", b"one again", 60.0)])
    assert await b.blob_get("many-1") == b"one again", "overwritten"
    keys = ["many-2", "never-put", "many-1", "many-gone", "many-2"]  # in order, a key twice, gone ones None
    assert await b.blob_get_many(keys) == [binary, None, b"one again", None, binary]
    assert await b.blob_get_many([]) == []
    await b.blob_put_many([])
    await asyncio.sleep(0.1)
    assert await b.blob_get("many-short") is None, "expired, as a blob_put's would"
    assert await b.blob_get_many(["many-short", "big"]) == [None, big]
    assert await b.blob_get("short") is None, "expired"
    assert await b.blob_delete("short-unread") is False, "an expired value is not there to delete"
    assert await b.blob_get("short-unread") is None
    assert await b.blob_get("short-but-renewed") == b"v2"
    assert await b.blob_get("big") == big


async def check_slots(b: StateBackend) -> None:
    assert [await b.acquire_slot("s", 2, 30) for _ in range(3)] == [True, True, False]
    await b.release_slot("s")
    assert await b.acquire_slot("s", 2, 30) is True
    assert await b.acquire_slot("s", 2, 30) is False
    assert await b.acquire_slot("other", 1, 30) is True  # slots are per key
    for _ in range(5):  # more releases than holders: never below zero
        await b.release_slot("s")
    assert [await b.acquire_slot("s", 1, 30) for _ in range(2)] == [True, False]


async def check_limits(b: StateBackend) -> None:
    storage = b.limits_storage()
    assert b.limits_storage() is storage
    item = RateLimitItemPerMinute(2)
    for strategy in (FixedWindowRateLimiter, SlidingWindowCounterRateLimiter, MovingWindowRateLimiter):
        limiter = strategy(storage)
        key = strategy.__name__
        assert await limiter.test(item, key) is True
        assert [await limiter.hit(item, key) for _ in range(3)] == [True, True, False]
        assert await limiter.test(item, key) is False
        assert await limiter.test(item, key + "-other") is True


async def check_windows(b: StateBackend) -> None:
    """Fixed windows: all charged or none; refunds only within the charged window."""
    a = WindowSpec("contract-win-a", 60, 1, 5)
    c = WindowSpec("contract-win-b", 60, 1, 2)
    first = await b.hit_windows([a, c])
    assert (first.refused, first.counts) == (-1, [1, 1])
    assert all(0 < r <= 60 for r in first.resets_s)
    assert (await b.hit_windows([a, c])).counts == [2, 2]
    refused = await b.hit_windows([a, c])
    assert (refused.refused, refused.counts) == (1, [2, 2]), "b is full: nothing charged, a included"
    assert (await b.hit_windows([WindowSpec("contract-win-b", 60, 0, 2)])).refused == 0, "a full window refuses 0"
    end = time.time() + first.resets_s[0]
    await b.adjust_windows([WindowAdjust("contract-win-a", 60, -2, end), WindowAdjust("contract-win-b", 60, 3, end)])
    after = await b.hit_windows([WindowSpec("contract-win-a", 60, 0, 5), WindowSpec("contract-win-b", 60, 0, 10)])
    assert after.counts == [0, 5], "a refunded within its window, b charged more"
    await b.adjust_windows([WindowAdjust("contract-win-b", 60, -1, end + 3600)])  # a window that is not current
    assert (await b.hit_windows([WindowSpec("contract-win-b", 60, 0, 10)])).counts == [5]


async def check_all(b: StateBackend) -> None:
    assert await b.ping() is True
    await check_records(b)
    await check_records_are_copies(b)
    await check_spend(b)
    await check_spend_concurrent(b)
    await check_spend_batches(b)
    await check_reservations(b)
    await check_cache(b)
    await check_blobs(b)
    await check_slots(b)
    await check_limits(b)
    await check_windows(b)
    await check_logs(b)
    await check_dump(b)


async def check_logs(b: StateBackend) -> None:
    """Append-only logs: increasing sequence numbers per stream, newest first, paging back."""
    assert await b.read_log("contract-log", 10) == []
    seqs = [await b.append_log("contract-log", {"n": i, "nested": {"k": [i]}}) for i in range(5)]
    assert seqs == sorted(seqs) and len(set(seqs)) == 5
    other = await b.append_log("contract-other", {"n": "x"})
    assert other >= 1
    newest = await b.read_log("contract-log", 3)
    assert [r["n"] for r in newest] == [4, 3, 2]
    assert newest[0] == {"n": 4, "nested": {"k": [4]}, "seq": seqs[4]}
    older = await b.read_log("contract-log", 10, before=newest[-1]["seq"])
    assert [r["n"] for r in older] == [1, 0], "paging back from the last record seen"
    assert await b.read_log("contract-log", 10, before=seqs[0]) == []
    assert await b.read_log("contract-log", 0) == []
    assert [r["n"] for r in await b.read_log("contract-other", 10)] == ["x"], "streams are separate"
    many = await asyncio.gather(*(b.append_log("contract-log", {"n": 100 + i}) for i in range(20)))
    assert len(set(many)) == 20 and min(many) > seqs[4], "concurrent appends never share a number"


async def check_dump(b: StateBackend) -> None:
    """Enumeration and restore (backups): every table, record with its id, spend counter,
    ledger mark, blob and log stream; spend and logs put back as they were."""
    await b.put("dump:t1", "b", {"n": 2})
    await b.put("dump:t1", "a", {"n": 1})
    await b.put("dump:t2", "x", {})
    await b.put("dump:gone", "x", {})
    await b.delete("dump:gone", "x")
    tables = await b.tables()
    assert {"dump:t1", "dump:t2"} <= set(tables) and "dump:gone" not in tables and tables == sorted(tables)
    assert await b.scan_items("dump:t1") == [("a", {"n": 1}), ("b", {"n": 2})]
    assert await b.scan_items("dump:none") == []

    await b.incr_spend({"dump:c": 0.5})
    assert await b.apply_spend(SpendBatch("dump-owner", 5, {"dump:d": 0.25})) is True
    counters = await b.spend_counters()
    assert (counters["dump:c"], counters["dump:d"]) == (0.5, 0.25)
    assert (await b.spend_marks())["dump-owner"] == 5
    await b.restore_spend({"dump:c": 2.0, "dump:e": 1.0}, {"dump-owner": 9, "dump-other": 3})
    assert await b.read_spend(["dump:c", "dump:d", "dump:e"]) == {"dump:c": 2.0, "dump:d": 0.25, "dump:e": 1.0}
    assert {k: v for k, v in (await b.spend_marks()).items() if k.startswith("dump-")} == {
        "dump-owner": 9,
        "dump-other": 3,
    }
    assert await b.apply_spend(SpendBatch("dump-owner", 9, {"dump:c": 1.0})) is False, "the restored mark holds"
    assert await b.apply_spend(SpendBatch("dump-owner", 10, {"dump:c": 1.0})) is True
    assert (await b.read_budget(["dump:c"], "dump-reader"))[0] == {"dump:c": 3.0}, "budgets read what was put back"

    await b.blob_put("dump-blob-1", b"\x00one", 60)
    await b.blob_put("dump-blob-2", b"two", 3600)
    await b.blob_put("dump-blob-gone", b"x", 60)
    await b.blob_delete("dump-blob-gone")
    items = {key: (value, left) async for key, value, left in b.blob_items()}
    assert items["dump-blob-1"][0] == b"\x00one" and 50 < items["dump-blob-1"][1] <= 60
    assert items["dump-blob-2"][0] == b"two" and 3500 < items["dump-blob-2"][1] <= 3600
    assert "dump-blob-gone" not in items

    first = await b.append_log("dump-log", {"n": 1})
    streams = await b.log_streams()
    assert "dump-log" in streams and "dump-restored" not in streams and streams == sorted(streams)
    records = [{"n": "a", "seq": 1_000_001}, {"n": "b", "seq": 1_000_005}]
    assert await b.restore_log("dump-restored", records) is True
    assert await b.read_log("dump-restored", 10) == [{"n": "b", "seq": 1_000_005}, {"n": "a", "seq": 1_000_001}]
    assert await b.append_log("dump-restored", {"n": "c"}) > 1_000_005, "the counter continues after the last"
    kept = await b.restore_log("dump-clash", [{"n": "x", "seq": first}, {"n": "y", "seq": first + 1_000_000}])
    assert kept is (b.kind != "embedded"), "embedded: one counter for every stream, and this number is taken"
    assert [r["n"] for r in await b.read_log("dump-clash", 10)] == ["y", "x"], "the order is kept either way"
