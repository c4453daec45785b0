"""The HTML report is rendered from templates with autoescaping: names that
come from users (model aliases, team ids, team names) are shown as text in
every report, never as markup."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from html.parser import HTMLParser

import pytest

from gateway.observability.logs import RequestRecord
from gateway.policies.budget import BudgetLimits
from gateway.reports.builder import Renderer
from gateway.reports.html import HtmlRenderer
from gateway.reports.kpis import Report, ReportInputs, budget_spend_keys, build_report
from gateway.reports.periods import Kind, period_for
from gateway.reports.stats import DayStats

EVIL = "<img src=x onerror=alert(1)>"
ESCAPED = "&lt;img src=x onerror=alert(1)&gt;"
DAY = "2026-11-24"


class Parsed(HTMLParser):
    """The elements and the text a browser would see in a page."""

    def __init__(self, page: str) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[str] = []
        self.texts: list[str] = []
        self.feed(page)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)

    def handle_data(self, data: str) -> None:
        self.texts.append(data)


def record(alias: str, team: str, status: int = 200) -> RequestRecord:
    return RequestRecord(
        ts=datetime.fromisoformat(f"{DAY}T10:00:00+00:00").timestamp(),
        request_id="r",
        route="chat",
        status=status,
        latency_ms=120.0,
        key_id="k1",
        alias=alias,
        team=team,
        prompt_tokens=10,
        completion_tokens=5,
        cost_usd=0.05,
        error_code="upstream_unavailable" if status >= 500 else None,
    )


def evil_report(kind: Kind, team: str = EVIL, team_names: dict[str, str] | None = None) -> Report:
    """A report whose alias and team are both named :data:`EVIL` (or the
    team has the id ``team`` and its display name in ``team_names``): one
    request to the alias (under 10 %: it is also a low-use alias), 19 to
    another, all by the team, which has a budget it went over."""
    stats = DayStats(DAY)
    stats.add(record(EVIL, team))
    for i in range(19):
        stats.add(record("chat", team, status=502 if i == 0 else 200))
    period = period_for(kind, date.fromisoformat(DAY))
    budgets = [BudgetLimits("team", team, 0.5, 5.0)]
    return build_report(
        ReportInputs(
            period=period,
            stats={DAY: stats},
            budgets=budgets,
            spend=dict.fromkeys(budget_spend_keys(period, budgets), 1.0),
            aliases=[EVIL, "chat"],
            timezone="UTC",
            now=datetime(2026, 12, 31, 12, 0, tzinfo=UTC),
            today="2026-12-31",
            team_names=team_names or {},
        )
    )


@pytest.fixture(scope="module")
def renderer() -> Renderer:
    return Renderer()


@pytest.mark.parametrize("kind", ["daily", "weekly", "monthly"])
def test_a_name_made_of_markup_is_text_in_every_html_report(renderer: Renderer, kind: Kind) -> None:
    report = evil_report(kind)
    assert [r.name for r in report.by_team] == [EVIL]
    assert EVIL in [r.name for r in report.by_alias] and [r.alias for r in report.low_use] == [EVIL]
    page = renderer.render(report, "html")
    assert EVIL not in page
    assert "<img" not in page and "onerror=alert(1)>" not in page
    parsed = Parsed(page)
    assert "img" not in parsed.tags  # a browser builds no <img> element from it
    # shown as text: the by-team, by-alias and low-use tables, and the id of both budget rows ...
    assert page.count(f"<td>{ESCAPED}</td>") == 5
    assert parsed.texts.count(EVIL) == 5
    # ... and in the SVG charts: labels (cut to 26 characters) and tooltips
    assert page.count(">&lt;img src=x onerror=alert(1</text>") == 2  # spend by team, requests by alias
    assert f"<title>{ESCAPED}: $1.00</title>" in page  # the team's spend
    assert f"<title>{ESCAPED}: 1</title>" in page  # the alias's requests
    assert f"<title>team {ESCAPED} daily: 200 %</title>" in page  # budget used
    assert page.count("<svg") == 6


@pytest.mark.parametrize("kind", ["daily", "weekly", "monthly"])
def test_a_team_display_name_made_of_markup_is_text_in_every_html_report(renderer: Renderer, kind: Kind) -> None:
    # team ids cannot carry markup ([A-Za-z0-9._-]); a team's display name is free text
    report = evil_report(kind, team="xss", team_names={"xss": EVIL})
    assert [(r.name, r.display_name) for r in report.by_team] == [("xss", EVIL)]
    assert [(b.id, b.display_name) for b in report.budgets] == [("xss", EVIL), ("xss", EVIL)]
    page = renderer.render(report, "html")
    assert EVIL not in page
    parsed = Parsed(page)
    assert "img" not in parsed.tags
    # the name is shown as text next to the id: in the by-team table and both budget rows ...
    assert page.count(f"<td>xss</td><td>{ESCAPED}</td>") == 3
    # ... and the alias named EVIL in the by-alias and low-use tables: 5 texts in all
    assert page.count(f"<td>{ESCAPED}</td>") == 5
    assert parsed.texts.count(EVIL) == 5
    assert "<th>team</th><th>name</th>" in page and "<th>id</th><th>name</th>" in page
    # the Markdown report has the name as text too, and the JSON report the name itself
    assert f"| xss | {EVIL} | 20 |" in renderer.render(report, "md")
    assert f"| team | xss | {EVIL} | daily |" in renderer.render(report, "md")
    data = json.loads(renderer.render(report, "json"))
    assert [(t["name"], t["display_name"]) for t in data["by_team"]] == [("xss", EVIL)]


def test_a_note_with_markup_is_escaped_too(renderer: Renderer) -> None:
    report = evil_report("daily")
    report.notes.append(f'Prometheus was not used: {EVIL} & "quotes"')
    page = renderer.render(report, "html")
    assert f'<p class="note">Prometheus was not used: {ESCAPED} &amp; &#34;quotes&#34;</p>' in page
    assert "img" not in Parsed(page).tags


def test_each_renderer_holds_its_own_environment() -> None:
    # no module state: two renderers give the same page from their own templates
    report = evil_report("weekly")
    a, b = HtmlRenderer(), HtmlRenderer()
    assert a.render(report) == b.render(report)
    assert a._env is not b._env
