"""Rate limits: requests and tokens per window, and concurrency, per scope.

A request is checked against each limited scope it belongs to (global, team,
key, model alias) and, as the router picks one, against the deployment's
provider quota (:meth:`RateLimiter.try_deployment`).

**fixed_window (the default)**, :mod:`gateway.policies.ratelimit_fixed`: the
state backend charges every window of the request at once, or none
(:mod:`gateway.policies.windows`: in-memory counters, or one Lua script on
Redis), then the concurrency slots are taken; a refusal for concurrency gives
the window charges back. Atomic, so there is no race. Token estimates are
corrected by :meth:`RateLimiter.settle` in one more backend operation: more
than estimated is charged in full, less is refunded while the charged window is
still the current one.

**moving_window, sliding_window_counter**,
:mod:`gateway.policies.ratelimit_strategies`: the ``limits`` strategies on the
backend's ``limits`` storage. ``admit`` reads every window first
(``get_window_stats``), takes the slots, then hits every window, so a refusal by
one scope consumes nothing of another's quota. ``limits`` has no multi-key
transaction: on Redis a concurrent request may take the last unit between read
and hit; the hit is authoritative (a scope never goes over its limit), and the
other hits are rolled back where the strategy can refund. Refunds of token
over-estimates: the sliding counter on ``MemoryStorage`` (embedded) ``decr``s
the bucket it charged while it still counts; the moving window cannot (its
window is a list of timestamped entries), nor can the sliding counter on Redis
(its keys shift inside the library's scripts): the over-estimate stays charged
until it ages out. The moving window keeps one entry per unit, so for TPM one
per token: memory and time grow with the limit; prefer the others for tokens.

Backend errors (``BackendUnavailable``, ``limits`` storage and connection
errors) follow the failure mode: ``open`` admits and counts ``degraded[kind]``,
``closed`` raises :class:`~gateway.errors.BackendDegraded` (503). What both
implementations share (scopes, checks, the :class:`Admission`, refusals, the
failure mode and its counts) is :mod:`gateway.policies.ratelimit_core`.
"""

from __future__ import annotations

from collections import Counter
from typing import Literal

from gateway.config.settings import LimitsSettings
from gateway.policies.ratelimit_core import Admission, LimiterCore, Scope, WindowLimits
from gateway.policies.ratelimit_fixed import FixedWindowLimits
from gateway.policies.ratelimit_strategies import StrategyLimits
from gateway.state.base import StateBackend

__all__ = ["Admission", "RateLimiter", "Scope"]


class RateLimiter:
    """One per app. The global scope (from ``settings``) is added here: callers
    pass the team, key and model scopes.

    The request-path methods are those of the window implementation chosen
    once, here, by ``settings.strategy`` (bound directly: no layer per call):

    - ``admit(scopes, est_tokens) -> Admission``: charge every window and take
      every concurrency slot, or raise :class:`~gateway.errors.RateLimited`;
    - ``try_deployment(dep_id, spec, est_tokens, admission=None) -> bool``:
      charge a deployment's rpm/tpm, or False (nothing charged) at its limit:
      the router skips it. With ``admission``, ``settle`` corrects its tokens
      too. (Deployment concurrency is its ``max_concurrency``, the router's.);
    - ``settle(admission, actual_tokens)``: correct the token charges by the
      actual count (once; later calls do nothing);
    - ``finish(admission, actual_tokens)``: ``settle`` (unless ``actual_tokens``
      is None) and :meth:`release`; with fixed windows, in one backend operation.
    """

    def __init__(
        self,
        backend: StateBackend,
        settings: LimitsSettings,
        failure_mode: Literal["open", "closed"],
        *,
        period_s: int = 60,
        slot_ttl_s: float = 600.0,
    ) -> None:
        self._core = core = LimiterCore(backend, settings, failure_mode, period_s=period_s, slot_ttl_s=slot_ttl_s)
        windows: WindowLimits = (
            FixedWindowLimits(core) if settings.strategy == "fixed_window" else StrategyLimits(core, settings.strategy)
        )
        self.admit = windows.admit
        self.try_deployment = windows.try_deployment
        self.settle = windows.settle
        self.finish = windows.finish

    async def release(self, admission: Admission) -> None:
        """Give back the concurrency slots; idempotent."""
        keys, admission.slots = admission.slots, []
        await self._core.release_slots(keys)

    @property
    def degraded(self) -> Counter[str]:
        """Decisions taken in failure mode, by scope kind."""
        return self._core.degraded

    @degraded.setter
    def degraded(self, counts: Counter[str]) -> None:  # a reload carries the counts over
        self._core.degraded = counts

    @property
    def rejections(self) -> Counter[str]:
        """429s by scope kind (deployment: skips)."""
        return self._core.rejections

    @rejections.setter
    def rejections(self, counts: Counter[str]) -> None:
        self._core.rejections = counts
