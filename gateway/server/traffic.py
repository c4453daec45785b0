"""Traffic control around one request: rate limits, cache, budgets, cost.

The order, and why:

1. **admit** (rate limits and concurrency, every scope): a rejected request
   costs nothing else. Cache hits count here too: they are requests.
2. **cache lookup**: a hit is answered at once, costs nothing and is not
   charged to any budget.
3. **budget check** (only on a miss): refuse with ``insufficient_quota`` when a
   key's, team's or the gateway's budget for the period is spent.
4. the router runs; a deployment over its own rpm/tpm is skipped (``gate``);
5. **charge**: the real usage is priced and recorded as spend; a model with
   no price is counted as unpriced (and logged once), never costed at $0;
6. **end**: the token estimate is corrected, the answer stored in the cache,
   the concurrency slots released.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field

from gateway.canonical import JSON
from gateway.config.settings import Settings
from gateway.dialects.openai import estimate_prompt_tokens
from gateway.errors import BackendDegraded
from gateway.observability.logs import audit_budget_event
from gateway.observability.metrics import LiveCounts, Metrics
from gateway.policies.auth import Principal
from gateway.policies.budget import BudgetEvent, BudgetLimits, BudgetPolicy
from gateway.policies.cache import (
    CacheMode,
    ResponseCache,
    cache_key,
    cache_partition,
    decide,
    decide_embedding,
    embedding_cache_key,
)
from gateway.policies.pricing import PriceTable, UnpricedModels, cost_usd
from gateway.policies.ratelimit import Admission, RateLimiter, Scope
from gateway.routing.deployment import LiveDeployment, Route
from gateway.state.base import BackendUnavailable, StateBackend
from gateway.state.ledger import SpendLedger

log = logging.getLogger("gateway.server.traffic")
audit = logging.getLogger("gateway.events")

Gate = Callable[[LiveDeployment], Awaitable[bool]]


@dataclass(slots=True)
class Ticket:
    """One request's traffic-control state, from admission to the end."""

    principal: Principal
    route: Route
    est_tokens: int
    admission: Admission
    cache_mode: CacheMode = CacheMode.OFF
    cache_key: str | None = None
    hit: JSON | None = None
    cost_usd: float | None = None
    price_version: str = ""
    budgets: list[BudgetLimits] = field(default_factory=list)

    def headers(self) -> list[tuple[bytes, bytes]]:
        out = [*self.admission.wire]
        out.append((b"x-gateway-cache", self.cache_mode.header(hit=self.hit is not None).encode()))
        if self.cost_usd is not None:
            out.append((b"x-gateway-cost-usd", f"{self.cost_usd:.9f}".rstrip("0").rstrip(".").encode()))
            out.append((b"x-gateway-price-version", self.price_version.encode()))
        return out


def _estimate(req: JSON, embedding: bool) -> int:
    if embedding:
        data = req.get("input")
        chars = len(data) if isinstance(data, str) else sum(len(x) if isinstance(x, str) else 1 for x in data or ())
        return chars // 4 + 1
    out = req.get("max_completion_tokens") or req.get("max_tokens") or 0
    return estimate_prompt_tokens(req) + (out if isinstance(out, int) else 0)


class TrafficControl:
    def __init__(
        self,
        settings: Settings,
        backend: StateBackend,
        ledger: SpendLedger,
        prices: PriceTable,
        unpriced: UnpricedModels,
        metrics: Metrics,
        previous: TrafficControl | None = None,
    ) -> None:
        modes = settings.state.failure_mode
        self.metrics = metrics
        self.limiter = RateLimiter(backend, settings.limits, modes.limits)
        self.budgets = BudgetPolicy(
            ledger, settings.budgets, on_event=self._budget_event, on_level=metrics.budget_level
        )
        self.cache = ResponseCache(backend, settings.cache, modes.cache)
        self.prices = prices
        self.unpriced = unpriced
        self.unmetered = UnpricedModels()
        """Answers that came without usage, by model (same counting as unpriced)."""
        self._settings = settings
        self._budgets_open = modes.budgets == "open"
        # Per principal and route: what never changes while the key store serves
        # the same principal (it caches it for its refresh interval).
        self._derived: dict[tuple[int, int], tuple[Principal, Route, list[Scope], list[BudgetLimits]]] = {}
        self.degraded_budget_checks = 0
        if previous is not None:  # a reload: counts go on, events already emitted stay emitted
            self.budgets.carry_over(previous.budgets)
            self.limiter.rejections = previous.limiter.rejections
            self.limiter.degraded = previous.limiter.degraded
            self.cache.degraded = previous.cache.degraded
            self.degraded_budget_checks = previous.degraded_budget_checks

    def live_counts(self, flush_failures: int) -> LiveCounts:
        """What the policies counted, for the metrics scrape."""
        degraded = {
            "limits": sum(self.limiter.degraded.values()),
            "cache": self.cache.degraded,
            "budgets": self.degraded_budget_checks,
        }
        return LiveCounts(dict(self.limiter.rejections), degraded, flush_failures, dict(self.unpriced.counts))

    # --- before the call -----------------------------------------------------

    async def begin(
        self, principal: Principal, route: Route, req: JSON, client_headers: Mapping[str, str], *, embedding: bool
    ) -> Ticket:
        est = _estimate(req, embedding)
        scopes, budgets = self._for(principal, route)
        admission = await self.limiter.admit(scopes, est)
        ticket = Ticket(principal, route, est, admission, budgets=budgets)
        try:
            await self._lookup(ticket, req, client_headers, embedding)
            if ticket.hit is None:
                await self._check_budgets(ticket)
        except BaseException:
            await self.limiter.release(admission)
            raise
        return ticket

    def gate(self, ticket: Ticket) -> Gate | None:
        """The deployment-scope limit check for the router (None when no
        deployment of the route has limits)."""
        if not any(d.spec.limits for d in ticket.route.deployments):
            return None

        async def allowed(dep: LiveDeployment) -> bool:
            spec = dep.spec.limits
            return spec is None or await self.limiter.try_deployment(dep.id, spec, ticket.est_tokens, ticket.admission)

        return allowed

    def _for(self, principal: Principal, route: Route) -> tuple[list[Scope], list[BudgetLimits]]:
        cached = self._derived.get((id(principal), id(route)))
        if cached is not None and cached[0] is principal and cached[1] is route:
            return cached[2], cached[3]
        scopes, budgets = self._scopes(principal, route), self._budget_limits(principal)
        if len(self._derived) > 100_000:
            self._derived.clear()
        self._derived[(id(principal), id(route))] = (principal, route, scopes, budgets)
        return scopes, budgets

    def _scopes(self, principal: Principal, route: Route) -> list[Scope]:
        scopes = []
        if principal.team_limits is not None and principal.team:
            scopes.append(Scope("team", principal.team, principal.team_limits))
        if principal.limits is not None:
            scopes.append(Scope("key", principal.key_id, principal.limits))
        if route.spec.limits is not None:
            scopes.append(Scope("model", route.alias, route.spec.limits))
        return scopes

    def _budget_limits(self, p: Principal) -> list[BudgetLimits]:
        limits = []
        if p.budget_daily_usd or p.budget_monthly_usd:
            limits.append(BudgetLimits("key", p.key_id, p.budget_daily_usd, p.budget_monthly_usd))
        if p.team and (p.team_budget_daily_usd or p.team_budget_monthly_usd):
            limits.append(BudgetLimits("team", p.team, p.team_budget_daily_usd, p.team_budget_monthly_usd))
        return limits

    async def _lookup(self, ticket: Ticket, req: JSON, headers: Mapping[str, str], embedding: bool) -> None:
        settings = self._settings.cache
        partition = cache_partition(settings.scope, ticket.principal.team)
        if embedding:
            ticket.cache_mode = decide_embedding(headers, settings)
            if ticket.cache_mode is not CacheMode.OFF:
                ticket.cache_key = embedding_cache_key(req, alias=ticket.route.alias, partition=partition)
        else:
            ticket.cache_mode = decide(req, headers, settings, ticket.route.spec.cache_sampled)
            if ticket.cache_mode is not CacheMode.OFF:
                ticket.cache_key = cache_key(req, alias=ticket.route.alias, partition=partition)
        if ticket.cache_mode.lookup and ticket.cache_key is not None:
            ticket.hit = await self.cache.get(ticket.cache_key)
        self.metrics.child(self.metrics.cache_requests, ticket.cache_mode.header(hit=ticket.hit is not None)).inc()

    async def _check_budgets(self, ticket: Ticket) -> None:
        try:
            await self.budgets.check(ticket.budgets)
        except BackendUnavailable:
            if not self._budgets_open:
                raise BackendDegraded("cannot check budgets: the state backend is unreachable") from None
            self.degraded_budget_checks += 1

    # --- after the call --------------------------------------------------------

    def charge(self, ticket: Ticket, dep: LiveDeployment | None, usage: JSON | None) -> None:
        """Price the real usage and record it as spend (key, team, global, alias)."""
        if dep is None:
            return
        target = dep.target
        team = ticket.principal.team or ""
        if usage:
            self.metrics.usage(dep, ticket.route.alias, team, usage)
        self.budgets.count(usage, key_id=ticket.principal.key_id, team=ticket.principal.team, alias=ticket.route.alias)
        if not usage:
            if self.unmetered.note(target.provider, target.model):
                log.warning(
                    "%s model %r answered without usage: such answers cannot be costed (counted as unmetered)",
                    target.provider,
                    target.model,
                )
            return
        price = self.prices.price_for(target.provider, target.model, dep.spec.price)
        if price is None:
            if self.unpriced.note(target.provider, target.model):
                log.warning(
                    "no price for %s model %r: its requests are counted as unpriced, not costed at $0",
                    target.provider,
                    target.model,
                )
            return
        ticket.cost_usd = cost_usd(usage, price)
        ticket.price_version = self.prices.version
        self.metrics.child(self.metrics.cost, ticket.route.alias, team).inc(ticket.cost_usd)
        p = ticket.principal
        self.budgets.record(
            ticket.cost_usd, key_id=p.key_id, team=p.team, alias=ticket.route.alias, limits=ticket.budgets
        )

    async def end(self, ticket: Ticket, *, usage: JSON | None, answer: JSON | None) -> None:
        """Correct the token charge, store a cacheable answer, release the slots."""
        try:
            if answer is not None and ticket.hit is None and ticket.cache_mode.store and ticket.cache_key:
                await self._store(ticket, answer)
        finally:
            tokens = int(usage.get("total_tokens") or 0) if usage else None
            await self.limiter.finish(ticket.admission, tokens)

    async def _store(self, ticket: Ticket, answer: JSON) -> None:
        assert ticket.cache_key is not None
        if answer.get("object") == "list":
            await self.cache.put_embedding(ticket.cache_key, answer)
        else:
            await self.cache.put(ticket.cache_key, answer)

    async def release(self, ticket: Ticket) -> None:
        await self.limiter.release(ticket.admission)

    def _budget_event(self, event: BudgetEvent) -> None:
        self.metrics.budget_event(event)
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
