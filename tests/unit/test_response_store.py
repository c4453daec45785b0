"""Stored Responses as chains (gateway/state/response_store.py), on the real embedded backend:
a continuation reads the whole conversation back in order, while each record holds a segment
of it, the chain's last segments folded in by the binary-counter rule, so storage grows with
about the conversation times the log of its turns, never its square, and chains stay short
(equal, growing, shrinking and mixed turn sizes); segments that would expire too soon are folded
(old ones, and ones written under a shorter TTL); a gone or unreadable earlier record, a record
from before chains, the size cap and another key's records."""

from __future__ import annotations

import logging
import math
import random
from collections.abc import AsyncIterator
from pathlib import Path

import orjson
import pytest

from gateway.canonical import JSON
from gateway.state.embedded import EmbeddedBackend
from gateway.state.response_store import (
    FRESH_SHARE,
    MERGE_FACTOR,
    BrokenConversation,
    Conversation,
    ResponseStore,
)

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


class Run:
    """A conversation of turns, each continuing the one before, and what its records keep."""

    def __init__(self, store: ResponseStore, key: str = "key-a") -> None:
        self.store, self.key = store, key
        self.ids: list[str] = []
        self.previous: Conversation | None = None
        self.kept = 0
        self.longest_chain = 0

    async def add(self, items: list[JSON]) -> Conversation:
        rid = f"resp_{len(self.ids)}"
        assert await self.store.save(self.key, {"id": rid, "object": "response"}, items, self.previous)
        self.ids.append(rid)
        found = await self.store.conversation(self.key, rid)
        assert found is not None
        self.previous = found
        self.kept += found.last.link.size
        self.longest_chain = max(self.longest_chain, len(found.last.chain))
        return found


async def test_a_continuation_reads_every_turn_back_in_order(backend: EmbeddedBackend) -> None:
    run = Run(ResponseStore(backend, TTL_S, 1 << 24, clock=Clock()))
    for n in range(11):
        await run.add(turn(n))
    whole = await run.store.conversation("key-a", run.ids[-1])
    assert whole is not None and whole.items == [item for n in range(11) for item in turn(n)]
    # turns of equal size: the segments count as a binary counter does (11 = 8 + 2 + 1)
    assert [link.response_id for link in whole.last.chain] == ["resp_7", "resp_9"]
    middle = await run.store.conversation("key-a", run.ids[5])
    assert middle is not None and middle.items == [item for n in range(6) for item in turn(n)]


@pytest.mark.parametrize(
    "sizes",
    [
        pytest.param([200] * 1500, id="equal"),
        pytest.param([20_000] + [50] * 1500, id="one-large-then-small"),
        pytest.param([int(30_000 / 1.02**n) + 20 for n in range(600)], id="shrinking"),
        pytest.param([20 + 10 * n for n in range(400)], id="growing"),
        pytest.param([random.Random(7).choice([20, 200, 2000, 20_000]) for _ in range(600)], id="mixed"),
    ],
)
async def test_storage_grows_with_the_conversation_times_the_log_of_its_turns(
    backend: EmbeddedBackend, sizes: list[int]
) -> None:
    run = Run(ResponseStore(backend, TTL_S, 1 << 28, clock=Clock()))
    for n, size in enumerate(sizes):
        found = await run.add([{"type": "message", "role": "user", "content": f"{n} " + "x" * size}])
    assert found.items[-1]["content"].startswith(f"{len(sizes) - 1} ") and len(found.items) == len(sizes)
    conversation = found.last.total_bytes
    # Each item is written again only when its segment is folded into one at least 1 + 1/1.5 times
    # its size; the whole conversation with every turn would be about len(sizes) / 2 times it.
    assert run.kept < (1 + math.log2(len(sizes))) * conversation, (run.kept, conversation)
    assert run.kept < len(sizes) / 20 * conversation
    # The segments shrink by MERGE_FACTOR along a chain: a few dozen records at most.
    smallest = min(len(orjson.dumps(item)) for item in found.items)
    assert run.longest_chain <= math.log(conversation / smallest, MERGE_FACTOR) + 1
    assert run.longest_chain <= 30, run.longest_chain


async def test_old_segments_are_folded_before_they_would_expire(backend: EmbeddedBackend) -> None:
    clock = Clock()
    run = Run(ResponseStore(backend, TTL_S, 1 << 24, clock=clock))
    await run.add([{"type": "message", "role": "user", "content": "x" * 10_000}])
    clock.now += TTL_S * (1 - FRESH_SHARE)  # it expires exactly FRESH_SHARE of the TTL from now
    b = await run.add(turn(1))
    assert [link.response_id for link in b.last.chain] == ["resp_0"]
    clock.now += 1
    c = await run.add(turn(2))
    assert c.last.chain == [], "resp_0 would expire too soon: everything folded into one record"
    assert c.items[0]["content"] == "x" * 10_000 and c.items[1:] == turn(1) + turn(2)


async def test_segments_written_under_a_longer_ttl_are_kept(backend: EmbeddedBackend) -> None:
    clock = Clock()
    first = Run(ResponseStore(backend, TTL_S, 1 << 24, clock=clock))
    await first.add([{"type": "message", "role": "user", "content": "x" * 10_000}])
    shorter = ResponseStore(backend, TTL_S / 10, 1 << 24, clock=clock)  # the TTL lowered by a reload
    found = await shorter.conversation("key-a", "resp_0")
    assert await shorter.save("key-a", {"id": "resp_1"}, turn(1), found)
    after = await shorter.conversation("key-a", "resp_1")
    assert after is not None and [link.response_id for link in after.last.chain] == ["resp_0"]


async def test_segments_written_under_a_shorter_ttl_are_folded(backend: EmbeddedBackend) -> None:
    clock = Clock()
    short = ResponseStore(backend, 100.0, 1 << 24, clock=clock)
    first = Run(short)
    await first.add([{"type": "message", "role": "user", "content": "x" * 10_000}])
    longer = ResponseStore(backend, TTL_S, 1 << 24, clock=clock)  # the TTL raised by a reload
    found = await longer.conversation("key-a", "resp_0")
    assert found is not None
    assert await longer.save("key-a", {"id": "resp_1"}, turn(1), found)
    after = await longer.conversation("key-a", "resp_1")
    assert after is not None and after.last.chain == [], "resp_0 lives 100 s, not 900"
    assert after.last.link.expires_at == clock.now + TTL_S


async def test_a_gone_earlier_record_breaks_the_continuation_not_the_record(backend: EmbeddedBackend) -> None:
    run = Run(ResponseStore(backend, TTL_S, 1 << 24, clock=Clock()))
    await run.add([{"type": "message", "role": "user", "content": "x" * 10_000}])
    await run.add(turn(1, words=1000))
    await run.add(turn(2))  # each smaller than the one before: none folded
    last = await run.store.load("key-a", run.ids[2])
    assert last is not None and [link.response_id for link in last.chain] == run.ids[:2]
    assert await run.store.delete("key-a", run.ids[1])
    with pytest.raises(BrokenConversation) as err:
        await run.store.conversation("key-a", run.ids[2])
    assert err.value.missing == run.ids[1]
    kept = await run.store.load("key-a", run.ids[2])
    assert kept is not None and kept.response["id"] == run.ids[2], "the response itself can still be read"


@pytest.mark.parametrize(
    "corrupt",
    [
        b"not json",
        b'{"response": {}, "items": {}}',
        b'{"response": {}}',
        b'{"response": [], "items": []}',
        b'{"response": {}, "items": [{"type": "message"}, 7]}',
        b'{"response": {}, "items": [], "meta": []}',
        b'{"response": {}, "items": [], "meta": {"chain": ["resp_x"], "size": 2, "expires_at": 1, "total": 2}}',
        b'{"response": {}, "items": [], "meta": {"chain": [], "expires_at": 1, "total": 2}}',
        b'{"response": {}, "items": [], "meta": {"chain": [], "size": "two", "expires_at": 1, "total": 2}}',
    ],
)
async def test_an_unreadable_record_is_logged_and_read_as_gone(
    backend: EmbeddedBackend, corrupt: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    run = Run(ResponseStore(backend, TTL_S, 1 << 24, clock=Clock()))
    await run.add([{"type": "message", "role": "user", "content": "x" * 10_000}])
    await run.add(turn(1))
    await backend.blob_put(run.store._key("key-a", "resp_0"), corrupt, TTL_S)
    with caplog.at_level(logging.ERROR, logger="gateway.state"), pytest.raises(BrokenConversation) as err:
        await run.store.conversation("key-a", "resp_1")
    assert err.value.missing == "resp_0"
    assert await run.store.load("key-a", "resp_0") is None
    assert "stored response resp_0 cannot be read" in caplog.text


async def test_a_record_from_before_chains_reads_as_one_segment(backend: EmbeddedBackend) -> None:
    clock = Clock()
    store = ResponseStore(backend, TTL_S, 1 << 24, clock=clock)
    legacy = {"response": {"id": "resp_old", "created_at": clock.now - 10}, "items": turn(0) + turn(1)}
    await backend.blob_put(store._key("key-a", "resp_old"), orjson.dumps(legacy), TTL_S)
    old = await store.conversation("key-a", "resp_old")
    assert old is not None and old.items == turn(0) + turn(1) and old.last.chain == []
    # The TTL it was written under is not known (a reload may have raised it since): it is folded
    # into the next record (once, as every turn copied the whole conversation before chains).
    assert await store.save("key-a", {"id": "resp_new"}, turn(2), old)
    new = await store.conversation("key-a", "resp_new")
    assert new is not None and new.last.chain == [] and new.items == turn(0) + turn(1) + turn(2)
    assert await store.save("key-a", {"id": "resp_next"}, turn(3), new)
    after = await store.conversation("key-a", "resp_next")
    assert after is not None and [link.response_id for link in after.last.chain] == ["resp_new"]
    assert after.items == turn(0) + turn(1) + turn(2) + turn(3)


async def test_the_size_cap_counts_the_whole_conversation(backend: EmbeddedBackend) -> None:
    store = ResponseStore(backend, TTL_S, 3000, clock=Clock())
    big: list[JSON] = [{"type": "message", "role": "user", "content": "x" * 2000}]
    assert await store.save("key-a", {"id": "resp_1"}, big, None)
    previous = await store.conversation("key-a", "resp_1")
    small: list[JSON] = [{"type": "message", "role": "user", "content": "y" * 900}]
    assert await store.save("key-a", {"id": "resp_2"}, small, previous) is False, "2.9 KB of items and the Response"
    assert await store.load("key-a", "resp_2") is None


async def test_another_key_finds_nothing(backend: EmbeddedBackend) -> None:
    run = Run(ResponseStore(backend, TTL_S, 1 << 24, clock=Clock()))
    await run.add(turn(0))
    await run.add(turn(1))
    assert await run.store.conversation("key-b", run.ids[1]) is None
    assert await run.store.load("key-b", run.ids[0]) is None
    assert await run.store.conversation("key-a", "resp_unknown") is None
