"""gateway.policies.auth: master, static and stored keys (with teams), the
failure codes, and what happens when the state backend is down."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from gateway.config.fields import Mode
from gateway.config.loader import parse_config
from gateway.config.settings import AuthSettings, LimitSpec, StaticKey
from gateway.errors import AuthenticationFailed, BackendDegraded, PermissionDenied
from gateway.policies.auth import MASTER, Authenticator, Principal
from gateway.policies.keys import KeyStore
from gateway.server.asgi import Scope, bearer_token
from gateway.state.base import Record
from tests.unit.fixtures import Clock, FlakyBackend

MASTER_KEY = "master-key-0123456789"
STATIC_TOKEN = "static-token-abcdef"


@pytest.fixture
async def backend(tmp_path: Path) -> AsyncIterator[FlakyBackend]:
    b = FlakyBackend(str(tmp_path / "gateway.db"))
    yield b
    await b.aclose()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def store(backend: FlakyBackend, clock: Clock) -> KeyStore:
    return KeyStore(backend, refresh_interval_s=1.0, clock=clock)


def _sha(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _settings(**kw: Any) -> AuthSettings:
    return AuthSettings(
        master_key=MASTER_KEY,
        keys=[
            StaticKey(name="ci", sha256=_sha(STATIC_TOKEN), models=["chat", "embed"]),
            StaticKey(name="ops", sha256=_sha("ops-token-xyz")),
        ],
        **kw,
    )


def scope_with(token: str | None = None, *, header: bytes = b"authorization", scheme: str = "Bearer ") -> Scope:
    headers: list[tuple[bytes, bytes]] = [(b"host", b"gw")]
    if token is not None:
        value = (scheme + token) if header == b"authorization" else token
        headers.append((header, value.encode()))
    return {"type": "http", "headers": headers}


def auth(store: KeyStore | None, mode: Mode = "closed") -> Authenticator:
    return Authenticator(_settings(), store, mode)


async def _fails(a: Authenticator, scope: Scope) -> AuthenticationFailed:
    with pytest.raises(AuthenticationFailed) as err:
        await a.authenticate(bearer_token(scope))
    assert err.value.http_status == 401
    return err.value


# --- token extraction ------------------------------------------------------------------------------


def test_bearer_token_sources() -> None:
    assert bearer_token(scope_with("abc")) == b"abc"
    assert bearer_token(scope_with("abc", scheme="bearer   ")) == b"abc"
    assert bearer_token(scope_with("abc", scheme="BEARER ")) == b"abc"
    assert bearer_token(scope_with("abc", header=b"x-api-key")) == b"abc"
    assert bearer_token(scope_with("abc", scheme="Basic ")) == b""
    assert bearer_token(scope_with()) == b""


# --- master ----------------------------------------------------------------------------------------


async def test_master_key_uses_constant_time_compare(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", spy)  # auth calls hmac.compare_digest
    a = auth(None)
    assert await a.authenticate(bearer_token(scope_with(MASTER_KEY))) is MASTER
    assert calls == [(MASTER_KEY.encode(), MASTER_KEY.encode())]
    assert a.is_master(bearer_token(scope_with(MASTER_KEY)))
    assert len(calls) == 2
    # a near miss goes through the same comparison and is not the master
    assert not a.is_master(bearer_token(scope_with(MASTER_KEY + "x")))
    assert not a.is_master(bearer_token(scope_with(MASTER_KEY[:-1])))
    assert len(calls) == 4
    await _fails(a, scope_with(MASTER_KEY[:-1]))


async def test_master_principal() -> None:
    p = await auth(None).authenticate(bearer_token(scope_with(MASTER_KEY, header=b"x-api-key")))
    assert p.kind == "master" and p.models is None and p.limits is None and p.may_use("anything")


async def test_is_master() -> None:
    a = auth(None)
    assert a.is_master(bearer_token(scope_with(MASTER_KEY)))
    assert not a.is_master(bearer_token(scope_with()))
    assert not a.is_master(bearer_token(scope_with(STATIC_TOKEN)))
    no_master = Authenticator(AuthSettings(), None, "closed")
    assert not no_master.is_master(bearer_token(scope_with(MASTER_KEY)))
    assert not no_master.is_master(bearer_token(scope_with("")))
    assert not no_master.has_credentials
    assert a.has_credentials


async def test_has_credentials_with_a_store_only(store: KeyStore) -> None:
    assert Authenticator(AuthSettings(), store, "closed").has_credentials


# --- static keys -------------------------------------------------------------------------------------


async def test_static_key_with_models() -> None:
    p = await auth(None).authenticate(bearer_token(scope_with(STATIC_TOKEN)))
    assert p.kind == "static" and p.key_id == "ci"
    assert p.models == frozenset({"chat", "embed"})
    assert p.may_use("chat") and not p.may_use("gpt-4o")
    with pytest.raises(PermissionDenied) as err:
        p.check_model("gpt-4o")
    assert err.value.code == "model_not_allowed" and err.value.param == "model" and err.value.http_status == 403
    p.check_model("chat")


async def test_static_key_without_models_may_use_all() -> None:
    p = await auth(None).authenticate(bearer_token(scope_with("ops-token-xyz")))
    assert p.kind == "static" and p.key_id == "ops" and p.models is None and p.may_use("x")


async def test_static_key_is_matched_by_hash_only() -> None:
    a = auth(None)
    err = await _fails(a, scope_with(_sha(STATIC_TOKEN)))  # the hash itself is not a key
    assert err.code == "invalid_api_key"


async def test_static_key_restricted_to_disabled_alias_gets_no_models() -> None:
    """A static key limited to an alias that is left out (``requires_env``
    unset) ends up with ``models: []``: it may use nothing, not everything."""
    config = f"""
models:
  chat:
    deployments: [{{provider: openai, model: gpt-4o-mini}}]
  gpt4:
    requires_env: [SOME_UNSET_PROVIDER_KEY]
    deployments: [{{provider: openai, model: gpt-4o}}]
auth:
  keys:
    - {{name: ci, sha256: {_sha(STATIC_TOKEN)}, models: [gpt4]}}
"""
    settings = parse_config(config, env={}).settings
    assert settings.auth.keys[0].models == []
    p = await Authenticator(settings.auth, None, "closed").authenticate(bearer_token(scope_with(STATIC_TOKEN)))
    assert not p.may_use("chat")


# --- missing / invalid -------------------------------------------------------------------------------


@pytest.mark.parametrize("scope", [scope_with(), scope_with(""), scope_with("abc", scheme="Basic ")])
async def test_missing_key(scope: Scope, store: KeyStore) -> None:
    err = await _fails(auth(store), scope)
    assert err.code == "missing_api_key"


async def test_invalid_key_without_store() -> None:
    err = await _fails(auth(None), scope_with("sk-gw-" + "x" * 40))
    assert err.code == "invalid_api_key"


async def test_invalid_key_with_store(store: KeyStore) -> None:
    err = await _fails(auth(store), scope_with("sk-gw-" + "x" * 40))
    assert err.code == "invalid_api_key"


# --- stored keys and teams ------------------------------------------------------------------------------


async def test_stored_key_with_team(store: KeyStore) -> None:
    await store.put_team(
        {
            "id": "t1",
            "models": ["chat", "embed", "big"],
            "rpm": 100,
            "tpm": None,
            "max_concurrent": 4,
            "budget_daily_usd": 50.0,
            "budget_monthly_usd": 500.0,
        }
    )
    record, token = await store.create(
        {
            "name": "svc",
            "team": "t1",
            "models": ["chat", "embed", "other"],
            "rpm": 10,
            "tpm": 1000,
            "max_concurrent": None,
            "budget_daily_usd": 1.5,
            "budget_monthly_usd": None,
            "enabled": True,
        }
    )
    p = await auth(store).authenticate(bearer_token(scope_with(token)))
    assert p == Principal(
        "key",
        record["id"],
        team="t1",
        models=frozenset({"chat", "embed"}),  # key's list intersected with the team's
        limits=LimitSpec(rpm=10, tpm=1000, max_concurrent=None),
        team_limits=LimitSpec(rpm=100, tpm=None, max_concurrent=4),
        budget_daily_usd=1.5,
        budget_monthly_usd=None,
        team_budget_daily_usd=50.0,
        team_budget_monthly_usd=500.0,
    )
    assert not p.may_use("other") and not p.may_use("big")
    # the same key through x-api-key
    assert await auth(store).authenticate(bearer_token(scope_with(token, header=b"x-api-key"))) == p


async def test_stored_key_models_from_team_only(store: KeyStore) -> None:
    await store.put_team({"id": "t2", "models": ["chat"]})
    _, token = await store.create({"name": "a", "team": "t2", "models": None})
    p = await auth(store).authenticate(bearer_token(scope_with(token)))
    assert p.models == frozenset({"chat"}) and p.limits is None and p.team_limits is None


async def test_stored_key_empty_model_list_allows_nothing(store: KeyStore) -> None:
    _, token = await store.create({"name": "a", "models": []})
    p = await auth(store).authenticate(bearer_token(scope_with(token)))
    assert p.models == frozenset() and not p.may_use("chat")


async def test_stored_key_without_team_or_limits(store: KeyStore) -> None:
    record, token = await store.create({"name": "a"})
    p = await auth(store).authenticate(bearer_token(scope_with(token)))
    assert p == Principal("key", record["id"])
    assert p.models is None and p.team is None


async def test_a_stored_key_is_hashed_once_per_request(store: KeyStore, monkeypatch: pytest.MonkeyPatch) -> None:
    """The static keys and the key store both go by the key's SHA-256: one hash serves both
    lookups (it was computed twice for every request with a stored key)."""
    record, token = await store.create({"name": "a"})
    a = auth(store)
    await a.authenticate(bearer_token(scope_with(token)))  # the record now in the store's cache
    hashed: list[bytes] = []
    real = hashlib.sha256

    def counting(data: bytes = b"") -> Any:
        hashed.append(data)
        return real(data)

    monkeypatch.setattr(hashlib, "sha256", counting)
    assert await a.authenticate(bearer_token(scope_with(token))) == Principal("key", record["id"])
    assert hashed == [token.encode()]


async def test_stored_key_whose_team_is_gone(store: KeyStore) -> None:
    _, token = await store.create({"name": "a", "team": "ghost", "models": ["chat"]})
    p = await auth(store).authenticate(bearer_token(scope_with(token)))
    assert p.team == "ghost" and p.models == frozenset({"chat"}) and p.team_limits is None


@pytest.mark.parametrize(
    ("fields", "code"),
    [
        ({"revoked_at": "2026-01-01T00:00:00+00:00", "enabled": False}, "key_revoked"),
        ({"enabled": False}, "key_disabled"),
        ({"expires_at": (datetime.now(UTC) - timedelta(seconds=5)).isoformat()}, "key_expired"),
    ],
)
async def test_unusable_stored_keys(store: KeyStore, fields: Record, code: str) -> None:
    record, token = await store.create({"name": "a"})
    await store.update(record["id"], fields)
    err = await _fails(auth(store), scope_with(token))
    assert err.code == code


async def test_revoke_takes_effect_at_once(store: KeyStore) -> None:
    record, token = await store.create({"name": "a"})
    a = auth(store)
    assert (await a.authenticate(bearer_token(scope_with(token)))).key_id == record["id"]
    await store.revoke(record["id"])
    assert (await _fails(a, scope_with(token))).code == "key_revoked"


async def test_future_expiry_is_fine(store: KeyStore) -> None:
    _, token = await store.create({"name": "a", "expires_at": (datetime.now(UTC) + timedelta(days=1)).isoformat()})
    assert (await auth(store).authenticate(bearer_token(scope_with(token)))).kind == "key"


async def test_rotated_key(store: KeyStore) -> None:
    record, old = await store.create({"name": "a"})
    a = auth(store)
    await a.authenticate(bearer_token(scope_with(old)))
    _, new = await store.rotate(record["id"])
    assert (await _fails(a, scope_with(old))).code == "invalid_api_key"
    assert (await a.authenticate(bearer_token(scope_with(new)))).key_id == record["id"]


# --- the backend is down ---------------------------------------------------------------------------------


async def test_backend_down_unknown_key_closed_is_503(store: KeyStore, backend: FlakyBackend) -> None:
    backend.down = True
    with pytest.raises(BackendDegraded) as err:
        await auth(store, "closed").authenticate(bearer_token(scope_with("sk-gw-" + "y" * 40)))
    assert err.value.http_status == 503 and err.value.code == "state_backend_unavailable"


async def test_backend_down_unknown_key_open_is_401(store: KeyStore, backend: FlakyBackend) -> None:
    backend.down = True
    err = await _fails(auth(store, "open"), scope_with("sk-gw-" + "y" * 40))
    assert err.code == "invalid_api_key"


async def test_backend_down_known_key_served_from_cache(store: KeyStore, backend: FlakyBackend, clock: Clock) -> None:
    await store.put_team({"id": "t1", "models": ["chat"]})
    record, token = await store.create({"name": "a", "team": "t1", "rpm": 5})
    a = auth(store, "closed")
    before = await a.authenticate(bearer_token(scope_with(token)))
    backend.down = True
    clock.now += 30  # past the refresh interval
    assert await a.authenticate(bearer_token(scope_with(token))) == before
    assert before.key_id == record["id"] and before.models == frozenset({"chat"})


async def test_backend_down_does_not_affect_master_or_static(store: KeyStore, backend: FlakyBackend) -> None:
    backend.down = True
    a = auth(store, "closed")
    assert await a.authenticate(bearer_token(scope_with(MASTER_KEY))) is MASTER
    assert (await a.authenticate(bearer_token(scope_with(STATIC_TOKEN)))).key_id == "ci"


async def test_priority_class_comes_from_the_key_else_its_team_and_the_weight_from_the_team(store: KeyStore) -> None:
    await store.put_team({"id": "t-prio", "priority": "high", "weight": 3.0})
    _, inherits = await store.create({"name": "a", "team": "t-prio"})
    _, own = await store.create({"name": "b", "team": "t-prio", "priority": "low"})
    _, alone = await store.create({"name": "c"})
    p = await auth(store).authenticate(bearer_token(scope_with(inherits)))
    assert (p.priority, p.team_weight) == ("high", 3.0)
    p = await auth(store).authenticate(bearer_token(scope_with(own)))
    assert (p.priority, p.team_weight) == ("low", 3.0)
    p = await auth(store).authenticate(bearer_token(scope_with(alone)))
    assert (p.priority, p.team_weight) == (None, 1.0)
