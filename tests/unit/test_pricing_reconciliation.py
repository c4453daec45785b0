"""Cost reconciliation (issue 12, item 4): the cost an upstream reports itself
(``usage.cost``) read from the usage, the two counters that compare it with the
gateway's own cost, the ``pricing.drift_alert_share`` setting, and the report's
"Cost reconciliation" section (rows, drift, flags, Markdown, HTML and JSON).
The PromQL against a real Prometheus: tests/unit/test_reports_prometheus.py."""

from __future__ import annotations

import math
from datetime import UTC, date, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import orjson
import pytest

from gateway.config.loader import ConfigError, parse_config
from gateway.observability.metrics import Metrics
from gateway.policies.pricing import reported_cost
from gateway.reports.builder import Renderer, ReportSources, make_report
from gateway.reports.kpis import Report, ReportInputs, build_report
from gateway.reports.periods import period_for
from gateway.reports.reconciliation import ReconciliationRow, VectorError, queries, reconcile, vector_of
from gateway.reports.store import StatsStore
from gateway.state.embedded import EmbeddedBackend
from tests.ports import free_port

# --- the upstream's figure ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("usage", "expected"),
    [
        ({"prompt_tokens": 10, "cost": 0.00042}, 0.00042),
        ({"cost": 0}, 0.0),
        ({"cost": 3}, 3.0),
        ({"prompt_tokens": 10}, None),
        ({"cost": None}, None),
        ({"cost": "0.1"}, None),
        ({"cost": True}, None),
        ({"cost": -0.5}, None),
        ({"cost": math.nan}, None),
        ({"cost": math.inf}, None),
        ({"cost": {"total": 1}}, None),
    ],
)
def test_reported_cost_is_a_finite_number_or_none(usage: dict[str, object], expected: float | None) -> None:
    assert reported_cost(usage) == expected


def test_counters_compare_the_same_requests() -> None:
    m = Metrics()
    m.cost_reconciled("openai_compatible", "router", 0.0011, 0.001)
    m.cost_reconciled("openai_compatible", "router", 0.0022, 0.002)
    text = m.render()[0].decode()
    assert 'gateway_cost_reported_usd_total{alias="router",provider="openai_compatible"} 0.0033' in text
    assert 'gateway_cost_compared_usd_total{alias="router",provider="openai_compatible"} 0.003' in text


# --- the setting ----------------------------------------------------------------------------------


def test_drift_alert_share_setting() -> None:
    assert parse_config("{}", env={}).settings.pricing.drift_alert_share == 0.05
    assert parse_config("pricing: {drift_alert_share: 0.2}", env={}).settings.pricing.drift_alert_share == 0.2
    for bad, message in ((0, "greater than 0"), (1.5, "less than or equal to 1"), ("x", "valid number")):
        with pytest.raises(ConfigError) as info:
            parse_config(f"pricing: {{drift_alert_share: {bad}}}", env={})
        assert any("pricing.drift_alert_share" in p and message in p for p in info.value.problems), info.value


# --- rows -------------------------------------------------------------------------------------------


def test_reconcile_drift_flags_and_order() -> None:
    reported = {("openai_compatible", "router"): 1.10, ("novita", "llama"): 0.98, ("x", "free"): 0.5}
    gateway = {("openai_compatible", "router"): 1.00, ("novita", "llama"): 1.00, ("x", "free"): 0.0}
    rows = reconcile(reported, gateway, 0.05)
    assert rows == [
        ReconciliationRow("x", "free", 0.5, 0.0, None, True),  # the gateway counted $0 for billed requests
        ReconciliationRow("openai_compatible", "router", 1.1, 1.0, pytest.approx(0.1), True),  # type: ignore[arg-type]
        ReconciliationRow("novita", "llama", 0.98, 1.0, pytest.approx(-0.02), False),  # type: ignore[arg-type]
    ]
    assert [r.flagged for r in reconcile(reported, gateway, 0.15)] == [True, False, False]
    assert reconcile({}, gateway, 0.05) == []
    # nothing billed and nothing counted: no drift
    assert reconcile({("a", "b"): 0.0}, {}, 0.05) == [ReconciliationRow("a", "b", 0.0, 0.0, None, False)]


def test_promql_and_answers() -> None:
    reported, compared = queries("86400s", 'job="gateway"')
    assert reported == 'sum by (provider, alias) (increase(gateway_cost_reported_usd_total{job="gateway"}[86400s]))'
    assert compared == 'sum by (provider, alias) (increase(gateway_cost_compared_usd_total{job="gateway"}[86400s]))'
    body = orjson.dumps(
        {
            "status": "success",
            "data": {
                "resultType": "vector",
                "result": [
                    {"metric": {"provider": "novita", "alias": "llama"}, "value": [1, "0.25"]},
                    {"metric": {"provider": "x", "alias": "y"}, "value": [1, "NaN"]},
                ],
            },
        }
    )
    assert vector_of(body) == {("novita", "llama"): 0.25}
    for bad, message in (
        (b"<html>", "not JSON"),
        (b'{"status":"error","error":"parse error"}', "parse error"),
        (b'{"status":"success","data":{}}', "without a result"),
        (b'{"status":"success","data":{"result":[{"metric":{}}]}}', "without a value"),
    ):
        with pytest.raises(VectorError, match=message):
            vector_of(bad)


# --- the report section ---------------------------------------------------------------------------------


def empty_report() -> Report:
    return build_report(
        ReportInputs(
            period=period_for("daily", date(2026, 12, 5)),
            stats={},
            budgets=[],
            spend={},
            aliases=[],
            timezone="UTC",
            now=datetime(2026, 12, 6, 12, 0, tzinfo=UTC),
            today="2026-12-06",
        )
    )


def section(markdown: str) -> str:
    return markdown.split("## Cost reconciliation\n\n", 1)[1].split("\n\n##", 1)[0]


def test_section_without_prometheus_and_without_reported_costs() -> None:
    renderer = Renderer()
    report = empty_report()
    assert report.reconciliation is None
    assert section(renderer.render(report, "md")).startswith("Needs reports.prometheus_url")
    assert "<h2>Cost reconciliation</h2>\n<p>Needs reports.prometheus_url" in renderer.render(report, "html")
    report.reconciliation = []
    assert section(renderer.render(report, "md")) == "No upstream reported its own cost in this period."


def test_section_rows_in_every_format() -> None:
    renderer = Renderer()
    report = empty_report()
    report.drift_alert_share = 0.05
    report.reconciliation = reconcile(
        {("openai_compatible", "router<x>"): 1.10, ("novita", "llama"): 0.98},
        {("openai_compatible", "router<x>"): 1.0, ("novita", "llama"): 1.0},
        0.05,
    )
    assert section(renderer.render(report, "md")).splitlines() == [
        "| provider | alias | upstream reported | gateway | drift | beyond ±5.0 % |",
        "|---|---|---|---|---|---|",
        "| openai_compatible | router<x> | $1.10 | $1.00 | +10.00 % | DRIFT |",
        "| novita | llama | $0.98 | $1.00 | -2.00 % | ok |",
    ]
    html = renderer.render(report, "html")
    assert "<td>router&lt;x&gt;</td><td>$1.10</td><td>$1.00</td><td>+10.00 %</td><td>DRIFT</td>" in html
    data = orjson.loads(renderer.render(report, "json"))
    assert data["drift_alert_share"] == 0.05
    assert data["reconciliation"][1] == {
        "provider": "novita",
        "alias": "llama",
        "reported_usd": 0.98,
        "gateway_usd": 1.0,
        "drift": pytest.approx(-0.02),
        "flagged": False,
    }


async def test_make_report_takes_the_share_from_settings(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    text = f"pricing: {{drift_alert_share: 0.1}}\nreports: {{prometheus_url: '{url}', prometheus_timeout_s: 2}}"
    settings = parse_config(text, env={}).settings
    backend = EmbeddedBackend(str(tmp_path / "s.db"))

    async def no_teams() -> list[dict[str, object]]:
        return []

    sources = ReportSources(StatsStore(backend, tz=ZoneInfo("UTC")), backend.read_spend, no_teams, list)
    report = await make_report("daily", date(2026, 12, 6), settings, sources, now=datetime(2026, 12, 6, 12, tzinfo=UTC))
    await backend.aclose()
    assert report.drift_alert_share == 0.1
    assert report.reconciliation is None  # Prometheus unreachable: a note, no section rows
    assert any(n.startswith("Prometheus was not used") for n in report.notes)
