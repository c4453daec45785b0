"""bench.shaping: the two gateways it compares are valid configurations that differ only
in the admission queue and the routing rules, and the rules hold no request of the load."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench.gateway_proc import JSON_ALIAS, SSE_ALIAS, render_gateway_config
from bench.procs import BenchError
from bench.shaping import parser, run, shaped
from gateway.config.loader import parse_config
from gateway.routing.rules import RequestFacts, RuleBook

ENV = {"GATEWAY_MASTER_KEY": "sk-bench-key-123"}


def settings(variant: str, tmp_path: Path):  # type: ignore[no-untyped-def]
    bare = render_gateway_config(port=1, json_base_url="http://127.0.0.1:9/json/v1", sse_base_url="http://x/sse/v1")
    return parse_config(json.dumps(shaped(tmp_path, variant)(bare)), env=ENV).settings


def test_the_variants_differ_only_in_the_queue_and_the_rules(tmp_path: Path) -> None:
    plain, shaping = settings("plain", tmp_path), settings("shaping", tmp_path)
    assert not plain.queue.enabled and not plain.routing_rules
    assert shaping.queue.enabled and {r.kind for r in shaping.routing_rules} == {
        "match",
        "budget_downgrade",
        "time_window",
    }
    assert plain.limits == shaping.limits and plain.models == shaping.models and plain.budgets == shaping.budgets
    assert plain.state.path != shaping.state.path  # each gateway its own state file


def test_the_rules_are_evaluated_yet_hold_no_request_of_the_load(tmp_path: Path) -> None:
    book = RuleBook.from_settings(settings("shaping", tmp_path))
    assert book.has_rules(JSON_ALIAS)
    asked: list[tuple[str, str]] = []

    def share(scope: str, period: str) -> float:
        asked.append((scope, period))
        return 0.01  # the load spends a sliver of its team's budget

    facts = RequestFacts(key_id="k", team="bench-team", headers={}, metadata=None, budget_share=share)
    assert book.choose(JSON_ALIAS, facts) is None
    assert asked == [("team", "daily")], "the downgrade rule was evaluated"
    batch = RequestFacts(
        key_id="k", team="bench-team", headers={"x-bench-tier": "batch"}, metadata=None, budget_share=share
    )
    assert book.choose(JSON_ALIAS, batch) is not None and book.choose(JSON_ALIAS, batch).alias == SSE_ALIAS  # type: ignore[union-attr]


def test_bad_counts_are_refused() -> None:
    with pytest.raises(BenchError, match="at least 1"):
        run(parser().parse_args(["--rounds", "0"]))
