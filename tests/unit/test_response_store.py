"""Stored Responses as chains (gateway/state/response_store.py), on the real embedded backend:
a continuation reads the whole conversation back in order, while each turn stores only its own
items until a snapshot is due (by size, chain length or age), so storage grows with the
conversation, not with its square; a gone earlier record, a record from before chains, the size
cap and another key's records."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import orjson
import pytest

from gateway.canonical import JSON
from gateway.state.embedded import EmbeddedBackend
from gateway.state.response_store import MAX_CHAIN, REFRESH_SHARE, BrokenConversation, Conversation, ResponseStore

TTL_S = 1000.0


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def backend(tmp_path: Path) -> AsyncIterator[EmbeddedBackend]:
    db = EmbeddedBackend(str(tmp_path / "gw.db"))
    yield db
    await db.aclose()


def turn(n: int, words: int = 20) -> list[JSON]:
    return [
        {"type": "message", "role": "user", "content": f"question {n} " + "w " * words},
        {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": f"answer {n}"}]},
    ]


async def converse(store: ResponseStore, turns: int, *, key: str = "key-a", words: int = 20) -> list[str]:
    """``turns`` turns, each continuing the one before; the response ids."""
    ids: list[str] = []
    previous: Conversation | None = None
    for n in range(turns):
        rid = f"resp_{n}"
        assert await store.save(key, {"id": rid, "object": "response"}, turn(n, words), previous)
        ids.append(rid)
        previous = await store.conversation(key, rid)
    return ids


async def stored_bytes(backend: EmbeddedBackend, key: str, ids: list[str]) -> int:
    total = 0
    for rid in ids:
        blob = await backend.blob_get(f"resp:{key}:{rid}")
        assert blob is not None
        total += len(blob)
    return total


def owner_key(store: ResponseStore, key_id: str) -> str:
    return store._key(key_id, "x").rsplit(":", 1)[0].removeprefix("resp:")


async def test_a_continuation_reads_every_turn_back_in_order(backend: EmbeddedBackend) -> None:
    store = ResponseStore(backend, TTL_S, 1 << 24, clock=Clock())
    ids = await converse(store, 12)
    whole = await store.conversation("key-a", ids[-1])
    assert whole is not None
    assert whole.items == [item for n in range(12) for item in turn(n)]
    # the earlier ones too, each up to itself
    middle = await store.conversation("key-a", ids[5])
    assert middle is not None and middle.items == [item for n in range(6) for item in turn(n)]


async def test_storage_grows_with_the_conversation_not_its_square(backend: EmbeddedBackend) -> None:
    store = ResponseStore(backend, TTL_S, 1 << 26, clock=Clock())
    ids = await converse(store, 200)
    last = await store.load("key-a", ids[-1])
    assert last is not None
    conversation = last.total_bytes
    kept = await stored_bytes(backend, owner_key(store, "key-a"), ids)
    # Every turn with the whole conversation before it would keep about 200 / 2 = 100 times it; here
    # the snapshots keep at most twice it, the turns once, and each record its Response and the ids
    # of its chain (at most MAX_CHAIN).
    assert kept < 5 * conversation, (kept, conversation)
    records = [await store.load("key-a", rid) for rid in ids]
    snapshots = [r.response_id for r in records if r is not None and not r.chain]
    assert snapshots[0] == "resp_0" and 2 < len(snapshots) < 12, snapshots
    # a snapshot holds the whole conversation up to it; a record after it names the chain from it
    after = records[int(snapshots[-1].removeprefix("resp_")) + 1]
    assert after is not None and after.chain == [snapshots[-1]]


async def test_a_chain_is_never_longer_than_max_chain(backend: EmbeddedBackend) -> None:
    store = ResponseStore(backend, TTL_S, 1 << 26, clock=Clock())
    # one large first turn: the small turns after it never outweigh it, so only the length rule acts
    first: list[JSON] = [{"type": "message", "role": "user", "content": "x" * 200_000}]
    assert await store.save("key-a", {"id": "resp_big"}, first, None)
    previous = await store.conversation("key-a", "resp_big")
    lengths = []
    for n in range(MAX_CHAIN + 2):
        assert await store.save("key-a", {"id": f"resp_{n}"}, turn(n, 0), previous)
        previous = await store.conversation("key-a", f"resp_{n}")
        assert previous is not None
        lengths.append(len(previous.last.chain))
    assert max(lengths) == MAX_CHAIN
    assert lengths[MAX_CHAIN] == 0, "the turn after the longest chain is a snapshot"
    assert previous is not None and previous.items[0] == first[0] and len(previous.items) == 1 + 2 * (MAX_CHAIN + 2)


async def test_an_old_chain_is_cut_by_a_snapshot(backend: EmbeddedBackend) -> None:
    clock = Clock()
    store = ResponseStore(backend, TTL_S, 1 << 24, clock=clock)
    first: list[JSON] = [{"type": "message", "role": "user", "content": "x" * 10_000}]
    assert await store.save("key-a", {"id": "resp_a"}, first, None)
    clock.now += TTL_S * REFRESH_SHARE  # not yet past the share
    previous = await store.conversation("key-a", "resp_a")
    assert await store.save("key-a", {"id": "resp_b"}, turn(1), previous)
    b = await store.conversation("key-a", "resp_b")
    assert b is not None and b.last.chain == ["resp_a"]
    clock.now += 1
    assert await store.save("key-a", {"id": "resp_c"}, turn(2), b)
    c = await store.conversation("key-a", "resp_c")
    assert c is not None and c.last.chain == [] and c.last.since == clock.now
    assert c.items == first + turn(1) + turn(2)


async def test_a_gone_earlier_record_breaks_the_continuation_not_the_record(backend: EmbeddedBackend) -> None:
    store = ResponseStore(backend, TTL_S, 1 << 24, clock=Clock())
    first: list[JSON] = [{"type": "message", "role": "user", "content": "x" * 10_000}]
    assert await store.save("key-a", {"id": "resp_first"}, first, None)
    previous = await store.conversation("key-a", "resp_first")
    ids = ["resp_first"]
    for n in range(2):
        ids.append(f"resp_{n}")
        assert await store.save("key-a", {"id": ids[-1]}, turn(n), previous)
        previous = await store.conversation("key-a", ids[-1])
    last = await store.load("key-a", ids[2])
    assert last is not None and last.chain == ids[:2]
    assert await store.delete("key-a", ids[1])
    with pytest.raises(BrokenConversation) as err:
        await store.conversation("key-a", ids[2])
    assert err.value.missing == ids[1]
    kept = await store.load("key-a", ids[2])
    assert kept is not None and kept.response["id"] == ids[2], "the response itself can still be read"


async def test_a_record_from_before_chains_reads_as_a_snapshot(backend: EmbeddedBackend) -> None:
    store = ResponseStore(backend, TTL_S, 1 << 24, clock=Clock())
    legacy = {"response": {"id": "resp_old", "created_at": 999_990}, "items": turn(0) + turn(1)}
    await backend.blob_put(store._key("key-a", "resp_old"), orjson.dumps(legacy), TTL_S)
    old = await store.conversation("key-a", "resp_old")
    assert old is not None and old.items == turn(0) + turn(1) and old.last.chain == []
    assert await store.save("key-a", {"id": "resp_new"}, turn(2), old)
    new = await store.conversation("key-a", "resp_new")
    assert new is not None and new.last.chain == ["resp_old"]
    assert new.items == turn(0) + turn(1) + turn(2)


async def test_the_size_cap_counts_the_whole_conversation(backend: EmbeddedBackend) -> None:
    store = ResponseStore(backend, TTL_S, 3000, clock=Clock())
    big: list[JSON] = [{"type": "message", "role": "user", "content": "x" * 2000}]
    assert await store.save("key-a", {"id": "resp_1"}, big, None)
    previous = await store.conversation("key-a", "resp_1")
    small: list[JSON] = [{"type": "message", "role": "user", "content": "y" * 900}]
    assert await store.save("key-a", {"id": "resp_2"}, small, previous) is False, "2.9 KB of items and the Response"
    assert await store.load("key-a", "resp_2") is None


async def test_another_key_finds_nothing(backend: EmbeddedBackend) -> None:
    store = ResponseStore(backend, TTL_S, 1 << 24, clock=Clock())
    ids = await converse(store, 2)
    assert await store.conversation("key-b", ids[1]) is None
    assert await store.load("key-b", ids[0]) is None
    assert await store.conversation("key-a", "resp_unknown") is None
