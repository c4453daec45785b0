"""Rate limits: rpm/tpm windows with every strategy, concurrency slots, token
settlement, headers, failure modes; on an in-memory stand-in backend, the
embedded backend, and a real redis-server (limits' RedisStorage)."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import asynccontextmanager
from typing import Any, Literal, cast

import pytest
from limits.aio.storage import MemoryStorage, RedisStorage, Storage
from redis.asyncio import Redis

from gateway.config.settings import LimitSpec, LimitsSettings
from gateway.errors import BackendDegraded, RateLimited
from gateway.policies.ratelimit import Admission, RateLimiter, Scope
from gateway.policies.ratelimit_core import ConcurrencyLimited
from gateway.policies.ratelimit_headers import format_duration
from gateway.state.base import BackendUnavailable, SlotSpec, StateBackend, WindowAdjust, WindowHit, WindowSpec
from gateway.state.memory import MemoryWindows
from gateway.state.redis import RedisBackend
from tests.redis_server import RedisServer

StrategyName = Literal["fixed_window", "moving_window", "sliding_window_counter"]
STRATEGIES: list[StrategyName] = ["fixed_window", "moving_window", "sliding_window_counter"]
DURATION = re.compile(r"^(\d+h)?(\d+m)?(\d+(\.\d{1,3})?s|\d+ms)$")


class StandIn:
    """The slice of a StateBackend the limiter uses: a limits storage and in-memory slots."""

    def __init__(self, storage: Storage | None = None, kind: str = "embedded", windows: Any = None) -> None:
        self.kind = kind
        self.storage = storage or MemoryStorage()
        self.windows = windows if windows is not None else MemoryWindows()
        self.slots: dict[str, int] = {}
        self.slot_calls = 0

    def limits_storage(self) -> Storage:
        return self.storage

    async def hit_windows(self, windows: Sequence[WindowSpec], slots: Sequence[SlotSpec] = ()) -> WindowHit:
        """The windows, then the slots (in ``self.slots``): all or nothing, as a backend must."""
        full = next((i for i, s in enumerate(slots) if self.slots.get(s.key, 0) >= s.limit), -1)
        if full >= 0:  # a window that always refuses, last: the real ones are checked, nothing is charged
            seen = await self.windows.hit_windows([*windows, WindowSpec("stand-in-full", 60, 1, 0)])
            refused = seen.refused if seen.refused < len(windows) else len(windows) + full
            return WindowHit(refused, seen.counts[: len(windows)], seen.resets_s[: len(windows)])
        result: WindowHit = await self.windows.hit_windows(windows)
        if result.refused < 0:
            for slot in slots:
                self.slot_calls += 1
                self.slots[slot.key] = self.slots.get(slot.key, 0) + 1
        return result

    async def adjust_windows(self, adjustments: Sequence[WindowAdjust], release: Sequence[str] = ()) -> None:
        await self.windows.adjust_windows(adjustments)
        for key in release:
            await self.release_slot(key)

    async def acquire_slot(self, key: str, limit: int, ttl_s: float) -> bool:
        self.slot_calls += 1
        if self.slots.get(key, 0) >= limit:
            return False
        self.slots[key] = self.slots.get(key, 0) + 1
        return True

    async def release_slot(self, key: str) -> None:
        self.slot_calls += 1
        self.slots[key] = max(0, self.slots.get(key, 0) - 1)


class DownStorage(MemoryStorage):
    """A limits storage whose every window operation fails as an unreachable backend does."""

    async def get(self, key: str) -> int:
        raise BackendUnavailable("down")

    async def get_moving_window(self, key: str, limit: int, expiry: int) -> tuple[float, int]:
        raise BackendUnavailable("down")

    async def get_sliding_window(self, key: str, expiry: int) -> tuple[int, float, int, float]:
        raise BackendUnavailable("down")


class DownBackend(StandIn):
    async def acquire_slot(self, key: str, limit: int, ttl_s: float) -> bool:
        raise BackendUnavailable("down")

    async def hit_windows(self, windows: Sequence[WindowSpec], slots: Sequence[SlotSpec] = ()) -> WindowHit:
        raise BackendUnavailable("down")

    async def adjust_windows(self, adjustments: Sequence[WindowAdjust], release: Sequence[str] = ()) -> None:
        raise BackendUnavailable("down")


def limiter(
    backend: Any = None,
    strategy: StrategyName = "fixed_window",
    mode: Literal["open", "closed"] = "open",
    period_s: int = 60,
    **settings: int | None,
) -> RateLimiter:
    limits = LimitsSettings(strategy=strategy, **{"max_concurrent": None, **settings})
    return RateLimiter(cast(StateBackend, backend or StandIn()), limits, mode, period_s=period_s)


def key(rpm: int | None = None, tpm: int | None = None, mc: int | None = None, id: str = "k1") -> Scope:
    return Scope("key", id, LimitSpec(rpm=rpm, tpm=tpm, max_concurrent=mc))


def team(rpm: int | None = None, tpm: int | None = None, mc: int | None = None, id: str = "t1") -> Scope:
    return Scope("team", id, LimitSpec(rpm=rpm, tpm=tpm, max_concurrent=mc))


async def rejected(rl: RateLimiter, scopes: list[Scope], est: int = 0) -> RateLimited:
    with pytest.raises(RateLimited) as info:
        await rl.admit(scopes, est)
    return info.value


@pytest.fixture(params=["stand-in", "embedded"])
def backend(request: pytest.FixtureRequest, tmp_path: Any) -> Any:
    if request.param == "embedded":
        from gateway.state.embedded import EmbeddedBackend

        return EmbeddedBackend(str(tmp_path / "gw.db"))
    return StandIn()


@pytest.fixture(scope="module")
def redis_url() -> Iterator[str]:
    with RedisServer() as server:
        yield server.url


@asynccontextmanager
async def redis_limits(url: str) -> AsyncIterator[RedisStorage]:
    """limits' RedisStorage on a client of our own (as the Redis backend builds it), closed afterwards."""
    client = Redis.from_url(url, socket_timeout=0.5, socket_connect_timeout=0.5)
    try:
        options: dict[str, Any] = {"implementation": "redispy", "connection_pool": client.connection_pool}
        yield RedisStorage("async+redis://", **options)
    finally:
        await client.aclose()


@pytest.fixture
async def redis_storage(redis_url: str) -> AsyncIterator[RedisStorage]:
    async with redis_limits(redis_url) as storage:
        await storage.reset()
        yield storage


@pytest.fixture
async def redis_windows(redis_url: str) -> AsyncIterator[RedisBackend]:
    """The real Redis backend's fixed windows, on an empty database."""
    client = Redis.from_url(redis_url)
    await client.flushdb()
    await client.aclose()
    backend = RedisBackend(redis_url)
    yield backend
    await backend.aclose()


@pytest.fixture(params=["unavailable", "redis-dead"])
async def down(request: pytest.FixtureRequest) -> AsyncIterator[StandIn]:
    """A backend that cannot be reached: BackendUnavailable, or limits' own connection errors."""
    if request.param == "unavailable":
        yield DownBackend(DownStorage())
        return
    async with redis_limits("redis://127.0.0.1:1/0") as storage:
        yield DownBackend(storage, kind="redis")


# --- requests per window -----------------------------------------------------------


@pytest.mark.parametrize("strategy", STRATEGIES)
async def test_rpm_admits_exactly_n_then_429_with_retry_after_and_headers(backend: Any, strategy: StrategyName) -> None:
    rl = limiter(backend, strategy)
    for i in range(3):
        adm = await rl.admit([key(rpm=3)], 0)
        assert adm.headers["x-ratelimit-limit-requests"] == "3"
        assert adm.headers["x-ratelimit-remaining-requests"] == str(2 - i)
    err = await rejected(rl, [key(rpm=3)])
    assert (err.http_status, err.code) == (429, "rate_limit_exceeded")
    assert err.message == "rate limit exceeded for key: 3 requests per minute"
    assert 1 <= int(err.headers["retry-after"]) <= 60
    assert err.headers["x-ratelimit-remaining-requests"] == "0"
    assert DURATION.match(err.headers["x-ratelimit-reset-requests"])
    assert rl.rejections == {"key": 1}
    await rejected(rl, [key(rpm=3)])  # a refusal consumes nothing, and stays a refusal
    assert (await rl.admit([key(rpm=3, id="other")], 0)).headers["x-ratelimit-remaining-requests"] == "2"


@pytest.mark.parametrize("strategy", ["fixed_window", "moving_window"])
async def test_a_new_window_admits_again(strategy: StrategyName) -> None:
    rl = limiter(strategy=strategy, period_s=1)
    await rl.admit([key(rpm=1)], 0)
    err = await rejected(rl, [key(rpm=1)])
    assert err.message == "rate limit exceeded for key: 1 requests per second"
    assert err.headers["retry-after"] == "1"
    await asyncio.sleep(1.05)
    await rl.admit([key(rpm=1)], 0)


@pytest.mark.parametrize("strategy", STRATEGIES)
async def test_a_refusal_by_the_team_consumes_none_of_the_key_quota(strategy: StrategyName) -> None:
    rl = limiter(strategy=strategy)
    await rl.admit([team(rpm=1), key(rpm=2)], 0)
    err = await rejected(rl, [key(rpm=2), team(rpm=1)])
    assert err.message == "rate limit exceeded for team t1: 1 requests per minute"
    adm = await rl.admit([key(rpm=2), team(rpm=5, id="t2")], 0)
    assert adm.headers["x-ratelimit-remaining-requests"] == "0"  # the key's: 2 - 2 (not 2 - 3)
    await rejected(rl, [key(rpm=2)])


# --- tokens ------------------------------------------------------------------------


async def remaining_tokens(rl: RateLimiter, scope: Scope) -> int:
    """The window's remaining tokens, read through a zero-cost admission (or its refusal)."""
    try:
        headers = (await rl.admit([scope], 0)).headers
    except RateLimited as err:
        headers = err.headers
    return int(headers["x-ratelimit-remaining-tokens"])


@pytest.mark.parametrize("strategy", STRATEGIES)
async def test_tpm_estimate_is_charged_up_front_and_checked(strategy: StrategyName) -> None:
    rl = limiter(strategy=strategy)
    adm = await rl.admit([key(tpm=1000)], 600)
    assert adm.headers["x-ratelimit-remaining-tokens"] == "400"
    assert "x-ratelimit-limit-requests" not in adm.headers  # no scope limits requests
    err = await rejected(rl, [key(tpm=1000)], 500)
    assert err.message == "rate limit exceeded for key: 1000 tokens per minute"
    await rl.admit([key(tpm=1000)], 400)
    err = await rejected(rl, [key(tpm=1000)], 0)  # nothing left: even a zero estimate waits
    assert err.headers["x-ratelimit-remaining-tokens"] == "0"


async def test_a_request_larger_than_the_whole_tpm_gets_no_retry_after() -> None:
    err = await rejected(limiter(), [key(tpm=1000)], 1001)
    assert err.message == (
        "rate limit exceeded for key: request too large: 1001 tokens requested, limit 1000 tokens per minute"
    )
    assert "retry-after" not in err.headers and err.retry_after is None


@pytest.mark.parametrize("strategy", STRATEGIES)
async def test_settle_charges_an_underestimate(backend: Any, strategy: StrategyName) -> None:
    rl = limiter(backend, strategy)
    adm = await rl.admit([key(tpm=1000)], 100)
    await rl.settle(adm, 300)
    assert await remaining_tokens(rl, key(tpm=1000)) == 700
    await rl.settle(adm, 900)  # settled once only
    assert await remaining_tokens(rl, key(tpm=1000)) == 700


@pytest.mark.parametrize("strategy", STRATEGIES)
async def test_settle_past_the_limit(strategy: StrategyName) -> None:
    """Fixed window and the in-memory sliding counter charge the whole overrun;
    the moving window can only take what fits. Either way the scope is spent."""
    rl = limiter(strategy=strategy)
    adm = await rl.admit([key(tpm=1000)], 800)
    await rl.settle(adm, 1500)
    assert await remaining_tokens(rl, key(tpm=1000)) == 0
    await rejected(rl, [key(tpm=1000)], 1)


@pytest.mark.parametrize(
    ("strategy", "refunded"), [("fixed_window", True), ("sliding_window_counter", True), ("moving_window", False)]
)
async def test_settle_refunds_an_overestimate_where_the_strategy_can(
    backend: Any, strategy: StrategyName, refunded: bool
) -> None:
    rl = limiter(backend, strategy)
    adm = await rl.admit([key(tpm=1000), team(tpm=5000)], 800)
    await rl.settle(adm, 50)
    assert await remaining_tokens(rl, key(tpm=1000)) == (950 if refunded else 200)
    assert await remaining_tokens(rl, team(tpm=5000)) == (4950 if refunded else 4200)


async def test_no_refund_into_a_later_window() -> None:
    rl = limiter(period_s=1)
    adm = await rl.admit([key(tpm=1000)], 800)
    await asyncio.sleep(1.05)
    await rl.settle(adm, 0)  # that window is gone: refunding now would grant the new one 800 extra
    assert await remaining_tokens(rl, key(tpm=1000)) == 1000


# --- concurrency ---------------------------------------------------------------------


async def test_concurrency_limit_and_idempotent_release(backend: Any) -> None:
    rl = limiter(backend)
    a = await rl.admit([key(mc=2)], 0)
    b = await rl.admit([key(mc=2)], 0)
    err = await rejected(rl, [key(mc=2)])
    assert err.message == "rate limit exceeded for key: 2 concurrent requests"
    assert err.headers["retry-after"] == "1"
    await rl.release(a)
    await rl.release(a)  # idempotent: must not free b's slot
    c = await rl.admit([key(mc=2)], 0)
    await rejected(rl, [key(mc=2)])
    for adm in (b, c):
        await rl.release(adm)


async def test_slots_taken_are_released_when_a_later_scope_refuses() -> None:
    backend = StandIn()
    rl = limiter(backend, max_concurrent=10)
    first = await rl.admit([key(mc=1), team(mc=5)], 0)
    await rejected(rl, [key(mc=1), team(mc=5)])
    assert backend.slots == {"concurrency/global/*": 1, "concurrency/team/t1": 1, "concurrency/key/k1": 1}
    await rl.release(first)
    assert set(backend.slots.values()) == {0}


async def test_a_refusal_by_rate_takes_no_slot_and_one_by_concurrency_no_rate() -> None:
    backend = StandIn()
    rl = limiter(backend)
    held = await rl.admit([key(rpm=2, mc=1)], 0)
    await rejected(rl, [key(rpm=2, mc=1)])  # concurrency: the rpm is not consumed
    await rl.release(held)
    await rl.admit([key(rpm=2, mc=1)], 0)  # the second request of the window
    calls = backend.slot_calls
    err = await rejected(rl, [key(rpm=2, mc=1)])
    assert "requests per minute" in err.message and backend.slot_calls == calls


async def test_global_max_concurrent_from_settings() -> None:
    rl = limiter(max_concurrent=1)
    adm = await rl.admit([], 0)
    err = await rejected(rl, [key(rpm=100)])
    assert err.message == "rate limit exceeded for global: 1 concurrent requests"
    assert isinstance(err, ConcurrencyLimited) and err.scope_kind == "global"
    assert rl.rejections == {}  # counted by traffic control once it reaches the client (the queue may wait)
    await rl.release(adm)
    await rl.admit([key(rpm=100)], 0)


async def test_global_rpm_from_settings() -> None:
    rl = limiter(rpm=1)
    await rl.admit([], 0)
    assert (await rejected(rl, [])).message == "rate limit exceeded for global: 1 requests per minute"


async def test_no_limits_costs_nothing() -> None:
    backend = StandIn()
    rl = limiter(backend)
    adm = await rl.admit([key(), team(), Scope("model", "gpt-4o", LimitSpec())], 1000)
    assert adm.headers == {} and backend.slot_calls == 0 and not cast(MemoryStorage, backend.storage).storage
    await rl.settle(adm, 5)
    await rl.release(adm)


# --- deployments -----------------------------------------------------------------


@pytest.mark.parametrize("strategy", STRATEGIES)
async def test_try_deployment(strategy: StrategyName) -> None:
    rl = limiter(strategy=strategy)
    spec = LimitSpec(rpm=2, tpm=1000)
    assert await rl.try_deployment("openai/0", spec, 100)
    assert await rl.try_deployment("openai/0", spec, 100)
    assert not await rl.try_deployment("openai/0", spec, 100)  # rpm
    assert await rl.try_deployment("openai/1", spec, 100)
    assert not await rl.try_deployment("openai/1", LimitSpec(tpm=1000), 950)  # tpm: 100 already taken
    assert await rl.try_deployment("openai/2", LimitSpec(), 10**9)  # unlimited
    assert rl.rejections == {"deployment": 2}


async def test_try_deployment_tokens_are_settled_with_the_admission() -> None:
    rl = limiter()
    adm = await rl.admit([key(tpm=10_000)], 500)
    assert await rl.try_deployment("d", LimitSpec(tpm=1000), 500, adm)
    await rl.settle(adm, 700)
    assert not await rl.try_deployment("d", LimitSpec(tpm=1000), 301)
    assert await rl.try_deployment("d", LimitSpec(tpm=1000), 300)
    assert await remaining_tokens(rl, key(tpm=10_000)) == 9300


# --- headers ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0.02, "20ms"), (0.9994, "1s"), (1, "1s"), (59, "59s"), (59.5, "59.5s"), (60, "1m0s"), (360, "6m0s"),
     (61.25, "1m1.25s"), (3723, "1h2m3s"), (0, "0ms")],
)  # fmt: skip
def test_format_duration_like_openai(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text


@pytest.mark.parametrize("strategy", STRATEGIES)
async def test_headers_come_from_the_tightest_scope_per_unit(strategy: StrategyName) -> None:
    rl = limiter(strategy=strategy)
    model = Scope("model", "gpt-4o", LimitSpec(tpm=2000))
    adm = await rl.admit([key(rpm=10, tpm=100_000), team(rpm=5), model], 300)
    assert adm.headers["x-ratelimit-limit-requests"] == "5"
    assert adm.headers["x-ratelimit-remaining-requests"] == "4"
    assert adm.headers["x-ratelimit-limit-tokens"] == "2000"
    assert adm.headers["x-ratelimit-remaining-tokens"] == "1700"
    for unit in ("requests", "tokens"):
        reset = adm.headers[f"x-ratelimit-reset-{unit}"]
        assert DURATION.match(reset) and reset.endswith("s") and not reset.endswith("ms"), reset
    err = await rejected(rl, [model], 1800)
    assert err.message == "rate limit exceeded for model gpt-4o: 2000 tokens per minute"
    assert err.headers["x-ratelimit-remaining-tokens"] == "1700"
    assert 1 <= int(err.headers["retry-after"]) <= 60


# --- failure modes --------------------------------------------------------------------


@pytest.mark.parametrize("strategy", STRATEGIES)
async def test_fail_open_admits_and_counts(down: StandIn, strategy: StrategyName) -> None:
    rl = limiter(down, strategy, "open")
    adm = await rl.admit([key(rpm=1, tpm=10), team(rpm=1), Scope("model", "m", LimitSpec())], 100)
    assert isinstance(adm, Admission) and adm.headers == {}
    await rl.admit([key(rpm=1)], 0)
    assert await rl.try_deployment("d", LimitSpec(rpm=1), 10)
    assert rl.degraded == {"key": 2, "team": 1, "deployment": 1}
    await rl.settle(adm, 5)
    await rl.release(adm)


async def test_fail_closed_is_503(down: StandIn) -> None:
    rl = limiter(down, mode="closed")
    with pytest.raises(BackendDegraded) as info:
        await rl.admit([key(rpm=1)], 0)
    assert (info.value.http_status, info.value.code) == (503, "state_backend_unavailable")
    with pytest.raises(BackendDegraded):
        await rl.admit([key(mc=1)], 0)  # the slot store is down too
    with pytest.raises(BackendDegraded):
        await rl.try_deployment("d", LimitSpec(rpm=1), 10)


async def test_slots_taken_before_the_backend_fails_are_given_back() -> None:
    class HitFails(StandIn):  # the windows cannot be charged
        async def hit_windows(self, windows: Sequence[WindowSpec], slots: Sequence[SlotSpec] = ()) -> WindowHit:
            raise BackendUnavailable("down")

    backend = HitFails()
    rl = limiter(backend, max_concurrent=5)
    assert (await rl.admit([key(rpm=9, mc=1)], 0)).headers == {}
    assert rl.degraded == {"global": 1, "key": 1}
    assert all(n == 0 for n in backend.slots.values()), "no slot is left held"


# --- redis (a real server; network round trips overlap) ------------------------------


@pytest.mark.parametrize("strategy", STRATEGIES)
async def test_on_redis_concurrent_admissions_never_pass_the_limit(
    redis_storage: RedisStorage, redis_windows: RedisBackend, strategy: StrategyName
) -> None:
    rl = limiter(StandIn(redis_storage, kind="redis", windows=redis_windows), strategy)
    scopes = [key(rpm=5), team(rpm=100)]
    results = await asyncio.gather(*(rl.admit(scopes, 0) for _ in range(20)), return_exceptions=True)
    assert sum(isinstance(r, Admission) for r in results) == 5
    assert all(isinstance(r, (Admission, RateLimited)) for r in results)
    adm = await rl.admit([team(rpm=100)], 0)
    used = 100 - int(adm.headers["x-ratelimit-remaining-requests"])
    assert used == 6 if strategy == "fixed_window" else 6 <= used <= 21  # rolled back where possible


@pytest.mark.parametrize(
    ("strategy", "refunded"), [("fixed_window", True), ("sliding_window_counter", False), ("moving_window", False)]
)
async def test_on_redis_refunds_only_the_fixed_window(
    redis_storage: RedisStorage, redis_windows: RedisBackend, strategy: StrategyName, refunded: bool
) -> None:
    rl = limiter(StandIn(redis_storage, kind="redis", windows=redis_windows), strategy)
    adm = await rl.admit([key(tpm=1000)], 800)
    await rl.settle(adm, 50)
    assert await remaining_tokens(rl, key(tpm=1000)) == (950 if refunded else 200)
    adm = await rl.admit([key(tpm=5000, id="k2")], 100)
    await rl.settle(adm, 400)
    assert await remaining_tokens(rl, key(tpm=5000, id="k2")) == 4600


async def test_admissions_per_second_smoke() -> None:
    """Not a benchmark: only that admission stays cheap (well under 1 ms each)."""
    rl = limiter(max_concurrent=1000)
    scopes = [key(rpm=10**6, tpm=10**9, mc=100), team(rpm=10**6, tpm=10**9), Scope("model", "m", LimitSpec(rpm=10**6))]
    start = time.perf_counter()
    for _ in range(200):
        adm = await rl.admit(scopes, 100)
        await rl.settle(adm, 80)
        await rl.release(adm)
    assert time.perf_counter() - start < 2.0
