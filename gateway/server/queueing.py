"""Admission through the queue (gateway/policies/admission.py), for traffic control's step 1
and for the router when no deployment of an alias has capacity.

- **Caps** (:meth:`Queueing.admit`): the rate limiter's admission; a full concurrency cap
  (gateway-wide, team, key or alias) makes the request wait for a slot instead of a 429 at
  once. A window (requests or tokens per minute of a key, team or alias) still refuses at
  once: it is a quota the client has used up, not a place that frees when a request ends.
  While anyone waits, a newcomer queues behind them rather than take a slot just freed.
- **Deployments** (:meth:`Queueing.capacity_wait`): every deployment of the alias is at its
  ``max_concurrency``, its own rpm/tpm quota, or paced by its upstream (429, rate-limit
  headers): the request waits until one may be tried.

How long: ``queue.max_wait_s``, or less when the client sends ``x-gateway-max-wait``
(seconds). Given up, the request gets what the cap answers without a queue (429
``rate_limit_exceeded``, or 503 ``no_deployment_available`` for deployments) with a
``Retry-After`` from the queue's estimate and ``x-gateway-queue: <reason>`` (queue_full,
deadline, timeout).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import replace
from typing import Any

from gateway.errors import GatewayError, InvalidRequest
from gateway.policies.admission import AdmissionQueue, Full, Place, Shed, retry_after_s, wait_limit
from gateway.policies.auth import Principal
from gateway.policies.ratelimit import Admission, RateLimiter, Scope
from gateway.policies.ratelimit_core import ConcurrencyLimited
from gateway.routing.deployment import Route

MAX_WAIT_HEADER = "x-gateway-max-wait"


def asked_wait(headers: Mapping[str, str]) -> float | None:
    """The client's ``x-gateway-max-wait`` in seconds (None when absent); 400 when it is not
    a number of seconds >= 0."""
    raw = headers.get(MAX_WAIT_HEADER)
    if raw is None:
        return None
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not value >= 0 or value == float("inf"):  # NaN and negatives fail the first test
        raise InvalidRequest(
            f"the {MAX_WAIT_HEADER} header must be a number of seconds >= 0, not {raw[:40]!r}",
            param=MAX_WAIT_HEADER,
            code="invalid_header",
        )
    return value


def team_of(principal: Principal) -> str:
    """Who shares fairly: the key's team, or the key alone when it has none."""
    return principal.team or f"key:{principal.key_id}"


class Queueing:
    """One per traffic control; the queue itself outlives a reload (``queue``)."""

    def __init__(self, limiter: RateLimiter, queue: AdmissionQueue) -> None:
        self._limiter = limiter
        self.queue = queue

    def place(self, principal: Principal, alias: str, headers: Mapping[str, str]) -> Place:
        queue = self.queue
        rank, klass = queue.settings.rank(principal.priority)
        limit = wait_limit(queue.settings, asked_wait(headers))
        return Place(rank, klass, team_of(principal), principal.team_weight, alias, limit)

    async def admit(
        self, principal: Principal, route: Route, scopes: Sequence[Scope], tokens: int, headers: Mapping[str, str]
    ) -> Admission:
        limiter, queue = self._limiter, self.queue
        if MAX_WAIT_HEADER in headers:
            asked_wait(headers)  # a bad value is a 400 whether or not the request would wait
        refusal: ConcurrencyLimited | None = None
        if not queue.depth:  # the common case: nobody waits, so try at once (the place is worked out only if refused)
            try:
                return await limiter.admit(scopes, tokens)
            except ConcurrencyLimited as err:
                refusal = err
        place = self.place(principal, route.alias, headers)
        if place.max_wait_s <= 0:
            if refusal is None:  # others wait, but this one may not: it tries at once, its luck
                try:
                    return await limiter.admit(scopes, tokens)
                except ConcurrencyLimited as err:
                    refusal = err
            raise self._counted(refusal) from None

        async def attempt() -> Admission:
            try:
                return await limiter.admit(scopes, tokens)
            except ConcurrencyLimited as err:
                raise Full(err, everyone=err.scope_kind == "global") from None

        try:
            return await queue.wait(place, attempt, limiter.release, refusal)
        except Shed as shed:
            last = shed.refusal if isinstance(shed.refusal, ConcurrencyLimited) else None
            given_up = last or ConcurrencyLimited(
                "rate limit exceeded: no concurrency slot became free in time", scope_kind="global"
            )
            raise self._counted(_given_up(given_up, shed)) from None

    def capacity_wait(
        self, principal: Principal, route: Route, headers: Mapping[str, str]
    ) -> Callable[[float | None], Awaitable[bool]]:
        """The router's wait for a deployment with capacity: True to try the alias again,
        False to give up (at once when the request may not wait). Nothing is worked out
        until the router calls it. Its waits together last at most the request's limit;
        after a try that found capacity but no deployment took the request (a deployment's
        own rpm/tpm, which only the try can see), the next one waits at least a poll
        interval, so such a request looks again at that pace."""
        queue, clock = self.queue, time.monotonic
        state: list[Any] = []  # [place, until, time of the last wait's end]

        async def attempt() -> bool:
            early = state[2] is not None and clock() - state[2] < queue.settings.poll_interval_s
            if early or not any(d.available for d in route.deployments):
                raise Full(GatewayError("no deployment has capacity"))
            return True

        async def wait(hint: float | None) -> bool:
            if not state:
                place = self.place(principal, route.alias, headers)
                state.extend((place, clock() + place.max_wait_s, None))
            place, until = state[0], state[1]
            left = until - clock()
            if hint is not None and hint > left:  # the upstream's pause ends after this request's limit
                queue.refused(place, "deadline")
                return False
            if left <= 0:
                return False
            try:
                return await queue.wait(replace(place, max_wait_s=left), attempt)
            except Shed:
                return False
            finally:
                state[2] = clock()

        return wait

    def _counted(self, err: ConcurrencyLimited) -> ConcurrencyLimited:
        self._limiter.rejections[err.scope_kind] += 1
        return err


def _given_up(err: ConcurrencyLimited, shed: Shed) -> ConcurrencyLimited:
    """The refusal as the client gets it once the queue gave up: Retry-After from the
    queue's estimate, the reason in ``x-gateway-queue``."""
    err.retry_after = shed.retry_after
    err.headers["retry-after"] = str(retry_after_s(shed.retry_after))
    err.headers["x-gateway-queue"] = shed.reason
    return err
