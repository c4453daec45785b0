"""Traffic control's caches are keyed by value and bounded: a key record read again from
the state backend (new objects, equal fields) finds the entries it made, whatever the
number of reads; a changed limit or budget gives new derivations; no cache grows past
its bound (the least recently used entry goes). Over the real embedded backend, key
store, spend ledger and routes built from a parsed config."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest

from gateway.config.loader import parse_config
from gateway.config.settings import LimitSpec, LimitsSettings
from gateway.observability.metrics import Metrics
from gateway.policies import keys as keys_module
from gateway.policies.auth import Authenticator, Principal
from gateway.policies.keys import KeyStore, hash_key
from gateway.policies.pricing import UnpricedModels, parse_prices
from gateway.policies.ratelimit_core import LimiterCore, Scope
from gateway.policies.ratelimit_fixed import FixedWindowLimits
from gateway.providers.registry import presets
from gateway.routing.deployment import Route, build_routes
from gateway.server import gatekeeper
from gateway.server.traffic import Ticket, TrafficControl
from gateway.state.embedded import EmbeddedBackend
from gateway.state.ledger import SpendLedger
from tests.unit.fixtures import Clock, FlakyBackend

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
CONFIG = """
limits: {strategy: fixed_window, max_concurrent: null}
budgets: {daily_usd: 100.0}
models:
  chat:
    limits: {rpm: 1000}
    deployments:
      - provider: openai
        model: gpt-4o-mini
        api_key: sk-upstream
        price: {input_per_1m: 1.0, output_per_1m: 2.0}
"""
PRICES = 'version: "2026-11-26"\nmodels: {}\n'
REQ = {"model": "chat", "messages": [{"role": "user", "content": "hello"}], "max_tokens": 10}


class Rig:
    def __init__(self, backend: EmbeddedBackend) -> None:
        settings = parse_config(CONFIG, env={}).settings
        self.ledger = SpendLedger(backend, flush_interval_s=60.0, refresh_interval_s=1.0, clock=Clock())
        self.tc = TrafficControl(settings, backend, self.ledger, parse_prices(PRICES), UnpricedModels(), Metrics())
        self.tc.budgets.clock = lambda: NOW
        self.route: Route = build_routes(settings, presets())["chat"]

    async def begin(self, p: Principal) -> Ticket:
        ticket = await self.tc.begin(p, self.route, REQ, {}, embedding=False)
        await self.tc.release(ticket)
        return ticket


@pytest.fixture
async def backend(tmp_path: Path) -> AsyncIterator[FlakyBackend]:
    b = FlakyBackend(str(tmp_path / "gw.db"))
    yield b
    await b.aclose()


def principal(key_id: str = "key_a", rpm: int = 50, daily: float = 5.0) -> Principal:
    """A new object each call, as the authenticator makes one when a record is read again."""
    return Principal(
        "key",
        key_id,
        team="t1",
        limits=LimitSpec(rpm=rpm),
        team_limits=LimitSpec(rpm=500),
        budget_daily_usd=daily,
        team_budget_daily_usd=20.0,
    )


async def test_a_key_read_again_and_again_leaves_one_entry_in_every_cache(backend: FlakyBackend) -> None:
    rig = Rig(backend)
    first = await rig.begin(principal())
    for _ in range(25):
        again = await rig.begin(principal())  # equal fields, another object
        assert again.budgets is first.budgets  # the same derivation, found by value
    gk = rig.tc._gatekeeper
    assert len(gk._derived) == 1
    assert len(rig.tc.budgets._today) == 1
    assert len(rig.ledger._schedule._fresh) == 1
    assert dict(again.headers())[b"x-ratelimit-limit-requests"] == b"50"


async def test_a_changed_limit_or_budget_gives_a_new_derivation(backend: FlakyBackend) -> None:
    rig = Rig(backend)
    before = await rig.begin(principal(rpm=50))
    after = await rig.begin(principal(rpm=7))  # an admin PATCH, read by the key store
    assert dict(after.headers())[b"x-ratelimit-limit-requests"] == b"7"
    assert after.budgets == before.budgets  # the budgets did not change
    richer = await rig.begin(principal(rpm=7, daily=9.0))
    assert [b.daily_usd for b in richer.budgets if b.scope == "key"] == [9.0]
    assert len(rig.tc._gatekeeper._derived) == 1  # one key on one alias: its entry replaced


async def test_the_derivations_never_exceed_their_bound(backend: FlakyBackend, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(gatekeeper, "DERIVED_MAX", 3)
    rig = Rig(backend)
    for i in range(3):
        await rig.begin(principal(f"key_{i}"))
    await rig.begin(principal("key_0"))  # used again: key_1 is now the oldest
    for i in range(3, 6):
        await rig.begin(principal(f"key_{i}"))
        assert len(rig.tc._gatekeeper._derived) == 3
    held = {key[1] for key in rig.tc._gatekeeper._derived._data}
    assert held == {"key_3", "key_4", "key_5"}
    await rig.begin(principal("key_5"))
    assert rig.tc._gatekeeper._derived.evictions == 3


async def test_the_fixed_window_plans_are_keyed_by_the_scopes_themselves(backend: FlakyBackend) -> None:
    limits = FixedWindowLimits(
        LimiterCore(backend, LimitsSettings(max_concurrent=None), "open", period_s=60, slot_ttl_s=60)
    )

    def scopes(rpm: int) -> list[Scope]:
        return [Scope("key", "key_a", LimitSpec(rpm=rpm, max_concurrent=5)), Scope("model", "chat", LimitSpec(rpm=900))]

    for _ in range(10):  # a new list of new, equal scopes each time
        admission = await limits.admit(scopes(40), 1)
        await limits.finish(admission, None)
    assert len(limits._plans) == 1
    assert admission.headers["x-ratelimit-remaining-requests"] == "30"  # counted every time all the same
    changed = await limits.admit(scopes(41), 1)
    assert changed.headers["x-ratelimit-limit-requests"] == "41"
    assert len(limits._plans) == 2


async def test_the_authenticator_keeps_one_principal_per_key_however_often_it_is_read(
    backend: FlakyBackend,
) -> None:
    clock = Clock()
    store = KeyStore(backend, refresh_interval_s=1.0, clock=clock)
    await store.put_team({"id": "t1", "rpm": 100})
    record, token = await store.create({"name": "svc", "team": "t1", "rpm": 10, "budget_daily_usd": 2.0})
    auth = Authenticator(parse_config("models: {}", env={}).settings.auth, store, "closed")
    first = await auth.authenticate(token.encode())
    for _ in range(5):
        clock.now += 2.0  # the cache is stale: the records are read from the backend again
        reread = await store.lookup(hash_key(token))
        assert reread == record and reread is not record
        assert await auth.authenticate(token.encode()) is first
    assert len(auth._principals) == 1
    await store.update(record["id"], {"rpm": 11})
    changed = await auth.authenticate(token.encode())
    assert changed is not first and changed.limits == LimitSpec(rpm=11)
    assert changed == replace(first, limits=LimitSpec(rpm=11))
    assert len(auth._principals) == 1


async def test_the_key_store_cache_keeps_the_keys_in_use(
    backend: FlakyBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(keys_module, "CACHED_MAX", 4)
    store = KeyStore(backend, refresh_interval_s=60.0, clock=Clock())
    _, token = await store.create({"name": "busy"})
    busy = hash_key(token)
    assert await store.lookup(busy) is not None
    for i in range(20):  # unknown keys sprayed at the gateway are cached too
        assert await store.lookup(hash_key(f"sk-gw-unknown-{i}")) is None
        reads = backend.gets
        assert await store.lookup(busy) is not None
        assert backend.gets == reads  # the key in use stays cached
        assert len(store._by_hash) <= 4
