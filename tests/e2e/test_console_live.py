"""The console's live operations view, playground and reports in real Chromium (Debian's
``chromium`` through Playwright) against one real gateway and the mock: a request sent
through the gateway, and its cost, appear in the live view within its refresh; an error
appears with its request id; the playground streams an answer (rendered chunk by chunk),
charged to the console key or a pasted key, shows the request id, tokens and cost, and
Stop aborts a stream; the cost of a playground chat appears in the live view; the daily,
weekly and monthly reports render inside the console; axe-core (bundled by the
axe-playwright-python package) finds no serious or critical violation on any main page;
and the new views fit 1920, 1024 and 375 px with no horizontal overflow. Screenshots:
test-artifacts/console/ (not in git).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from importlib.resources import files
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect

from tests.e2e.conftest import Mock
from tests.e2e.console_pages import (
    WIDTHS,
    go,
    open_page,
    overflow,
    shot,
    sign_in,
)
from tests.e2e.harness import GatewayProcess

PASSWORD = "console-Pass-12345"
ADMIN, VIEWER = "live-admin", "live-viewer"
KEY_ENV = "LIVE_UPSTREAM_KEY"
REFRESH_S = 5
"""The live view's refresh (views/live.js REFRESH_MS); the waits below allow two of them."""
WITHIN_REFRESH_MS = (2 * REFRESH_S + 5) * 1000
COST = re.compile(r"^\$0\.\d+$")
"""A chat's cost as the console shows it (a few cents at the test price)."""
MAIN_VIEWS = ["live", "models", "keys", "teams", "playground", "reports", "users", "secrets", "audit"]
AXE = files("axe_playwright_python").joinpath("axe.min.js").read_text()


def live_config(mock_url: str) -> str:
    v1 = f"{mock_url}/v1"
    price = "{input_per_1m: 1000, output_per_1m: 2000}"
    key = f"api_key: '${{{KEY_ENV}}}'"
    return f"""
auth: {{master_key: "${{GATEWAY_MASTER_KEY}}"}}
admin: {{scrypt_n: 16384}}
router:
  retry: {{max_retries: 0}}
models:
  live-chat:
    deployments: [{{provider: openai, model: live-model, base_url: '{v1}', {key}, price: {price}}}]
  live-slow:
    deployments: [{{provider: openai, model: live-slow-model, base_url: '{v1}', {key}, price: {price}}}]
  live-bad:
    deployments: [{{provider: openai, model: live-bad-model, base_url: '{v1}', {key}, price: {price}}}]
"""


@pytest.fixture(autouse=True)
def behaviours(mock: Mock) -> None:
    """After the mock's reset before each test: the answer streams in paced chunks; the slow
    one long enough to be stopped; the bad one fails."""
    mock.behave("live-model", reply="one two three four five six seven eight", tokens_per_s=16)
    mock.behave("live-slow-model", output_tokens=200, tokens_per_s=4)
    mock.behave("live-bad-model", error_status=500)


@pytest.fixture(scope="module")
def gw(mock: Mock, tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    gw = GatewayProcess(
        live_config(mock.url), Path(tmp_path_factory.mktemp("console-live")), extra_env={KEY_ENV: "sk-up"}
    )
    try:
        for username, role in ((ADMIN, "admin"), (VIEWER, "viewer")):
            made = gw.http.post("/admin/users", json={"username": username, "password": PASSWORD, "role": role})
            assert made.status_code == 201, made.text
        assert gw.http.post("/admin/teams", json={"id": "blue", "budget_daily_usd": 2.0}).status_code == 201
        yield gw
    finally:
        gw.stop()


def client_key(gw: GatewayProcess, name: str, **fields: Any) -> dict[str, Any]:
    made = gw.http.post("/admin/keys", json={"name": name, **fields})
    assert made.status_code == 201, made.text
    return dict(made.json())


def chat(gw: GatewayProcess, key: str, model: str) -> httpx.Response:
    body = {"model": model, "messages": [{"role": "user", "content": "hello"}]}
    return httpx.post(
        f"{gw.url}/v1/chat/completions", json=body, headers={"authorization": f"Bearer {key}"}, timeout=30
    )


def usd(value: float) -> str:
    """The console's dom.js usd()."""
    return f"${value:.2f}" if value >= 1 else "$" + repr(float(f"{value:.3g}"))


def serious(page: Page) -> list[str]:
    """axe-core's serious and critical violations on the page as it is now."""
    page.evaluate(AXE)
    result = page.evaluate("axe.run(document, {resultTypes: ['violations']})")
    assert result["testEngine"]["name"] == "axe-core" and result["violations"] is not None
    return [
        f"{v['id']} ({v['impact']}): {[n['target'] for n in v['nodes']][:3]}"
        for v in result["violations"]
        if v["impact"] in ("serious", "critical")
    ]


# --- live ----------------------------------------------------------------------------


def test_live_view_shows_requests_their_cost_and_errors(browser: Browser, gw: GatewayProcess) -> None:
    key = client_key(gw, "live-client", team="blue")
    with open_page(browser) as page:
        sign_in(page, gw, ADMIN, PASSWORD, "admin")
        go(page, "live")
        expect(page.locator("#chart-rate canvas").first).to_be_visible()  # uPlot drew the charts
        expect(page.locator("#chart-latency canvas").first).to_be_visible()

        ok = chat(gw, key["key"], "live-chat")
        assert ok.status_code == 200, ok.text
        rid, cost = ok.headers["x-request-id"], float(ok.headers["x-gateway-cost-usd"])
        bad = chat(gw, key["key"], "live-bad")
        assert bad.status_code >= 500
        bad_rid = bad.headers["x-request-id"]

        # within the view's own refresh: no reload, no click
        row = page.locator(f"#live-requests tr[data-rid='{rid}']")
        expect(row).to_be_visible(timeout=WITHIN_REFRESH_MS)
        expect(row.locator("td[data-label=cost]")).to_have_text(usd(cost))
        expect(row.locator("td[data-label=alias]")).to_have_text("live-chat")
        expect(page.locator(f"#live-errors tr[data-rid='{bad_rid}'] td[data-label=status]")).to_have_text(
            str(bad.status_code)
        )
        team = page.locator("#live-teams tr[data-team=blue]")
        expect(team.locator("td[data-label='daily budget']")).to_have_text("$2.00")
        expect(team.locator("td[data-label='spend today']")).not_to_have_text("$0")
        expect(page.locator("#live-aliases tr[data-id=live-chat]")).to_be_visible()
        expect(page.locator(f"#live-keys tr[data-id='{key['id']}']")).to_be_visible()
        tiles = page.locator("#live-tiles .tile")
        expect(tiles).to_have_count(5)
        expect(tiles.nth(1)).to_have_class(re.compile(r"\b(bad|warn)\b"))  # one of the two failed
        shot(page, "live-01-request-and-error")

    # the endpoint behind it, as a viewer may read it
    live = gw.http.get("/admin/live", params={"request_id": rid}).json()
    assert live["request"]["cost_usd"] == pytest.approx(cost)
    assert any(e["request_id"] == bad_rid for e in live["recent_errors"])
    assert gw.http.get("/admin/live", params={"span_s": "5"}).status_code == 400


def test_live_view_pauses_while_the_tab_is_hidden(browser: Browser, gw: GatewayProcess) -> None:
    with open_page(browser) as page:
        sign_in(page, gw, VIEWER, PASSWORD, "viewer")
        go(page, "live")
        page.wait_for_function("() => document.querySelector('#live-view').dataset.refreshed")
        page.evaluate("Object.defineProperty(document, 'hidden', {configurable: true, get: () => true})")
        page.evaluate("document.querySelector('#live-view').dataset.refreshed = 'hidden'")
        page.wait_for_timeout(REFRESH_S * 1000 + 1500)  # a refresh came due while hidden
        assert page.evaluate("document.querySelector('#live-view').dataset.refreshed") == "hidden"
        page.evaluate("Object.defineProperty(document, 'hidden', {configurable: true, get: () => false})")
        page.evaluate("document.dispatchEvent(new Event('visibilitychange'))")
        page.wait_for_function("() => document.querySelector('#live-view').dataset.refreshed !== 'hidden'")


# --- playground ----------------------------------------------------------------------


def answer_meta(page: Page, field: str) -> str:
    return page.locator(f"#play-meta dd[data-field='{field}']").inner_text()


def test_playground_streams_with_the_console_key_and_the_cost_shows_live(browser: Browser, gw: GatewayProcess) -> None:
    with open_page(browser) as page:
        sign_in(page, gw, ADMIN, PASSWORD, "admin")
        go(page, "playground")
        form = page.locator("#play-form")
        form.locator("select[name=model]").select_option("live-chat")
        form.locator("input[value=console]").check()
        expect(page.locator("#play-key-label")).to_be_hidden()
        form.locator("textarea[name=message]").fill("Say a few words")
        # count the answer's updates: a stream is rendered as it arrives, chunk by chunk
        page.evaluate(
            """() => { window.__updates = 0;
              new MutationObserver(() => window.__updates++).observe(document.querySelector('#play-answer'),
                {childList: true, characterData: true, subtree: true}); }"""
        )
        form.locator("button[type=submit]").click()
        expect(page.locator("#play-answer")).to_have_text("one two three four five six seven eight")
        expect(page.locator("#play-meta dd[data-field=cost]")).to_have_text(COST, timeout=10_000)
        assert page.evaluate("window.__updates") >= 3
        rid = answer_meta(page, "request id")
        assert answer_meta(page, "state") == "done" and " in, " in answer_meta(page, "tokens")
        shot(page, "live-02-playground-answer")

        # the console key: created once, with its small budget, and reused
        form.locator("button[type=submit]").click()
        expect(page.locator("#play-meta dd[data-field=cost]")).to_have_text(COST, timeout=10_000)
        assert answer_meta(page, "request id") != rid
        keys = [k for k in gw.http.get("/admin/keys").json()["data"] if k["name"] == "console-playground"]
        assert len(keys) == 1 and keys[0]["budget_daily_usd"] == 1 and keys[0]["revoked_at"] is None

        # Stop aborts a stream that is still arriving
        form.locator("select[name=model]").select_option("live-slow")
        form.locator("button[type=submit]").click()
        expect(page.locator("#play-answer")).not_to_be_empty()
        page.click("#play-stop")
        expect(page.locator("#play-meta dd[data-field=state]")).to_have_text("stopped")
        expect(page.locator("#status")).to_contain_text("Stopped")
        expect(page.locator("#play-stop")).to_be_disabled()
        shot(page, "live-03-playground-stopped")

        # the first chat and its cost in the live view
        go(page, "live")
        row = page.locator(f"#live-requests tr[data-rid='{rid}']")
        expect(row).to_be_visible(timeout=WITHIN_REFRESH_MS)
        expect(row.locator("td[data-label=cost]")).to_have_text(COST)
        expect(row.locator("td[data-label=key]")).to_have_text(str(keys[0]["id"]))
        shot(page, "live-04-playground-request-in-live")


def test_playground_with_a_pasted_key_as_a_viewer(browser: Browser, gw: GatewayProcess) -> None:
    key = client_key(gw, "pasted-key")
    with open_page(browser) as page:
        sign_in(page, gw, VIEWER, PASSWORD, "viewer")
        go(page, "playground")
        expect(page.locator("#play-form input[value=console]")).to_have_count(0)  # a viewer cannot make keys
        form = page.locator("#play-form")
        form.locator("textarea[name=message]").fill("hello")
        form.locator("button[type=submit]").click()
        expect(page.locator("#status")).to_contain_text("Paste a client key")
        form.locator("input[name=key]").fill("sk-not-a-key")
        form.locator("button[type=submit]").click()
        expect(page.locator("#status")).to_contain_text("Check the key")
        form.locator("input[name=key]").fill(key["key"])
        form.locator("select[name=model]").select_option("live-chat")
        form.locator("button[type=submit]").click()
        expect(page.locator("#play-meta dd[data-field=cost]")).to_have_text(COST, timeout=10_000)
        stored = "() => JSON.stringify({...sessionStorage, ...localStorage})"
        assert key["key"] not in page.evaluate(stored)  # kept in memory only
        page.click("#logout")
        assert key["key"] not in page.evaluate(stored)


# --- reports -------------------------------------------------------------------------


def test_reports_render_in_the_console(browser: Browser, gw: GatewayProcess) -> None:
    with open_page(browser) as page:
        sign_in(page, gw, VIEWER, PASSWORD, "viewer")
        go(page, "reports")
        report = page.locator("#report")
        expect(report.locator("h3")).to_contain_text("Gateway report: daily")
        expect(report.locator("svg").first).to_be_visible()  # the report's charts
        expect(report.locator("table").first).to_be_visible()
        assert report.locator("script, style").count() == 0
        shot(page, "live-05-report-daily")
        for period in ("weekly", "monthly"):
            page.select_option("#report-form select[name=period]", period)
            page.click("#report-form button[type=submit]")
            expect(report.locator("h3")).to_contain_text(f"Gateway report: {period}")
        shot(page, "live-06-report-monthly")
        page.fill("#report-form input[name=date]", "1999-01-01")
        page.click("#report-form button[type=submit]")
        expect(report.locator("h3")).to_contain_text("1999")


# --- accessibility and widths --------------------------------------------------------


def test_axe_finds_no_serious_violation_on_any_main_page(browser: Browser, gw: GatewayProcess) -> None:
    with open_page(browser) as page:
        sign_in(page, gw, ADMIN, PASSWORD, "admin")
        found = {}
        for view in MAIN_VIEWS:
            go(page, view)
            found[view] = serious(page)
        page.click("#logout")
        found["sign-in"] = serious(page)
        assert {view: v for view, v in found.items() if v} == {}


@pytest.mark.parametrize("device", list(WIDTHS))
def test_new_views_fit_each_width(browser: Browser, gw: GatewayProcess, device: str) -> None:
    width = WIDTHS[device]
    with open_page(browser, width, 900 if width > 767 else 800) as page:
        sign_in(page, gw, ADMIN, PASSWORD, "admin")
        for view in ("live", "playground", "reports"):
            go(page, view)
            if view == "reports":
                expect(page.locator("#report h3")).to_be_visible()
            assert overflow(page) <= 0, (device, view, overflow(page))
            shot(page, f"width-{width}-{view}")
        if width <= 767:
            assert serious(page) == []  # the phone layout too
