"""Prompt-cache accounting: which prefix of a prompt this mock instance has seen before.

Tokens are the mock's tokens (words). Prefix keys chain SHA-256 digests over the model,
the tools and then the prompt piece by piece, so another model or tool set misses.

- **Anthropic** (explicit caching): blocks with ``cache_control`` are breakpoints; a
  top-level ``cache_control`` marks the last block. The longest prefix that ends at a
  block boundary at or before the last breakpoint and that an earlier request wrote is
  *read*; the blocks after it up to the last breakpoint are *written*, each under the
  ttl (``5m``/``1h``) of the first breakpoint at or after it; the blocks after the last
  breakpoint are plain input. Only prefixes ending at breakpoints are remembered. At
  most 4 breakpoints per request (cache_control on tools is ignored).
- **OpenAI** (automatic caching, chat and Responses): prompts of at least 1024 tokens;
  prefixes of 1024 + 128k tokens are remembered, and ``cached_tokens`` is the longest of
  them seen before (so always 0 or a multiple of 128 that is >= 1024).
- **Gemini**: a request naming ``cachedContent: "cachedContents/<id>"`` gets
  :func:`gemini_cached_tokens` of that name (1024..2047, derived from the name).

:class:`PrefixMemory` (on :class:`gateway.mock.state.MockState`) holds the keys, bounded:
the least recently used keys are forgotten first.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import orjson

from gateway.mock.content import count_words, text_of
from gateway.mock.errors import BadRequest

OPENAI_MIN_TOKENS = 1024
OPENAI_STEP = 128
MAX_BREAKPOINTS = 4
DEFAULT_LIMIT = 10_000
GEMINI_BASE_TOKENS = 1024
_TTLS = ("5m", "1h")


class PrefixMemory:
    """Prefix keys seen by this mock, at most ``limit`` of them (least recently used go first)."""

    __slots__ = ("_keys", "limit")

    def __init__(self, limit: int = DEFAULT_LIMIT) -> None:
        self.limit = limit
        self._keys: OrderedDict[str, None] = OrderedDict()

    def __len__(self) -> int:
        return len(self._keys)

    def seen(self, key: str) -> bool:
        if key not in self._keys:
            return False
        self._keys.move_to_end(key)
        return True

    def remember(self, key: str) -> None:
        self._keys[key] = None
        self._keys.move_to_end(key)
        while len(self._keys) > self.limit:
            self._keys.popitem(last=False)

    def clear(self) -> None:
        self._keys.clear()


@dataclass(frozen=True, slots=True)
class CacheUsage:
    """Cached prompt tokens of one request: read from the cache, written to it by ttl."""

    read: int = 0
    written_5m: int = 0
    written_1h: int = 0

    @property
    def written(self) -> int:
        return self.written_5m + self.written_1h


@dataclass(frozen=True, slots=True)
class Segment:
    """One block of an Anthropic prompt: its tokens, the key of the prefix ending with it,
    and the ttl when it is a cache breakpoint."""

    tokens: int
    key: str
    ttl: str | None = None


def chain(previous: str, piece: bytes) -> str:
    """The key of the prefix ``previous`` + ``piece``."""
    return hashlib.sha256(previous.encode() + b"\x00" + piece).hexdigest()


def seed_key(model: str, tools: Any) -> str:
    """The key every prefix of a request to ``model`` with ``tools`` starts from."""
    return chain("", model.encode() + b"\x00" + orjson.dumps(tools, option=orjson.OPT_SORT_KEYS))


# --- Anthropic --------------------------------------------------------------------------------


def anthropic_segments(body: dict[str, Any], model: str) -> tuple[Segment, ...]:
    """The blocks of ``system`` then ``messages``, with breakpoints; their tokens add up to
    the request's input tokens. Raises :class:`BadRequest` for a bad ``cache_control``."""
    key = seed_key(model, body.get("tools"))
    segments: list[Segment] = []
    for path, role, block in _blocks(body):
        key = chain(key, role.encode() + b"\x00" + orjson.dumps(_without_marker(block), option=orjson.OPT_SORT_KEYS))
        marker = block.get("cache_control") if isinstance(block, dict) else None
        ttl = _ttl(marker, f"{path}.cache_control") if marker is not None else None
        segments.append(Segment(count_words(text_of(block)), key, ttl))
    top = body.get("cache_control")
    if top is not None and segments:
        ttl = _ttl(top, "cache_control")
        if segments[-1].ttl is None:
            last = segments[-1]
            segments[-1] = Segment(last.tokens, last.key, ttl)
    points = sum(1 for s in segments if s.ttl is not None)
    if points > MAX_BREAKPOINTS:
        raise BadRequest(f"A maximum of {MAX_BREAKPOINTS} blocks with cache_control may be provided. Found {points}.")
    return tuple(segments)


def _blocks(body: dict[str, Any]) -> Iterator[tuple[str, str, Any]]:
    """``(path, role, block)`` for each block of the system prompt and the messages."""
    system = body.get("system")
    if isinstance(system, list):
        yield from ((f"system.{j}", "system", b) for j, b in enumerate(system))
    elif system is not None:
        yield "system", "system", system
    messages = body.get("messages")
    for i, message in enumerate(messages if isinstance(messages, list) else []):
        if not isinstance(message, dict):
            yield f"messages.{i}", "", message
            continue
        role, content = str(message.get("role")), message.get("content")
        if isinstance(content, list):
            yield from ((f"messages.{i}.content.{j}", role, b) for j, b in enumerate(content))
        else:
            yield f"messages.{i}.content", role, content


def _without_marker(block: Any) -> Any:
    if isinstance(block, dict) and "cache_control" in block:
        return {k: v for k, v in block.items() if k != "cache_control"}
    return block


def _ttl(marker: Any, path: str) -> str:
    if not isinstance(marker, dict):
        raise BadRequest(f"{path}: Input should be a valid dictionary", path)
    if marker.get("type") != "ephemeral":
        raise BadRequest(f"{path}.type: Input should be 'ephemeral'", f"{path}.type")
    ttl = marker.get("ttl", "5m")
    if ttl not in _TTLS:
        raise BadRequest(f"{path}.ttl: Input should be '5m' or '1h'", f"{path}.ttl")
    return str(ttl)


def anthropic_cache(segments: tuple[Segment, ...], memory: PrefixMemory) -> CacheUsage:
    """Read/written tokens for ``segments`` (see the module doc); remembers the breakpoints."""
    points = [i for i, s in enumerate(segments) if s.ttl is not None]
    if not points:
        return CacheUsage()
    last = points[-1]
    hit = next((i for i in range(last, -1, -1) if memory.seen(segments[i].key)), -1)
    written = {"5m": 0, "1h": 0}
    for i in range(hit + 1, last + 1):
        ttl = segments[next(p for p in points if p >= i)].ttl or "5m"
        written[ttl] += segments[i].tokens
    for point in points:
        memory.remember(segments[point].key)
    read = sum(s.tokens for s in segments[: hit + 1])
    return CacheUsage(read, written["5m"], written["1h"])


# --- OpenAI and Gemini ------------------------------------------------------------------------


def openai_cached_tokens(words: list[str], key: str, memory: PrefixMemory) -> int:
    """Cached tokens of a prompt of ``words`` (see the module doc); remembers its prefixes."""
    cached = start = 0
    for end in range(OPENAI_MIN_TOKENS, len(words) + 1, OPENAI_STEP):
        key = chain(key, " ".join(words[start:end]).encode())
        start = end
        if memory.seen(key):
            cached = end
        memory.remember(key)
    return cached


def gemini_cached_tokens(name: str) -> int:
    """The size the mock gives the cached content ``name`` (deterministic, 1024..2047)."""
    digest = hashlib.sha256(name.encode()).digest()
    return GEMINI_BASE_TOKENS + int.from_bytes(digest[:2], "big") % GEMINI_BASE_TOKENS
