"""gateway.server.traffic.TrafficControl over the real embedded backend, spend
ledger, price table and routes built from a parsed config: admission and
headers, rate limits, cache before budgets, cost and spend, settling, slots,
budget failure modes and the deployment gate."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from gateway.canonical import JSON
from gateway.config.loader import parse_config
from gateway.config.settings import LimitSpec, Price
from gateway.errors import BackendDegraded, BudgetExceeded, RateLimited
from gateway.observability.metrics import Metrics
from gateway.policies.auth import Principal
from gateway.policies.budget import model_spend_key, spend_key, team_model_spend_key, usage_key
from gateway.policies.pricing import UnpricedModels, parse_prices
from gateway.providers.registry import presets
from gateway.routing.deployment import Route, build_routes
from gateway.server.gatekeeper import cost_estimate
from gateway.server.traffic import Ticket, TrafficControl
from gateway.state.base import BackendUnavailable
from gateway.state.embedded import EmbeddedBackend
from gateway.state.ledger import SpendLedger
from gateway.state.spend_journal import SpendJournal, read_segment

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
DAY, MONTH = "2026-11-26", "2026-11"

CONFIG = """
limits:
  strategy: fixed_window
  max_concurrent: null
state:
  failure_mode: {{budgets: {budgets}}}
{extra}
models:
  chat:
    description: priced by the price table
    deployments:
      - id: chat-main
        provider: openai
        model: gpt-4o-mini
        api_key: sk-upstream
  capped:
    limits: {{rpm: 2}}
    deployments:
      - id: capped-dep
        provider: anthropic
        model: claude-x
        api_key: k
        limits: {{rpm: 1}}
        price: {{input_per_1m: 3.0, output_per_1m: 15.0}}
      - id: capped-free
        provider: openai
        model: gpt-4o-mini
  mystery:
    deployments:
      - provider: openai_compatible
        base_url: http://127.0.0.1:9
        model: mystery-model
  embed:
    kind: embedding
    deployments:
      - provider: openai
        model: text-embedding-3-small
"""

PRICES = """
version: "2026-11-26"
models:
  gpt-4o-mini: {input_per_1m: 1.0, output_per_1m: 2.0}
  openai/text-embedding-3-small: {input_per_1m: 0.5, output_per_1m: 0}
"""


class FlakyBackend(EmbeddedBackend):
    """The embedded backend whose spend reads and writes fail while ``spend_down``."""

    def __init__(self, path: str) -> None:
        super().__init__(path)
        self.spend_down = False
        self.spend_reads = 0

    async def read_spend(self, keys: Any) -> dict[str, float]:
        self.spend_reads += 1
        if self.spend_down:
            raise BackendUnavailable("spend store is down (test)")
        return await super().read_spend(keys)


class Clock:
    def __init__(self) -> None:
        self.now = 500.0

    def __call__(self) -> float:
        return self.now


@dataclass
class Rig:
    tc: TrafficControl
    backend: FlakyBackend
    ledger: SpendLedger
    ledger_clock: Clock
    routes: dict[str, Route]
    unpriced: UnpricedModels


MakeRig = Callable[..., Awaitable[Rig]]
NO_QUEUE = "queue: {enabled: false}"
"""A full concurrency cap refuses at once (the admission queue would wait its 10 s first)."""


@pytest.fixture
async def make_rig(tmp_path: Path) -> AsyncIterator[MakeRig]:
    backends: list[EmbeddedBackend] = []

    async def make(budgets: str = "open", extra: str = "", journal: SpendJournal | None = None) -> Rig:
        settings = parse_config(CONFIG.format(budgets=budgets, extra=extra), env={}).settings
        backend = FlakyBackend(str(tmp_path / f"gw{len(backends)}.db"))
        backends.append(backend)
        clock = Clock()
        ledger = SpendLedger(backend, flush_interval_s=60.0, refresh_interval_s=1.0, clock=clock, journal=journal)
        unpriced = UnpricedModels()
        tc = TrafficControl(settings, backend, ledger, parse_prices(PRICES), unpriced, Metrics())
        tc.budgets.clock = lambda: NOW
        return Rig(tc, backend, ledger, clock, build_routes(settings, presets()), unpriced)

    yield make
    for b in backends:
        await b.aclose()


@pytest.fixture
async def rig(make_rig: MakeRig) -> Rig:
    return await make_rig()


def chat(text: str = "hello world!", *, temperature: float | None = 0, max_tokens: int | None = 100) -> JSON:
    req: JSON = {"model": "chat", "messages": [{"role": "user", "content": text}]}
    if temperature is not None:
        req["temperature"] = temperature
    if max_tokens is not None:
        req["max_tokens"] = max_tokens
    return req


def completion(text: str = "hi!", finish_reason: str | None = "stop") -> JSON:
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "model": "gpt-4o-mini",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": finish_reason}],
        "usage": {"prompt_tokens": 4, "completion_tokens": 2, "total_tokens": 6},
    }


def spent(rig: Rig) -> dict[str, float]:
    """The spend counters buffered (the usage counters of requests and tokens left out)."""
    return {k: v for k, v in rig.ledger.pending().items() if k.startswith("spend:")}


def headers_of(ticket: Ticket) -> dict[str, str]:
    out = {k.decode(): v.decode() for k, v in ticket.headers()}
    assert len(out) == len(ticket.headers())  # no header twice
    return out


KEY = Principal("key", "key_plain")


async def _begin(rig: Rig, p: Principal, req: JSON, alias: str = "chat", **headers: str) -> Ticket:
    return await rig.tc.begin(p, rig.routes[alias], req, headers, embedding=False)


# --- admission and headers -----------------------------------------------------------------------------


async def test_begin_without_limits_has_only_the_cache_header(rig: Rig) -> None:
    ticket = await _begin(rig, KEY, chat())
    assert headers_of(ticket) == {"x-gateway-cache": "miss"}
    assert ticket.cache_key is not None and ticket.hit is None
    assert ticket.est_tokens == len("hello world!") // 4 + 1 + 100
    await rig.tc.end(ticket, usage=None, answer=None)
    sampled = await _begin(rig, KEY, chat(temperature=None))  # absent temperature is sampled: no cache
    assert headers_of(sampled) == {"x-gateway-cache": "off"}
    assert sampled.cache_key is None
    await rig.tc.release(sampled)


async def test_begin_with_limits_sets_ratelimit_headers(rig: Rig) -> None:
    p = Principal("key", "key_lim", limits=LimitSpec(rpm=5, tpm=1000))
    ticket = await _begin(rig, p, chat())
    h = headers_of(ticket)
    assert h["x-gateway-cache"] == "miss"
    assert h["x-ratelimit-limit-requests"] == "5"
    assert h["x-ratelimit-remaining-requests"] == "4"
    assert h["x-ratelimit-limit-tokens"] == "1000"
    assert h["x-ratelimit-remaining-tokens"] == str(1000 - ticket.est_tokens)
    assert h["x-ratelimit-reset-requests"] and h["x-ratelimit-reset-tokens"]
    await rig.tc.end(ticket, usage=None, answer=None)


async def test_rate_limited_key(rig: Rig) -> None:
    p = Principal("key", "key_rpm1", limits=LimitSpec(rpm=1))
    first = await _begin(rig, p, chat())
    await rig.tc.end(first, usage=None, answer=None)
    with pytest.raises(RateLimited) as err:
        await _begin(rig, p, chat())
    assert type(err.value) is RateLimited
    assert err.value.http_status == 429 and err.value.code == "rate_limit_exceeded"
    assert "retry-after" in err.value.headers
    assert "key_rpm1" not in err.value.message  # key ids stay private
    # another key is unaffected
    other = await _begin(rig, Principal("key", "key_other", limits=LimitSpec(rpm=1)), chat())
    await rig.tc.release(other)


async def test_model_alias_limit(rig: Rig) -> None:
    for _ in range(2):
        t = await _begin(rig, KEY, chat(), alias="capped")
        assert headers_of(t)["x-ratelimit-limit-requests"] == "2"
        await rig.tc.release(t)
    with pytest.raises(RateLimited) as err:
        await _begin(rig, Principal("key", "someone-else"), chat(), alias="capped")
    assert "model capped" in err.value.message


async def test_team_limit_shared_by_its_keys(rig: Rig) -> None:
    a = Principal("key", "key_a", team="t1", team_limits=LimitSpec(rpm=1))
    b = Principal("key", "key_b", team="t1", team_limits=LimitSpec(rpm=1))
    await rig.tc.release(await _begin(rig, a, chat()))
    with pytest.raises(RateLimited) as err:
        await _begin(rig, b, chat())
    assert "team t1" in err.value.message


async def test_concurrency_slot_released_by_end_and_release(make_rig: MakeRig) -> None:
    rig = await make_rig(extra=NO_QUEUE)
    p = Principal("key", "key_c1", limits=LimitSpec(max_concurrent=1))
    first = await _begin(rig, p, chat())
    with pytest.raises(RateLimited) as err:
        await _begin(rig, p, chat("another"))
    assert "1 concurrent requests" in err.value.message
    await rig.tc.end(first, usage=None, answer=None)
    second = await _begin(rig, p, chat())  # end gave the slot back
    with pytest.raises(RateLimited):
        await _begin(rig, p, chat())
    await rig.tc.release(second)
    third = await _begin(rig, p, chat())  # so did release
    await rig.tc.release(third)


async def test_release_and_end_free_a_slot_once(make_rig: MakeRig) -> None:
    rig = await make_rig(extra=NO_QUEUE)
    p = Principal("key", "key_c2", limits=LimitSpec(max_concurrent=2))
    a = await _begin(rig, p, chat())
    b = await _begin(rig, p, chat())
    await rig.tc.release(a)
    await rig.tc.release(a)  # idempotent: does not free b's slot
    await rig.tc.end(a, usage=None, answer=None)  # nor does a later end
    c = await _begin(rig, p, chat())
    with pytest.raises(RateLimited):  # b and c hold both slots
        await _begin(rig, p, chat())
    await rig.tc.end(b, usage=None, answer=None)
    await rig.tc.end(c, usage=None, answer=None)


# --- cache and budgets -----------------------------------------------------------------------------------


async def test_cache_hit_skips_the_budget_check(rig: Rig) -> None:
    p = Principal("key", "key_budget", team="t1", budget_daily_usd=1.0)
    first = await _begin(rig, p, chat())
    assert first.hit is None
    await rig.tc.end(first, usage={"total_tokens": 6}, answer=completion())
    assert rig.tc.cache.stores == 1
    rig.ledger.add({spend_key("key", "key_budget", DAY): 2.0})  # the key's daily budget is spent
    reads = rig.backend.spend_reads

    hit = await _begin(rig, p, chat())
    assert hit.hit == completion()
    assert headers_of(hit)["x-gateway-cache"] == "hit"
    assert rig.backend.spend_reads == reads  # no budget check at all
    await rig.tc.end(hit, usage=None, answer=hit.hit)
    assert rig.tc.cache.stores == 1  # a hit is not stored again

    with pytest.raises(BudgetExceeded) as err:
        await _begin(rig, p, chat("a different question"))
    assert err.value.http_status == 429 and err.value.code == "insufficient_quota"
    assert "daily budget of key 'key_budget'" in err.value.message
    assert int(err.value.headers["retry-after"]) == 12 * 3600  # NOW is noon UTC: resets at midnight


async def test_cache_is_per_team(rig: Rig) -> None:
    a = Principal("key", "key_a", team="t1")
    t = await _begin(rig, a, chat())
    await rig.tc.end(t, usage=None, answer=completion())
    hit = await _begin(rig, Principal("key", "key_a2", team="t1"), chat())
    assert hit.hit is not None
    miss = await _begin(rig, Principal("key", "key_b", team="t2"), chat())
    assert miss.hit is None


async def test_budget_refusal_releases_the_slot(rig: Rig) -> None:
    p = Principal("key", "key_bs", budget_monthly_usd=5.0, limits=LimitSpec(max_concurrent=1))
    rig.ledger.add({spend_key("key", "key_bs", MONTH): 5.0})
    for _ in range(2):  # the second is refused for the budget again, not for concurrency
        with pytest.raises(BudgetExceeded):
            await _begin(rig, p, chat())


async def test_team_and_global_budgets(make_rig: MakeRig) -> None:
    rig = await make_rig(extra="budgets: {daily_usd: 10.0}")
    team_p = Principal("key", "key_t", team="t9", team_budget_monthly_usd=3.0)
    rig.ledger.add({spend_key("team", "t9", MONTH): 3.5})
    with pytest.raises(BudgetExceeded) as err:
        await _begin(rig, team_p, chat())
    assert "team 't9'" in err.value.message
    await rig.tc.release(await _begin(rig, KEY, chat()))  # others are fine ...
    rig.ledger.add({spend_key("global", "all", DAY): 10.0})
    with pytest.raises(BudgetExceeded) as err:  # ... until the gateway's own budget is spent
        await _begin(rig, KEY, chat())
    assert "the gateway" in err.value.message


async def test_end_stores_only_cacheable_answers(rig: Rig) -> None:
    t = await _begin(rig, KEY, chat("q1"))
    await rig.tc.end(t, usage=None, answer=completion(finish_reason=None))  # cut short: not whole
    assert rig.tc.cache.stores == 0 and rig.tc.cache.skipped == 1
    assert (await _begin(rig, KEY, chat("q1"))).hit is None

    t = await _begin(rig, KEY, chat("q2"))
    await rig.tc.end(t, usage=None, answer={"error": {"message": "boom"}})
    assert rig.tc.cache.stores == 0

    t = await _begin(rig, KEY, chat("q3"))
    await rig.tc.end(t, usage=None, answer=None)  # failed upstream: nothing to store
    assert rig.tc.cache.stores == 0

    t = await _begin(rig, KEY, chat("q4", temperature=0.7))  # sampled: cache off
    await rig.tc.end(t, usage=None, answer=completion())
    assert rig.tc.cache.stores == 0

    t = await _begin(rig, KEY, chat("q5"), **{"x-gateway-cache": "off"})
    assert headers_of(t)["x-gateway-cache"] == "off"
    await rig.tc.end(t, usage=None, answer=completion())
    assert rig.tc.cache.stores == 0

    t = await _begin(rig, KEY, chat("q6"))
    await rig.tc.end(t, usage=None, answer=completion("stored"))
    assert rig.tc.cache.stores == 1
    assert (await _begin(rig, KEY, chat("q6"))).hit == completion("stored")


async def test_refresh_skips_lookup_and_stores(rig: Rig) -> None:
    t = await _begin(rig, KEY, chat())
    await rig.tc.end(t, usage=None, answer=completion("old"))
    fresh = await _begin(rig, KEY, chat(), **{"Cache-Control": "no-cache"})
    assert fresh.hit is None and headers_of(fresh)["x-gateway-cache"] == "refresh"
    await rig.tc.end(fresh, usage=None, answer=completion("new"))
    assert (await _begin(rig, KEY, chat())).hit == completion("new")


async def test_embedding_cache(rig: Rig) -> None:
    req: JSON = {"model": "embed", "input": ["abcdefgh", "ijkl"]}
    t = await rig.tc.begin(KEY, rig.routes["embed"], req, {}, embedding=True)
    assert t.est_tokens == 12 // 4 + 1
    assert headers_of(t)["x-gateway-cache"] == "miss"
    answer: JSON = {"object": "list", "data": [{"object": "embedding", "index": 0, "embedding": [0.1]}]}
    await rig.tc.end(t, usage={"prompt_tokens": 3, "total_tokens": 3}, answer=answer)
    again = await rig.tc.begin(KEY, rig.routes["embed"], req, {}, embedding=True)
    assert again.hit == answer and headers_of(again)["x-gateway-cache"] == "hit"


# --- cost and spend ------------------------------------------------------------------------------------------


async def test_charge_records_spend_everywhere(rig: Rig) -> None:
    p = Principal("key", "key_spend", team="t1", budget_daily_usd=100.0)
    route = rig.routes["chat"]
    t = await _begin(rig, p, chat())
    usage: JSON = {"prompt_tokens": 1000, "completion_tokens": 500, "total_tokens": 1500}
    rig.tc.charge(t, route.deployments[0], usage)
    assert t.cost_usd == pytest.approx(0.002)  # 1000 * $1/1M + 500 * $2/1M
    assert headers_of(t)["x-gateway-cost-usd"] == "0.002"
    keys = [
        spend_key("key", "key_spend", DAY),
        spend_key("key", "key_spend", MONTH),
        spend_key("team", "t1", DAY),
        spend_key("team", "t1", MONTH),
        spend_key("global", "all", DAY),
        spend_key("global", "all", MONTH),
        model_spend_key("chat", DAY),
        team_model_spend_key("t1", "chat", DAY),
    ]
    assert rig.ledger.known(keys) == pytest.approx(dict.fromkeys(keys, 0.002))
    assert set(spent(rig)) == set(keys)
    assert rig.ledger.pending()[usage_key("prompt_tokens", "team", "t1", DAY)] == 1000
    assert rig.unpriced.total == 0
    await rig.tc.end(t, usage=usage, answer=completion())
    # flushed to the backend, the same totals
    assert await rig.ledger.flush()
    assert await rig.backend.read_spend(keys) == pytest.approx(dict.fromkeys(keys, 0.002))


async def test_charge_uses_the_deployments_own_price(rig: Rig) -> None:
    route = rig.routes["capped"]
    t = await _begin(rig, KEY, chat(), alias="capped")
    rig.tc.charge(t, route.deployments[0], {"prompt_tokens": 1_000_000, "completion_tokens": 100_000})
    assert t.cost_usd == pytest.approx(3.0 + 1.5)
    assert rig.ledger.known([model_spend_key("capped", DAY)]) == pytest.approx({model_spend_key("capped", DAY): 4.5})
    await rig.tc.release(t)


async def test_charge_compares_an_upstream_reported_cost(rig: Rig) -> None:
    route = rig.routes["chat"]
    t = await _begin(rig, KEY, chat())
    # the upstream says 0.0025; the gateway prices 1000 * $1/1M + 500 * $2/1M = 0.002
    rig.tc.charge(t, route.deployments[0], {"prompt_tokens": 1000, "completion_tokens": 500, "cost": 0.0025})
    assert t.cost_usd == pytest.approx(0.002)  # the gateway's own price is what is charged
    text = rig.tc.metrics.render()[0].decode()
    assert 'gateway_cost_reported_usd_total{alias="chat",provider="openai"} 0.0025' in text
    assert 'gateway_cost_compared_usd_total{alias="chat",provider="openai"} 0.002' in text
    # no usage.cost (or an unusable one): nothing compared
    rig.tc.charge(t, route.deployments[0], {"prompt_tokens": 1000, "completion_tokens": 500, "cost": "n/a"})
    rig.tc.charge(t, route.deployments[0], {"prompt_tokens": 1000, "completion_tokens": 500})
    text = rig.tc.metrics.render()[0].decode()
    assert 'gateway_cost_compared_usd_total{alias="chat",provider="openai"} 0.002' in text
    await rig.tc.release(t)


async def test_an_unpriced_model_is_not_compared(rig: Rig) -> None:
    t = await _begin(rig, KEY, chat(), alias="mystery")
    rig.tc.charge(t, rig.routes["mystery"].deployments[0], {"prompt_tokens": 10, "completion_tokens": 1, "cost": 1.0})
    assert t.cost_usd is None
    assert "gateway_cost_reported_usd_total{" not in rig.tc.metrics.render()[0].decode()
    await rig.tc.release(t)


async def test_charge_without_usage_or_deployment_does_nothing(rig: Rig) -> None:
    t = await _begin(rig, KEY, chat())
    rig.tc.charge(t, None, {"prompt_tokens": 10})
    rig.tc.charge(t, rig.routes["chat"].deployments[0], None)
    rig.tc.charge(t, rig.routes["chat"].deployments[0], {})
    assert t.cost_usd is None and spent(rig) == {}
    assert "x-gateway-cost-usd" not in headers_of(t)
    await rig.tc.release(t)


async def test_unpriced_model_counted_and_logged_once(rig: Rig, caplog: pytest.LogCaptureFixture) -> None:
    route = rig.routes["mystery"]
    caplog.set_level(logging.WARNING, logger="gateway.server.traffic")
    for _ in range(2):
        t = await _begin(rig, KEY, chat(), alias="mystery")
        rig.tc.charge(t, route.deployments[0], {"prompt_tokens": 100, "completion_tokens": 10, "total_tokens": 110})
        assert t.cost_usd is None
        assert "x-gateway-cost-usd" not in headers_of(t)
        await rig.tc.end(t, usage=None, answer=None)
    assert rig.unpriced.counts == {("openai_compatible", "mystery-model"): 2}
    assert rig.unpriced.total == 2
    logged = [r for r in caplog.records if r.name == "gateway.server.traffic"]
    assert len(logged) == 1
    assert "mystery-model" in logged[0].getMessage() and logged[0].levelno == logging.WARNING
    assert spent(rig) == {}  # never costed at $0
    assert rig.ledger.pending()[usage_key("requests", "model", "mystery", DAY)] == 2  # but counted


async def test_end_settles_the_token_estimate(rig: Rig) -> None:
    p = Principal("key", "key_tpm", limits=LimitSpec(tpm=1000))
    first = await _begin(rig, p, chat())
    est = first.est_tokens
    assert headers_of(first)["x-ratelimit-remaining-tokens"] == str(1000 - est)
    await rig.tc.end(first, usage={"total_tokens": 10}, answer=None)
    second = await _begin(rig, p, chat())
    # the first request now counts its 10 real tokens, not its estimate
    assert headers_of(second)["x-ratelimit-remaining-tokens"] == str(1000 - 10 - est)
    await rig.tc.release(second)


# --- budgets backend failure --------------------------------------------------------------------------------------


async def test_budget_backend_down_open_counts_degraded(rig: Rig) -> None:
    rig.backend.spend_down = True
    p = Principal("key", "key_d", budget_daily_usd=1.0)
    t = await _begin(rig, p, chat())
    assert rig.tc.degraded_budget_checks == 1
    await rig.tc.release(t)
    t = await _begin(rig, p, chat("other"))  # fails fast within the interval: still admitted, counted
    assert rig.tc.degraded_budget_checks == 2
    await rig.tc.release(t)
    await rig.tc.release(await _begin(rig, KEY, chat("no budgets, no check")))
    assert rig.tc.degraded_budget_checks == 2


async def test_budget_backend_down_closed_refuses_and_releases(make_rig: MakeRig) -> None:
    rig = await make_rig(budgets="closed")
    rig.backend.spend_down = True
    p = Principal("key", "key_d", budget_daily_usd=1.0, limits=LimitSpec(max_concurrent=1))
    with pytest.raises(BackendDegraded) as err:
        await _begin(rig, p, chat())
    assert err.value.http_status == 503 and err.value.code == "state_backend_unavailable"
    assert rig.tc.degraded_budget_checks == 0
    rig.backend.spend_down = False
    rig.ledger_clock.now += 2.0  # past the ledger's fail-fast interval
    t = await _begin(rig, p, chat())  # the refused request's slot was given back
    await rig.tc.release(t)


async def test_budget_backend_down_hit_needs_no_budget_backend(make_rig: MakeRig) -> None:
    rig = await make_rig(budgets="closed")
    p = Principal("key", "key_h", budget_daily_usd=1.0)
    t = await _begin(rig, p, chat())
    await rig.tc.end(t, usage=None, answer=completion())
    rig.backend.spend_down = True
    rig.ledger_clock.now += 2.0
    assert (await _begin(rig, p, chat())).hit is not None


# --- the deployment gate ---------------------------------------------------------------------------------------


async def test_gate_none_without_deployment_limits(rig: Rig) -> None:
    t = await _begin(rig, KEY, chat())
    assert rig.tc.gate(t) is None
    await rig.tc.release(t)


async def test_gate_refuses_a_deployment_over_its_rpm(rig: Rig) -> None:
    route = rig.routes["capped"]
    limited, free = route.deployments
    assert limited.id == "capped-dep" and free.id == "capped-free"
    t = await _begin(rig, KEY, chat(), alias="capped")
    gate = rig.tc.gate(t)
    assert gate is not None
    assert await gate(limited) is True
    assert await gate(limited) is False  # rpm 1: skipped
    assert await gate(free) is True  # no limits of its own
    assert await gate(free) is True
    assert rig.tc.limiter.rejections["deployment"] == 1
    await rig.tc.end(t, usage=None, answer=None)


async def test_answer_without_usage_is_counted_unmetered_and_logged_once(
    rig: Rig, caplog: pytest.LogCaptureFixture
) -> None:
    route = rig.routes["chat"]
    for _ in range(3):
        t = await _begin(rig, Principal("key", "key_nousage"), chat())
        rig.tc.charge(t, route.deployments[0], None)
        assert t.cost_usd is None
        await rig.tc.end(t, usage=None, answer=None)
    assert rig.tc.unmetered.total == 3
    assert sum("answered without usage" in r.message for r in caplog.records) == 1
    assert spent(rig) == {}, "nothing was recorded as spend"


# --- budget reservations ----------------------------------------------------------------------------------------------

# chat(): "hello world!" (12 characters: 4 prompt tokens estimated) and max_tokens 100, on gpt-4o-mini at
# $1/1M input and $2/1M output: 4 * 1 + 100 * 2 = 204 micro-dollars reserved per request.
EST = 204e-6
REAL: JSON = {"prompt_tokens": 4, "completion_tokens": 90, "total_tokens": 94}  # 184 micro-dollars


async def test_a_concurrent_burst_is_admitted_only_as_far_as_its_estimates_fit(rig: Rig) -> None:
    p = Principal("key", "key_burst", budget_daily_usd=5.5 * EST)
    route = rig.routes["chat"]
    results = await asyncio.gather(*(_begin(rig, p, chat()) for _ in range(40)), return_exceptions=True)
    admitted = [r for r in results if isinstance(r, Ticket)]
    refused = [r for r in results if isinstance(r, BudgetExceeded)]
    assert (len(admitted), len(refused)) == (5, 35), "5 estimates fit in 5.5, the sixth does not"
    assert "reserved" in refused[0].message and refused[0].headers["retry-after"] == "1"
    assert rig.ledger.stats().reservations == 5
    assert rig.ledger.stats().reserved_usd == pytest.approx(5 * EST)
    for ticket in admitted:
        rig.tc.charge(ticket, route.deployments[0], REAL)
        await rig.tc.end(ticket, usage=REAL, answer=None)
        await rig.tc.release(ticket)
    assert rig.ledger.stats().reservations == 0 and rig.ledger.stats().reserved_usd == 0.0
    total = rig.ledger.known([spend_key("key", "key_burst", DAY)])[spend_key("key", "key_burst", DAY)]
    assert total == pytest.approx(5 * 184e-6) and total <= 5.5 * EST, "no overshoot: the real cost was below"
    # What is left (0.5 estimate + 5 x 20 micro-dollars) is less than one estimate: a lone request is
    # still admitted while the budget is not spent, as before; two at once are not.
    lone = await _begin(rig, p, chat())
    with pytest.raises(BudgetExceeded):
        await _begin(rig, p, chat())
    await rig.tc.release(lone)


async def test_every_path_gives_the_reservation_back(rig: Rig) -> None:
    p = Principal("key", "key_paths", team="t-paths", budget_daily_usd=1.0, team_budget_monthly_usd=1.0)
    route = rig.routes["chat"]
    held = [spend_key("key", "key_paths", DAY), spend_key("team", "t-paths", MONTH)]
    charged = await _begin(rig, p, chat())
    assert rig.ledger.reserved(held) == pytest.approx(dict.fromkeys(held, EST))
    rig.tc.charge(charged, route.deployments[0], REAL)  # charged: given back in the same step
    assert rig.ledger.reserved(held) == dict.fromkeys(held, 0.0)
    await rig.tc.release(charged)
    failed = await _begin(rig, p, chat())  # an upstream error, a client that left: never charged
    await rig.tc.release(failed)
    await rig.tc.release(failed)  # idempotent
    unpriced = await _begin(rig, p, chat())
    rig.tc.charge(unpriced, None, None)  # no deployment answered
    assert rig.ledger.reserved(held) == dict.fromkeys(held, 0.0)
    await rig.tc.end(unpriced, usage=None, answer=None)
    await rig.tc.release(unpriced)
    assert rig.ledger.stats().reservations == 0


async def test_no_budget_no_price_no_reservation(rig: Rig) -> None:
    plain = await _begin(rig, KEY, chat())  # no budget at all
    assert plain.reservation is None
    await rig.tc.release(plain)
    p = Principal("key", "key_unpriced", budget_daily_usd=1.0)
    unpriced = await _begin(rig, p, chat(), alias="mystery")  # no price: nothing will be charged
    assert unpriced.reservation is None
    await rig.tc.release(unpriced)
    assert rig.ledger.stats().reservations == 0


async def test_the_estimate_follows_max_tokens_the_cap_and_the_default(make_rig: MakeRig) -> None:
    rig = await make_rig(extra="budgets: {estimate_output_tokens: 10}")
    p = Principal("key", "key_est", budget_daily_usd=100.0)
    for req, expected in (
        (chat(max_tokens=100), 4 * 1 + 100 * 2),
        (chat(max_tokens=None), 4 * 1 + 10 * 2),  # budgets.estimate_output_tokens
    ):
        ticket = await _begin(rig, p, req)
        assert ticket.reservation is not None
        assert ticket.reservation.usd == pytest.approx(expected / 1e6)
        await rig.tc.release(ticket)
    # capped: the dearest priced deployment (claude-x, $3/$15), max_tokens as asked
    capped = await _begin(rig, p, chat(max_tokens=1000), alias="capped")
    assert capped.reservation is not None and capped.reservation.usd == pytest.approx((4 * 3 + 1000 * 15) / 1e6)
    await rig.tc.release(capped)


def test_cost_estimate_takes_the_dearest_deployment_and_its_cap() -> None:
    priced = [(Price(input_per_1m=1.0, output_per_1m=2.0), 50), (Price(input_per_1m=3.0, output_per_1m=1.0), None)]
    assert cost_estimate(priced, 4, 100, 10, False) == pytest.approx(112e-6), "max(4 + 50 * 2, 12 + 100)"
    assert cost_estimate(priced, 4, 0, 10, False) == pytest.approx(104e-6), "the cap, else the default (10)"
    assert cost_estimate(priced, 4, 0, 10, True) == pytest.approx(12e-6), "an embedding: the prompt only"
    assert cost_estimate([], 4, 100, 10, False) == 0.0, "nothing priced: nothing to reserve"


def test_cost_estimate_reserves_the_dearest_rates_the_request_may_be_charged() -> None:
    """Cache writes and reasoning dearer than input and output, a long-context tier, a
    time-of-day multiplier: the reservation covers what the settlement may charge."""
    price = Price.model_validate(
        {
            "input_per_1m": 1.0,
            "output_per_1m": 2.0,
            "cache_write_1h_per_1m": 2.0,
            "reasoning_per_1m": 4.0,
            "tiers": [{"above_prompt_tokens": 100, "input_per_1m": 10.0, "output_per_1m": 20.0}],
            "time_of_day": [{"start": "22:00", "end": "06:00", "multiplier": 0.5}],
        }
    )
    noon, night = NOW, NOW.replace(hour=23)
    assert cost_estimate([(price, None)], 10, 5, 0, False, at=noon) == pytest.approx((10 * 2.0 + 5 * 4.0) / 1e6)
    assert cost_estimate([(price, None)], 200, 5, 0, False, at=noon) == pytest.approx((200 * 10.0 + 5 * 20.0) / 1e6)
    assert cost_estimate([(price, None)], 10, 5, 0, False, at=night) == pytest.approx((10 * 2.0 + 5 * 4.0) / 2e6)


async def test_a_charge_is_in_the_spend_journal_before_the_answer_is_sent(make_rig: MakeRig, tmp_path: Path) -> None:
    journal = SpendJournal(tmp_path / "journal")
    journal.open()
    rig = await make_rig(journal=journal)
    t = await _begin(rig, Principal("key", "key_j"), chat())
    rig.tc.charge(t, rig.routes["chat"].deployments[0], REAL)  # synchronous: the handler sends next
    [segment] = [p for p in (tmp_path / "journal").iterdir() if p.suffix == ".spend"]
    amounts, bad = read_segment(segment)
    assert bad == 0 and journal.writes == 1
    assert amounts[spend_key("key", "key_j", DAY)] == pytest.approx(184e-6) == t.cost_usd
    assert amounts[usage_key("requests", "key", "key_j", DAY)] == 1
    await rig.tc.release(t)
    journal.close()
