"""Traffic control after the call (steps 5 and 6 of :mod:`gateway.server.traffic`):
the real usage priced and recorded as spend, the token estimate corrected, the
answer stored in the cache, the concurrency slots released; and the budget
events reported.
"""

from __future__ import annotations

import logging

from gateway.canonical import JSON
from gateway.observability.logs import audit_budget_event
from gateway.observability.metrics import Metrics
from gateway.policies.budget import BudgetEvent, BudgetPolicy
from gateway.policies.cache import ResponseCache
from gateway.policies.pricing import PriceTable, UnpricedModels, cost_usd
from gateway.policies.ratelimit import RateLimiter
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
    ) -> None:
        self._limiter = limiter
        self._budgets = budgets
        self._cache = cache
        self._prices = prices
        self._unpriced = unpriced
        self._metrics = metrics
        self.unmetered = UnpricedModels()
        """Answers that came without usage, by model (same counting as unpriced)."""

    def charge(self, ticket: Ticket, dep: LiveDeployment | None, usage: JSON | None) -> None:
        """Price the real usage and record it as spend (key, team, global, alias)."""
        if dep is None:
            return
        target = dep.target
        team = ticket.principal.team or ""
        metrics = self._metrics
        if usage:
            metrics.usage(dep, ticket.route.alias, team, usage)
        self._budgets.count(usage, key_id=ticket.principal.key_id, team=ticket.principal.team, alias=ticket.route.alias)
        if not usage:
            if self.unmetered.note(target.provider, target.model):
                log.warning(
                    "%s model %r answered without usage: such answers cannot be costed (counted as unmetered)",
                    target.provider,
                    target.model,
                )
            return
        price = self._prices.price_for(target.provider, target.model, dep.spec.price)
        if price is None:
            if self._unpriced.note(target.provider, target.model):
                log.warning(
                    "no price for %s model %r: its requests are counted as unpriced, not costed at $0",
                    target.provider,
                    target.model,
                )
            return
        ticket.cost_usd = cost_usd(usage, price)
        ticket.price_version = self._prices.version
        metrics.child(metrics.cost, ticket.route.alias, team).inc(ticket.cost_usd)
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
            await self._limiter.finish(ticket.admission, tokens)

    async def release(self, ticket: Ticket) -> None:
        """Give the concurrency slots back (idempotent; ``end`` already did, unless it never ran)."""
        await self._limiter.release(ticket.admission)

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
