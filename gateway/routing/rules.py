"""Routing rules, evaluated: the :class:`RuleBook` of one configuration's ``routing_rules``
(the schema: :mod:`gateway.config.rules`).

Per request, before the strategy:

- :meth:`RuleBook.choose` gives the alias a request goes to instead of the one it named:
  the first ``match`` or ``budget_downgrade`` rule of that alias (in config order) that
  holds. One rule at most applies to a request: the target's own rules are not followed,
  so rules cannot loop. An alias with no such rule costs one dict lookup.
- :meth:`RuleBook.shadow_for` samples the alias's ``shadow`` rule: the candidate alias a
  copy of this request also goes to, or None.

Per deployment, by the clock: ``time_window`` rules change deployments' ``priority`` and
``weight`` while they hold. :func:`apply_windows` puts the overrides in force on the live
deployments (a deployment's ``spec`` replaced by a copy with the overrides; the configured
one, kept in its route's alias spec, put back when no window holds any more), and
:meth:`RuleBook.next_change` says when to do it again. Where several windows in force set
the same field of a deployment, the first in config order wins.

Nothing here does I/O: the caller passes the request's facts (:class:`RequestFacts`), the
budget share as a function it calls only when a downgrade rule is evaluated, and the time.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from gateway.config.rules import (
    DAYS,
    AnyRule,
    BudgetDowngradeRule,
    MatchRule,
    ShadowRule,
    TimeWindowRule,
    deployment_index,
)
from gateway.config.settings import ModelAlias, Settings, deployment_id
from gateway.routing.deployment import Route

HEADER = "x-gateway-route"
"""The answer header of a request a rule sent to another alias (:meth:`Choice.header`)."""
_DAY_MINUTES = 24 * 60


def _anything(alias: str) -> bool:
    return True


@dataclass(frozen=True, slots=True)
class RequestFacts:
    """What the routing rules may look at in one request."""

    key_id: str
    team: str | None
    headers: Mapping[str, str]
    """The request's headers, names in lower case."""
    metadata: Mapping[str, Any] | None
    """The body's ``metadata`` object (None when it has none)."""
    budget_share: Callable[[str, str], float]
    """(scope ``team``/``key``, period ``daily``/``monthly``) -> the share of that budget
    spent (0 when there is none); called only when a downgrade rule is evaluated."""
    may_use: Callable[[str], bool] = _anything
    """May the caller's key use this alias? A rule whose target it may not use does not hold."""


@dataclass(frozen=True, slots=True)
class Choice:
    """A rule that applies to a request: the request (or, for a shadow, its copy) goes to ``alias``."""

    alias: str
    rule: str
    kind: str
    origin: str
    """The alias the request named."""

    def header(self) -> str:
        """The value of the answer's ``x-gateway-route`` header."""
        return f"rule={self.rule}; kind={self.kind}; from={self.origin}; to={self.alias}"


@dataclass(frozen=True, slots=True)
class Override:
    """What the windows in force set on one deployment."""

    priority: int | None
    weight: float | None
    rules: tuple[str, ...]
    """The windows that set them, in config order."""

    def update(self) -> dict[str, Any]:
        return {k: v for k, v in (("priority", self.priority), ("weight", self.weight)) if v is not None}


@dataclass(frozen=True, slots=True)
class _Window:
    name: str
    alias: str
    zone: ZoneInfo
    days: frozenset[int]
    start: int
    end: int
    """Minutes of the day; ``end`` below ``start``: the window wraps past midnight."""
    overrides: tuple[tuple[str, int | None, float | None], ...]
    """(deployment id, priority, weight)."""

    def holds(self, now: datetime) -> bool:
        local = now.astimezone(self.zone)
        minute = local.hour * 60 + local.minute
        day = local.weekday()
        if self.start < self.end:
            return day in self.days and self.start <= minute < self.end
        return (day in self.days and minute >= self.start) or ((day - 1) % 7 in self.days and minute < self.end)

    def boundaries(self, now: datetime) -> Iterable[datetime]:
        """Every start and end of this window from yesterday to a week ahead."""
        today = now.astimezone(self.zone).date()
        end = self.end + (_DAY_MINUTES if self.end < self.start else 0)
        for offset in range(-1, 8):
            day = today + timedelta(days=offset)
            if day.weekday() in self.days:
                yield _at(day, self.start, self.zone)
                yield _at(day, end, self.zone)


def _at(day: date, minute: int, zone: ZoneInfo) -> datetime:
    return (datetime.combine(day, time(), tzinfo=zone) + timedelta(minutes=minute)).astimezone(UTC)


class RuleBook:
    """One configuration's routing rules, ready to evaluate (see the module docstring).
    ``rng`` samples the shadow rules (seeded in tests)."""

    __slots__ = (
        "_by_alias",
        "_rng",
        "_routing",
        "_shadows",
        "_windows",
        "header_names",
        "header_names_raw",
        "rules",
        "window_aliases",
    )

    def __init__(
        self,
        rules: Sequence[AnyRule],
        models: Mapping[str, ModelAlias],
        *,
        timezone: str = "UTC",
        rng: random.Random | None = None,
    ) -> None:
        self.rules = tuple(rules)
        self._rng = rng or random.Random()
        routing: dict[str, list[MatchRule | BudgetDowngradeRule]] = {}
        shadows: dict[str, ShadowRule] = {}
        windows: list[_Window] = []
        by_alias: dict[str, list[AnyRule]] = {}
        for rule in self.rules:
            by_alias.setdefault(rule.alias, []).append(rule)
            if isinstance(rule, (MatchRule, BudgetDowngradeRule)):
                routing.setdefault(rule.alias, []).append(rule)
            elif isinstance(rule, ShadowRule):
                shadows.setdefault(rule.alias, rule)
            else:
                windows.append(_window(rule, models[rule.alias], timezone))
        self._routing = {alias: tuple(rules) for alias, rules in routing.items()}
        self._shadows = shadows
        self._windows = tuple(windows)
        self._by_alias = by_alias
        self.window_aliases = frozenset(w.alias for w in windows)
        """The aliases whose deployments a time window may change."""
        self.header_names = frozenset(
            name.lower() for r in self.rules if isinstance(r, MatchRule) for name in r.when.header
        )
        """The request headers a ``match`` rule reads (lower case): all the facts need."""
        self.header_names_raw = frozenset(name.encode("latin-1") for name in self.header_names)
        """The same, as ASGI scopes name headers (bytes)."""

    @classmethod
    def from_settings(cls, settings: Settings, rng: random.Random | None = None) -> RuleBook:
        """The rules of a validated configuration; a window with no ``timezone`` keeps the budgets'."""
        return cls(settings.routing_rules, settings.models, timezone=settings.budgets.timezone, rng=rng)

    def __bool__(self) -> bool:
        return bool(self.rules)

    # --- per request ------------------------------------------------------------------

    def has_rules(self, alias: str) -> bool:
        """May :meth:`choose` send a request of ``alias`` elsewhere (has it a ``match``
        or ``budget_downgrade`` rule)? Gathering a request's facts can wait for a yes."""
        return alias in self._routing

    def choose(self, alias: str, facts: RequestFacts) -> Choice | None:
        """The first ``match`` or ``budget_downgrade`` rule of ``alias`` that holds, as a
        :class:`Choice` of the alias to use instead; None when none does."""
        rules = self._routing.get(alias)
        if rules is None:
            return None
        for rule in rules:
            if _holds(rule, facts) and facts.may_use(rule.to):
                return Choice(rule.to, rule.name, rule.kind, alias)
        return None

    def shadow_for(self, alias: str) -> Choice | None:
        """The shadow candidate of this request of ``alias`` when the sample says so
        (the rule's ``share`` of the calls), else None."""
        rule = self._shadows.get(alias)
        if rule is None or self._rng.random() >= rule.share:
            return None
        return Choice(rule.to, rule.name, rule.kind, alias)

    def for_alias(self, alias: str) -> list[AnyRule]:
        """Every rule of ``alias``, in config order."""
        return list(self._by_alias.get(alias, ()))

    # --- by the clock -------------------------------------------------------------------

    def overrides(self, now: datetime) -> dict[str, Override]:
        """Deployment id -> what the windows in force at ``now`` set on it."""
        out: dict[str, Override] = {}
        for window in self._windows:
            if not window.holds(now):
                continue
            for did, priority, weight in window.overrides:
                was = out.get(did)
                if was is None:
                    out[did] = Override(priority, weight, (window.name,))
                else:
                    out[did] = Override(
                        was.priority if was.priority is not None else priority,
                        was.weight if was.weight is not None else weight,
                        (*was.rules, window.name),
                    )
        return out

    def windows(self, now: datetime) -> dict[str, tuple[int | None, float | None]]:
        """Deployment id -> (priority, weight) set by the windows in force at ``now`` (None: kept)."""
        return {did: (o.priority, o.weight) for did, o in self.overrides(now).items()}

    def active_windows(self, now: datetime) -> list[str]:
        """The names of the windows in force at ``now``, in config order."""
        return [w.name for w in self._windows if w.holds(now)]

    def next_change(self, now: datetime) -> datetime | None:
        """The next instant after ``now`` at which a window starts or ends (None: no windows)."""
        upcoming = [b for w in self._windows for b in w.boundaries(now) if b > now]
        return min(upcoming, default=None)


def _holds(rule: MatchRule | BudgetDowngradeRule, facts: RequestFacts) -> bool:
    if isinstance(rule, BudgetDowngradeRule):
        if rule.scope == "team" and facts.team is None:
            return False
        return facts.budget_share(rule.scope, rule.period) >= rule.share
    when = rule.when
    if when.team is not None and facts.team not in when.team:
        return False
    headers = facts.headers
    for name, value in when.header.items():
        if headers.get(name.lower()) != value:
            return False
    if when.metadata:
        metadata = facts.metadata
        if metadata is None:
            return False
        for tag, value in when.metadata.items():
            if metadata.get(tag) != value:
                return False
    return True


def _window(rule: TimeWindowRule, spec: ModelAlias, timezone: str) -> _Window:
    ids = [deployment_id(rule.alias, i, dep) for i, dep in enumerate(spec.deployments)]
    overrides = []
    for key, override in rule.deployments.items():
        index = deployment_index(key, ids)
        if index is None:
            raise ValueError(f"routing rule {rule.name!r}: {rule.alias!r} has no deployment {key!r}")
        overrides.append((ids[index], override.priority, override.weight))
    start, end = rule.span()
    days = frozenset(DAYS.index(day) for day in rule.days)
    return _Window(rule.name, rule.alias, ZoneInfo(rule.timezone or timezone), days, start, end, tuple(overrides))


def apply_windows(routes: Mapping[str, Route], book: RuleBook, now: datetime) -> list[str]:
    """Put the overrides of the windows in force at ``now`` on the deployments of
    ``routes``, and the configured values back on those no window changes any more;
    the names of the windows in force."""
    if not book.window_aliases:
        return []
    overrides = book.overrides(now)
    for alias in book.window_aliases:
        route = routes.get(alias)
        if route is None:
            continue
        for dep, configured in zip(route.deployments, route.spec.deployments, strict=True):
            override = overrides.get(dep.id)
            if override is None:
                if dep.spec is not configured:
                    dep.spec = configured
                continue
            wanted = configured.model_copy(update=override.update())
            if dep.spec != wanted:
                dep.spec = wanted
    return book.active_windows(now)


def restore_configured(routes: Mapping[str, Route]) -> None:
    """Every deployment of ``routes`` back to its configured spec (before a new
    configuration is built over them: a deployment is kept, with its breaker and
    latency history, only when its spec is unchanged)."""
    for route in routes.values():
        for dep, configured in zip(route.deployments, route.spec.deployments, strict=True):
            if dep.spec is not configured:
                dep.spec = configured
