"""Traffic control before the call (steps 1-4 of :mod:`gateway.server.traffic`):
rate limits and concurrency, the cache lookup, the budget check (which reserves
the request's estimated cost: :func:`cost_estimate`), and the deployment gate
the router asks; the :class:`Ticket` a request carries from admission to the end.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from gateway.canonical import JSON
from gateway.config.price_rates import multiplier_at, rates_for
from gateway.config.settings import Price, Settings
from gateway.dialects.openai import estimate_prompt_tokens
from gateway.errors import BackendDegraded
from gateway.observability.metrics import Metrics
from gateway.policies.auth import Principal
from gateway.policies.budget import BudgetLimits, BudgetPolicy, Reservation
from gateway.policies.cache import (
    CacheMode,
    ResponseCache,
    cache_key,
    cache_partition,
    decide,
    decide_embedding,
    embedding_cache_key,
)
from gateway.policies.pricing import PriceTable
from gateway.policies.ratelimit import Admission, RateLimiter, Scope
from gateway.routing.deployment import LiveDeployment, Route
from gateway.server.queueing import Queueing
from gateway.state.base import BackendUnavailable
from gateway.state.lru import Hashed, Lru

Gate = Callable[[LiveDeployment], Awaitable[bool]]
DERIVED_MAX = 100_000
"""Derivations kept (least recently used evicted): one per client key and alias in use,
so 10,000 keys each calling 10 aliases fit."""
RoutePrice = tuple[Price, int | None]
"""A priced deployment of a route: its price and its ``max_tokens_cap``."""
"""A priced deployment of a route: input and output USD per 1M tokens, its max_tokens_cap."""


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
    budgets: Sequence[BudgetLimits] = ()
    reservation: Reservation | None = None
    """The estimated cost held on the budgets until the request is charged or ends."""

    def headers(self) -> list[tuple[bytes, bytes]]:
        out = [*self.admission.wire]
        out.append((b"x-gateway-cache", self.cache_mode.header(hit=self.hit is not None).encode()))
        if self.cost_usd is not None:
            out.append((b"x-gateway-cost-usd", f"{self.cost_usd:.9f}".rstrip("0").rstrip(".").encode()))
            out.append((b"x-gateway-price-version", self.price_version.encode()))
        return out


def _estimate(req: JSON, embedding: bool) -> tuple[int, int]:
    """(prompt tokens, roughly; the max_tokens asked for, 0 when none)."""
    if embedding:
        data = req.get("input")
        chars = len(data) if isinstance(data, str) else sum(len(x) if isinstance(x, str) else 1 for x in data or ())
        return chars // 4 + 1, 0
    out = req.get("max_completion_tokens") or req.get("max_tokens") or 0
    return estimate_prompt_tokens(req), (out if isinstance(out, int) else 0)


def route_prices(route: Route, prices: PriceTable) -> list[RoutePrice]:
    """The prices of a route's priced deployments (as the settlement prices them)."""
    out = []
    for dep in route.deployments:
        price = prices.price_for(dep.target.provider, dep.target.model, dep.spec.price)
        if price is not None:
            out.append((price, dep.spec.params.max_tokens_cap))
    return out


def cost_estimate(
    priced: list[RoutePrice],
    prompt: int,
    max_tokens: int,
    default_out: int,
    embedding: bool,
    at: datetime | None = None,
) -> float:
    """The most the request may cost on any priced deployment of its route (what a budget
    reserves): the prompt estimate at the dearest prompt rate (input, or a cache write where
    that costs more: the whole prompt may be written), plus the output tokens at the dearer
    of output and reasoning, both at the rates of the long-context tier the prompt falls in
    and times the time-of-day multiplier in force at ``at`` (now). The output is
    ``max_tokens`` (capped by the deployment's ``max_tokens_cap``), else that cap, else
    ``default_out``; none for an embedding. 0 when no deployment is priced (nothing would
    be charged)."""
    worst, when = 0.0, at
    for price, cap in priced:
        out = 0 if embedding else (max_tokens or cap or default_out)
        if cap is not None and out > cap:
            out = cap
        rates = rates_for(price, prompt)
        prompt_rate = max(rates.input, rates.cache_write, rates.cache_write_1h)
        output_rate = max(rates.output, rates.reasoning)
        cost = (prompt * prompt_rate + out * output_rate) / 1_000_000
        if price.time_of_day:  # the clock is read once, and only for a price that has windows
            when = when or datetime.now(UTC)
            cost *= multiplier_at(price.time_of_day, when)
        worst = max(worst, cost)
    return worst


def _scopes(principal: Principal, route: Route) -> list[Scope]:
    scopes = []
    if principal.team_limits is not None and principal.team:
        scopes.append(Scope("team", principal.team, principal.team_limits))
    if principal.limits is not None:
        scopes.append(Scope("key", principal.key_id, principal.limits))
    if route.spec.limits is not None:
        scopes.append(Scope("model", route.alias, route.spec.limits))
    return scopes


def _budget_limits(p: Principal) -> list[BudgetLimits]:
    limits = []
    if p.budget_daily_usd or p.budget_monthly_usd:
        limits.append(BudgetLimits("key", p.key_id, p.budget_daily_usd, p.budget_monthly_usd))
    if p.team and (p.team_budget_daily_usd or p.team_budget_monthly_usd):
        limits.append(BudgetLimits("team", p.team, p.team_budget_daily_usd, p.team_budget_monthly_usd))
    return limits


@dataclass(slots=True)
class _Derived:
    """The rate-limit scopes and budget limits of one principal on one route, and what
    they were made of (:func:`_depends`); the principal and route last seen with them."""

    principal: Principal
    route: Route
    depends: tuple[object, ...]
    scopes: Hashed[Scope]
    budgets: Hashed[BudgetLimits]


def _depends(p: Principal, route: Route) -> tuple[object, ...]:
    """Every field :func:`_scopes` and :func:`_budget_limits` read besides the key id and
    the alias (the cache key): while it compares equal, so do the scopes and budgets."""
    return (
        p.team,
        p.team_limits,
        p.limits,
        p.budget_daily_usd,
        p.budget_monthly_usd,
        p.team_budget_daily_usd,
        p.team_budget_monthly_usd,
        route.spec.limits,
    )


class Gatekeeper:
    """Admits a request and issues its :class:`Ticket`, or refuses it; one per
    :class:`~gateway.server.traffic.TrafficControl`."""

    def __init__(
        self,
        settings: Settings,
        limiter: RateLimiter,
        budgets: BudgetPolicy,
        cache: ResponseCache,
        metrics: Metrics,
        prices: PriceTable,
        queueing: Queueing,
    ) -> None:
        self._limiter = limiter
        self._queueing = queueing
        self._budgets = budgets
        self._prices = prices
        self._default_out = settings.budgets.estimate_output_tokens
        self._route_prices: dict[str, tuple[Route, list[RoutePrice]]] = {}
        self._cache = cache
        self._cache_settings = settings.cache
        self._metrics = metrics
        self._budgets_open = settings.state.failure_mode.budgets == "open"
        self._derived: Lru[tuple[str, str, str], _Derived] = Lru(DERIVED_MAX)
        """Per (principal kind, key id, alias): the scopes and budgets, the same objects for as
        long as what they are made of is unchanged (however often the key record is read
        again), so the limiter's and the budget policy's caches find them in one lookup."""
        self.degraded_budget_checks = 0
        """Budget checks passed in failure mode ``open``."""

    async def begin(
        self, principal: Principal, route: Route, req: JSON, client_headers: Mapping[str, str], *, embedding: bool
    ) -> Ticket:
        """Admit (rate limits), look the answer up in the cache, and on a miss check the budgets."""
        prompt, max_tokens = _estimate(req, embedding)
        scopes, budgets = self._for(principal, route)
        admission = await self._queueing.admit(principal, route, scopes, prompt + max_tokens, client_headers)
        ticket = Ticket(principal, route, prompt + max_tokens, admission, budgets=budgets)
        try:
            await self._lookup(ticket, req, client_headers, embedding)
            if ticket.hit is None:
                priced = self._priced(route)
                estimate = cost_estimate(priced, prompt, max_tokens, self._default_out, embedding) if priced else 0.0
                await self._check_budgets(ticket, estimate)
        except BaseException:
            await self._limiter.release(admission)
            raise
        return ticket

    async def admit(self, principal: Principal, route: Route, client_headers: Mapping[str, str]) -> Ticket:
        """Rate limits only, for a request that calls no model (token counting): it
        counts as a request, with no tokens, no cache and no budget."""
        scopes, _ = self._for(principal, route)
        return Ticket(principal, route, 0, await self._queueing.admit(principal, route, scopes, 0, client_headers))

    def gate(self, ticket: Ticket) -> Gate | None:
        """The deployment-scope limit check for the router (None when no
        deployment of the route has limits)."""
        if not any(d.spec.limits for d in ticket.route.deployments):
            return None
        limiter = self._limiter

        async def allowed(dep: LiveDeployment) -> bool:
            spec = dep.spec.limits
            return spec is None or await limiter.try_deployment(dep.id, spec, ticket.est_tokens, ticket.admission)

        return allowed

    def _for(self, principal: Principal, route: Route) -> tuple[Hashed[Scope], Hashed[BudgetLimits]]:
        key = (principal.kind, principal.key_id, route.alias)
        found = self._derived.get(key)
        if found is not None and found.principal is principal and found.route is route:
            return found.scopes, found.budgets  # the common case: one lookup, two compares
        depends = _depends(principal, route)
        if found is None or found.depends != depends:
            found = _Derived(
                principal, route, depends, Hashed(_scopes(principal, route)), Hashed(_budget_limits(principal))
            )
            self._derived.put(key, found)
        else:  # the key record read again, nothing changed that counts here: the same objects
            found.principal, found.route = principal, route
        return found.scopes, found.budgets

    async def _lookup(self, ticket: Ticket, req: JSON, headers: Mapping[str, str], embedding: bool) -> None:
        settings = self._cache_settings
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
            ticket.hit = await self._cache.get(ticket.cache_key)
        metrics = self._metrics
        metrics.child(metrics.cache_requests, ticket.cache_mode.header(hit=ticket.hit is not None)).inc()

    def _priced(self, route: Route) -> list[RoutePrice]:
        """The route's prices, once per route (by alias: as many as the config has)."""
        cached = self._route_prices.get(route.alias)
        if cached is not None and cached[0] is route:
            return cached[1]
        priced = route_prices(route, self._prices)
        self._route_prices[route.alias] = (route, priced)
        return priced

    async def _check_budgets(self, ticket: Ticket, estimate_usd: float) -> None:
        try:
            ticket.reservation = await self._budgets.check(ticket.budgets, estimate_usd)
        except BackendUnavailable:
            if not self._budgets_open:
                raise BackendDegraded("cannot check budgets: the state backend is unreachable") from None
            self.degraded_budget_checks += 1
