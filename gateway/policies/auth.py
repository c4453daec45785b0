"""Who is calling: the master key, a static key from the config file, or a
client key from the key store (with its team).

A principal carries what the other policies need: the aliases it may use (the
key's list intersected with its team's), its own and its team's rate limits and
budgets. A key that is unknown, revoked, disabled or expired is a 401 with a
code saying which; a model outside the principal's list is a 403.

When the state backend is unreachable, a key seen recently is served from the
replica's cache; an unknown key is never admitted. With ``keys: closed`` (the
default) a key that cannot be checked is a 503, with ``open`` a 401.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass

from gateway.config.fields import Mode
from gateway.config.settings import AuthSettings, LimitSpec
from gateway.errors import AuthenticationFailed, BackendDegraded, PermissionDenied
from gateway.policies.keys import KeyStore, key_digest, key_state
from gateway.state.base import BackendUnavailable, Record
from gateway.state.lru import Lru

PRINCIPALS_MAX = 100_000
"""Client keys whose principal is kept (least recently used evicted)."""


@dataclass(frozen=True, slots=True)
class Principal:
    kind: str
    """"master", "static" or "key"."""
    key_id: str
    team: str | None = None
    models: frozenset[str] | None = None
    limits: LimitSpec | None = None
    team_limits: LimitSpec | None = None
    budget_daily_usd: float | None = None
    budget_monthly_usd: float | None = None
    team_budget_daily_usd: float | None = None
    team_budget_monthly_usd: float | None = None
    priority: str | None = None
    """The admission queue's priority class (the key's, else its team's; None: the default)."""
    team_weight: float = 1.0
    """The team's fair-share weight in the admission queue."""

    def may_use(self, alias: str) -> bool:
        return self.models is None or alias in self.models

    def check_model(self, alias: str) -> None:
        if not self.may_use(alias):
            raise PermissionDenied(f"this key may not use model '{alias}'", code="model_not_allowed", param="model")


MASTER = Principal("master", "master")


def _limits(record: Record | None) -> LimitSpec | None:
    if not record or not any(record.get(k) for k in ("rpm", "tpm", "max_concurrent")):
        return None
    return LimitSpec(rpm=record.get("rpm"), tpm=record.get("tpm"), max_concurrent=record.get("max_concurrent"))


def _models(key: Record, team: Record | None) -> frozenset[str] | None:
    allowed = [set(m) for m in (key.get("models"), (team or {}).get("models")) if m is not None]
    if not allowed:
        return None
    return frozenset(set.intersection(*allowed))


def _static_models(models: list[str] | None) -> frozenset[str] | None:
    """``None`` means every alias; an empty list (all its aliases left out) means none."""
    return None if models is None else frozenset(models)


class Authenticator:
    def __init__(self, settings: AuthSettings, keys: KeyStore | None, failure_mode: Mode) -> None:
        self._master = settings.master_key.encode() if settings.master_key else None
        self._static = {
            bytes.fromhex(k.sha256): Principal("static", k.name, models=_static_models(k.models), priority=k.priority)
            for k in settings.keys
        }
        self._keys = keys
        self._failure_mode = failure_mode
        self._principals: Lru[str, tuple[Record, Record | None, Principal]] = Lru(PRINCIPALS_MAX)
        """Principal per key id, and the records it was made of: the same object for as long
        as the records say the same (read again from the backend or not), so that what traffic
        control derives from it is found at once."""

    @property
    def has_credentials(self) -> bool:
        return self._master is not None or bool(self._static) or self._keys is not None

    async def authenticate(self, token: bytes) -> Principal:
        """The principal behind a client's key (:func:`gateway.server.asgi.bearer_token`)."""
        if not token:
            raise AuthenticationFailed(
                "no API key: send 'Authorization: Bearer <key>' (or x-api-key, or x-goog-api-key)",
                code="missing_api_key",
            )
        if self._master is not None and hmac.compare_digest(token, self._master):
            return MASTER
        digest = key_digest(token)  # hashed once: static keys and the key store both go by it
        static = self._static.get(digest)
        if static is not None:
            return static
        if self._keys is None:
            raise AuthenticationFailed("the API key is not valid", code="invalid_api_key")
        return await self._stored(digest.hex())  # = hash_key(token)

    def is_master(self, token: bytes) -> bool:
        return bool(token) and self._master is not None and hmac.compare_digest(token, self._master)

    async def _stored(self, key_hash: str) -> Principal:
        """The principal of a key in the key store, by its hash (``hash_key``: SHA-256, hex)."""
        assert self._keys is not None
        try:
            record = await self._keys.lookup(key_hash)
            team = await self._keys.team(record["team"]) if record and record.get("team") else None
        except BackendUnavailable:
            if self._failure_mode == "closed":
                raise BackendDegraded("cannot check the API key: the state backend is unreachable") from None
            raise AuthenticationFailed("the API key cannot be checked right now", code="invalid_api_key") from None
        if record is None:
            raise AuthenticationFailed("the API key is not valid", code="invalid_api_key")
        problem = key_state(record)
        if problem is not None:
            raise AuthenticationFailed(f"the API key is {problem}", code=f"key_{problem}")
        cached = self._principals.get(record["id"])
        if cached is not None and cached[0] is record and cached[1] is team:
            return cached[2]
        principal = self._principal(record, team)
        if cached is not None and cached[2] == principal:  # read again, unchanged: the same principal
            principal = cached[2]
        self._principals.put(record["id"], (record, team, principal))
        return principal

    @staticmethod
    def _principal(record: Record, team: Record | None) -> Principal:
        return Principal(
            "key",
            record["id"],
            team=record.get("team"),
            models=_models(record, team),
            limits=_limits(record),
            team_limits=_limits(team),
            budget_daily_usd=record.get("budget_daily_usd"),
            budget_monthly_usd=record.get("budget_monthly_usd"),
            team_budget_daily_usd=(team or {}).get("budget_daily_usd"),
            team_budget_monthly_usd=(team or {}).get("budget_monthly_usd"),
            priority=record.get("priority") or (team or {}).get("priority"),
            team_weight=(team or {}).get("weight") or 1.0,
        )
