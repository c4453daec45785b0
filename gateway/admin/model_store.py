"""Runtime model aliases: kept in the state backend, overlaid on the config file.

Records live in table ``models`` (id = alias name)::

    {"name": "gpt-x", "spec": {...one alias in the config file's schema...} | null,
     "disabled": false, "updated_at": "2026-11-26T12:00:00+00:00", "updated_by": "master"}

The routing rules stored through the admin API (``gateway/admin/routing_rules.py``) are one
record, ``routing_rules``/``rules``::

    {"rules": [...the config file's routing_rules schema...], "updated_at": ..., "updated_by": ...}

which, when present, replaces the file's ``routing_rules`` whole.

``spec`` is kept as written (``${VAR}`` references unresolved: they are
resolved when the config is built, exactly like the file's). A record with
``spec: null`` only disables the config file's alias of that name.

The effective configuration (:func:`effective_config`) is the file's mapping
with every stored ``spec`` put in place of (or next to) the file's alias of
the same name (and the stored routing rules in place of the file's), then every
``disabled`` alias left out like one whose
``requires_env`` is unset (references to it dropped), then validated by the
config loader itself, so a stored alias is checked exactly like the file.

Propagation: every write (of a model or of the rules) also puts a fresh random ``version`` in table
``models_meta``. :meth:`ModelStore.watch` reads that one record every
``refresh_interval_s`` and, when it changed, reads the table again and hands
it to the app, which rebuilds its routes. Reading the version *before* the
table means a write that lands in between is seen again on the next tick, so
no change is missed; a replica sees any change within about one interval.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import logging
import secrets
from collections.abc import Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from gateway.config.loader import ConfigError, LoadedConfig, parse_raw
from gateway.errors import GatewayError
from gateway.security.secrets import SecretError
from gateway.state.base import BackendUnavailable, Record, StateBackend

log = logging.getLogger("gateway.models")

TABLE = "models"
META_TABLE = "models_meta"
VERSION_ID = "version"
RULES_TABLE = "routing_rules"
RULES_ID = "rules"


@dataclass(frozen=True, slots=True)
class StoredModel:
    """One alias as the admin API stored it."""

    name: str
    spec: dict[str, Any] | None
    """The alias in the config file's schema; None: the file's definition."""
    disabled: bool = False
    updated_at: str = ""
    updated_by: str = ""

    def to_record(self) -> Record:
        return {
            "name": self.name,
            "spec": self.spec,
            "disabled": self.disabled,
            "updated_at": self.updated_at,
            "updated_by": self.updated_by,
        }

    @classmethod
    def from_record(cls, record: Record) -> StoredModel | None:
        """None for a record this version cannot read (logged, then ignored)."""
        name, spec = record.get("name"), record.get("spec")
        if not isinstance(name, str) or not (spec is None or isinstance(spec, dict)):
            log.error("ignoring a malformed stored model record: %r", {k: record.get(k) for k in ("name",)})
            return None
        return cls(
            name,
            spec,
            bool(record.get("disabled", False)),
            str(record.get("updated_at") or ""),
            str(record.get("updated_by") or ""),
        )


Stored = dict[str, StoredModel]


@dataclass(frozen=True, slots=True)
class StoredRules:
    """The routing rules as the admin API stored them (they replace the file's)."""

    rules: list[Any]
    """In the config file's ``routing_rules`` schema."""
    updated_at: str = ""
    updated_by: str = ""

    def to_record(self) -> Record:
        return {"rules": self.rules, "updated_at": self.updated_at, "updated_by": self.updated_by}

    @classmethod
    def from_record(cls, record: Record) -> StoredRules | None:
        """None for a record this version cannot read (logged, then ignored)."""
        rules = record.get("rules")
        if not isinstance(rules, list):
            log.error("ignoring a malformed stored routing rules record")
            return None
        return cls(rules, str(record.get("updated_at") or ""), str(record.get("updated_by") or ""))


def effective_config(
    file: LoadedConfig, stored: Mapping[str, StoredModel], env: Mapping[str, str], rules: StoredRules | None = None
) -> LoadedConfig:
    """The config file overlaid by the stored aliases and rules (see the module
    docstring); raises :class:`gateway.config.loader.ConfigError` naming each bad path."""
    raw = dict(file.raw)
    models = raw.get("models")
    merged: dict[str, Any] = dict(models) if isinstance(models, dict) else {}
    for name, model in stored.items():
        if model.spec is not None:
            merged[name] = model.spec
    raw["models"] = merged
    if rules is not None:
        raw["routing_rules"] = rules.rules
    hidden = [name for name, model in stored.items() if model.disabled]
    return parse_raw(raw, env=env, source=f"{file.source} + stored models", hidden=hidden)


# --- secrets in a spec ------------------------------------------------------------

_SENSITIVE_WORDS = ("auth", "key", "token", "secret", "cookie", "password")
SECRET_REF = "secret:"


def is_sensitive_header(name: str) -> bool:
    lowered = name.lower()
    return any(word in lowered for word in _SENSITIVE_WORDS)


def secret_fields(spec: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any], str]]:
    """(body path, container, field) of every secret-bearing field of an alias:
    each deployment's ``api_key`` and credential-like ``headers``."""
    deployments = spec.get("deployments")
    for i, dep in enumerate(deployments if isinstance(deployments, list) else ()):
        if not isinstance(dep, dict):
            continue
        if "api_key" in dep:
            yield f"deployments[{i}].api_key", dep, "api_key"
        headers = dep.get("headers")
        if isinstance(headers, dict):
            for name in headers:
                if isinstance(name, str) and is_sensitive_header(name):
                    yield f"deployments[{i}].headers.{name}", headers, name


async def open_secrets(stored: Stored, open_secret: Callable[[str], Awaitable[str]]) -> Stored:
    """``stored`` with every ``secret:<name>`` reference in a secret field
    replaced by its plaintext; :class:`ConfigError` naming each that does not
    open (``BackendUnavailable`` propagates)."""
    problems: list[str] = []
    out: Stored = {}
    for name, model in stored.items():
        if model.spec is None:
            out[name] = model
            continue
        spec = copy.deepcopy(model.spec)
        for path, container, field in secret_fields(spec):
            ref = container[field]
            if not (isinstance(ref, str) and ref.startswith(SECRET_REF)):
                continue
            try:
                plaintext = await open_secret(ref)
            except (GatewayError, SecretError) as exc:
                problems.append(f"models.{name}.{path}: {ref} cannot be opened: {exc}")
                continue
            if "${" in plaintext:
                problems.append(f"models.{name}.{path}: {ref} holds '${{', which the config would interpolate")
            container[field] = plaintext
        out[name] = replace(model, spec=spec)
    if problems:
        raise ConfigError(problems)
    return out


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


class ModelStore:
    """The ``models`` table, its version record and the polling loop."""

    def __init__(self, backend: StateBackend, *, refresh_interval_s: float) -> None:
        self._backend = backend
        self.refresh_interval_s = refresh_interval_s
        self.seen: str | None = None
        """The version last read (None: none stored yet)."""
        self.applied: Stored = {}
        """The stored models in force (the app sets it when it applies them)."""
        self.applied_rules: StoredRules | None = None
        """The stored routing rules in force (None: the file's)."""
        self._task: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()
        self._failing = False

    async def all(self) -> Stored:
        out: Stored = {}
        for record in await self._backend.scan(TABLE):
            model = StoredModel.from_record(record)
            if model is not None:
                out[model.name] = model
        return out

    async def get(self, name: str) -> StoredModel | None:
        record = await self._backend.get(TABLE, name)
        return None if record is None else StoredModel.from_record(record)

    async def version(self) -> str | None:
        record = await self._backend.get(META_TABLE, VERSION_ID)
        value = record.get("version") if record else None
        return value if isinstance(value, str) else None

    async def put(self, model: StoredModel) -> None:
        await self._backend.put(TABLE, model.name, model.to_record())
        await self._bump()

    async def delete(self, name: str) -> bool:
        existed = await self._backend.delete(TABLE, name)
        await self._bump()
        return existed

    async def rules(self) -> StoredRules | None:
        record = await self._backend.get(RULES_TABLE, RULES_ID)
        return None if record is None else StoredRules.from_record(record)

    async def put_rules(self, rules: StoredRules) -> None:
        await self._backend.put(RULES_TABLE, RULES_ID, rules.to_record())
        await self._bump()

    async def delete_rules(self) -> bool:
        existed = await self._backend.delete(RULES_TABLE, RULES_ID)
        await self._bump()
        return existed

    async def _bump(self) -> None:
        await self._backend.put(META_TABLE, VERSION_ID, {"version": secrets.token_hex(8), "updated_at": now_iso()})

    async def load(self) -> tuple[str | None, Stored]:
        """The current version and table (version read first: see the module docstring)."""
        version = await self.version()
        return version, await self.all()

    # --- polling ------------------------------------------------------------

    def start(self, on_change: Callable[[str | None, Stored], Awaitable[None]]) -> None:
        """Poll every ``refresh_interval_s``; ``on_change`` gets each new version."""
        if self._task is None:
            self._task = asyncio.create_task(self._watch(on_change), name="model-store-watch")

    async def _watch(self, on_change: Callable[[str | None, Stored], Awaitable[None]]) -> None:
        while True:
            await asyncio.sleep(self.refresh_interval_s)
            try:
                await self.poll(on_change)
            except Exception:  # the loop must outlive any one bad tick
                log.exception("polling the stored models failed; retrying")

    async def poll(self, on_change: Callable[[str | None, Stored], Awaitable[None]]) -> bool:
        """Apply the stored models if their version changed; True when it did.
        Polls take turns, so an older table is never applied after a newer one;
        a change that could not be read or applied (backend unreachable) is
        tried again at the next poll."""
        async with self._lock:
            try:
                version = await self.version()
                if version == self.seen:
                    self._recovered()
                    return False
                stored = await self.all()
                await on_change(version, stored)
            except BackendUnavailable as exc:
                if not self._failing:
                    log.warning("cannot read the stored models (state backend unreachable): %s", exc)
                self._failing = True
                return False
            self._recovered()
            self.seen = version
            return True

    def _recovered(self) -> None:
        if self._failing:
            log.info("stored models readable again")
        self._failing = False

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
