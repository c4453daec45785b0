"""The response cache: exact-match caching of chat completions (and embeddings).

Keys (:func:`cache_key`) are ``v1:<partition>:<sha256>`` over the normalised
request, so a team never reads another team's entries under the ``team`` scope.
The key covers the alias, the messages and every parameter that can change the
output. Left out are only the parameters known not to: ``model`` (the alias is
keyed instead), ``stream``, ``stream_options``, ``user``, ``metadata``,
``store``, ``safety_identifier`` and ``prompt_cache_key``. **Any other key, known
or not, is included**: a parameter the gateway has never heard of may change
the answer, and a needless miss is cheaper than a wrong hit. Normalisation
before hashing: object keys sorted; top-level and per-message ``null`` values
dropped (OpenAI reads null as absent); a ``stop`` string equals the one-element
list; integral floats equal ints (``0.0`` == ``0``). Nothing else (defaults are
*not* filled in: ``n`` absent and ``n: 1`` are different keys).

Whether a request may use the cache (:func:`decide`): the cache is enabled and
the request is deterministic, i.e. ``temperature`` is explicitly ``0``, unless
the alias (``models.<alias>.cache_sampled``) or the gateway (``cache.cache_sampled``)
allows caching sampled requests. An absent temperature counts as sampled: it is
OpenAI's default of 1. ``n > 1`` is cached like anything else. Client headers:
``Cache-Control: no-store`` or ``x-gateway-cache: off`` bypass the cache;
``Cache-Control: no-cache`` or ``x-gateway-cache: refresh`` skip the lookup but
store the fresh answer.

The response tells the client what happened in :data:`CACHE_HEADER`:

- ``hit``: served from the cache; no upstream was called.
- ``miss``: looked up and not found (or the backend was unreachable, fail-open);
  the upstream answered and a storable answer was stored.
- ``refresh``: the client asked to skip the lookup; the fresh answer was stored.
- ``off``: the cache was not used (disabled, sampled request, or the client
  sent ``no-store`` / ``x-gateway-cache: off``).
"""

from __future__ import annotations

import enum
import hashlib
import logging
from collections.abc import Mapping
from typing import Any

import orjson

from gateway.canonical import JSON
from gateway.config.fields import Mode
from gateway.config.settings import CacheSettings
from gateway.errors import BackendDegraded
from gateway.state.base import BackendUnavailable, StateBackend

log = logging.getLogger("gateway.cache")

CACHE_HEADER = "x-gateway-cache"
"""Response header with one of ``hit``, ``miss``, ``refresh``, ``off``; also the
request header with which a client asks for ``refresh`` or ``off``."""

KEY_VERSION = "v1"

EXCLUDED_PARAMS = frozenset(
    {"model", "stream", "stream_options", "user", "metadata", "store", "safety_identifier", "prompt_cache_key"}
)
"""Chat request keys that cannot change the answer; every other key is keyed."""

OUTPUT_PARAMS = (
    "messages",
    "temperature",
    "top_p",
    "top_k",
    "n",
    "max_tokens",
    "max_completion_tokens",
    "stop",
    "seed",
    "presence_penalty",
    "frequency_penalty",
    "logit_bias",
    "tools",
    "tool_choice",
    "parallel_tool_calls",
    "response_format",
    "reasoning_effort",
    "logprobs",
    "top_logprobs",
)
"""The known output-affecting parameters (documentation and tests; the key
includes them by the rule above, along with any unknown ones)."""

_EMBEDDING_EXCLUDED = frozenset({"model", "user", "metadata"})
_MAX_EXACT_INT = 2**53


def cache_partition(scope: str, team: str | None) -> str:
    """The key partition: ``team:<id>`` under the team scope (``noteam`` for a
    client key with no team), ``global`` under the global scope. The prefix
    keeps a team named ``global`` apart from the global partition."""
    if scope == "global":
        return "global"
    return f"team:{team}" if team else "noteam"


def cache_key(req: JSON, *, alias: str, partition: str) -> str:
    """The exact-match key of a chat request (see the module docstring)."""
    body: JSON = {}
    for name, value in req.items():
        if name in EXCLUDED_PARAMS or value is None:
            continue
        if name == "messages" and isinstance(value, list):
            body[name] = [{k: v for k, v in m.items() if v is not None} if isinstance(m, dict) else m for m in value]
        elif name == "stop" and isinstance(value, str):
            body[name] = [value]
        else:
            body[name] = value
    return _key("chat", alias, partition, body)


def embedding_cache_key(req: JSON, *, alias: str, partition: str) -> str:
    """The key of an embeddings request: input, dimensions, encoding_format
    (absent = ``float``) and, by the same rule as chat, any unknown key."""
    body = {k: v for k, v in req.items() if k not in _EMBEDDING_EXCLUDED and v is not None}
    body.setdefault("encoding_format", "float")
    return _key("embedding", alias, partition, body)


def _key(kind: str, alias: str, partition: str, body: JSON) -> str:
    # kind, alias and partition are hashed too, so no choice of partition text
    # can make two different requests share a key.
    payload = {"kind": kind, "alias": alias, "partition": partition, "request": _normalise(body)}
    digest = hashlib.sha256(orjson.dumps(payload, option=orjson.OPT_SORT_KEYS)).hexdigest()
    return f"{KEY_VERSION}:{partition}:{digest}"


def _normalise(value: Any) -> Any:
    """Integral floats as ints, recursively (JSON does not tell 1.0 from 1)."""
    if isinstance(value, float):
        return int(value) if value.is_integer() and abs(value) < _MAX_EXACT_INT else value
    if isinstance(value, dict):
        return {k: _normalise(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_normalise(v) for v in value]
    return value


class CacheMode(enum.Enum):
    """What the cache does for one request."""

    LOOKUP_STORE = "lookup_store"
    """Serve a hit; on a miss store the answer."""
    STORE_ONLY = "store_only"
    """Skip the lookup, store the fresh answer (``refresh``)."""
    OFF = "off"

    @property
    def lookup(self) -> bool:
        return self is CacheMode.LOOKUP_STORE

    @property
    def store(self) -> bool:
        return self is not CacheMode.OFF

    def header(self, *, hit: bool = False) -> str:
        """The :data:`CACHE_HEADER` value of a response under this mode."""
        if self is CacheMode.OFF:
            return "off"
        if self is CacheMode.STORE_ONLY:
            return "refresh"
        return "hit" if hit else "miss"


def _header(headers: Mapping[str, str], name: str) -> str:
    value = headers.get(name)
    if value is None:
        value = next((v for k, v in headers.items() if k.lower() == name), "")
    return value.strip().lower()


def _client_mode(headers: Mapping[str, str]) -> CacheMode:
    directives = {d.strip().split("=", 1)[0] for d in _header(headers, "cache-control").split(",")}
    ours = _header(headers, CACHE_HEADER)
    if "no-store" in directives or ours == "off":
        return CacheMode.OFF
    if "no-cache" in directives or ours == "refresh":
        return CacheMode.STORE_ONLY
    return CacheMode.LOOKUP_STORE


def decide(
    req: JSON, headers: Mapping[str, str], settings: CacheSettings, alias_cache_sampled: bool | None
) -> CacheMode:
    """The cache mode of a chat request (see the module docstring)."""
    if not settings.enabled or _unreplayable(req):
        return CacheMode.OFF
    temperature = req.get("temperature")
    deterministic = isinstance(temperature, (int, float)) and not isinstance(temperature, bool) and temperature == 0
    sampled_ok = settings.cache_sampled if alias_cache_sampled is None else alias_cache_sampled
    if not (deterministic or sampled_ok):
        return CacheMode.OFF
    return _client_mode(headers)


def _unreplayable(req: JSON) -> bool:
    """A request whose answer a cache hit could not give back whole: one asking for
    Anthropic thinking or a Gemini thinking config (a hit is rendered from the canonical
    answer, which keeps no thinking blocks or signatures, and the client must send those
    back next turn), or a body only its own format can take (``native_body``)."""
    thinking = req.get("thinking")
    enabled = isinstance(thinking, dict) and thinking.get("type") != "disabled"
    return enabled or "thinking_config" in req or "native_body" in req


def decide_embedding(headers: Mapping[str, str], settings: CacheSettings) -> CacheMode:
    """The cache mode of an embeddings request: always deterministic."""
    return _client_mode(headers) if settings.enabled else CacheMode.OFF


def storable(completion: JSON) -> bool:
    """A whole chat completion: choices, each with a finish_reason, no error.
    ``length`` counts as whole: the same max_tokens (keyed) truncates alike."""
    choices = completion.get("choices")
    if "error" in completion or not isinstance(choices, list) or not choices:
        return False
    return all(isinstance(c, dict) and c.get("finish_reason") for c in choices)


class ResponseCache:
    """Stored answers in the state backend, as orjson bytes with ``ttl_s``.

    Counters (plain ints, for metrics): ``hits``, ``misses`` (a lookup that
    found nothing usable, an unreachable backend included), ``stores``,
    ``skipped`` (not stored: not whole, or over ``max_entry_bytes``) and
    ``degraded`` (backend unreachable, answered per ``failure_mode``:
    ``open`` = miss / no store, ``closed`` = :class:`BackendDegraded`).
    """

    __slots__ = ("_backend", "_mode", "_settings", "degraded", "hits", "misses", "skipped", "stores")

    def __init__(self, backend: StateBackend, settings: CacheSettings, failure_mode: Mode) -> None:
        self._backend = backend
        self._settings = settings
        self._mode = failure_mode
        self.hits = 0
        self.misses = 0
        self.stores = 0
        self.skipped = 0
        self.degraded = 0

    async def get(self, key: str) -> JSON | None:
        """The stored answer (a chat.completion, or an embeddings list), or None."""
        try:
            raw = await self._backend.cache_get(key)
        except BackendUnavailable as err:
            self._unavailable("lookup", err)
            self.misses += 1
            return None
        value: Any = None
        if raw is not None:
            try:
                value = orjson.loads(raw)
            except orjson.JSONDecodeError:
                log.warning("cache entry %s is not JSON; treated as a miss", key)
        if not isinstance(value, dict):
            self.misses += 1
            return None
        self.hits += 1
        return value

    async def put(self, key: str, completion: JSON) -> bool:
        """Store a chat completion if it is whole and small enough; True if stored."""
        if not storable(completion):
            self.skipped += 1
            return False
        return await self._store(key, completion)

    async def put_embedding(self, key: str, result: JSON) -> bool:
        """Store an embeddings answer (a list with ``data``); True if stored."""
        if "error" in result or not isinstance(result.get("data"), list):
            self.skipped += 1
            return False
        return await self._store(key, result)

    async def _store(self, key: str, value: JSON) -> bool:
        data = orjson.dumps(value)
        if len(data) > self._settings.max_entry_bytes:
            self.skipped += 1
            return False
        try:
            await self._backend.cache_set(key, data, self._settings.ttl_s)
        except BackendUnavailable as err:
            self._unavailable("store", err)
            return False
        self.stores += 1
        return True

    def _unavailable(self, what: str, err: BackendUnavailable) -> None:
        self.degraded += 1
        if self._mode == "closed":
            raise BackendDegraded(f"response cache unavailable ({what}): {err}") from err
        log.warning("response cache %s skipped, state backend unavailable: %s", what, err)
