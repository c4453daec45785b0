"""gateway.config.rules: the ``routing_rules`` schema through the config loader; each
problem is named by its path."""

from __future__ import annotations

import pytest

from gateway.config.rules import BudgetDowngradeRule, MatchRule, ShadowRule, TimeWindowRule, parse_hours
from tests.unit.config_helpers import parse, problems, settings

MODELS = """
models:
  big:
    strategy: priority
    deployments:
      - {provider: openai, model: m-big}
      - {provider: openai, model: m-big-2, id: big-eu}
  small: {deployments: [{provider: openai, model: m-small}]}
  spread: {strategy: weighted, deployments: [{provider: openai, model: a}, {provider: openai, model: b}]}
  turns: {strategy: round_robin, deployments: [{provider: openai, model: a}, {provider: openai, model: b}]}
  vectors: {kind: embedding, deployments: [{provider: openai, model: e}]}
"""


def rules(*lines: str) -> str:
    return MODELS + "routing_rules:\n" + "".join(f"  - {line}\n" for line in lines)


def test_every_kind_parses_with_its_defaults() -> None:
    loaded = settings(
        rules(
            "{name: night, alias: big, kind: time_window, hours: '22:00-06:00', deployments: {1: {priority: -1}}}",
            "{name: cheap, alias: big, kind: budget_downgrade, scope: team, share: 0.8, to: small}",
            "{name: free, alias: big, kind: match, when: {header: {X-Tier: free}}, to: small}",
            "{name: try-small, alias: big, kind: shadow, to: small, share: 0.25}",
        )
    )
    window, downgrade, match, shadow = loaded.routing_rules
    assert isinstance(window, TimeWindowRule) and window.timezone is None and len(window.days) == 7
    assert window.span() == (22 * 60, 6 * 60)
    assert isinstance(downgrade, BudgetDowngradeRule) and downgrade.period == "daily"
    assert isinstance(match, MatchRule) and match.when.header == {"X-Tier": "free"}
    assert isinstance(shadow, ShadowRule) and shadow.share == 0.25
    assert loaded.shadow_traffic.max_concurrent == 50


def test_no_rules_by_default() -> None:
    assert settings(MODELS).routing_rules == []


@pytest.mark.parametrize(
    ("rule", "problem"),
    [
        ("{name: r, alias: big, kind: fastest}", "routing_rules[0]: kind must be one of: time_window, "),
        ("{name: r, alias: big}", "routing_rules[0]: kind must be one of"),
        ("just-text", "routing_rules[0]: a rule must be a mapping with a kind"),
        ("{name: 'a b', alias: big, kind: shadow, to: small, share: 0.1}", "routing_rules[0].name: String should"),
        ("{name: r, alias: big, kind: shadow, to: small, share: 0}", "routing_rules[0].share: Input should be greater"),
        ("{name: r, alias: big, kind: shadow, to: small, share: 1.5}", "routing_rules[0].share: Input should be less"),
        ("{name: r, alias: big, kind: shadow, to: small}", "routing_rules[0].share: Field required"),
        ("{name: r, alias: big, kind: shadow, to: small, share: 0.1, when: {}}", "routing_rules[0].when: unknown key"),
        ("{name: r, alias: big, kind: budget_downgrade, scope: org, share: 0.5, to: small}", "routing_rules[0].scope:"),
        (
            "{name: r, alias: big, kind: budget_downgrade, scope: key, share: 0.5, period: weekly, to: small}",
            "routing_rules[0].period:",
        ),
        ("{name: r, alias: big, kind: match, when: {}, to: small}", "routing_rules[0].when: when needs at least one"),
        (
            "{name: r, alias: big, kind: match, when: {header: {A: x, a: y}}, to: small}",
            "routing_rules[0].when: when.header names a header twice",
        ),
        ("{name: r, alias: big, kind: match, when: {team: []}, to: small}", "routing_rules[0].when.team: List should"),
        (
            "{name: r, alias: big, kind: match, when: {metadata: {app: 3}}, to: small}",
            "routing_rules[0].when.metadata.app: Input should be a valid string",
        ),
        (
            "{name: r, alias: big, kind: time_window, hours: '9-17', deployments: {0: {priority: 1}}}",
            'routing_rules[0].hours: hours must be "HH:MM-HH:MM"',
        ),
        (
            "{name: r, alias: big, kind: time_window, hours: '10:00-10:00', deployments: {0: {priority: 1}}}",
            "routing_rules[0].hours: start and end are the same time",
        ),
        (
            "{name: r, alias: big, kind: time_window, hours: '24:00-06:00', deployments: {0: {priority: 1}}}",
            "routing_rules[0].hours: a window cannot start at 24:00",
        ),
        (
            "{name: r, alias: big, kind: time_window, days: [mon, funday], deployments: {0: {priority: 1}}}",
            "routing_rules[0].days[1]: Input should be 'mon'",
        ),
        (
            "{name: r, alias: big, kind: time_window, days: [mon, mon], deployments: {0: {priority: 1}}}",
            "routing_rules[0].days: days lists a day twice",
        ),
        (
            "{name: r, alias: big, kind: time_window, timezone: Mars/Olympus, deployments: {0: {priority: 1}}}",
            "routing_rules[0].timezone: timezone is not a known IANA time zone name",
        ),
        (
            "{name: r, alias: big, kind: time_window, deployments: {0: {}}}",
            "routing_rules[0].deployments[0]: an override sets priority, weight or both",
        ),
        (
            "{name: r, alias: big, kind: time_window, deployments: {}}",
            "routing_rules[0].deployments: Dictionary should",
        ),
    ],
)
def test_a_bad_rule_is_named_by_its_own_path(rule: str, problem: str) -> None:
    found = problems(rules(rule))
    assert any(p.startswith(problem) for p in found), found


@pytest.mark.parametrize(
    ("rule", "problem"),
    [
        (
            "{name: r, alias: nope, kind: shadow, to: small, share: 0.1}",
            "routing_rules[1].alias: unknown model alias 'nope'",
        ),
        ("{name: r, alias: big, kind: shadow, to: x, share: 0.1}", "routing_rules[1].to: unknown model alias 'x'"),
        (
            "{name: r, alias: big, kind: match, when: {team: [t]}, to: big}",
            "routing_rules[1].to: a rule cannot send an alias to itself",
        ),
        (
            "{name: r, alias: big, kind: budget_downgrade, scope: key, share: 0.5, to: vectors}",
            "routing_rules[1].to: 'vectors' is an embedding model, not chat",
        ),
        (
            "{name: r, alias: vectors, kind: match, when: {team: [t]}, to: small}",
            "routing_rules[1].alias: 'vectors' is an embedding model, and match rules are for chat",
        ),
        (
            "{name: first, alias: small, kind: shadow, to: big, share: 0.1}",
            "routing_rules[1].name: duplicate rule name 'first' (also routing_rules[0])",
        ),
        (
            "{name: r, alias: big, kind: time_window, deployments: {2: {priority: 1}}}",
            "routing_rules[1].deployments[2]: 'big' has no deployment 2 (an index, or one of: big/0, big-eu)",
        ),
        (
            "{name: r, alias: big, kind: time_window, deployments: {big/1: {priority: 1}}}",
            "routing_rules[1].deployments.big/1: 'big' has no deployment 'big/1'",
        ),
        (
            "{name: r, alias: big, kind: time_window, deployments: {1: {priority: 1}, big-eu: {priority: 2}}}",
            "routing_rules[1].deployments.big-eu: names the same deployment as 1",
        ),
        (
            "{name: r, alias: big, kind: time_window, deployments: {0: {weight: 3}}}",
            "routing_rules[1].deployments[0].weight: strategy 'priority' of 'big' does not read weight",
        ),
        (
            "{name: r, alias: spread, kind: time_window, deployments: {0: {priority: 3}}}",
            "routing_rules[1].deployments[0].priority: strategy 'weighted' of 'spread' does not read priority",
        ),
        (
            "{name: r, alias: turns, kind: time_window, deployments: {0: {weight: 3}}}",
            "routing_rules[1].deployments[0].weight: strategy 'round_robin' of 'turns' does not read weight",
        ),
    ],
)
def test_references_between_rules_and_models_are_checked(rule: str, problem: str) -> None:
    found = problems(rules("{name: first, alias: big, kind: shadow, to: small, share: 0.5}", rule))
    assert any(p.startswith(problem) for p in found), found


def test_a_deployment_is_named_by_index_as_number_or_text_or_by_id() -> None:
    loaded = settings(
        rules(
            "{name: a, alias: big, kind: time_window, deployments: {0: {priority: 1}}}",
            "{name: b, alias: big, kind: time_window, deployments: {'1': {priority: 1}}}",
            "{name: c, alias: big, kind: time_window, deployments: {big/0: {priority: 1}, big-eu: {priority: 2}}}",
            "{name: d, alias: spread, kind: time_window, deployments: {spread/1: {weight: 4}}}",
        )
    )
    assert len(loaded.routing_rules) == 4


def test_one_shadow_rule_per_alias() -> None:
    found = problems(
        rules(
            "{name: a, alias: big, kind: shadow, to: small, share: 0.1}",
            "{name: b, alias: big, kind: shadow, to: small, share: 0.2}",
        )
    )
    assert found == ["routing_rules[1].alias: 'big' already has a shadow rule (routing_rules[0])"]


def test_rules_naming_an_alias_switched_off_by_its_environment_are_left_out() -> None:
    text = (
        MODELS
        + "  paid: {requires_env: [PAID_KEY], deployments: [{provider: openai, model: p}]}\n"
        + "routing_rules:\n"
        + "  - {name: to-paid, alias: big, kind: match, when: {team: [t]}, to: paid}\n"
        + "  - {name: on-paid, alias: paid, kind: shadow, to: small, share: 0.5}\n"
        + "  - {name: kept, alias: big, kind: shadow, to: small, share: 0.5}\n"
    )
    assert [r.name for r in settings(text).routing_rules] == ["kept"]
    assert [r.name for r in settings(text, env={"PAID_KEY": "x"}).routing_rules] == ["to-paid", "on-paid", "kept"]


def test_max_concurrent_shadows_is_validated() -> None:
    assert settings(MODELS + "shadow_traffic: {max_concurrent: 3}\n").shadow_traffic.max_concurrent == 3
    found = problems(MODELS + "shadow_traffic: {max_concurrent: 0}\n")
    assert found[0].startswith("shadow_traffic.max_concurrent: Input should be greater than or equal to 1")


def test_the_config_rules_load_through_parse_with_every_problem_at_once() -> None:
    found = problems(
        rules(
            "{name: a, alias: nope, kind: shadow, to: small, share: 0.1}",
            "{name: a, alias: big, kind: shadow, to: gone, share: 0.1}",
        )
    )
    assert found == [
        "routing_rules[0].alias: unknown model alias 'nope'",
        "routing_rules[1].name: duplicate rule name 'a' (also routing_rules[0])",
        "routing_rules[1].to: unknown model alias 'gone'",
    ]
    assert parse(MODELS).settings.routing_rules == []


@pytest.mark.parametrize(
    ("text", "span"),
    [
        ("00:00-24:00", (0, 1440)),
        ("09:30-17:45", (570, 1065)),
        ("22:00-06:00", (1320, 360)),
        ("23:59-00:00", (1439, 0)),
    ],
)
def test_hours_are_minutes_of_the_day(text: str, span: tuple[int, int]) -> None:
    assert parse_hours(text) == span
