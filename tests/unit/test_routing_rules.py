"""gateway.routing.rules: the rule book's choices per request (match, budget downgrade,
shadow sampling), its time windows by the clock and their application to live
deployments; gateway.server.rule_facts: a request's facts from the real budget policy."""

from __future__ import annotations

import random
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from gateway.config.settings import BudgetSettings, Settings
from gateway.policies.auth import Principal
from gateway.policies.budget import BudgetPolicy
from gateway.providers.registry import presets
from gateway.routing.deployment import Route, build_routes
from gateway.routing.rules import Choice, RequestFacts, RuleBook, apply_windows, restore_configured
from gateway.routing.strategies import by_priority, weighted
from gateway.server.rule_facts import budget_share, request_facts
from gateway.state.embedded import EmbeddedBackend
from gateway.state.ledger import SpendLedger
from tests.unit.config_helpers import settings

MODELS = """
budgets: {timezone: Europe/Paris}
models:
  big: {deployments: [{provider: openai, model: m-big}, {provider: openai, model: m-big-eu, id: big-eu}]}
  small: {deployments: [{provider: openai, model: m-small}]}
  tiny: {deployments: [{provider: openai, model: m-tiny}]}
  spread: {strategy: weighted, deployments: [{provider: openai, model: a}, {provider: openai, model: b}]}
"""


def book_of(*rules: str, seed: int = 1) -> tuple[RuleBook, Settings]:
    loaded = settings(MODELS + "routing_rules:\n" + "".join(f"  - {r}\n" for r in rules))
    return RuleBook.from_settings(loaded, random.Random(seed)), loaded


def facts(
    team: str | None = "t1",
    headers: dict[str, str] | None = None,
    metadata: dict[str, Any] | None = None,
    shares: dict[tuple[str, str], float] | None = None,
    calls: list[tuple[str, str]] | None = None,
    allowed: set[str] | None = None,
) -> RequestFacts:
    def share(scope: str, period: str) -> float:
        if calls is not None:
            calls.append((scope, period))
        return (shares or {}).get((scope, period), 0.0)

    return RequestFacts(
        key_id="k1",
        team=team,
        headers=headers or {},
        metadata=metadata,
        budget_share=share,
        may_use=(lambda alias: alias in allowed) if allowed is not None else (lambda alias: True),
    )


# --- match ----------------------------------------------------------------------------------


def test_a_match_rule_sends_the_request_to_its_target_and_says_so() -> None:
    book, _ = book_of("{name: free-tier, alias: big, kind: match, when: {header: {X-Tier: free}}, to: small}")
    choice = book.choose("big", facts(headers={"x-tier": "free"}))
    assert choice == Choice("small", "free-tier", "match", "big")
    assert choice.header() == "rule=free-tier; kind=match; from=big; to=small"
    assert book.choose("big", facts(headers={"x-tier": "Free"})) is None  # values are exact
    assert book.choose("big", facts()) is None
    assert book.header_names == frozenset({"x-tier"})


def test_every_condition_of_a_match_must_hold() -> None:
    book, _ = book_of(
        "{name: m, alias: big, kind: match, to: small,"
        " when: {header: {x-app: ci}, team: [t1, t2], metadata: {env: test}}}"
    )
    headers, metadata = {"x-app": "ci"}, {"env": "test", "other": 3}
    assert book.choose("big", facts(headers=headers, metadata=metadata)) is not None
    assert book.choose("big", facts(team="t2", headers=headers, metadata=metadata)) is not None
    assert book.choose("big", facts(team="t3", headers=headers, metadata=metadata)) is None
    assert book.choose("big", facts(team=None, headers=headers, metadata=metadata)) is None
    assert book.choose("big", facts(headers={"x-app": "ci"}, metadata={"env": "prod"})) is None
    assert book.choose("big", facts(headers={"x-app": "ci"}, metadata=None)) is None
    assert book.choose("big", facts(headers={}, metadata={"env": "test"})) is None


def test_the_first_rule_that_holds_wins_and_one_rule_at_most_applies() -> None:
    book, _ = book_of(
        "{name: first, alias: big, kind: match, when: {team: [t1]}, to: small}",
        "{name: second, alias: big, kind: match, when: {team: [t1]}, to: tiny}",
        "{name: onward, alias: small, kind: match, when: {team: [t1]}, to: tiny}",
    )
    choice = book.choose("big", facts())
    assert choice is not None and (choice.alias, choice.rule) == ("small", "first")  # not followed on to tiny


def test_a_rule_whose_target_the_key_may_not_use_does_not_hold() -> None:
    book, _ = book_of(
        "{name: first, alias: big, kind: match, when: {team: [t1]}, to: small}",
        "{name: second, alias: big, kind: match, when: {team: [t1]}, to: tiny}",
    )
    choice = book.choose("big", facts(allowed={"big", "tiny"}))
    assert choice is not None and choice.rule == "second"
    assert book.choose("big", facts(allowed={"big"})) is None


def test_an_alias_without_rules_is_one_lookup_and_reads_no_budget() -> None:
    book, _ = book_of("{name: down, alias: big, kind: budget_downgrade, scope: key, share: 0.5, to: small}")
    calls: list[tuple[str, str]] = []
    assert book.choose("small", facts(calls=calls)) is None
    assert calls == []
    assert not book.has_rules("small") and book.has_rules("big")
    empty = RuleBook([], {})
    assert not empty and empty.choose("big", facts()) is None and empty.shadow_for("big") is None


# --- budget downgrade -----------------------------------------------------------------------


@pytest.mark.parametrize(("spent", "downgraded"), [(0.0, False), (0.79, False), (0.8, True), (1.4, True)])
def test_a_budget_downgrade_holds_from_its_share_of_the_budget(spent: float, downgraded: bool) -> None:
    book, _ = book_of("{name: save, alias: big, kind: budget_downgrade, scope: team, share: 0.8, to: small}")
    choice = book.choose("big", facts(shares={("team", "daily"): spent}))
    assert (choice is not None) is downgraded
    if choice is not None:
        assert choice.header() == "rule=save; kind=budget_downgrade; from=big; to=small"


def test_the_budget_share_is_read_only_when_a_downgrade_rule_is_reached() -> None:
    book, _ = book_of(
        "{name: m, alias: big, kind: match, when: {team: [t1]}, to: tiny}",
        "{name: month, alias: big, kind: budget_downgrade, scope: key, share: 0.5, period: monthly, to: small}",
        "{name: team, alias: big, kind: budget_downgrade, scope: team, share: 0.5, to: small}",
    )
    calls: list[tuple[str, str]] = []
    assert book.choose("big", facts(calls=calls)).rule == "m"  # type: ignore[union-attr]
    assert calls == []
    assert book.choose("big", facts(team=None, calls=calls)) is None
    assert calls == [("key", "monthly")]  # a key without a team: the team rule is not asked
    choice = book.choose("big", facts(team="t9", shares={("key", "monthly"): 0.5}))
    assert choice is not None and choice.rule == "month"


def test_budget_share_reads_the_principals_budgets_from_the_ledger(tmp_path: Path) -> None:
    ledger = SpendLedger(
        EmbeddedBackend(str(tmp_path / "s.db"), cache_max_bytes=1024), flush_interval_s=1, refresh_interval_s=1
    )
    now = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)
    policy = BudgetPolicy(ledger, BudgetSettings(timezone="Europe/Paris"), clock=lambda: now)
    principal = Principal(
        "key", "k1", team="t1", budget_daily_usd=10.0, team_budget_daily_usd=4.0, team_budget_monthly_usd=100.0
    )
    policy.record(3.0, key_id="k1", team="t1", alias="big")
    share = budget_share(policy, principal)
    assert share("key", "daily") == pytest.approx(0.3)
    assert share("team", "daily") == pytest.approx(0.75)
    assert share("team", "monthly") == pytest.approx(0.03)
    assert share("key", "monthly") == 0.0  # no monthly budget on the key
    assert budget_share(policy, Principal("master", "master"))("team", "daily") == 0.0
    book, _ = book_of(
        "{name: save, alias: big, kind: budget_downgrade, scope: team, share: 0.7, to: small}",
        "{name: app, alias: big, kind: match, when: {header: {x-app: ci}, metadata: {env: test}}, to: tiny}",
    )
    headers = [(b"x-app", b"ci"), (b"authorization", b"Bearer secret"), (b"x-other", b"1")]
    got = request_facts(book, principal, headers, {"model": "big", "metadata": {"env": "test"}}, policy)
    assert got.headers == {"x-app": "ci"}  # only what a rule reads
    assert got.metadata == {"env": "test"} and got.team == "t1" and got.key_id == "k1"
    assert book.choose("big", got) == Choice("small", "save", "budget_downgrade", "big")
    bare = request_facts(book, Principal("key", "k2", models=frozenset({"big"})), [], {"metadata": "x"}, policy)
    assert bare.metadata is None and not bare.may_use("small") and book.choose("big", bare) is None


# --- shadow ---------------------------------------------------------------------------------


def test_shadow_sampling_follows_its_share_with_a_seeded_rng() -> None:
    book, _ = book_of("{name: try-small, alias: big, kind: shadow, to: small, share: 0.25}", seed=7)
    picks = [book.shadow_for("big") for _ in range(2000)]
    sampled = [p for p in picks if p is not None]
    assert 400 < len(sampled) < 600
    assert sampled[0] == Choice("small", "try-small", "shadow", "big")
    again, _ = book_of("{name: try-small, alias: big, kind: shadow, to: small, share: 0.25}", seed=7)
    assert [again.shadow_for("big") for _ in range(2000)] == picks  # the seed decides
    assert book.shadow_for("small") is None
    assert not book.has_rules("big")  # a shadow never changes where the request goes


def test_a_shadow_share_of_one_shadows_every_request() -> None:
    book, _ = book_of("{name: all, alias: big, kind: shadow, to: small, share: 1}")
    assert all(book.shadow_for("big") is not None for _ in range(50))


# --- time windows ---------------------------------------------------------------------------

OFFICE = (
    "{name: office, alias: big, kind: time_window, days: [mon, tue, wed, thu, fri], hours: '09:00-18:00',"
    " deployments: {big-eu: {priority: -1}}}"
)
NIGHT = (
    "{name: night, alias: big, kind: time_window, timezone: UTC, days: [fri], hours: '22:00-06:00',"
    " deployments: {0: {priority: 5}}}"
)


def utc(day: int, hour: int, minute: int = 0, second: int = 0) -> datetime:
    """A time in January 2026 (the 5th is a Monday)."""
    return datetime(2026, 1, day, hour, minute, second, tzinfo=UTC)


@pytest.mark.parametrize(
    ("now", "active"),
    [
        (utc(5, 8, 0), True),  # Monday 09:00 in Paris (UTC+1)
        (utc(5, 7, 59, 59), False),  # 08:59:59 in Paris
        (utc(5, 16, 59), True),  # 17:59
        (utc(5, 17, 0), False),  # 18:00: the end is not part of the window
        (utc(10, 10, 0), False),  # Saturday
    ],
)
def test_a_window_holds_in_its_timezone_on_its_days(now: datetime, active: bool) -> None:
    book, _ = book_of(OFFICE)
    assert (book.active_windows(now) == ["office"]) is active
    assert book.windows(now) == ({"big-eu": (-1, None)} if active else {})


def test_a_window_in_summer_time_follows_the_offset() -> None:
    book, _ = book_of(OFFICE)
    assert book.active_windows(datetime(2026, 7, 6, 7, 0, tzinfo=UTC)) == ["office"]  # 09:00 CEST
    assert book.active_windows(datetime(2026, 7, 6, 6, 59, tzinfo=UTC)) == []


@pytest.mark.parametrize(
    ("now", "active"),
    [
        (utc(9, 22, 0), True),  # Friday 22:00
        (utc(10, 5, 59), True),  # Saturday 05:59: the Friday window goes on past midnight
        (utc(10, 6, 0), False),
        (utc(10, 23, 0), False),  # Saturday night: not a listed day
        (utc(8, 23, 0), False),  # Thursday night
        (utc(9, 3, 0), False),  # Friday early morning belongs to Thursday's window
    ],
)
def test_a_window_past_midnight_belongs_to_the_day_it_starts(now: datetime, active: bool) -> None:
    book, _ = book_of(NIGHT)
    assert (book.active_windows(now) == ["night"]) is active


def test_next_change_is_the_next_start_or_end() -> None:
    book, _ = book_of(OFFICE, NIGHT)
    assert book.next_change(utc(5, 7, 0)) == utc(5, 8, 0)
    assert book.next_change(utc(5, 8, 0)) == utc(5, 17, 0)
    assert book.next_change(utc(9, 17, 0)) == utc(9, 22, 0)  # Friday evening: the night window
    assert book.next_change(utc(9, 22, 0)) == utc(10, 6, 0)
    assert book.next_change(utc(10, 6, 0)) == utc(12, 8, 0)  # then Monday in Paris
    assert RuleBook([], {}).next_change(utc(5, 7)) is None


def test_the_first_window_in_force_wins_each_field() -> None:
    book, _ = book_of(
        "{name: a, alias: spread, kind: time_window, deployments: {0: {weight: 5}}}",
        "{name: b, alias: spread, kind: time_window, deployments: {0: {weight: 9}, 1: {weight: 2}}}",
    )
    overrides = book.overrides(utc(5, 12))
    assert (overrides["spread/0"].weight, overrides["spread/0"].rules) == (5, ("a", "b"))
    assert overrides["spread/1"].weight == 2


def routes_of(loaded: Settings, previous: dict[str, Route] | None = None) -> dict[str, Route]:
    return build_routes(loaded, presets(), previous)


def test_apply_windows_sets_the_overrides_and_puts_the_configured_values_back() -> None:
    book, loaded = book_of(OFFICE)
    routes = routes_of(loaded)
    big = routes["big"]
    configured = [d.spec for d in big.deployments]
    rng = random.Random(0)
    assert [d.id for d in by_priority(big, rng)] == ["big/0", "big-eu"]
    assert apply_windows(routes, book, utc(5, 9)) == ["office"]
    assert [d.id for d in by_priority(big, rng)] == ["big-eu", "big/0"]  # the strategy sees the override
    assert big.deployments[1].spec.priority == -1 and big.deployments[1].spec.model == "m-big-eu"
    assert big.deployments[0].spec is configured[0]
    assert apply_windows(routes, book, utc(5, 18)) == []
    assert [d.spec for d in big.deployments] == configured and big.deployments[1].spec is configured[1]


def test_a_window_changes_weights_the_weighted_strategy_reads() -> None:
    book, loaded = book_of("{name: w, alias: spread, kind: time_window, deployments: {1: {weight: 1000}}}")
    routes = routes_of(loaded)
    apply_windows(routes, book, utc(5, 9))
    rng = random.Random(3)
    firsts = [weighted(routes["spread"], rng)[0].id for _ in range(200)]
    assert firsts.count("spread/1") > 190


def test_a_reload_keeps_deployments_a_window_changed_once_restored() -> None:
    book, loaded = book_of(OFFICE)
    first = routes_of(loaded)
    apply_windows(first, book, utc(5, 9))
    kept = first["big"].deployments[1]
    restore_configured(first)
    again = routes_of(loaded, first)
    assert again["big"].deployments[1] is kept  # breaker and latency history carry over
    apply_windows(again, book, utc(5, 9))
    assert kept.spec.priority == -1
    rebuilt = routes_of(loaded, again)  # not restored: the changed spec no longer matches the file's
    assert rebuilt["big"].deployments[1] is not kept


def test_windows_ignore_aliases_missing_from_the_routes() -> None:
    book, loaded = book_of(OFFICE)
    routes = routes_of(loaded)
    del routes["big"]
    assert apply_windows(routes, book, utc(5, 9)) == ["office"]
    assert apply_windows(routes, RuleBook([], {}), utc(5, 9)) == []


def test_a_book_needs_its_window_deployments() -> None:
    _, loaded = book_of(OFFICE)
    models = dict(loaded.models)
    models["big"] = models["small"]
    with pytest.raises(ValueError, match="'big' has no deployment 'big-eu'"):
        RuleBook(loaded.routing_rules, models)


def test_every_rule_is_listed_by_alias() -> None:
    book, _ = book_of(OFFICE, "{name: s, alias: big, kind: shadow, to: small, share: 0.1}")
    assert [(r.name, r.kind) for r in book.for_alias("big")] == [("office", "time_window"), ("s", "shadow")]
    assert book.for_alias("small") == [] and book.window_aliases == frozenset({"big"})
