"""Issue 18's "done when", in real Chromium at each of the manual's three widths: a new
admin, from the console alone, adds a provider model with a pasted upstream key (the mock
refuses any other key), tests it, creates a team with a budget and a key for it, sends a
chat from the playground with that key, and watches the request and its cost appear in
the live view (and the team's spend against its budget), with no horizontal overflow on
the way. The price comes from the gateway's price table (config/prices.yaml: gpt-4o-mini).
Screenshots: test-artifacts/console/journey-<width>-*.png (not in git).
"""

from __future__ import annotations

import base64
import os
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect

from tests.e2e.conftest import Mock
from tests.e2e.console_pages import WIDTHS, go, open_page, overflow, shot, sign_in
from tests.e2e.harness import GatewayProcess

PASSWORD = "console-Pass-12345"
NEWCOMER = "new-admin"
UPSTREAM_KEY = "sk-journey-upstream-0001"
MODEL = "gpt-4o-mini"  # priced by config/prices.yaml
COST = re.compile(r"^\$0\.0*[1-9]\d*$")
"""A small, non-zero cost as the console shows it."""
WITHIN_REFRESH_MS = 15_000
"""Two of the live view's 5 s refreshes, and some."""


@pytest.fixture(scope="module")
def gw(mock: Mock, tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    config = (
        'auth: {master_key: "${GATEWAY_MASTER_KEY}"}\nadmin: {scrypt_n: 16384}\nrouter: {retry: {max_retries: 0}}\n'
    )
    env = {"GATEWAY_SECRETS_KEY": base64.b64encode(os.urandom(32)).decode()}
    gw = GatewayProcess(config, Path(tmp_path_factory.mktemp("console-journey")), extra_env=env)
    try:
        made = gw.http.post("/admin/users", json={"username": NEWCOMER, "password": PASSWORD, "role": "admin"})
        assert made.status_code == 201, made.text
        yield gw
    finally:
        gw.stop()


def fits(page: Page, where: str) -> None:
    assert overflow(page) <= 0, (where, overflow(page))


@pytest.mark.parametrize("device", list(WIDTHS))
def test_a_new_admin_goes_from_a_model_to_a_chat_and_its_cost(
    browser: Browser, gw: GatewayProcess, mock: Mock, device: str
) -> None:
    width = WIDTHS[device]
    alias, team = f"journey-{width}", f"team-{width}"
    mock.behave(MODEL, require_api_key=UPSTREAM_KEY, tokens_per_s=40)
    with open_page(browser, width, 900 if width > 767 else 800) as page:
        sign_in(page, gw, NEWCOMER, PASSWORD, "admin")

        # a provider model with a pasted key, then its connection test
        page.click("#add-model")
        form = page.locator("#model-form")
        form.locator("[name=name]").fill(alias)
        deployment = page.locator("#deployments-table tbody tr").first
        deployment.locator("[name=model]").fill(MODEL)
        deployment.locator("[name=base_url]").fill(f"{mock.url}/v1")
        deployment.locator("[name=api_key]").fill(UPSTREAM_KEY)
        fits(page, "model form")
        form.locator("button[type=submit]").click()
        expect(page.locator("#status")).to_have_text(f"Saved {alias}.")
        row = page.locator(f"#models-table tbody tr[data-alias='{alias}']")
        row.locator("button.test").click()
        expect(page.locator("#tests-table td.result", has_text="passed")).to_have_count(4)
        fits(page, "connection test")
        shot(page, f"journey-{width}-1-model-tested")

        # a team with a daily budget, and a key for it (its secret shown once)
        go(page, "teams")
        page.click("#new-team")
        dialog = page.locator("#form-dialog form")
        dialog.locator("[name=id]").fill(team)
        dialog.locator("[name=budget_daily_usd]").fill("3")
        dialog.locator("button[type=submit]").click()
        expect(page.locator(f"#teams-table tr[data-team='{team}'] td[data-label='daily budget']")).to_have_text("$3.00")
        go(page, "keys")
        page.click("#new-key")
        dialog.locator("[name=name]").fill(f"key-{width}")
        dialog.locator("[name=team]").select_option(team)
        dialog.locator("button[type=submit]").click()
        expect(page.locator("#secret-dialog")).to_be_visible()
        secret = page.locator("#secret-value").input_value()
        fits(page, "key secret")
        page.click("#secret-done")
        shot(page, f"journey-{width}-2-team-and-key")

        # a chat from the playground, charged to that key, streamed
        go(page, "playground")
        play = page.locator("#play-form")
        play.locator("select[name=model]").select_option(alias)
        play.locator("input[name=key]").fill(secret)
        play.locator("textarea[name=message]").fill("Hello from a new admin")
        play.locator("button[type=submit]").click()
        expect(page.locator("#play-meta dd[data-field=cost]")).to_have_text(COST)
        rid = page.locator("#play-meta dd[data-field='request id']").inner_text()
        assert rid.startswith("req_") and page.locator("#play-answer").inner_text().strip()
        fits(page, "playground")
        shot(page, f"journey-{width}-3-playground")

        # the request and its cost in the live view, and the team's spend against its budget
        go(page, "live")
        request = page.locator(f"#live-requests tr[data-rid='{rid}']")
        expect(request).to_be_visible(timeout=WITHIN_REFRESH_MS)
        expect(request.locator("td[data-label=alias]")).to_have_text(alias)
        expect(request.locator("td[data-label=cost]")).to_have_text(COST)
        spend = page.locator(f"#live-teams tr[data-team='{team}'] td[data-label='spend today']")
        expect(spend).to_have_text(COST, timeout=WITHIN_REFRESH_MS)
        fits(page, "live")
        shot(page, f"journey-{width}-4-live")
