"""Budgets decided in Redis for every replica at once (the redis backend).

A request's budget check and its reservation are one script on the counters' slot
(:meth:`~gateway.state.redis_spend.RedisSpend.reserve`): a replica admits a request only if,
with what every replica has charged (Redis's totals) and holds for requests in flight (each
process's *hold* on the counter, one hash field per process), the budget has room; then it adds
the request's estimate to its own hold. Charged or ended, the request's estimate is taken off
the hold by the ledger's next batch, the one that carries its cost: the release is a ledger
counter of its own (``hold:<counter>``, negative), so it travels, is retried and is applied
exactly once with the cost (the batch marks), and Redis never shows neither. Replicas therefore
cannot overshoot a budget together. A process that dies stops counting
:data:`RESERVATION_TTL_S` after its last reservation.

Without it (embedded, postgres) a process checks its own view, the other replicas' spend and
reservations as last fetched (``state.refresh_interval_s``)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

from gateway.state.base import StateBackend
from gateway.state.redis_spend import HOLD_PREFIX

RESERVATION_TTL_S = 300.0
"""How long a process's holds count after its last reservation (a process that died stops
counting then; a request in flight longer than this with no other from its process stops being
counted by the other replicas)."""

Verdict = tuple[bool, list[float], list[float]]
Reserve = Callable[[Sequence[str], Sequence[float], str, float, float], Awaitable[Verdict]]
"""``reserve_budget(counters, limits, owner, usd, ttl_s) -> (admitted, totals, held)``."""


@dataclass(frozen=True, slots=True)
class Decision:
    admitted: bool
    totals: list[float]
    """Per counter: what every replica has charged."""
    held: list[float]
    """Per counter: what requests in flight held beside this one."""


class SharedBudgets:
    def __init__(self, reserve: Reserve, add: Callable[[Mapping[str, float]], None], owner: str) -> None:
        self._reserve = reserve
        self._add = add
        """The ledger's ``add``: a release rides with the next batch."""
        self._owner = owner
        self.count = 0
        """Reservations this process holds in Redis now (for ``gateway_budget_reservations``)."""
        self.usd = 0.0

    async def reserve(self, counters: Sequence[str], limits: Sequence[float], usd: float) -> Decision:
        """Check the budgets of ``counters`` and hold ``usd`` on them when admitted (Redis's
        ``BackendUnavailable`` passes through: the budgets' failure mode decides)."""
        admitted, totals, held = await self._reserve(counters, limits, self._owner, usd, RESERVATION_TTL_S)
        if admitted and usd > 0:
            self.count += 1
            self.usd += usd
        return Decision(admitted, totals, held)

    def release(self, keys: Iterable[str], usd: float) -> None:
        """Take a reservation of ``usd`` off this process's hold on ``keys``, with the next batch."""
        self._add({HOLD_PREFIX + key: -usd for key in keys})
        self.count -= 1
        self.usd = self.usd - usd if self.count else 0.0


def shared_budgets_of(
    backend: StateBackend, add: Callable[[Mapping[str, float]], None], owner: str
) -> SharedBudgets | None:
    """The ledger's shared budgets on the redis backend (its ``reserve_budget``); None elsewhere."""
    reserve: Reserve | None = getattr(backend, "reserve_budget", None) if backend.kind == "redis" else None
    return SharedBudgets(reserve, add, owner) if reserve is not None else None
