"""Traffic control around one request: rate limits, cache, budgets, cost.

The order, and why:

1. **admit** (rate limits and concurrency, every scope): a rejected request
   costs nothing else. Cache hits count here too: they are requests.
2. **cache lookup**: a hit is answered at once, costs nothing and is not
   charged to any budget.
3. **budget check** (only on a miss): refuse with ``insufficient_quota`` when a
   key's, team's or the gateway's budget for the period is spent, or too little
   is left for the request's estimated cost beside what requests in flight
   reserved; otherwise reserve that estimate until step 5 (or the end).
4. the router runs; a deployment over its own rpm/tpm is skipped (``gate``);
5. **charge**: the reservation is given back and the real usage priced and
   recorded as spend, and written to the spend journal (embedded) before the
   answer is sent; a model with no price is counted as unpriced (and logged
   once), never costed at $0;
6. **end**: the token estimate is corrected, the answer stored in the cache,
   the concurrency slots released.

Steps 1-4 are :class:`~gateway.server.gatekeeper.Gatekeeper`'s, 5 and 6
:class:`~gateway.server.settlement.Settlement`'s; :class:`TrafficControl`
builds the policies they share and hands out their methods.
"""

from __future__ import annotations

from functools import partial

from gateway.config.settings import Settings
from gateway.observability.live_counts import LiveCounts
from gateway.observability.metrics import Metrics
from gateway.policies.admission import AdmissionQueue
from gateway.policies.budget import BudgetPolicy
from gateway.policies.cache import ResponseCache
from gateway.policies.pricing import PriceTable, UnpricedModels
from gateway.policies.ratelimit import RateLimiter
from gateway.server.gatekeeper import Gate, Gatekeeper, Ticket
from gateway.server.queueing import Queueing
from gateway.server.settlement import Settlement, report_budget_event
from gateway.state.base import StateBackend
from gateway.state.ledger import SpendLedger

__all__ = ["Gate", "Ticket", "TrafficControl"]


class TrafficControl:
    """The traffic-control steps of one configuration (a reload builds a new one
    with ``previous``). The request-path methods are bound once, here, to the
    collaborator that does each step (no layer per call):

    - ``begin(principal, route, req, client_headers, *, embedding) -> Ticket``
      (steps 1-3), ``gate(ticket) -> Gate | None`` (step 4): the gatekeeper's;
    - ``charge(ticket, dep, usage)``, ``end(ticket, *, usage, answer)`` (steps
      5, 6) and ``release(ticket)`` (the reservation and the slots, whatever
      happened): the settlement's.
    """

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
            ledger,
            settings.budgets,
            on_event=partial(report_budget_event, metrics),
            on_level=metrics.budget_level,
            shared=ledger.shared_budgets,
        )
        self.cache = ResponseCache(backend, settings.cache, modes.cache)
        self.prices = prices
        self.unpriced = unpriced
        queue = previous.queueing.queue if previous is not None else AdmissionQueue(settings.queue, metrics.shaping)
        queue.settings = settings.queue  # a reload keeps the waiters, under the new settings
        self.queueing: Queueing = Queueing(self.limiter, queue)
        self._gatekeeper = gatekeeper = Gatekeeper(
            settings, self.limiter, self.budgets, self.cache, metrics, prices, self.queueing
        )
        self.ledger = ledger
        settlement = Settlement(
            self.limiter, self.budgets, self.cache, prices, unpriced, metrics, ledger.journal_now, queue.wake
        )
        self.unmetered = settlement.unmetered
        """Answers that came without usage, by model (same counting as unpriced)."""
        self.capacity_wait = self.queueing.capacity_wait
        self.begin = gatekeeper.begin
        self.admit = gatekeeper.admit
        self.gate = gatekeeper.gate
        self.charge = settlement.charge
        self.end = settlement.end
        self.release = settlement.release
        if previous is not None:  # a reload: counts go on, events already emitted stay emitted
            self.budgets.carry_over(previous.budgets)
            self.limiter.rejections = previous.limiter.rejections
            self.limiter.degraded = previous.limiter.degraded
            self.cache.degraded = previous.cache.degraded
            gatekeeper.degraded_budget_checks = previous.degraded_budget_checks

    @property
    def degraded_budget_checks(self) -> int:
        """Budget checks passed in failure mode ``open`` (the backend unreachable)."""
        return self._gatekeeper.degraded_budget_checks

    def live_counts(self, flush_failures: int) -> LiveCounts:
        """What the policies counted, for the metrics scrape."""
        degraded = {
            "limits": sum(self.limiter.degraded.values()),
            "cache": self.cache.degraded,
            "budgets": self.degraded_budget_checks,
        }
        rejections, unpriced = dict(self.limiter.rejections), dict(self.unpriced.counts)
        return LiveCounts(rejections, degraded, flush_failures, unpriced, self.ledger.stats())
