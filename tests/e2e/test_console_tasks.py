"""Every admin task of the console, by role, in real Chromium (Debian's ``chromium``
through Playwright) against one real gateway and mock for the module: keys (create
with limits, budget, models, team and expiry; the secret shown once and copied;
rotate; revoke), teams (create, edit budgets, delete), users (create against the
password policy, role, temporary grant, reset MFA, unlock), secrets (set, replace,
delete; never shown), the audit log (filters, pages), models (add with a pasted key,
test, disable, delete, health history); what an operator and a viewer see (and that
the API refuses what is hidden from them); sign-in failures, sign-out clearing the
screen, dialogs by keyboard; the main pages at 1920, 1024 and 375 px with no
horizontal overflow. Screenshots: test-artifacts/console/ (not in git).
"""

from __future__ import annotations

import base64
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, Locator, Page, expect

from gateway.security import totp
from tests.e2e.conftest import Mock
from tests.e2e.console_pages import (
    WIDTHS,
    go,
    open_page,
    overflow,
    shot,
    sign_in,
    unlabelled,
)
from tests.e2e.harness import MASTER_KEY, GatewayProcess, wait_until
from tests.ports import free_port

PASSWORD = "console-Pass-12345"
ADMIN, OPERATOR, VIEWER = "ops-admin", "ops-operator", "ops-viewer"
KEY_ENV = "CONSOLE_UPSTREAM_KEY"
ENV = {"GATEWAY_SECRETS_KEY": base64.b64encode(os.urandom(32)).decode(), KEY_ENV: "sk-upstream-k"}
VIEWS = ["models", "keys", "teams", "users", "secrets", "audit"]


def tasks_config(mock_url: str, down_url: str) -> str:
    v1 = f"{mock_url}/v1"
    price = "{input_per_1m: 10000, output_per_1m: 20000}"
    return f"""
auth: {{master_key: "${{GATEWAY_MASTER_KEY}}"}}
admin: {{scrypt_n: 16384, lockout: {{max_failures: 2, window_s: 600, duration_s: 600}}}}
router:
  retry: {{max_retries: 0}}
  breaker: {{consecutive_failures: 1, error_ratio: 1.0, window_s: 30, min_requests: 1000, cooldown_s: 600}}
health_checks: {{enabled: true, interval_s: 3, probes: [basic]}}
models:
  con-chat:
    deployments: [{{provider: openai, model: con-model, base_url: '{v1}', api_key: '${{{KEY_ENV}}}', price: {price}}}]
  con-down:
    deployments: [{{provider: openai, model: down-model, base_url: '{down_url}', api_key: '${{{KEY_ENV}}}'}}]
  con-embed:
    kind: embedding
    deployments: [{{provider: openai, model: con-embed-model, base_url: '{v1}', api_key: '${{{KEY_ENV}}}'}}]
"""


def bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


def login(gw: GatewayProcess, username: str, password: str = PASSWORD, **extra: Any) -> httpx.Response:
    return httpx.post(f"{gw.url}/admin/login", json={"username": username, "password": password, **extra}, timeout=30)


def make_user(gw: GatewayProcess, username: str, role: str) -> None:
    resp = gw.http.post("/admin/users", json={"username": username, "password": PASSWORD, "role": role})
    assert resp.status_code == 201, resp.text


def access(gw: GatewayProcess, username: str) -> str:
    resp = login(gw, username)
    assert resp.status_code == 200, resp.text
    return str(resp.json()["access_token"])


def breaker_of(gw: GatewayProcess, alias: str) -> str:
    rows = [row for row in gw.deployments().values() if row["alias"] == alias]
    assert len(rows) == 1
    return str(rows[0]["breaker"])


@pytest.fixture(scope="module")
def gw(mock: Mock, tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    down = f"http://127.0.0.1:{free_port()}/v1"  # nothing listens there
    gw = GatewayProcess(tasks_config(mock.url, down), Path(tmp_path_factory.mktemp("console-tasks")), extra_env=ENV)
    try:
        for username, role in ((ADMIN, "admin"), (OPERATOR, "operator"), (VIEWER, "viewer")):
            make_user(gw, username, role)
        assert gw.http.post("/admin/teams", json={"id": "red", "budget_daily_usd": 1.0}).status_code == 201
        yield gw
    finally:
        gw.stop()


@contextmanager
def as_admin(browser: Browser, gw: GatewayProcess, width: int = 1280) -> Iterator[Page]:
    with open_page(browser, width) as page:
        sign_in(page, gw, ADMIN, PASSWORD, "admin")
        yield page


def dialog_form(page: Page) -> Locator:
    form = page.locator("#form-dialog form")
    expect(form).to_be_visible()
    return form


def confirm(page: Page, action: str) -> None:
    dialog = page.locator("#confirm-dialog")
    expect(dialog).to_be_visible()
    expect(page.locator("#confirm-ok")).to_have_text(action)
    page.click("#confirm-ok")
    expect(dialog).to_be_hidden()


def note(page: Page, view: str) -> Locator:
    return page.locator(f"#{view}-view td.note")


# --- empty states ------------------------------------------------------------------


def test_empty_states_say_what_to_do_next(browser: Browser, gw: GatewayProcess) -> None:
    with open_page(browser) as page:
        sign_in(page, gw, ADMIN, PASSWORD, "admin")
        go(page, "keys")
        expect(note(page, "keys")).to_contain_text("No keys yet. Create one with New key.")
        expect(note(page, "keys").get_by_role("button", name="New key")).to_be_visible()
        shot(page, "tasks-01-keys-empty-admin")
        go(page, "secrets")
        expect(note(page, "secrets")).to_contain_text("No secrets yet. Save a provider key with New secret")
        expect(note(page, "secrets").get_by_role("button", name="New secret")).to_be_visible()
        expect(page.locator("#secrets-view")).to_contain_text("gateway secrets rotate")
    with open_page(browser) as page:
        sign_in(page, gw, VIEWER, PASSWORD, "viewer")
        go(page, "keys")
        expect(note(page, "keys")).to_have_text("No keys yet. An operator or admin can create one.")
        expect(page.locator("#keys-view button", has_text="New key")).to_have_count(0)
        shot(page, "tasks-02-keys-empty-viewer")


# --- keys ----------------------------------------------------------------------------


def test_admin_creates_copies_rotates_and_revokes_a_key(browser: Browser, gw: GatewayProcess) -> None:
    with as_admin(browser, gw) as page:
        go(page, "keys")
        page.click("#new-key")
        form = dialog_form(page)
        form.locator("[name=budget_daily_usd]").fill("-1")
        form.locator("[name=name]").fill("ci-bot")
        form.locator("button[type=submit]").click()
        expect(page.locator("#form-error")).to_contain_text("budget_daily_usd")  # the API names the field
        expect(form.locator("[name=budget_daily_usd]")).to_have_attribute("aria-invalid", "true")
        form.locator("[name=team]").select_option("red")
        form.locator("[name=models]").fill("con-chat")
        form.locator("[name=rpm]").fill("60")
        form.locator("[name=budget_daily_usd]").fill("5")
        form.locator("[name=expires_at]").fill("2030-01-02T03:04")
        shot(page, "tasks-03-new-key-form")
        form.locator("button[type=submit]").click()

        # the secret, once, with a copy button
        expect(page.locator("#secret-dialog")).to_be_visible()
        secret = page.locator("#secret-value").input_value()
        assert secret.startswith("sk-gw-")
        page.click("#secret-copy")
        expect(page.locator("#secret-copied")).to_have_text("Copied to the clipboard.")
        assert page.evaluate("navigator.clipboard.readText()") == secret
        shot(page, "tasks-04-key-secret-once")
        page.click("#secret-done")
        expect(page.locator("#secret-dialog")).to_be_hidden()
        expect(page.locator("#secret-value")).to_have_value("")  # the secret left the page
        assert secret not in page.content()

        record = next(k for k in gw.http.get("/admin/keys").json()["data"] if k["name"] == "ci-bot")
        assert (record["team"], record["models"], record["rpm"], record["budget_daily_usd"]) == (
            "red",
            ["con-chat"],
            60,
            5.0,
        )
        expires = datetime.fromisoformat(record["expires_at"])
        assert (
            abs((expires - datetime(2030, 1, 2, 3, 4, tzinfo=UTC)).total_seconds()) <= 14 * 3600
        )  # the browser's zone
        row = page.locator(f"#keys-table tr[data-id='{record['id']}']")
        expect(row).to_contain_text("60 rpm")
        expect(row).to_contain_text("$5.00/day")
        expect(row.locator("td[data-label=state]")).to_have_text("active")
        chat = {"model": "con-chat", "messages": [{"role": "user", "content": "hi"}]}
        assert (
            httpx.post(f"{gw.url}/v1/chat/completions", json=chat, headers=bearer(secret), timeout=30).status_code
            == 200
        )

        # rotate: Esc cancels; confirmed, a new secret is shown once and the old one stops working
        row.get_by_role("button", name="Rotate key ci-bot").click()
        expect(page.locator("#confirm-dialog")).to_be_visible()
        page.keyboard.press("Escape")
        expect(page.locator("#confirm-dialog")).to_be_hidden()
        assert gw.http.get(f"/admin/keys/{record['id']}").json()["key_hint"] == record["key_hint"]
        row.get_by_role("button", name="Rotate key ci-bot").click()
        confirm(page, "Rotate")
        expect(page.locator("#secret-dialog")).to_be_visible()
        rotated = page.locator("#secret-value").input_value()
        assert rotated.startswith("sk-gw-") and rotated != secret
        page.click("#secret-done")
        old = httpx.post(f"{gw.url}/v1/chat/completions", json=chat, headers=bearer(secret), timeout=30)
        assert old.status_code == 401

        # revoke
        row.get_by_role("button", name="Revoke key ci-bot").click()
        confirm(page, "Revoke")
        expect(row.locator("td[data-label=state]")).to_have_text("revoked")
        assert gw.http.get(f"/admin/keys/{record['id']}").json()["revoked_at"]
        refused = httpx.post(f"{gw.url}/v1/chat/completions", json=chat, headers=bearer(rotated), timeout=30)
        assert refused.status_code == 401
        expect(page.locator("#status")).to_have_class("good")
        shot(page, "tasks-05-keys")


# --- teams ---------------------------------------------------------------------------


def test_admin_creates_edits_and_deletes_a_team(browser: Browser, gw: GatewayProcess) -> None:
    with as_admin(browser, gw) as page:
        go(page, "teams")
        page.click("#new-team")
        form = dialog_form(page)
        form.locator("[name=id]").fill("red")
        form.locator("button[type=submit]").click()
        expect(page.locator("#form-error")).to_contain_text("exists")  # never replaced by a create
        form.locator("[name=id]").fill("blue")
        form.locator("[name=name]").fill("Blue team")
        form.locator("[name=budget_daily_usd]").fill("2")
        form.locator("[name=budget_monthly_usd]").fill("40")
        form.locator("button[type=submit]").click()
        row = page.locator("#teams-table tr[data-team=blue]")
        expect(row.locator("td[data-label='daily budget']")).to_have_text("$2.00")
        expect(row.locator("td[data-label='monthly budget']")).to_have_text("$40.00")
        assert gw.http.get("/admin/teams/blue").json()["budget_monthly_usd"] == 40.0
        assert gw.http.get("/admin/teams/red").json()["budget_daily_usd"] == 1.0

        row.get_by_role("button", name="Edit team blue").click()
        form = dialog_form(page)
        expect(form.locator("[name=id]")).to_have_attribute("readonly", "")
        form.locator("[name=budget_daily_usd]").fill("3")
        form.locator("[name=budget_monthly_usd]").fill("")  # blank: no monthly budget
        form.locator("button[type=submit]").click()
        expect(row.locator("td[data-label='daily budget']")).to_have_text("$3.00")
        team = gw.http.get("/admin/teams/blue").json()
        assert team["budget_daily_usd"] == 3.0 and team.get("budget_monthly_usd") is None
        assert team["name"] == "Blue team"
        shot(page, "tasks-06-teams")

        row.get_by_role("button", name="Delete team blue").click()
        confirm(page, "Delete")
        expect(row).to_have_count(0)
        assert gw.http.get("/admin/teams/blue").status_code == 404


# --- users ---------------------------------------------------------------------------


def test_admin_manages_users_roles_grants_mfa_and_lockouts(browser: Browser, gw: GatewayProcess) -> None:
    # a user with a second factor, and one locked out by failed sign-ins (this gateway locks at two)
    make_user(gw, "twofa", "viewer")
    token = access(gw, "twofa")
    secret = httpx.post(f"{gw.url}/admin/me/totp", headers=bearer(token), timeout=30).json()["secret"]
    code = totp.code_at(secret, time.time())
    assert httpx.post(
        f"{gw.url}/admin/me/totp/confirm", json={"code": code}, headers=bearer(token), timeout=30
    ).is_success
    make_user(gw, "locky", "viewer")
    assert [login(gw, "locky", "wrong-Password-1").status_code for _ in range(2)][-1] == 403
    assert gw.http.get("/admin/users/locky").json()["locked_until"]

    with as_admin(browser, gw) as page:
        go(page, "users")
        page.click("#new-user")
        form = dialog_form(page)
        form.locator("[name=username]").fill("newbie")
        form.locator("[name=password]").fill("short")
        form.locator("[name=role]").select_option("viewer")
        form.locator("button[type=submit]").click()
        # the policy's refusal as the API words it, on the field it names
        expect(page.locator("#form-error")).to_contain_text("password is refused by the password policy (rule length)")
        expect(form.locator("[name=password]")).to_have_attribute("aria-invalid", "true")
        form.locator("[name=password]").fill("Strong-Pass-Word-9x")
        form.locator("button[type=submit]").click()
        row = page.locator("#users-table tr[data-user=newbie]")
        expect(row.locator("td[data-label=role]")).to_have_text("viewer")
        me = page.locator(f"#users-table tr[data-user={ADMIN}]")  # no locking yourself out from here
        expect(me.get_by_role("button")).to_have_count(0)
        expect(me.locator("td[data-label=actions]")).to_contain_text("you")

        row.get_by_role("button", name="Change the role of newbie").click()
        dialog_form(page).locator("[name=role]").select_option("operator")
        page.locator("#form-dialog button[type=submit]").click()
        expect(row.locator("td[data-label=role]")).to_have_text("operator")
        assert gw.http.get("/admin/users/newbie").json()["role"] == "operator"

        row.get_by_role("button", name="Grant newbie a temporary role").click()
        form = dialog_form(page)
        form.locator("[name=role]").select_option("admin")
        form.locator("[name=hours]").fill("2")
        form.locator("[name=reason]").fill("on call tonight")
        form.locator("button[type=submit]").click()
        grant = page.locator("#grants-table tbody tr").first
        expect(grant.locator("td[data-label=state]")).to_have_text("active")
        expect(row.locator("td[data-label=role]")).to_have_text("operator (now admin, granted)")
        listed = gw.http.get("/admin/users/newbie/grants").json()
        assert listed["effective_role"] == "admin" and listed["data"][0]["reason"] == "on call tonight"
        left = datetime.fromisoformat(listed["data"][0]["expires_at"]) - datetime.now(UTC)
        assert 1.9 * 3600 < left.total_seconds() <= 2 * 3600
        shot(page, "tasks-07-users-grant")
        grant.get_by_role("button", name="Revoke the admin grant").click()
        confirm(page, "Revoke")
        expect(page.locator("#grants-table td.note")).to_have_text("No grants. Grant gives a temporary role.")
        assert gw.http.get("/admin/users/newbie/grants").json()["effective_role"] == "operator"

        # reset MFA and unlock exist only where they apply
        expect(row.get_by_role("button", name="Reset MFA of newbie")).to_have_count(0)
        expect(row.get_by_role("button", name="Unlock newbie")).to_have_count(0)
        twofa = page.locator("#users-table tr[data-user=twofa]")
        expect(twofa.locator("td[data-label=MFA]")).to_have_text("on")
        twofa.get_by_role("button", name="Reset MFA of twofa").click()
        confirm(page, "Reset MFA")
        expect(twofa.locator("td[data-label=MFA]")).to_have_text("off")
        assert gw.http.get("/admin/users/twofa").json()["totp_enabled"] is False
        locky = page.locator("#users-table tr[data-user=locky]")
        expect(locky.locator("td[data-label=state]")).to_contain_text("locked until")
        locky.get_by_role("button", name="Unlock locky").click()
        expect(locky.locator("td[data-label=state]")).to_have_text("active")
        assert gw.http.get("/admin/users/locky").json()["locked_until"] is None
        assert login(gw, "locky").status_code == 200
        shot(page, "tasks-08-users")


# --- secrets -------------------------------------------------------------------------


def test_admin_sets_replaces_and_deletes_a_secret_never_shown(browser: Browser, gw: GatewayProcess) -> None:
    value, replaced = "sk-live-provider-value-0001", "sk-live-provider-value-0002"
    with as_admin(browser, gw) as page:
        go(page, "secrets")
        page.click("#new-secret")
        form = dialog_form(page)
        form.locator("[name=name]").fill("openai-prod")
        form.locator("[name=value]").fill(value)
        form.locator("button[type=submit]").click()
        row = page.locator("#secrets-table tr[data-secret=openai-prod]")
        expect(row.locator("td[data-label=reference]")).to_have_text("secret:openai-prod")
        expect(page.locator("#status")).to_contain_text("refer to it as secret:openai-prod")
        first = gw.http.get("/admin/secrets/openai-prod").json()

        row.get_by_role("button", name="Replace secret openai-prod").click()
        form = dialog_form(page)
        expect(form.locator("[name=name]")).to_have_value("openai-prod")
        form.locator("[name=value]").fill(replaced)
        form.locator("button[type=submit]").click()
        expect(page.locator("#status")).to_contain_text("Replaced secret openai-prod")
        assert gw.http.get("/admin/secrets/openai-prod").json()["updated_at"] >= first["updated_at"]
        content = page.content()
        assert value not in content and replaced not in content
        shot(page, "tasks-09-secrets")

        row.get_by_role("button", name="Delete secret openai-prod").click()
        confirm(page, "Delete")
        expect(row).to_have_count(0)
        assert gw.http.get("/admin/secrets/openai-prod").status_code == 404


# --- models --------------------------------------------------------------------------


def model_row(page: Page, alias: str) -> Locator:
    return page.locator(f"#models-table tbody tr[data-alias='{alias}']")


def test_admin_adds_a_model_with_a_pasted_key_tests_disables_and_deletes_it(
    browser: Browser, gw: GatewayProcess, mock: Mock
) -> None:
    pasted = "sk-pasted-upstream-key-0001"
    with as_admin(browser, gw) as page:
        page.click("#add-model")
        form = page.locator("#model-form")
        form.locator("[name=name]").fill("con-pasted")
        deployment = page.locator("#deployments-table tbody tr").first
        deployment.locator("[name=model]").fill("con-model")
        deployment.locator("[name=base_url]").fill(f"{mock.url}/v1")
        deployment.locator("[name=api_key]").fill(pasted)
        form.locator("button[type=submit]").click()
        expect(page.locator("#status")).to_have_text("Saved con-pasted.")
        stored = gw.http.get("/admin/models/con-pasted").json()
        assert pasted not in str(stored)  # stored encrypted, shown masked

        model_row(page, "con-pasted").locator("button.test").click()
        expect(page.locator("#tests-table td.result", has_text="passed")).to_have_count(4)
        expect(page.locator("#tests-summary")).to_have_class("good")
        expect(page.locator("#status")).to_have_class("good")
        expect(model_row(page, "con-pasted").locator("td.health")).to_have_class("health good")

        model_row(page, "con-pasted").get_by_role("button", name="Disable con-pasted").click()
        expect(model_row(page, "con-pasted").locator("td[data-label=state]")).to_have_text("disabled")
        expect(model_row(page, "con-pasted").locator("button.test")).to_be_disabled()
        model_row(page, "con-pasted").get_by_role("button", name="Enable con-pasted").click()
        expect(model_row(page, "con-pasted").locator("td[data-label=state]")).to_have_text("serving")

        model_row(page, "con-pasted").get_by_role("button", name="Delete con-pasted").click()
        confirm(page, "Delete")
        expect(model_row(page, "con-pasted")).to_have_count(0)
        assert gw.http.get("/admin/models/con-pasted").status_code == 404
        # a config-file alias cannot be deleted: no such button
        expect(model_row(page, "con-chat").get_by_role("button", name="Delete con-chat")).to_have_count(0)

        # health history: the scheduled checks (every 3 s here)
        assert wait_until(
            lambda: any(
                d["checks"] for d in gw.http.get("/admin/health").json()["deployments"] if d["alias"] == "con-chat"
            ),
            15,
        )
        page.click("#refresh-models")
        model_row(page, "con-chat").get_by_role("button", name="Health history of con-chat").click()
        history = page.locator("#history-table tbody tr").first
        expect(history.locator(".strip .ok").first).to_be_visible()
        expect(history.locator("td[data-label=score]")).to_have_class("health good")
        shot(page, "tasks-10-models-history")


def test_an_unreachable_model_fails_its_test_in_red_and_leaves_the_breaker_closed(
    browser: Browser, gw: GatewayProcess
) -> None:
    assert breaker_of(gw, "con-down") == "closed"
    with as_admin(browser, gw) as page:
        model_row(page, "con-down").locator("button.test").click()
        expect(page.locator("#tests-table td.result", has_text="failed")).to_have_count(4)
        expect(page.locator("#tests-summary")).to_have_text("Tested con-down: health score 0/100.")
        expect(page.locator("#tests-summary")).to_have_class("bad")
        expect(page.locator("#status")).to_have_class("error")  # never a green banner for 0/100
        expect(model_row(page, "con-down").locator("td.health")).to_have_class("health bad")
        reasons = page.locator("#tests-table td[data-label=reason]")
        expect(reasons.nth(0)).not_to_have_text("")
        for i in (1, 2, 3):  # the same reason once, not four times
            expect(reasons.nth(i)).to_have_text("same as basic")
        expect(page.locator("#tests-reasons")).to_contain_text("cannot reach the upstream")
        shot(page, "tasks-11-unreachable-test")
    assert breaker_of(gw, "con-down") == "closed"  # the test's failures stayed with the test
    # a client request that fails the same way does open it (consecutive_failures: 1)
    chat = {"model": "con-down", "messages": [{"role": "user", "content": "hi"}]}
    assert (
        httpx.post(f"{gw.url}/v1/chat/completions", json=chat, headers=bearer(MASTER_KEY), timeout=30).status_code
        >= 500
    )
    assert breaker_of(gw, "con-down") == "open"


# --- the audit log -------------------------------------------------------------------


def test_audit_log_filters_and_pages(browser: Browser, gw: GatewayProcess) -> None:
    made = gw.http.post("/admin/keys", json={"name": "audited"}).json()
    assert gw.http.post(f"/admin/keys/{made['id']}/rotate").status_code == 200
    assert gw.http.delete(f"/admin/keys/{made['id']}").status_code == 200
    for i in range(55):  # more than a page (50) of one action
        assert gw.http.patch("/admin/teams/red", json={"name": f"Red {i}"}).status_code == 200
    with as_admin(browser, gw) as page:
        go(page, "audit")
        rows = page.locator("#audit-table tbody tr")
        expect(rows).to_have_count(50)
        newest = rows.first.get_attribute("data-seq")
        page.click("#audit-older")
        expect(page.locator("#audit-newer")).to_be_visible()
        expect(rows.first).not_to_have_attribute("data-seq", newest or "")
        assert int(rows.first.get_attribute("data-seq") or 0) < int(newest or 0)
        page.click("#audit-newer")
        expect(rows.first).to_have_attribute("data-seq", newest or "")

        page.fill("#audit-filters [name=action]", "keys.")
        page.click("#audit-filters button[type=submit]")
        expect(rows.first.locator("td[data-label=action]")).to_contain_text("keys.")
        actions = rows.locator("td[data-label=action]").all_inner_texts()
        assert {"keys.create", "keys.rotate", "keys.revoke"} <= set(actions) and all(
            a.startswith("keys.") for a in actions
        )

        page.fill("#audit-filters [name=action]", "")
        page.fill("#audit-filters [name=actor]", ADMIN)
        page.click("#audit-filters button[type=submit]")
        expect(rows.first.locator("td[data-label=actor]")).to_contain_text(ADMIN)
        assert all(a.startswith(ADMIN) for a in rows.locator("td[data-label=actor]").all_inner_texts())

        page.fill("#audit-filters [name=to]", "2001-01-01T00:00")
        page.click("#audit-filters button[type=submit]")
        expect(page.locator("#audit-table td.note")).to_have_text(
            "No records match these filters. Widen the time range or clear a filter."
        )
        page.fill("#audit-filters [name=to]", "")
        page.fill("#audit-filters [name=from]", datetime.now().strftime("%Y-%m-%dT00:00"))
        page.fill("#audit-filters [name=actor]", "")
        page.fill("#audit-filters [name=action]", "teams.update")
        page.click("#audit-filters button[type=submit]")
        expect(rows).to_have_count(50)
        shot(page, "tasks-12-audit")


# --- roles ---------------------------------------------------------------------------


def nav_names(page: Page) -> list[str]:
    return page.locator("#nav a").all_inner_texts()


def test_an_operator_sees_exactly_what_they_may(browser: Browser, gw: GatewayProcess) -> None:
    with open_page(browser) as page:
        sign_in(page, gw, OPERATOR, PASSWORD, "operator")
        assert nav_names(page) == ["Live", "Models", "Keys", "Teams & budgets", "Playground", "Reports", "Secrets"]
        models = page.locator("#models-view")
        for hidden in ("#add-model", "button:text-is('Edit')", "button.danger"):
            expect(models.locator(hidden)).to_have_count(0)
        expect(model_row(page, "con-chat").locator("button.test")).to_be_enabled()
        expect(model_row(page, "con-chat").get_by_role("button", name="Disable con-chat")).to_be_visible()
        expect(page.locator("#test-all")).to_be_visible()
        go(page, "keys")
        expect(page.locator("#new-key")).to_be_visible()
        go(page, "teams")
        expect(page.locator("#new-team")).to_have_count(0)
        expect(page.locator("#teams-view button", has_text="Edit")).to_have_count(0)
        expect(page.locator("#teams-view button", has_text="Delete")).to_have_count(0)
        go(page, "secrets")
        expect(page.locator("#new-secret")).to_have_count(0)
        expect(page.locator("#secrets-view button", has_text="Replace")).to_have_count(0)
        page.goto(gw.url + "/console/#users")  # not theirs: the first view they may open
        expect(page.locator("#live-view")).to_be_visible()
        expect(page.locator("#users-view")).to_be_hidden()
        shot(page, "tasks-13-operator")
    # what is hidden from them the API refuses anyway
    token = bearer(access(gw, OPERATOR))
    for method, path, body in [
        ("POST", "/admin/models", {"name": "x"}),
        ("PATCH", "/admin/models/con-chat", {"description": "x"}),
        ("DELETE", "/admin/models/con-chat", None),
        ("POST", "/admin/teams", {"id": "x"}),
        ("DELETE", "/admin/teams/red", None),
        ("PUT", "/admin/secrets/x", {"value": "x"}),
        ("GET", "/admin/users", None),
        ("GET", "/admin/audit", None),
    ]:
        resp = httpx.request(method, gw.url + path, json=body, headers=token, timeout=30)
        assert resp.status_code == 403, (method, path, resp.text)


def test_a_viewer_sees_no_write_controls(browser: Browser, gw: GatewayProcess) -> None:
    with open_page(browser) as page:
        sign_in(page, gw, VIEWER, PASSWORD, "viewer")
        assert nav_names(page) == ["Live", "Models", "Keys", "Teams & budgets", "Playground", "Reports"]
        for view in ("models", "keys", "teams"):
            go(page, view)
            labels = set(page.locator(f"#{view}-view button:visible").all_inner_texts())
            assert labels <= {"Refresh", "History"}, (view, labels)
        shot(page, "tasks-14-viewer")
    token = bearer(access(gw, VIEWER))
    for method, path in [
        ("POST", "/admin/keys"),
        ("POST", "/admin/models/con-chat/test"),
        ("POST", "/admin/models/con-chat/disable"),
        ("GET", "/admin/secrets"),
    ]:
        resp = httpx.request(
            method, gw.url + path, json={"name": "x"} if path == "/admin/keys" else None, headers=token, timeout=30
        )
        assert resp.status_code == 403, (method, path, resp.text)


# --- sign-in and sign-out -----------------------------------------------------------


def test_sign_in_failures_say_what_to_do_and_sign_out_clears_the_screen(browser: Browser, gw: GatewayProcess) -> None:
    assert gw.http.post("/admin/keys", json={"name": "shown-then-cleared"}).status_code == 201
    with open_page(browser) as page:
        page.goto(gw.url + "/console/")
        page.fill("#login-form [name=username]", "nobody-here")
        page.fill("#login-form [name=password]", "Wrong-Password-1")
        page.click("#login-form button[type=submit]")
        status = page.locator("#status")
        expect(status).to_have_class("error")
        expect(status).to_contain_text("the username, password or one-time code is wrong")
        expect(status).to_contain_text("try again")
        expect(status).not_to_contain_text("Signed out")
        page.fill("#key-form [name=key]", "sk-not-the-master-key")
        page.click("#key-form button[type=submit]")
        expect(status).to_contain_text("The master key was not accepted")
        expect(page.locator("#login-view")).to_be_visible()
        shot(page, "tasks-15-sign-in-failed")

        sign_in(page, gw, ADMIN, PASSWORD, "admin")
        model_row(page, "con-chat").locator("button.test").click()
        expect(page.locator("#tests-table td.result", has_text="passed")).to_have_count(4)
        go(page, "keys")
        expect(page.locator("#keys-table tbody tr[data-id]").first).to_be_visible()
        page.click("#logout")
        expect(page.locator("#status")).to_have_text("Signed out.")
        for view in VIEWS:
            expect(page.locator(f"#{view}-view > *")).to_have_count(0)
        assert page.evaluate("sessionStorage.length") == 0

        sign_in(page, gw, VIEWER, PASSWORD, "viewer")  # the same tab, another user
        expect(page.locator("#tests")).to_be_hidden()
        expect(page.locator("#tests-table tbody tr")).to_have_count(0)
        expect(page.locator("#keys-view > *")).to_have_count(0)
        shot(page, "tasks-16-new-sign-in-clean")


# --- keyboard and labels -------------------------------------------------------------


def focus_inside(page: Page, dialog: str) -> bool:
    return bool(page.evaluate(f"document.querySelector('{dialog}').contains(document.activeElement)"))


def test_dialogs_trap_focus_close_on_escape_and_every_control_is_labelled(browser: Browser, gw: GatewayProcess) -> None:
    made = gw.http.post("/admin/keys", json={"name": "kbd-key"}).json()
    with as_admin(browser, gw) as page:
        assert unlabelled(page) == []
        page.click("#add-model")
        assert unlabelled(page) == []  # the model form, with a deployment row
        page.keyboard.press("Escape")
        expect(page.locator("#model-form")).to_be_hidden()

        # the navigation by keyboard
        page.focus("#nav a[data-view=keys]")
        page.keyboard.press("Enter")
        expect(page.locator("#keys-view")).to_be_visible()
        expect(page.locator("#keys-table tbody tr[data-id]").first).to_be_visible()
        assert unlabelled(page) == []

        page.locator(f"#keys-table tr[data-id='{made['id']}']").get_by_role("button", name="Revoke key kbd-key").click()
        expect(page.locator("#confirm-dialog")).to_be_visible()
        assert page.evaluate("document.activeElement.id") == "confirm-cancel"  # the safe choice first
        for key in ["Tab", "Tab", "Tab", "Shift+Tab", "Shift+Tab", "Shift+Tab"]:
            page.keyboard.press(key)
            assert focus_inside(page, "#confirm-dialog"), key
        page.keyboard.press("Escape")
        expect(page.locator("#confirm-dialog")).to_be_hidden()
        assert gw.http.get(f"/admin/keys/{made['id']}").json()["revoked_at"] is None

        page.click("#new-key")
        dialog_form(page)
        assert unlabelled(page) == []
        for _ in range(25):  # more than the form's controls: focus wraps around inside
            page.keyboard.press("Tab")
            assert focus_inside(page, "#form-dialog")
        page.keyboard.press("Escape")
        expect(page.locator("#form-dialog")).to_be_hidden()
        assert page.evaluate("document.activeElement.id") == "new-key"  # focus goes back to the opener
        for view in ("teams", "users", "secrets", "audit"):
            go(page, view)
            assert unlabelled(page) == [], view


# --- widths --------------------------------------------------------------------------


@pytest.mark.parametrize("device", list(WIDTHS))
def test_main_pages_fit_each_width(browser: Browser, gw: GatewayProcess, device: str) -> None:
    width = WIDTHS[device]
    with open_page(browser, width, 900 if width > 767 else 800) as page:
        sign_in(page, gw, ADMIN, PASSWORD, "admin")
        phone = width <= 767
        if phone:  # the navigation behind the Menu button
            expect(page.locator("#menu-toggle")).to_be_visible()
            expect(page.locator("#nav")).to_be_hidden()
        else:
            expect(page.locator("#menu-toggle")).to_be_hidden()
            expect(page.locator("#nav")).to_be_visible()
        for view in VIEWS:
            go(page, view)
            if phone:
                expect(page.locator("#nav")).to_be_hidden()  # the menu closes once a view is chosen
            assert overflow(page) <= 0, (device, view, overflow(page))
            row = page.locator(f"#{view}-table tbody tr").first
            display = row.evaluate("(tr) => getComputedStyle(tr).display")
            assert display == ("block" if phone else "table-row"), (device, view, display)
            shot(page, f"width-{width}-{view}")
        go(page, "keys")
        page.click("#new-key")
        dialog_form(page)
        assert overflow(page) <= 0
        shot(page, f"width-{width}-new-key-dialog")
