"""Unit tests of the benchmark's traffic-control comparison: config rendering,
the admin bodies, the on/off check and the ratios and targets. Nothing is timed."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from bench import traffic_report as tr
from bench.__main__ import parser
from bench.apis import CHAT, wrk_env
from bench.gateway_proc import (
    CLAUDE_JSON_ALIAS,
    CLAUDE_SSE_ALIAS,
    JSON_ALIAS,
    SSE_ALIAS,
    chat_body,
    render_gateway_config,
)
from bench.redis_proc import redis_args
from bench.runner import Options, traffic_scenarios
from bench.scenarios import CACHED_SCENARIO, cached_scenario, scenarios, selected
from bench.traffic import (
    GLOBAL_MAX_CONCURRENT,
    HIGH_RPM,
    HIGH_TPM,
    HIGH_USD,
    KEY_BODY,
    PRICE,
    TEAM_BODY,
    TEAM_ID,
    embedded_state,
    header_problems,
    redis_state,
    traffic_config,
)
from bench.wrk import WrkResult
from gateway.config.loader import parse_config
from gateway.config.settings import Settings
from gateway.policies.keys import KeyFields, TeamFields, parse_body

ENV = {"GATEWAY_MASTER_KEY": "bench-key-123"}


def _bare(tmp_path: Path) -> dict[str, Any]:
    return render_gateway_config(
        port=9999,
        json_base_url="http://127.0.0.1:1/json/v1",
        sse_base_url="http://127.0.0.1:1/sse/v1",
        state_path=str(tmp_path / "bare.db"),
    )


def _load(config: dict[str, Any]) -> Settings:
    return parse_config(json.dumps(config), env=ENV).settings  # JSON is YAML


# --- config rendering ----------------------------------------------------------------


def test_bare_config_has_traffic_control_off(tmp_path: Path) -> None:
    settings = _load(_bare(tmp_path))
    assert settings.limits.max_concurrent is None and settings.limits.rpm is None
    assert not settings.cache.enabled
    assert settings.pricing.file is None
    assert settings.budgets.daily_usd is None
    assert settings.state.backend == "embedded" and settings.state.path == str(tmp_path / "bare.db")
    assert all(spec.limits is None for spec in settings.models.values())
    assert all(d.price is None for spec in settings.models.values() for d in spec.deployments)


def test_traffic_config_embedded_has_everything_on(tmp_path: Path) -> None:
    bare = _bare(tmp_path)
    config = traffic_config(bare, state=embedded_state(tmp_path))
    assert "limits" not in bare["models"][JSON_ALIAS]  # the bare config is left alone
    settings = _load(config)
    assert settings.state.backend == "embedded"
    assert settings.state.path == str(tmp_path / "traffic-embedded.db")
    assert settings.limits.max_concurrent == GLOBAL_MAX_CONCURRENT == 1000
    assert settings.cache.enabled and not settings.cache.cache_sampled  # no temperature: not cacheable
    assert settings.budgets.daily_usd == HIGH_USD
    assert set(settings.models) == {JSON_ALIAS, SSE_ALIAS, CLAUDE_JSON_ALIAS, CLAUDE_SSE_ALIAS}
    for spec in settings.models.values():
        assert spec.limits is not None
        assert spec.limits.rpm == HIGH_RPM and spec.limits.tpm == HIGH_TPM and spec.limits.max_concurrent
        for dep in spec.deployments:
            assert dep.price is not None
            assert dep.price.input_per_1m == PRICE["input_per_1m"] > 0
            assert dep.price.output_per_1m == PRICE["output_per_1m"] > 0


def test_traffic_config_redis(tmp_path: Path) -> None:
    settings = _load(traffic_config(_bare(tmp_path), state=redis_state("redis://127.0.0.1:6390/0")))
    assert settings.state.backend == "redis" and settings.state.url == "redis://127.0.0.1:6390/0"


def test_admin_bodies_are_accepted_and_high() -> None:
    team = parse_body(TeamFields, TEAM_BODY)
    key = parse_body(KeyFields, KEY_BODY)
    assert team["id"] == TEAM_ID == key["team"]
    assert team["rpm"] >= 10_000_000 and team["tpm"] >= 10_000_000_000 and team["budget_daily_usd"] >= 1_000_000
    assert key["rpm"] >= 10_000_000 and key["tpm"] >= 10_000_000_000 and key["max_concurrent"] >= 1000
    assert key["budget_daily_usd"] >= 1_000_000 and key["budget_monthly_usd"] >= 1_000_000


def test_redis_args_do_not_persist(tmp_path: Path) -> None:
    args = redis_args("/usr/bin/redis-server", port=6390, workdir=tmp_path)
    assert args[0] == "/usr/bin/redis-server"
    joined = " ".join(args)
    assert "--port 6390" in joined and "--bind 127.0.0.1" in joined and f"--dir {tmp_path}" in joined
    assert args[args.index("--save") + 1] == "" and args[args.index("--appendonly") + 1] == "no"


# --- scenarios and options --------------------------------------------------------------


def test_cached_scenario_sends_temperature_zero() -> None:
    sc = cached_scenario(16)
    assert sc.name == CACHED_SCENARIO and sc.temperature == 0 and not sc.stream and sc.alias == JSON_ALIAS
    assert all(s.temperature is None for s in scenarios(16))  # the headline runs are not cacheable
    assert json.loads(chat_body(JSON_ALIAS, stream=False, temperature=0))["temperature"] == 0
    assert "temperature" not in json.loads(chat_body(JSON_ALIAS, stream=False))
    sent = wrk_env(CHAT, JSON_ALIAS, stream=False, key="k", temperature=0)["BENCH_BODY"]  # what wrk posts
    assert json.loads(sent)["temperature"] == 0


def testtraffic_scenarios_follow_only() -> None:
    assert [s.name for s in traffic_scenarios(Options())] == ["json", "json-1conn", "sse", CACHED_SCENARIO]
    assert [s.name for s in traffic_scenarios(Options(only=["json"]))] == ["json"]
    assert [s.name for s in traffic_scenarios(Options(only=[CACHED_SCENARIO]))] == [CACHED_SCENARIO]
    assert traffic_scenarios(Options(only=["soak"])) == []
    assert [s.name for s in selected(scenarios(4), [])] == ["json", "json-1conn", "sse"]


def test_traffic_option() -> None:
    assert parser().parse_args([]).traffic is True
    assert parser().parse_args(["--traffic"]).traffic is True
    assert parser().parse_args(["--no-traffic"]).traffic is False


# --- the check ---------------------------------------------------------------------------

GOOD_HEADERS = {
    "x-ratelimit-limit-requests": "10000000",
    "x-ratelimit-remaining-requests": "9999999",
    "x-ratelimit-reset-requests": "1m0s",
    "x-ratelimit-limit-tokens": "10000000000",
    "x-ratelimit-remaining-tokens": "9999999981",
    "x-ratelimit-reset-tokens": "1m0s",
    "x-gateway-cost-usd": "0.00000495",
    "x-gateway-cache": "off",
}


def test_header_problems() -> None:
    assert header_problems(200, GOOD_HEADERS) == []
    assert header_problems(429, GOOD_HEADERS) == ["HTTP 429, expected 200"]
    no_limits = {k: v for k, v in GOOD_HEADERS.items() if not k.startswith("x-ratelimit")}
    assert len(header_problems(200, no_limits)) == 6
    for cost in ("0", "abc"):
        assert "x-gateway-cost-usd" in header_problems(200, {**GOOD_HEADERS, "x-gateway-cost-usd": cost})[0]
    no_cost = {k: v for k, v in GOOD_HEADERS.items() if k != "x-gateway-cost-usd"}
    assert "pricing not applied" in header_problems(200, no_cost)[0]
    assert "expected 'off'" in header_problems(200, {**GOOD_HEADERS, "x-gateway-cache": "hit"})[0]


# --- ratios and targets -------------------------------------------------------------------


def _run(scenario: str, target: str, rps: float, p50: float, *, errors: bool = False) -> WrkResult:
    requests = int(rps * 10)
    return WrkResult(
        scenario=scenario,
        target=target,
        connections=1 if scenario == "json-1conn" else 16,
        requests=requests,
        duration_s=10.0,
        bytes=0,
        errors={"connect": 0, "read": 0, "write": 0, "status": 0, "timeout": 0},
        latency_ms={"p50": p50, "p90": p50, "p99": p50},
        statuses={200: requests - 10, 500: 10} if errors else {200: requests},
        bad_bodies=0,
    )


RUNS = [
    _run("json", "nginx", 100_000, 0.1),
    _run("json-1conn", "nginx", 60_000, 0.02),
    _run("sse", "nginx", 90_000, 0.1),
    _run("json", "gateway", 4_000, 4.0),
    _run("json-1conn", "gateway", 2_500, 0.30),
    _run("sse", "gateway", 2_400, 6.0),
    _run("json", "embedded", 3_400, 4.5),
    _run("json-1conn", "embedded", 2_000, 0.52),
    _run("sse", "embedded", 2_000, 7.0),
    _run(CACHED_SCENARIO, "embedded", 6_000, 2.0),
    _run("json", "redis", 2_000, 8.0),
    _run("json-1conn", "redis", 900, 1.82),
    _run("sse", "redis", 1_500, 9.0),
    _run(CACHED_SCENARIO, "redis", 3_000, 4.0),
]


def test_variants_ratios_vs_bare() -> None:
    found = {v.name: v for v in tr.variants(RUNS)}
    assert list(found) == ["bare", "embedded", "redis"]
    bare, emb, red = found["bare"], found["embedded"], found["redis"]
    assert bare.json_ratio == 1.0 and bare.cached_rps is None
    assert bare.added_p50_ms == pytest.approx(0.28)
    assert emb.json_rps == pytest.approx(3_400) and emb.json_ratio == pytest.approx(0.85)
    assert emb.sse_rps == pytest.approx(2_000) and emb.sse_ratio == pytest.approx(2_000 / 2_400)
    assert emb.one_conn_p50_ms == pytest.approx(0.52)
    assert emb.added_p50_ms == pytest.approx(0.50) and emb.added_vs_bare_ms == pytest.approx(0.22)
    assert emb.cached_rps == pytest.approx(6_000)
    assert red.json_ratio == pytest.approx(0.5) and red.added_p50_ms == pytest.approx(1.80)
    assert not any(v.flagged for v in found.values())


def test_targets_met_and_not_met() -> None:
    result = {(t.variant, t.metric): t for t in tr.targets(tr.variants(RUNS))}
    assert len(result) == 4
    emb_ratio = result[("embedded", "json_ratio")]
    assert emb_ratio.met is True and emb_ratio.status == "met" and emb_ratio.limit == 0.80
    assert emb_ratio.shown_value() == "85.0%" and "80%" in emb_ratio.label
    red_ratio = result[("redis", "json_ratio")]
    assert red_ratio.met is False and red_ratio.status == "NOT MET" and red_ratio.limit == 0.65
    assert result[("embedded", "added_p50_ms")].met is True
    red_lat = result[("redis", "added_p50_ms")]
    assert red_lat.met is False and red_lat.shown_value() == "+1.800 ms" and "1.5 ms" in red_lat.label
    text = tr.summary(RUNS)
    assert "NOT MET" in text and "85.0%" in text and "6,000" in text


def test_targets_boundaries_errors_and_missing() -> None:
    at_limit = [r for r in RUNS if r.target != "embedded"] + [
        _run("json", "embedded", 3_200, 4.0),  # exactly 80 % of bare
        _run("json-1conn", "embedded", 2_000, 1.52),  # exactly +1.5 ms over nginx
    ]
    result = {(t.variant, t.metric): t for t in tr.targets(tr.variants(at_limit))}
    assert result[("embedded", "json_ratio")].met is True
    assert result[("embedded", "added_p50_ms")].met is True
    with_errors = [*RUNS[:6], _run("json", "embedded", 3_900, 4.0, errors=True), RUNS[7]]
    result = {(t.variant, t.metric): t for t in tr.targets(tr.variants(with_errors))}
    assert result[("embedded", "json_ratio")].met is False
    assert "errors" in result[("embedded", "json_ratio")].note
    assert result[("redis", "json_ratio")].met is None and result[("redis", "json_ratio")].status == "n/a"
    data = tr.to_json(with_errors)
    assert {v["name"] for v in data["variants"]} == {"bare", "embedded"}
    assert [t["status"] for t in data["targets"]] == ["NOT MET", "n/a", "NOT MET", "n/a"]
    json.dumps(data)  # serialisable
