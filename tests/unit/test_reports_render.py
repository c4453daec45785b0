"""Reports from known statistics give known numbers, in JSON, Markdown and HTML."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from datetime import UTC, date, datetime
from typing import Any
from zoneinfo import ZoneInfo

import orjson
import pytest

from gateway.config.loader import parse_config
from gateway.observability.logs import RequestRecord
from gateway.policies.budget import BudgetLimits
from gateway.reports.builder import (
    Renderer,
    ReportSources,
    bounds,
    budgets_of,
    make_report,
    parse_format,
    team_names_of,
)
from gateway.reports.kpis import Report, ReportInputs, build_report
from gateway.reports.periods import parse_date, parse_kind, period_for
from gateway.reports.stats import DayStats
from gateway.reports.text import usd

P100 = 2 ** (107 / 16)  # the upper bound of the bucket holding 100 ms


@pytest.fixture(scope="module")
def renderer() -> Renderer:
    return Renderer()


def rec(
    day: str, alias: str, team: str, status: int, ms: float, cost: float | None, code: str | None = None
) -> RequestRecord:
    ts = datetime.fromisoformat(f"{day}T10:00:00+00:00").timestamp()
    return RequestRecord(
        ts=ts,
        request_id="r",
        route="chat",
        status=status,
        latency_ms=ms,
        alias=alias,
        team=team,
        prompt_tokens=10 if status == 200 else None,
        completion_tokens=5 if status == 200 else None,
        cost_usd=cost,
        error_code=code,
    )


def known_stats() -> dict[str, DayStats]:
    d24, d25 = DayStats("2026-11-24"), DayStats("2026-11-25")
    for _ in range(90):
        d24.add(rec("2026-11-24", "chat", "red", 200, 100.0, 0.02))
    for _ in range(5):
        d24.add(rec("2026-11-24", "chat", "red", 502, 3000.0, None, "upstream_unavailable"))
    for _ in range(5):
        d24.add(rec("2026-11-24", "chat", "red", 401, 1.0, None, "invalid_api_key"))
    for _ in range(20):
        d25.add(rec("2026-11-25", "embed", "blue", 200, 50.0, 0.01))
    return {"2026-11-24": d24, "2026-11-25": d25}


SPEND = {
    "spend:team:red:2026-11-24": 1.80,
    "spend:team:red:2026-11-25": 0.85,
    "spend:team:red:2026-11": 2.65,
}


TEAM_NAMES = {"red": "Red | team"}  # blue has no name; a "|" in a name is escaped in Markdown


def known_report(team_names: dict[str, str] | None = None) -> Report:
    return build_report(
        ReportInputs(
            period=period_for("weekly", date(2026, 11, 26)),
            stats=known_stats(),
            budgets=[BudgetLimits("team", "red", 1.0, 10.0)],
            spend=SPEND,
            aliases=["chat", "embed", "claude"],
            timezone="UTC",
            now=datetime(2026, 11, 26, 12, 0, tzinfo=UTC),
            today="2026-11-26",
            team_names=TEAM_NAMES if team_names is None else team_names,
        )
    )


def test_totals_and_kpis() -> None:
    r = known_report()
    assert (r.start, r.end, r.complete) == ("2026-11-23", "2026-11-29", False)
    t = r.total
    assert (t.requests, t.ok, t.client_errors, t.server_errors) == (120, 110, 5, 5)
    assert (t.prompt_tokens, t.completion_tokens) == (1100, 550)
    assert t.cost_usd == pytest.approx(2.0)
    kpis = {k.name: k for k in r.kpis}
    assert kpis["availability"].value == pytest.approx(1 - 5 / 115)
    assert kpis["availability"].met is False
    assert kpis["error_rate"].value == pytest.approx(5 / 120)
    assert kpis["error_rate"].met is False
    assert kpis["p50_ms"].value == pytest.approx(P100) and kpis["p50_ms"].met
    assert kpis["p95_ms"].value == pytest.approx(P100) and kpis["p95_ms"].met
    assert kpis["p99_ms"].value == 3000.0 and kpis["p99_ms"].met
    assert any("not over" in n for n in r.notes)


def test_breakdowns_budgets_errors_and_low_use() -> None:
    r = known_report()
    assert [(u.name, u.display_name, u.requests, round(u.cost_usd, 6)) for u in r.by_team] == [
        ("red", "Red | team", 100, 1.8),
        ("blue", None, 20, 0.2),
    ]
    assert [(u.name, u.display_name) for u in r.by_alias] == [("chat", None), ("embed", None)]
    assert r.by_alias[0].error_rate == pytest.approx(0.05)
    daily, monthly = r.budgets
    assert (
        (daily.scope, daily.id, daily.display_name)
        == ("team", "red", "Red | team")
        == (
            monthly.scope,
            monthly.id,
            monthly.display_name,
        )
    )
    assert (daily.period, daily.when, daily.spent_usd, daily.breaches, daily.warnings, daily.status) == (
        "daily",
        "2026-11-24",
        1.8,
        1,
        2,
        "exceeded",
    )
    assert (monthly.when, monthly.spent_usd, monthly.status) == ("2026-11", 2.65, "ok")
    assert monthly.ratio == pytest.approx(0.265)
    assert [(e.code, e.count) for e in r.top_errors] == [("invalid_api_key", 5), ("upstream_unavailable", 5)]
    assert [(lu.alias, lu.requests) for lu in r.low_use] == [("claude", 0)]
    assert [d.requests for d in r.days] == [0, 100, 20, 0, 0, 0, 0]


def test_no_requests_is_a_report_too(renderer: Renderer) -> None:
    r = build_report(
        ReportInputs(
            period=period_for("daily", date(2026, 11, 20)),
            stats={},
            budgets=[],
            spend={},
            aliases=["chat"],
            timezone="UTC",
            now=datetime(2026, 11, 26, 12, 0, tzinfo=UTC),
            today="2026-11-26",
        )
    )
    assert r.complete and r.total.requests == 0
    assert all(k.met is None for k in r.kpis)
    assert "No requests were recorded in this period." in r.notes
    assert "| Availability | n/a |" in renderer.render(r, "md")
    assert "no data" in renderer.render(r, "html")


def test_markdown(renderer: Renderer) -> None:
    md = renderer.render(known_report(), "md")
    assert md.startswith("# Gateway report: weekly 2026-W48 (2026-11-23 to 2026-11-29)")
    assert "| Availability | 95.652 % | ≥ 99.9 % | MISSED |" in md
    assert "| Error rate (5xx) | 4.17 % | ≤ 1.0 % | MISSED |" in md
    assert "| Latency P99 | 3,000 ms | ≤ 5,000 ms | met |" in md
    team_head = (
        "| team | name | requests | share | 5xx | 4xx | error rate | P95 | input tokens | output tokens | spend |"
    )
    assert team_head in md
    assert "| red | Red \\| team | 100 | 83.3 % | 5 | 5 | 5.00 % | 103 ms | 900 | 450 | $1.80 |" in md
    assert "| blue |  | 20 | 16.7 % | 0 | 0 | 0.00 % | 50 ms | 200 | 100 | $0.20 |" in md
    budget_head = (
        "| scope | id | name | budget | limit | highest spend | when | used | at/over limit | over warn | status |"
    )
    assert budget_head in md
    assert "| team | red | Red \\| team | daily | $1.00 | $1.80 | 2026-11-24 | 180.0 % | 1 | 2 | exceeded |" in md
    assert "| team | red | Red \\| team | monthly | $10.00 | $2.65 | 2026-11 | 26.5 % | 0 | 0 | ok |" in md
    assert "| alias | requests | share | 5xx |" in md  # aliases have no name column
    assert "| claude | 0 | 0.0 % |" in md
    assert "| 2026-11-24 | 100 | 5 | 5 | 103 ms | 103 ms | 3,000 ms | $1.80 |" in md


def test_markdown_without_team_names_has_no_name_column(renderer: Renderer) -> None:
    md = renderer.render(known_report(team_names={}), "md")
    assert "| team | requests | share | 5xx |" in md and "| name |" not in md
    assert "| red | 100 | 83.3 % | 5 | 5 | 5.00 % | 103 ms | 900 | 450 | $1.80 |" in md
    assert "| blue | 20 | 16.7 % | 0 | 0 | 0.00 % | 50 ms | 200 | 100 | $0.20 |" in md
    assert "| scope | id | budget | limit |" in md
    assert "| team | red | daily | $1.00 | $1.80 | 2026-11-24 | 180.0 % | 1 | 2 | exceeded |" in md


def test_html_shows_team_names_next_to_ids(renderer: Renderer) -> None:
    page = renderer.render(known_report(), "html")
    assert "<th>team</th><th>name</th><th>requests</th>" in page
    assert "<tr><td>red</td><td>Red | team</td><td>100</td>" in page
    assert "<tr><td>blue</td><td></td><td>20</td>" in page
    assert "<th>scope</th><th>id</th><th>name</th><th>budget</th>" in page
    assert page.count("<tr><td>team</td><td>red</td><td>Red | team</td>") == 2  # daily and monthly
    assert "<th>alias</th><th>requests</th>" in page
    plain = renderer.render(known_report(team_names={}), "html")
    assert "<th>name</th>" not in plain and "<tr><td>red</td><td>100</td>" in plain


def test_html_is_self_contained_with_charts(renderer: Renderer) -> None:
    page = renderer.render(known_report(), "html")
    assert page.startswith("<!DOCTYPE html>")
    assert page.count("<svg") == 6  # requests, P95, error rate per day; spend by team, requests by alias; budgets
    assert "<script" not in page
    assert not re.search(r"(src|href)=", page)  # nothing fetched
    assert re.findall(r"https?://[^\"' ]+", page) == ["http://www.w3.org/2000/svg"] * 6  # only the SVG namespace
    assert '<span class="missed">MISSED</span>' in page
    assert "Spend by team" in page


def test_html_escapes_names(renderer: Renderer) -> None:
    stats = {"2026-11-24": DayStats("2026-11-24")}
    stats["2026-11-24"].add(rec("2026-11-24", "<b>x</b>", "t&t", 200, 10.0, 0.1))
    r = build_report(
        ReportInputs(
            period=period_for("daily", date(2026, 11, 24)),
            stats=stats,
            budgets=[],
            spend={},
            aliases=[],
            timezone="UTC",
            now=datetime(2026, 11, 26, tzinfo=UTC),
            today="2026-11-26",
        )
    )
    page = renderer.render(r, "html")
    assert "<b>x</b>" not in page and "&lt;b&gt;x&lt;/b&gt;" in page and "t&amp;t" in page


def test_usd_formatting() -> None:
    assert [usd(v) for v in (0, 0.2, 0.0123, 0.000125, 1234.5)] == ["$0", "$0.20", "$0.0123", "$0.000125", "$1,234.50"]


def test_json_round_trips(renderer: Renderer) -> None:
    data = orjson.loads(renderer.render(known_report(), "json"))
    assert data["total"]["requests"] == 120
    assert [(t["name"], t["display_name"]) for t in data["by_team"]] == [("red", "Red | team"), ("blue", None)]
    assert {(b["id"], b["display_name"]) for b in data["budgets"]} == {("red", "Red | team")}
    assert data["total"]["display_name"] is None
    assert data["kpis"][0]["name"] == "availability"


def test_periods() -> None:
    assert period_for("daily", date(2026, 11, 26)).days == ["2026-11-26"]
    week = period_for("weekly", date(2026, 11, 26))
    assert (week.start, week.end, week.label) == (
        date(2026, 11, 23),
        date(2026, 11, 29),
        "2026-W48 (2026-11-23 to 2026-11-29)",
    )
    month = period_for("monthly", date(2026, 2, 10))
    assert (month.start, month.end, len(month.days), month.months) == (
        date(2026, 2, 1),
        date(2026, 2, 28),
        28,
        ["2026-02"],
    )
    assert period_for("weekly", date(2026, 12, 30)).months == ["2026-12", "2027-01"]
    year = period_for("yearly", date(2028, 7, 4))  # a leap year
    assert (year.start, year.end, year.label, len(year.days), len(year.months)) == (
        date(2028, 1, 1),
        date(2028, 12, 31),
        "2028",
        366,
        12,
    )


def test_bad_period_format_and_date_are_named() -> None:
    with pytest.raises(ValueError, match="unknown report period 'hourly'; use one of: daily, weekly, monthly, yearly"):
        parse_kind("hourly")
    with pytest.raises(ValueError, match="unknown report format 'pdf'"):
        parse_format("pdf")
    with pytest.raises(ValueError, match="invalid date '2026-13-01'; use YYYY-MM-DD"):
        parse_date("2026-13-01")


def test_budgets_come_from_settings_and_teams() -> None:
    settings = parse_config("budgets: {daily_usd: 50}").settings
    teams: list[dict[str, Any]] = [{"id": "b", "budget_monthly_usd": 5.0}, {"id": "a"}]
    assert budgets_of(settings, teams) == [
        BudgetLimits("global", "all", 50, None),
        BudgetLimits("team", "b", None, 5.0),
    ]


def test_period_bounds_in_a_timezone() -> None:
    tz = ZoneInfo("Europe/Berlin")
    start, end = bounds(period_for("daily", date(2026, 11, 26)), tz, datetime(2027, 1, 1, tzinfo=UTC))
    assert (start.isoformat(), end.isoformat()) == ("2026-11-25T23:00:00+00:00", "2026-11-26T23:00:00+00:00")
    _, capped = bounds(period_for("daily", date(2026, 11, 26)), tz, datetime(2026, 11, 26, 12, tzinfo=UTC))
    assert capped == datetime(2026, 11, 26, 12, tzinfo=UTC)


def test_team_names_come_from_the_team_records() -> None:
    teams: list[dict[str, Any]] = [
        {"id": "red", "name": "Red | team"},
        {"id": "blue"},  # no name
        {"id": "green", "name": None},
        {"id": "grey", "name": ""},
        {"name": "no id"},  # a malformed record is skipped, not shown
    ]
    assert team_names_of(teams) == {"red": "Red | team"}


class KnownStats:
    async def read_days(self, days: Iterable[str]) -> dict[str, DayStats]:
        stats = known_stats()
        return {d: stats[d] for d in days if d in stats}


async def test_make_report_puts_team_names_next_to_ids() -> None:
    async def read_spend(keys: Sequence[str]) -> dict[str, float]:
        return {k: SPEND[k] for k in keys if k in SPEND}

    async def teams() -> list[dict[str, Any]]:
        return [
            {"id": "red", "name": "Red | team", "budget_daily_usd": 1.0, "budget_monthly_usd": 10.0},
            {"id": "blue"},
        ]

    settings = parse_config("").settings
    sources = ReportSources(KnownStats(), read_spend, teams, lambda: ["chat", "embed"])
    r = await make_report("weekly", date(2026, 11, 26), settings, sources, now=datetime(2026, 11, 26, 12, tzinfo=UTC))
    assert [(u.name, u.display_name, u.requests) for u in r.by_team] == [("red", "Red | team", 100), ("blue", None, 20)]
    assert [(b.id, b.display_name, b.period, b.spent_usd) for b in r.budgets] == [
        ("red", "Red | team", "daily", 1.8),
        ("red", "Red | team", "monthly", 2.65),
    ]
