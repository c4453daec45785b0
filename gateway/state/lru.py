"""Bounded caches for the request path: :class:`Lru`, a map that forgets its least
recently used entry once it holds ``maxsize`` entries, and :class:`Hashed`, a tuple whose
hash is worked out once, when it is made.

The caches that traffic control keeps per key, team and alias are keyed by what their
values depend on (a key id, an alias, the limits themselves), never by an object's
identity: a key record read again from the state backend is a new object with the same
content, and it must find the same entry, not add one. Each is an :class:`Lru` sized
well above the working set it serves (the keys in use times their aliases), so memory
stays flat however long the process runs, and an entry still in use is never dropped
with the rest (as a cache cleared whole when full would drop it).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable, Iterable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")
T = TypeVar("T")


class Lru(Generic[K, V]):
    """A map of at most ``maxsize`` entries: adding one more evicts the least recently
    used (read or written). Values are never None (None is a miss)."""

    __slots__ = ("_data", "evictions", "maxsize")

    def __init__(self, maxsize: int) -> None:
        if maxsize < 1:
            raise ValueError(f"an Lru holds at least 1 entry, not {maxsize}")
        self.maxsize = maxsize
        self.evictions = 0
        """Entries evicted so far."""
        self._data: OrderedDict[K, V] = OrderedDict()

    def __len__(self) -> int:
        return len(self._data)

    def __contains__(self, key: object) -> bool:
        return key in self._data

    def get(self, key: K) -> V | None:
        """The value of ``key``, now the most recently used; None when absent."""
        data = self._data
        value = data.get(key)
        if value is not None:
            data.move_to_end(key)
        return value

    def put(self, key: K, value: V) -> V:
        """Set ``key`` (the most recently used) and return ``value``; past ``maxsize``
        entries, the least recently used one is evicted."""
        data = self._data
        data[key] = value
        data.move_to_end(key)
        if len(data) > self.maxsize:
            data.popitem(last=False)
            self.evictions += 1
        return value

    def pop(self, key: K) -> V | None:
        """Remove ``key``; its value, or None when absent."""
        return self._data.pop(key, None)


class Hashed(tuple[T, ...], Generic[T]):
    """A tuple that works out its hash once, when it is made: a cache key built once
    (per key and alias, say) and looked up on every request then costs one dict lookup,
    however dear its items are to hash. Equal to, and hashing like, the plain tuple of
    its items."""

    _hash: int

    def __new__(cls, items: Iterable[T] = ()) -> Hashed[T]:
        made = super().__new__(cls, items)
        made._hash = tuple.__hash__(made)
        return made

    def __hash__(self) -> int:
        return self._hash
