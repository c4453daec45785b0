"""The admin console end to end: Debian's chromium, headless, driven by
Playwright against a real gateway and mock. Screenshots of each step are kept
in test-artifacts/console/ (not in git). Every admin task by role, and the widths:
tests/e2e/test_console_tasks.py.

Needs the OS package ``chromium`` (scripts/install-os-deps.sh); Playwright's
own browser downloads are never used. ``CHROMIUM`` overrides the binary.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, Dialog, Locator, Page, Request, expect

from tests.e2e.conftest import Mock
from tests.e2e.console_pages import open_page
from tests.e2e.harness import MASTER_KEY, ROOT, GatewayProcess

ARTIFACTS = ROOT / "test-artifacts" / "console"
PROBES = ["basic", "korean", "evaluation", "analysis"]
USER, PASSWORD = "ops-admin", "console-Pass-12345"
EVIL = "<img src=x onerror=alert(1)>"
"""A name that is markup: shown as text it is harmless; parsed as HTML its handler would run."""
KEY_ENV = "CONSOLE_UPSTREAM_KEY"
"""The upstream key: models added through the API may only reference variables the config file uses."""


def console_config(mock_url: str, more_models: str = "") -> str:
    v1 = f"{mock_url}/v1"
    price = "{input_per_1m: 10000, output_per_1m: 20000}"
    return f"""
auth: {{master_key: "${{GATEWAY_MASTER_KEY}}"}}
router:
  retry: {{max_retries: 0}}
models:
  con-chat:
    deployments: [{{provider: openai, model: con-model, base_url: '{v1}', api_key: '${{{KEY_ENV}}}', price: {price}}}]
  con-embed:
    kind: embedding
    deployments: [{{provider: openai, model: con-embed-model, base_url: '{v1}', api_key: '${{{KEY_ENV}}}'}}]
{more_models}"""


@pytest.fixture(scope="module")
def gw(mock: Mock, tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    gw = GatewayProcess(
        console_config(mock.url), Path(tmp_path_factory.mktemp("console")), extra_env={KEY_ENV: "sk-upstream-k"}
    )
    try:
        assert gw.http.post("/admin/teams", json={"id": "red", "budget_daily_usd": 1.0}).status_code == 201
        user = gw.http.post("/admin/users", json={"username": USER, "password": PASSWORD, "role": "admin"})
        assert user.status_code == 201, user.text
        key = gw.http.post("/admin/keys", json={"name": "console-key", "team": "red"}).json()["key"]
        with httpx.Client(base_url=gw.url, timeout=30, headers={"authorization": f"Bearer {key}"}) as client:
            for i in range(3):
                body = {"model": "con-chat", "temperature": 0.1 * i, "messages": [{"role": "user", "content": "hi"}]}
                assert client.post("/v1/chat/completions", json=body).status_code == 200
        yield gw
    finally:
        gw.stop()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    with open_page(browser) as opened:
        yield opened


def shot(page: Page, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def sign_in(page: Page, gw: GatewayProcess) -> None:
    page.goto(gw.url + "/console")
    page.fill("#login-form [name=username]", USER)
    page.fill("#login-form [name=password]", PASSWORD)
    page.click("#login-form button[type=submit]")
    expect(page.locator("#who")).to_have_text(f"{USER} (admin)")
    expect(page.locator("#live-view")).to_be_visible()  # the view after sign-in
    page.click("#nav a[data-view=models]")


def model_row(page: Page, alias: str) -> Locator:
    return page.locator(f"#models-table tbody tr[data-alias='{alias}']")


def test_console_is_served_with_a_strict_policy(gw: GatewayProcess) -> None:
    resp = httpx.get(gw.url + "/console", follow_redirects=True, timeout=10)
    assert resp.status_code == 200 and str(resp.url).endswith("/console/")
    policy = resp.headers["content-security-policy"]
    assert "script-src 'self'" in policy and "unsafe-inline" not in policy and "unsafe-eval" not in policy
    assert resp.headers["x-frame-options"] == "DENY" and "frame-ancestors 'none'" in policy
    assert '<script type="module" src="js/main.js">' in resp.text
    assert "<style" not in resp.text and " style=" not in resp.text and " on" + "click=" not in resp.text
    static = ROOT / "gateway" / "console" / "static"
    modules = sorted(p.relative_to(static).as_posix() for p in static.rglob("*.js"))
    assert "js/main.js" in modules and len(modules) >= 10  # the core and one module per view
    for name in modules:  # every module with the same headers (a module script needs a JavaScript type)
        js = httpx.get(f"{gw.url}/console/{name}", timeout=10)
        assert js.status_code == 200 and "javascript" in js.headers["content-type"], name
        assert js.headers["content-security-policy"] == policy and js.headers["x-frame-options"] == "DENY"
    assert httpx.get(gw.url + "/console/missing.js", timeout=10).status_code == 404


def test_login_models_add_test_keys_and_budgets(page: Page, gw: GatewayProcess, mock: Mock) -> None:
    sign_in(page, gw)
    # models with their health
    expect(model_row(page, "con-chat")).to_be_visible()
    expect(model_row(page, "con-chat").locator("td.health")).to_have_text("not checked")
    expect(model_row(page, "con-embed").locator("button.test")).to_be_disabled()
    shot(page, "01-models")

    # add a model through the form
    page.click("#add-model")
    form = page.locator("#model-form")
    form.locator("[name=name]").fill("con-added")
    form.locator("[name=description]").fill("added from the console")
    row = page.locator("#deployments-table tbody tr").first
    row.locator("[name=provider]").select_option("openai")
    row.locator("[name=model]").fill("con-added-model")
    row.locator("[name=base_url]").fill(f"{mock.url}/v1")
    row.locator("[name=api_key]").fill("${" + KEY_ENV + "}")
    shot(page, "02-add-model-form")
    form.locator("button[type=submit]").click()
    expect(page.locator("#status")).to_have_text("Saved con-added.")
    expect(model_row(page, "con-added")).to_be_visible()
    stored = gw.http.get("/admin/models/con-added").json()
    assert stored["description"] == "added from the console"
    assert stored["deployments"][0]["base_url"] == f"{mock.url}/v1"

    # test connection: four results, as the API reports them
    model_row(page, "con-added").locator("button.test").click()
    results = page.locator("#tests-table tbody tr")
    expect(results).to_have_count(4)
    expect(page.locator("#tests-summary")).to_contain_text("health score")
    expect(page.locator("#tests-table td.result", has_text="running")).to_have_count(0)
    names = [results.nth(i).locator("td").nth(2).inner_text() for i in range(4)]
    assert names == PROBES
    verdicts = [results.nth(i).locator("td.result").inner_text() for i in range(4)]
    assert set(verdicts) <= {"passed", "failed"}
    expect(model_row(page, "con-added").locator("td.health")).not_to_have_text("not checked")
    shot(page, "03-test-connection")

    # edit it: the description changes, the deployment keeps what the form does not show
    model_row(page, "con-added").get_by_role("button", name="Edit").click()
    expect(form.locator("[name=name]")).to_have_value("con-added")
    form.locator("[name=description]").fill("edited in the console")
    form.locator("button[type=submit]").click()
    expect(page.locator("#status")).to_have_text("Saved con-added.")
    edited = gw.http.get("/admin/models/con-added").json()
    assert edited["description"] == "edited in the console"
    assert edited["deployments"][0]["model"] == "con-added-model"

    # keys
    page.click("#nav a[data-view=keys]")
    expect(page.locator("#keys-table tbody tr", has_text="console-key")).to_contain_text("red")
    shot(page, "04-keys")

    # a team's spend against its budget, the same numbers as the usage API
    page.click("#nav a[data-view=teams]")
    red = page.locator("#teams-table tbody tr[data-team=red]")
    expect(red).to_be_visible()
    spent = gw.http.get("/admin/usage", params={"group_by": "team", "id": "red"}).json()["data"][0]["spend_usd"]
    assert spent > 0
    cells = red.locator("td")
    expect(cells.nth(1)).to_have_text("—")  # no name
    expect(cells.nth(3)).to_have_text("$1.00")
    expect(cells.nth(4).locator("meter")).to_have_attribute("value", str(min(spent / 1.0, 1)))
    expect(cells.nth(4)).to_contain_text(f"{round(spent * 100)} %")
    shot(page, "05-teams")


def test_test_all_streams_every_result(page: Page, gw: GatewayProcess) -> None:
    sign_in(page, gw)
    page.click("#test-all")
    expect(page.locator("#tests-summary")).to_contain_text("Done:")
    chat_deployments = [d for d in gw.http.get("/admin/health").json()["deployments"] if d["kind"] == "chat"]
    expect(page.locator("#tests-table tbody tr")).to_have_count(4 * len(chat_deployments))
    shot(page, "06-test-all")


def test_errors_are_shown_and_bad_logins_refused(page: Page, gw: GatewayProcess) -> None:
    page.goto(gw.url + "/console/")
    page.fill("#login-form [name=username]", USER)
    page.fill("#login-form [name=password]", "wrong-password-1")
    page.click("#login-form button[type=submit]")
    expect(page.locator("#status")).to_have_class("error")
    expect(page.locator("#login-view")).to_be_visible()
    shot(page, "07-bad-login")

    page.fill("#key-form [name=key]", "sk-not-the-master-key")
    page.click("#key-form button[type=submit]")
    expect(page.locator("#status")).to_have_class("error")
    expect(page.locator("#login-view")).to_be_visible()

    sign_in(page, gw)
    page.click("#add-model")
    form = page.locator("#model-form")
    form.locator("[name=name]").fill("con-chat")  # exists
    page.locator("#deployments-table [name=model]").fill("x")
    form.locator("button[type=submit]").click()
    expect(page.locator("#model-error")).to_contain_text("exists")  # in the form, once
    expect(form).to_be_visible()
    shot(page, "08-save-error")


def test_master_key_sign_in_and_out(page: Page, gw: GatewayProcess) -> None:
    page.goto(gw.url + "/console/")
    page.fill("#key-form [name=key]", MASTER_KEY)
    page.click("#key-form button[type=submit]")
    expect(page.locator("#who")).to_have_text("master (admin)")
    page.click("#nav a[data-view=models]")
    expect(model_row(page, "con-chat")).to_be_visible()
    page.reload()  # the session survives a reload of the tab
    expect(page.locator("#who")).to_have_text("master (admin)")
    page.click("#logout")
    expect(page.locator("#login-view")).to_be_visible()
    assert page.evaluate("sessionStorage.length") == 0


def test_names_from_users_are_shown_as_text(page: Page, mock: Mock, tmp_path: Path) -> None:
    v1 = f"{mock.url}/v1"
    alias = (
        f"  {json.dumps(EVIL)}: {{deployments: [{{provider: openai, model: con-model, base_url: '{v1}', api_key: k}}]}}"
    )
    gw = GatewayProcess(console_config(mock.url, alias), tmp_path, extra_env={KEY_ENV: "sk-upstream-k"})
    dialogs: list[str] = []
    loads: list[str] = []

    def on_dialog(dialog: Dialog) -> None:
        dialogs.append(dialog.message)
        dialog.dismiss()

    def on_request(request: Request) -> None:
        loads.append(request.url)

    page.on("dialog", on_dialog)
    page.on("request", on_request)
    try:
        team = gw.http.post("/admin/teams", json={"id": "xss", "name": EVIL, "budget_daily_usd": 1.0})
        assert team.status_code == 201, team.text
        created = gw.http.post("/admin/keys", json={"name": EVIL, "team": "xss"})
        assert created.status_code == 201, created.text
        body = {"model": EVIL, "messages": [{"role": "user", "content": "hi"}]}
        headers = {"authorization": f"Bearer {created.json()['key']}"}
        assert httpx.post(gw.url + "/v1/chat/completions", json=body, headers=headers, timeout=30).status_code == 200

        page.goto(gw.url + "/console/")
        page.fill("#key-form [name=key]", MASTER_KEY)
        page.click("#key-form button[type=submit]")
        page.click("#nav a[data-view=models]")
        models = page.locator("#models-table tbody tr", has_text=EVIL)
        expect(models.locator("td.name")).to_have_text(EVIL)
        page.click("#nav a[data-view=keys]")
        key = page.locator("#keys-table tbody tr", has_text=EVIL)
        expect(key.locator("td").nth(1)).to_have_text(EVIL)
        expect(key.locator("td").nth(2)).to_have_text("xss")
        page.click("#nav a[data-view=teams]")
        team_row = page.locator("#teams-table tbody tr[data-team=xss]")
        expect(team_row.locator("td").nth(1)).to_have_text(EVIL)
        expect(team_row.locator("td").nth(3)).to_have_text("$1.00")
        shot(page, "10-names-as-text")

        # text, not markup: no <img> was built, nothing was fetched for it and no handler ran
        # (an inline handler would also be a CSP violation, which the page fixture reports)
        assert page.locator("img").count() == 0
        assert page.evaluate("document.querySelectorAll('img[src=x]').length") == 0
        assert page.evaluate("document.body.innerHTML.includes('<img')") is False
        assert not [url for url in loads if url.rstrip("/").endswith("/x")]
        assert dialogs == []

        # the same in the HTML report, as a browser shows it
        page.set_extra_http_headers({"authorization": f"Bearer {MASTER_KEY}"})
        page.goto(gw.url + "/admin/reports/daily?format=html")
        # the alias in the by-alias table, the team's name in the by-team and budget tables
        expect(page.locator("td", has_text=EVIL)).to_have_count(3)
        expect(page.locator("svg title", has_text=EVIL)).to_have_count(1)  # the requests-by-alias chart
        assert page.locator("img").count() == 0
        assert not [url for url in loads if url.rstrip("/").endswith("/x")]
        assert dialogs == []
    finally:
        gw.stop()


def test_the_html_report_renders_under_its_policy(page: Page, gw: GatewayProcess) -> None:
    page.set_extra_http_headers({"authorization": f"Bearer {MASTER_KEY}"})
    resp = page.goto(gw.url + "/admin/reports/daily?format=html")
    assert resp is not None and resp.status == 200
    assert "default-src 'none'" in resp.headers["content-security-policy"]
    expect(page.locator("h1")).to_contain_text("Gateway report: daily")
    expect(page.locator("svg")).to_have_count(6)  # the inline charts draw (a CSP block would be reported)
    assert page.evaluate("getComputedStyle(document.querySelector('th')).backgroundColor") == "rgb(244, 246, 248)"
    shot(page, "09-report-html")
