"""What the two window implementations of :class:`~gateway.policies.ratelimit.RateLimiter`
share: the scopes and their checks, the :class:`Admission` they fill in, the
failure mode with its counts, the refusals, and giving concurrency slots back.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Literal, NamedTuple, Protocol

from limits import RateLimitItem, RateLimitItemPerSecond
from limits.aio.storage import MemoryStorage
from limits.errors import StorageError

from gateway.config.settings import LimitSpec, LimitsSettings
from gateway.errors import BackendDegraded, RateLimited
from gateway.state.base import BackendUnavailable, StateBackend

_ORDER = MappingProxyType({"global": 0, "team": 1, "key": 2, "model": 3, "deployment": 4})


@dataclass(frozen=True, slots=True)
class Scope:
    kind: str
    """"global", "team", "key", "model" or "deployment"."""
    id: str
    spec: LimitSpec


class Check(NamedTuple):
    """One window of one scope, and what this request costs it."""

    scope: Scope
    unit: str  # "requests" | "tokens"
    item: RateLimitItem
    cost: int

    @property
    def ids(self) -> tuple[str, str, str]:
        return (self.scope.kind, self.scope.id, self.unit)


class Charge(NamedTuple):
    """A token charge through a ``limits`` strategy, for its correction at the end."""

    check: Check
    at: float  # when it was hit


class Charged(NamedTuple):
    """A token charge of a fixed window, for its correction at the end."""

    kind: str  # the scope's, for the degraded count
    key: str
    period_s: float
    cost: int
    window_end: float


class Admission:
    """An admitted request: its headers, and what the limiter's ``settle``
    and ``release`` undo or correct."""

    __slots__ = ("charges", "counted", "settled", "slots", "wire")

    def __init__(self, wire: list[tuple[bytes, bytes]] | None = None, slots: list[str] | None = None) -> None:
        self.wire: list[tuple[bytes, bytes]] = wire if wire is not None else []
        """OpenAI's x-ratelimit-* headers, encoded for the response."""
        self.slots = slots or []
        """The concurrency slots held (their keys)."""
        self.charges: list[Charge] = []  # limits strategies: token charges
        self.counted: list[Charged] = []  # fixed windows: token charges
        self.settled = False

    @property
    def headers(self) -> dict[str, str]:
        return {name.decode(): value.decode() for name, value in self.wire}


class WindowLimits(Protocol):
    """One way of keeping the windows (fixed, or a ``limits`` strategy): the
    limiter's request-path methods, chosen once per limiter."""

    async def admit(self, scopes: Sequence[Scope], est_tokens: int) -> Admission: ...

    async def try_deployment(
        self, dep_id: str, spec: LimitSpec, est_tokens: int, admission: Admission | None = None
    ) -> bool: ...

    async def settle(self, admission: Admission, actual_tokens: int) -> None: ...

    async def finish(self, admission: Admission, actual_tokens: int | None) -> None: ...


class LimiterCore:
    """The ground both window implementations stand on, one per limiter: the
    checks of a list of scopes (the global scope added), the failure mode and
    what it counted, refusals, and concurrency slots given back."""

    def __init__(
        self,
        backend: StateBackend,
        settings: LimitsSettings,
        failure_mode: Literal["open", "closed"],
        *,
        period_s: int,
        slot_ttl_s: float,
    ) -> None:
        self.backend = backend
        self.storage = backend.limits_storage()
        self.open = failure_mode == "open"
        self.period_s = period_s  # rpm/tpm windows; tests use 1
        self.per = {60: "minute", 1: "second"}.get(period_s, f"{period_s}s")
        self.slot_ttl_s = slot_ttl_s
        errors: tuple[type[BaseException], ...] = (BackendUnavailable, StorageError, OSError)
        if not isinstance(self.storage, MemoryStorage):  # whose base exception, ValueError, means a bug
            base = self.storage.base_exceptions
            errors += base if isinstance(base, tuple) else (base,)
        self.errors = errors
        """What the backend raises when it cannot answer: the failure mode applies."""
        self._items: dict[int, RateLimitItem] = {}  # one per amount: no parsing per request
        spec = LimitSpec(rpm=settings.rpm, tpm=settings.tpm, max_concurrent=settings.max_concurrent)
        self._global = (Scope("global", "*", spec),) if settings.rpm or settings.tpm or settings.max_concurrent else ()
        self.degraded: Counter[str] = Counter()  # decisions taken in failure mode, by scope kind
        self.rejections: Counter[str] = Counter()  # 429s by scope kind (deployment: skips)

    def ordered(self, scopes: Sequence[Scope]) -> list[Scope]:
        """The global scope and ``scopes``, broadest first."""
        return sorted((*self._global, *scopes), key=lambda s: _ORDER.get(s.kind, 9))

    def checks(self, scopes: Iterable[Scope], est_tokens: int) -> list[Check]:
        checks = []
        for scope in scopes:
            for unit, amount, cost in (("requests", scope.spec.rpm, 1), ("tokens", scope.spec.tpm, est_tokens)):
                if amount:
                    item = self._items.get(amount) or self._items.setdefault(
                        amount, RateLimitItemPerSecond(amount, self.period_s)
                    )
                    checks.append(Check(scope, unit, item, max(0, cost)))
        return checks

    def degrade(self, kinds: set[str]) -> None:
        """The backend failed: count it (``open``) or refuse with 503 (``closed``)."""
        if not self.open:
            raise BackendDegraded("rate limits cannot be checked: the state backend is unavailable")
        for kind in kinds:
            self.degraded[kind] += 1

    async def release_slots(self, keys: list[str]) -> None:
        for key in reversed(keys):
            try:
                await self.backend.release_slot(key)
            except self.errors:  # the slot's TTL frees it
                self.degraded[key.split("/")[1]] += 1

    def window_refusal(self, check: Check, retry_after: float, headers: dict[str, str]) -> RateLimited:
        """The 429 of a window that cannot take ``check`` (counted)."""
        self.rejections[check.scope.kind] += 1
        if check.cost > check.item.amount:  # can never fit: no Retry-After
            what = f"request too large: {check.cost} tokens requested, limit {check.item.amount} tokens per {self.per}"
            return RateLimited(message(check.scope, what), headers=headers)
        what = f"{check.item.amount} {check.unit} per {self.per}"
        return RateLimited(message(check.scope, what), retry_after=retry_after, headers=headers)

    def concurrency_refusal(self, scope: Scope, headers: dict[str, str]) -> ConcurrencyLimited:
        """The 429 of a scope at its ``max_concurrent`` (not counted: the admission queue
        may yet find the request a slot; traffic control counts it if it reaches the client)."""
        what = f"{scope.spec.max_concurrent} concurrent requests"
        return ConcurrencyLimited(message(scope, what), scope_kind=scope.kind, retry_after=1.0, headers=headers)


class ConcurrencyLimited(RateLimited):
    """A concurrency cap is full: a request may wait for a slot (gateway/policies/admission.py).
    ``scope_kind``: the full cap's scope (``global`` holds for every request)."""

    def __init__(self, message: str, *, scope_kind: str, **kw: Any) -> None:
        super().__init__(message, **kw)
        self.scope_kind = scope_kind


def slot_key(scope: Scope) -> str:
    return f"concurrency/{scope.kind}/{scope.id}"


def message(scope: Scope, what: str) -> str:
    name = scope.kind if scope.kind in ("global", "key") else f"{scope.kind} {scope.id}"  # key ids stay private
    return f"rate limit exceeded for {name}: {what}"
