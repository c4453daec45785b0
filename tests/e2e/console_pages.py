"""Helpers for the console's browser tests (tests/e2e/test_console_tasks.py): Debian's
chromium through Playwright (never Playwright's own downloads), a page that fails the
test on any script error or Content-Security-Policy violation, sign-in as a user or
with the master key, and screenshots kept in test-artifacts/console/ (not in git)."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from playwright.sync_api import Browser, ConsoleMessage, Page, expect

from tests.e2e.harness import MASTER_KEY, ROOT, GatewayProcess

CHROMIUM = os.environ.get("CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
ARTIFACTS = ROOT / "test-artifacts" / "console"
WIDTHS = {"desktop": 1920, "tablet": 1024, "phone": 375}
"""The manual's breakpoints: desktop >= 1920, tablet 768-1919, phone <= 767."""


def have_chromium() -> bool:
    return Path(CHROMIUM).exists()


@contextmanager
def open_page(browser: Browser, width: int = 1280, height: int = 900) -> Iterator[Page]:
    """A page in a fresh context (no storage shared with another page). Any script error
    or CSP violation logged by the browser fails the test when the block ends."""
    context = browser.new_context(viewport={"width": width, "height": height})
    context.grant_permissions(["clipboard-read", "clipboard-write"])
    page = context.new_page()
    page.set_default_timeout(15_000)
    problems: list[str] = []

    def on_console(msg: ConsoleMessage) -> None:
        # refusals the tests provoke are logged as failed loads; anything else is a problem
        if msg.type == "error" and not msg.text.startswith("Failed to load resource"):
            problems.append(msg.text)

    page.on("console", on_console)
    page.on("pageerror", lambda exc: problems.append(str(exc)))
    try:
        yield page
    finally:
        context.close()
    assert not problems, f"browser errors (script errors or CSP violations): {problems}"


def shot(page: Page, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def sign_in(page: Page, gw: GatewayProcess, username: str, password: str, role: str) -> None:
    page.goto(gw.url + "/console/")
    page.fill("#login-form [name=username]", username)
    page.fill("#login-form [name=password]", password)
    page.click("#login-form button[type=submit]")
    expect(page.locator("#who")).to_have_text(f"{username} ({role})")
    expect(page.locator("#live-view")).to_be_visible()  # the view after sign-in
    go(page, "models")  # where most tasks start


def sign_in_master(page: Page, gw: GatewayProcess) -> None:
    page.goto(gw.url + "/console/")
    page.fill("#key-form [name=key]", MASTER_KEY)
    page.click("#key-form button[type=submit]")
    expect(page.locator("#who")).to_have_text("master (admin)")


def go(page: Page, view: str) -> None:
    """Open a view from the navigation (through the Menu button on a phone)."""
    if page.locator("#menu-toggle").is_visible():
        page.click("#menu-toggle")
    page.click(f"#nav a[data-view={view}]")
    expect(page.locator(f"#{view}-view")).to_be_visible()
    expect(page.locator(f"#{view}-view table[aria-busy=true]")).to_have_count(0)


def overflow(page: Page) -> int:
    """How many pixels the page is wider than the viewport (0: no horizontal scrolling)."""
    return int(page.evaluate("document.scrollingElement.scrollWidth - window.innerWidth"))


def unlabelled(page: Page) -> list[str]:
    """Visible controls with no accessible name: inputs and selects without a label or
    aria-label, buttons and links without text or aria-label."""
    return list(
        page.evaluate(
            """() => [...document.querySelectorAll('input, select, textarea, button, a[href]')]
              .filter((n) => n.offsetParent !== null && n.type !== 'hidden')
              .filter((n) => {
                if (n.getAttribute('aria-label') || n.getAttribute('aria-labelledby')) return false;
                if (n.matches('button, a')) return !n.textContent.trim();
                return !(n.labels && n.labels.length);
              })
              .map((n) => n.outerHTML.slice(0, 120))"""
        )
    )
