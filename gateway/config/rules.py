"""The schema of ``routing_rules``: routing decided by data, per request, before the strategy.

Four kinds of rule, each naming the ``alias`` it applies to (docs/configuration.md,
"Routing rules"):

- ``time_window``: while the local time (``timezone``) is inside ``hours`` on one of
  ``days``, some deployments of the alias get another ``priority`` and/or ``weight``;
- ``budget_downgrade``: when the caller's team or key has spent ``share`` of its daily
  (or monthly) budget, the request goes to the cheaper alias ``to``;
- ``match``: when every condition of ``when`` holds (headers, the key's team, the body's
  ``metadata`` tags), the request goes to ``to``;
- ``shadow``: ``share`` of the alias's requests is also sent to ``to`` in the background.

A rule is validated by its ``kind`` alone (a wrong field is named by its own path:
``routing_rules[2].share``); the references between rules and aliases (the alias
exists, a target is a chat alias, a deployment key names one of the alias's
deployments, rule names are unique) are checked over the whole configuration by
:func:`rule_problems`, which :class:`gateway.config.settings.Settings` calls. How the
rules are applied is :mod:`gateway.routing.rules`.

This module imports nothing from the rest of the gateway but the config field types,
so the config schema can use it without an import cycle.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, ValidatorFunctionWrapHandler, WrapValidator, field_validator, model_validator
from pydantic_core import PydanticCustomError

from gateway.config.fields import PositiveFloat, Strict

Day = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
DAYS: tuple[Day, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
"""Monday first, as ``datetime.weekday()`` counts."""
Share = Annotated[float, Field(gt=0, le=1, allow_inf_nan=False)]
RuleName = Annotated[str, Field(pattern=r"^[A-Za-z0-9._-]+$", min_length=1, max_length=100)]
"""Also a metric label: short, and nothing a label or a header would have to escape."""
HeaderName = Annotated[str, Field(pattern=r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$", max_length=200)]
DeploymentKey = int | str
"""A deployment of the rule's alias: its index in ``deployments``, or its id (its ``id``,
or ``<alias>/<index>``)."""

_HOURS = re.compile(r"^([01][0-9]|2[0-4]):([0-5][0-9])-([01][0-9]|2[0-4]):([0-5][0-9])$")
STRATEGY_FIELDS: Mapping[str, frozenset[str]] = {
    "priority": frozenset({"priority"}),
    "weighted": frozenset({"weight"}),
    "round_robin": frozenset(),
    "least_inflight": frozenset({"priority"}),
    "lowest_latency": frozenset({"priority"}),
    "lowest_cost": frozenset({"priority"}),
}
"""Which override each strategy reads (priority breaks ties in the sorting strategies);
an override the alias's strategy never reads is refused rather than silently ignored."""


def check_timezone(name: str) -> str:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError("timezone is not a known IANA time zone name (Europe/Paris, America/New_York)") from None
    return name


def parse_hours(text: str) -> tuple[int, int]:
    """``"09:00-18:00"`` -> (540, 1080) minutes of the day; ``end`` may be ``24:00``; an
    ``end`` before ``start`` wraps past midnight. ValueError for anything else."""
    m = _HOURS.match(text)
    if m is None:
        raise ValueError('hours must be "HH:MM-HH:MM" (24-hour clock, e.g. "09:00-18:00" or "22:00-06:00")')
    start, end = int(m[1]) * 60 + int(m[2]), int(m[3]) * 60 + int(m[4])
    if start >= 24 * 60:
        raise ValueError("a window cannot start at 24:00 (use 00:00)")
    if end > 24 * 60:
        raise ValueError("24:00 is the latest end")
    if start == end:
        raise ValueError('start and end are the same time ("00:00-24:00" is the whole day)')
    return start, end


class _Rule(Strict):
    name: RuleName
    alias: Annotated[str, Field(min_length=1)]
    """The alias whose requests (or deployments) the rule changes."""
    description: str = ""


class DeploymentOverride(Strict):
    """A deployment's ``priority`` and/or ``weight`` while a time window holds."""

    priority: int | None = None
    weight: PositiveFloat | None = None

    @model_validator(mode="after")
    def _sets_something(self) -> DeploymentOverride:
        if self.priority is None and self.weight is None:
            raise ValueError("an override sets priority, weight or both")
        return self


class TimeWindowRule(_Rule):
    kind: Literal["time_window"]
    timezone: str | None = None
    """IANA name; absent: ``budgets.timezone``."""
    days: Annotated[list[Day], Field(min_length=1)] = Field(default_factory=lambda: list(DAYS))
    """The days a window *starts* on (a window past midnight ends on the next day)."""
    hours: str = "00:00-24:00"
    deployments: Annotated[dict[DeploymentKey, DeploymentOverride], Field(min_length=1)]

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str | None) -> str | None:
        return None if value is None else check_timezone(value)

    @field_validator("hours")
    @classmethod
    def _hours(cls, value: str) -> str:
        parse_hours(value)
        return value

    @field_validator("days")
    @classmethod
    def _unique_days(cls, value: list[Day]) -> list[Day]:
        if len(set(value)) != len(value):
            raise ValueError("days lists a day twice")
        return value

    def span(self) -> tuple[int, int]:
        """(start, end) minutes of the day (end may be lower: the window wraps midnight)."""
        return parse_hours(self.hours)


class BudgetDowngradeRule(_Rule):
    kind: Literal["budget_downgrade"]
    scope: Literal["team", "key"]
    share: Share
    """The fraction of the scope's budget for ``period`` spent from which the rule holds."""
    period: Literal["daily", "monthly"] = "daily"
    to: Annotated[str, Field(min_length=1)]


class MatchWhen(Strict):
    """Conditions on the request; every one given must hold."""

    header: dict[HeaderName, str] = Field(default_factory=dict)
    """Header name (any case) -> the exact value."""
    team: Annotated[list[str], Field(min_length=1)] | None = None
    """The caller's key belongs to one of these teams."""
    metadata: dict[Annotated[str, Field(min_length=1)], str] = Field(default_factory=dict)
    """The body's ``metadata`` object has each tag with exactly this (string) value."""

    @model_validator(mode="after")
    def _has_a_condition(self) -> MatchWhen:
        if not self.header and self.team is None and not self.metadata:
            raise ValueError("when needs at least one condition: header, team or metadata")
        lowered = [name.lower() for name in self.header]
        if len(set(lowered)) != len(lowered):
            raise ValueError("when.header names a header twice (header names are case-insensitive)")
        return self


class MatchRule(_Rule):
    kind: Literal["match"]
    when: MatchWhen
    to: Annotated[str, Field(min_length=1)]


class ShadowRule(_Rule):
    kind: Literal["shadow"]
    to: Annotated[str, Field(min_length=1)]
    """The candidate alias."""
    share: Share
    """The fraction of the alias's requests also sent to ``to``."""


KINDS: Mapping[str, type[_Rule]] = {
    "time_window": TimeWindowRule,
    "budget_downgrade": BudgetDowngradeRule,
    "match": MatchRule,
    "shadow": ShadowRule,
}
AnyRule = TimeWindowRule | BudgetDowngradeRule | MatchRule | ShadowRule


def _by_kind(value: Any, handler: ValidatorFunctionWrapHandler) -> Any:
    """Validate a rule as its ``kind``'s model, so that a problem is named by its own
    path (``routing_rules[2].to``), with no union branch or tag in it."""
    if isinstance(value, AnyRule):
        return handler(value)
    if not isinstance(value, dict):
        raise PydanticCustomError("rule_type", "a rule must be a mapping with a kind")
    kind = value.get("kind")
    model = KINDS.get(kind) if isinstance(kind, str) else None
    if model is None:
        raise PydanticCustomError("rule_kind", "kind must be one of: " + ", ".join(KINDS))
    return model.model_validate(value)


Rule = Annotated[AnyRule, WrapValidator(_by_kind)]


class ShadowTraffic(Strict):
    """How much shadow traffic (``shadow`` rules) may be in flight at once."""

    max_concurrent: Annotated[int, Field(ge=1)] = 50
    """Shadow requests in flight in this process; a request sampled beyond it is not
    shadowed (counted as ``dropped``)."""


# --- checks over the whole configuration ---------------------------------------------------


@dataclass(frozen=True, slots=True)
class AliasFacts:
    """What the rule checks need of one alias."""

    kind: str
    strategy: str
    deployment_ids: Sequence[str]


def deployment_index(key: DeploymentKey, ids: Sequence[str]) -> int | None:
    """The index of the deployment ``key`` names among ``ids`` (None: none)."""
    if isinstance(key, int):
        return key if 0 <= key < len(ids) else None
    if key in ids:
        return ids.index(key)
    return int(key) if key.isdigit() and int(key) < len(ids) else None


def rule_problems(rules: Sequence[AnyRule], aliases: Mapping[str, AliasFacts]) -> list[str]:
    """Each problem between ``rules`` and the models, named by its path."""
    problems: list[str] = []
    seen: dict[str, int] = {}
    shadowed: dict[str, int] = {}
    for i, rule in enumerate(rules):
        at = f"routing_rules[{i}]"
        if rule.name in seen:
            problems.append(f"{at}.name: duplicate rule name {rule.name!r} (also routing_rules[{seen[rule.name]}])")
        seen.setdefault(rule.name, i)
        facts = aliases.get(rule.alias)
        if facts is None:
            problems.append(f"{at}.alias: unknown model alias {rule.alias!r}")
            continue
        if isinstance(rule, TimeWindowRule):
            problems += _window_problems(at, rule, facts)
            continue
        if facts.kind != "chat":
            problems.append(f"{at}.alias: {rule.alias!r} is an {facts.kind} model, and {rule.kind} rules are for chat")
        problems += _target_problems(at, rule.alias, rule.to, aliases)
        if isinstance(rule, ShadowRule):
            if rule.alias in shadowed:
                problems.append(
                    f"{at}.alias: {rule.alias!r} already has a shadow rule (routing_rules[{shadowed[rule.alias]}])"
                )
            shadowed.setdefault(rule.alias, i)
    return problems


def _target_problems(at: str, alias: str, to: str, aliases: Mapping[str, AliasFacts]) -> list[str]:
    target = aliases.get(to)
    if target is None:
        return [f"{at}.to: unknown model alias {to!r}"]
    if to == alias:
        return [f"{at}.to: a rule cannot send an alias to itself"]
    if target.kind != "chat":
        return [f"{at}.to: {to!r} is an {target.kind} model, not chat"]
    return []


def _window_problems(at: str, rule: TimeWindowRule, facts: AliasFacts) -> list[str]:
    problems = []
    reads = STRATEGY_FIELDS.get(facts.strategy, frozenset({"priority", "weight"}))
    named: dict[int, DeploymentKey] = {}
    for key, override in rule.deployments.items():
        where = f"{at}.deployments[{key}]" if isinstance(key, int) else f"{at}.deployments.{key}"
        index = deployment_index(key, facts.deployment_ids)
        if index is None:
            known = ", ".join(facts.deployment_ids)
            problems.append(f"{where}: {rule.alias!r} has no deployment {key!r} (an index, or one of: {known})")
            continue
        if index in named:
            problems.append(f"{where}: names the same deployment as {named[index]!r}")
        named.setdefault(index, key)
        for field in ("priority", "weight"):
            if getattr(override, field) is not None and field not in reads:
                problems.append(f"{where}.{field}: strategy {facts.strategy!r} of {rule.alias!r} does not read {field}")
    return problems


def without_rules_naming(raw: Any, gone: Collection[str]) -> Any:
    """The file's ``routing_rules`` (as parsed, not validated) without the rules whose
    ``alias`` or ``to`` is left out of the configuration (``requires_env`` unset, or
    disabled through the admin API): like a fallback to such an alias, the rule goes."""
    if not isinstance(raw, list) or not gone:
        return raw
    names = set(gone)

    def drops(rule: Any) -> bool:
        return isinstance(rule, dict) and any(
            isinstance(rule.get(f), str) and rule[f] in names for f in ("alias", "to")
        )

    return [r for r in raw if not drops(r)]
