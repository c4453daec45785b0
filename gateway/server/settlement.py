"""Traffic control after the call (steps 5 and 6 of :mod:`gateway.server.traffic`):
the budget reservation given back and the real usage priced and recorded as
spend (in one synchronous step, so the budgets never see neither) and written
to the spend journal before the answer is sent, the token estimate corrected,
the answer stored in the cache, the concurrency slots released (the
reservation too, on every path that never charged); and the budget events
reported.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from gateway.canonical import JSON
from gateway.observability.logs import audit_budget_event
from gateway.observability.metrics import Metrics
from gateway.policies.budget import BudgetEvent, BudgetPolicy
from gateway.policies.cache import ResponseCache
from gateway.policies.pricing import PriceTable, UnpricedModels, cost_usd, reported_cost
from gateway.policies.ratelimit import RateLimiter
from gateway.providers.base import Target
from gateway.routing.deployment import LiveDeployment
from gateway.server.gatekeeper import Ticket

log = logging.getLogger("gateway.server.traffic")  # traffic control's logger, whichever module speaks
audit = logging.getLogger("gateway.events")


class Settlement:
    """Settles a :class:`Ticket`; one per :class:`~gateway.server.traffic.TrafficControl`."""

    def __init__(
        self,
        limiter: RateLimiter,
        budgets: BudgetPolicy,
        cache: ResponseCache,
        prices: PriceTable,
        unpriced: UnpricedModels,
        metrics: Metrics,
        journal_now: Callable[[], None],
        wake: Callable[[], None] = lambda: None,
    ) -> None:
        self._limiter = limiter
        self._wake = wake
        """Offers freed slots to the admission queue's waiters."""
        self._journal_now = journal_now
        self._budgets = budgets
        self._cache = cache
        self._prices = prices
        self._unpriced = unpriced
        self._metrics = metrics
        self.unmetered = UnpricedModels()
        """Answers that came without usage, by model (same counting as unpriced)."""

    def charge(self, ticket: Ticket, dep: LiveDeployment | None, usage: JSON | None) -> None:
        """Give back the budget reservation, price the real usage and record it
        as spend (key, team, global, alias) and usage, then write them to the
        spend journal (the embedded backend's) at once: a non-stream answer is
        sent right after, so what its client receives is on file."""
        reservation, ticket.reservation = ticket.reservation, None
        if reservation is not None:
            self._budgets.release(reservation)
        if dep is None:
            return
        self._record(ticket, dep, usage)
        self._journal_now()

    def _record(self, ticket: Ticket, dep: LiveDeployment, usage: JSON | None) -> None:
        """Usage counted; priced, the cost recorded on every spend counter (or unpriced/unmetered noted)."""
        target = dep.target
        team = ticket.principal.team or ""
        metrics = self._metrics
        if usage:
            metrics.usage(dep, ticket.route.alias, team, usage)
        self._budgets.count(usage, key_id=ticket.principal.key_id, team=ticket.principal.team, alias=ticket.route.alias)
        if not usage:
            _note_once(
                self.unmetered,
                target,
                "%s model %r answered without usage: such answers cannot be costed (counted as unmetered)",
            )
            return
        price = self._prices.price_for(target.provider, target.model, dep.spec.price)
        if price is None:
            _note_once(
                self._unpriced,
                target,
                "no price for %s model %r: its requests are counted as unpriced, not costed at $0",
            )
            return
        ticket.cost_usd = cost_usd(usage, price)
        ticket.price_version = self._prices.version
        metrics.child(metrics.cost, ticket.route.alias, team).inc(ticket.cost_usd)
        reported = reported_cost(usage)
        if reported is not None:  # the upstream's own figure, for cost reconciliation
            metrics.cost_reconciled(target.provider, ticket.route.alias, reported, ticket.cost_usd)
        p = ticket.principal
        self._budgets.record(
            ticket.cost_usd, key_id=p.key_id, team=p.team, alias=ticket.route.alias, limits=ticket.budgets
        )

    async def end(self, ticket: Ticket, *, usage: JSON | None, answer: JSON | None) -> None:
        """Correct the token charge, store a cacheable answer, release the slots."""
        try:
            if answer is not None and ticket.hit is None and ticket.cache_mode.store and ticket.cache_key:
                await self._store(ticket, answer)
        finally:
            tokens = int(usage.get("total_tokens") or 0) if usage else None
            held = bool(ticket.admission.slots)
            await self._limiter.finish(ticket.admission, tokens)
            if held:
                self._wake()

    async def release(self, ticket: Ticket) -> None:
        """Give the budget reservation and the concurrency slots back, whatever
        happened (idempotent; ``charge`` and ``end`` already did, unless they never ran)."""
        reservation, ticket.reservation = ticket.reservation, None
        if reservation is not None:
            self._budgets.release(reservation)
        if ticket.admission.slots:
            await self._limiter.release(ticket.admission)
            self._wake()

    async def _store(self, ticket: Ticket, answer: JSON) -> None:
        assert ticket.cache_key is not None
        if answer.get("object") == "list":
            await self._cache.put_embedding(ticket.cache_key, answer)
        else:
            await self._cache.put(ticket.cache_key, answer)


def report_budget_event(metrics: Metrics, event: BudgetEvent) -> None:
    """A budget's threshold or exhaustion: counted, audited and logged."""
    metrics.budget_event(event)
    audit_budget_event(event)
    audit.warning(
        "budget %s: %s %r has spent %.6g of its %s budget of %.6g USD (%s)",
        event.kind,
        event.scope,
        event.id,
        event.spent,
        event.period,
        event.limit,
        event.period_id,
    )


def _note_once(counts: UnpricedModels, target: Target, warning: str) -> None:
    """Count a request of ``target``'s model in ``counts``; the first of each model is logged."""
    if counts.note(target.provider, target.model):
        log.warning(warning, target.provider, target.model)
