"""The Redis backend's enumeration and restore (backups: ``backup.py``): every table (its
``gw:idx:{<table>}`` set), spend counter and ledger mark (``redis_spend.py``'s keys), blob
and log stream, found with SCAN (every node of a Cluster), and the writes that put them
back. :class:`RedisDump` is the part of :class:`~gateway.state.redis.RedisBackend` that
does it; never on the request path."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any

import orjson

from gateway.state.base import Record
from gateway.state.redis_client import REDIS_ERRORS, RedisConnection, unavailable
from gateway.state.redis_spend import MARK_TTL_S, mark_key, spend_key

_SCAN_COUNT = 1000
_PAGE = 100
"""Keys read (or records written) per round trip."""
_IDX, _SPEND, _MARK, _BLOB, _LOG = "gw:idx:{", spend_key(""), mark_key(""), "gw:blob:", "gw:log:{"


def _text(raw: bytes | str) -> str:
    return raw.decode() if isinstance(raw, bytes) else raw


class RedisDump:
    """The enumeration and restore methods of the Redis backend (see the module docstring)."""

    _conn: RedisConnection

    async def _keys(self, prefix: str) -> list[str]:
        """Every key starting with ``prefix`` (no glob characters in it), sorted."""
        try:
            found = {_text(k) async for k in self._conn.client.scan_iter(match=prefix + "*", count=_SCAN_COUNT)}
        except REDIS_ERRORS as exc:
            raise unavailable(exc) from exc
        return sorted(found)

    async def _values(self, keys: Sequence[str]) -> list[Any]:
        out: list[Any] = []
        for i in range(0, len(keys), _PAGE):
            out += await self._conn.call(self._conn.client.mget(list(keys[i : i + _PAGE])))
        return out

    async def tables(self) -> list[str]:
        return [key[len(_IDX) : -1] for key in await self._keys(_IDX) if key.endswith("}")]

    async def scan_items(self, table: str) -> list[tuple[str, Record]]:
        members = await self._conn.call(self._conn.client.smembers(f"{_IDX}{table}}}"))
        ids = sorted(_text(m) for m in members)
        values = await self._values([f"gw:rec:{{{table}}}:{id_}" for id_ in ids])
        return [(id_, orjson.loads(raw)) for id_, raw in zip(ids, values, strict=True) if raw is not None]

    async def spend_counters(self) -> dict[str, float]:
        keys = await self._keys(_SPEND)
        values = await self._values(keys)
        return {key[len(_SPEND) :]: float(v) for key, v in zip(keys, values, strict=True) if v is not None}

    async def spend_marks(self) -> dict[str, int]:
        keys = await self._keys(_MARK)
        values = await self._values(keys)
        return {key[len(_MARK) :]: int(v) for key, v in zip(keys, values, strict=True) if v is not None}

    async def restore_spend(self, totals: Mapping[str, float], marks: Mapping[str, int]) -> None:
        """One MULTI (every key shares the ``{s}`` hash tag); marks live ``MARK_TTL_S`` as the ledger's do."""
        if not totals and not marks:
            return

        def fill(pipe: Any) -> None:
            for counter, usd in totals.items():
                pipe.set(spend_key(counter), repr(float(usd)))
            for owner, seq in marks.items():
                pipe.set(mark_key(owner), str(int(seq)), px=MARK_TTL_S * 1000)

        await self._conn.call(self._conn.multi(fill))

    async def blob_items(self) -> AsyncIterator[tuple[str, bytes, float]]:
        keys = await self._keys(_BLOB)
        client = self._conn.client
        for i in range(0, len(keys), _PAGE):
            page = keys[i : i + _PAGE]
            values = await asyncio.gather(*(self._conn.call(client.get(k)) for k in page))
            ttls = await asyncio.gather(*(self._conn.call(client.pttl(k)) for k in page))
            for key, value, ttl_ms in zip(page, values, ttls, strict=True):
                if value is not None and int(ttl_ms) > 0:  # gone meanwhile, or (never here) no expiry
                    raw = value.encode() if isinstance(value, str) else bytes(value)
                    yield key[len(_BLOB) :], raw, int(ttl_ms) / 1000

    async def log_streams(self) -> list[str]:
        return [key[len(_LOG) : -1] for key in await self._keys(_LOG) if key.endswith("}")]

    async def restore_log(self, stream: str, records: Sequence[Record]) -> bool:
        """Entries with their ids (``<seq>-0``), then the counter at the last ``seq``; the
        stream's key and counter share a hash tag, so each chunk is one MULTI."""
        log, counter = f"{_LOG}{stream}}}", f"gw:logseq:{{{stream}}}"
        ordered = sorted(records, key=lambda r: int(r["seq"]))
        for i in range(0, len(ordered), _PAGE):
            chunk = ordered[i : i + _PAGE]

            def fill(pipe: Any, chunk: Sequence[Record] = chunk) -> None:
                for r in chunk:
                    body = orjson.dumps({k: v for k, v in r.items() if k != "seq"})
                    pipe.xadd(log, {"r": body}, id=f"{int(r['seq'])}-0")
                pipe.set(counter, str(int(chunk[-1]["seq"])))

            await self._conn.call(self._conn.multi(fill))
        return True
