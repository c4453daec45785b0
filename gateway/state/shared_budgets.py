"""Budgets decided in Redis for every replica at once (the redis backend).

A request's budget check and its reservation are one script on the counters' slot
(:meth:`~gateway.state.redis_spend.RedisSpend.reserve`): a replica admits a request only if,
with what every replica has charged (Redis's totals) and holds for requests in flight (the
reservation fields), the budget has room; then it holds the request's estimate under a field of
its own. Charged or ended, the field is dropped by the ledger's next batch, the one that carries
the request's cost (:meth:`~gateway.state.spend_writer.SpendWriter.release`): Redis never sees
neither, so replicas cannot overshoot a budget together. A field of a process that died expires
after :data:`RESERVATION_TTL_S`.

Without it (embedded, postgres) a process checks its own view, the other replicas' spend and
reservations as last fetched (``state.refresh_interval_s``)."""

from __future__ import annotations

import itertools
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass

from gateway.state.base import StateBackend
from gateway.state.spend_writer import SpendWriter

RESERVATION_TTL_S = 300.0
"""How long a shared reservation outlives a process that died holding it (a request in flight
longer keeps being counted only by its own process)."""

Verdict = tuple[bool, list[float], list[float]]
Reserve = Callable[[Sequence[str], Sequence[float], str, float, float], Awaitable[Verdict]]
"""``reserve_budget(counters, limits, field, usd, ttl_s) -> (admitted, totals, held)``."""


@dataclass(frozen=True, slots=True)
class Decision:
    admitted: bool
    field: str | None
    """The reservation held (admitted with a cost to hold), else None."""
    totals: list[float]
    """Per counter: what every replica has charged."""
    held: list[float]
    """Per counter: what requests in flight held beside this one."""


class SharedBudgets:
    def __init__(self, reserve: Reserve, writer: SpendWriter, owner: str) -> None:
        self._reserve = reserve
        self._writer = writer
        self._owner = owner
        self._ids = itertools.count(1)
        self.count = 0
        """Reservations this process holds in Redis now (for ``gateway_budget_reservations``)."""
        self.usd = 0.0

    async def reserve(self, counters: Sequence[str], limits: Sequence[float], usd: float) -> Decision:
        """Check the budgets of ``counters`` and hold ``usd`` on them when admitted (Redis's
        ``BackendUnavailable`` passes through: the budgets' failure mode decides)."""
        field = f"{self._owner}:{next(self._ids)}" if usd > 0 else ""
        admitted, totals, held = await self._reserve(counters, limits, field, usd, RESERVATION_TTL_S)
        if admitted and field:
            self.count += 1
            self.usd += usd
        return Decision(admitted, field if admitted and field else None, totals, held)

    def release(self, keys: Iterable[str], field: str, usd: float) -> None:
        """Drop ``field`` (which held ``usd``) with the ledger's next batch."""
        self._writer.release(keys, field)
        self.count -= 1
        self.usd = self.usd - usd if self.count else 0.0


def shared_budgets_of(backend: StateBackend, writer: SpendWriter, owner: str) -> SharedBudgets | None:
    """The ledger's shared budgets on the redis backend (its ``reserve_budget``); None elsewhere."""
    reserve: Reserve | None = getattr(backend, "reserve_budget", None) if backend.kind == "redis" else None
    return SharedBudgets(reserve, writer, owner) if reserve is not None else None
