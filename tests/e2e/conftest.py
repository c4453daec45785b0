"""Fixtures: one mock upstream and one gateway for the session, reset between tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, sync_playwright

from gateway.mock import MockConfig
from gateway.mock.testing import MockServer
from tests.e2e.console_pages import CHROMIUM, have_chromium
from tests.e2e.harness import GatewayProcess, e2e_config


class Mock:
    """The mock upstream plus helpers to script it and read its call counts."""

    def __init__(self, server: MockServer) -> None:
        self.server = server
        self.url = server.url
        self.http = httpx.Client(base_url=server.url, timeout=10)

    def behave(self, model: str, **knobs: Any) -> None:
        self.http.put(f"/_mock/behaviours/{model}", json=knobs).raise_for_status()

    def calls(self, model: str) -> int:
        return int(self.http.get("/_mock/stats").json()["by_model"].get(model, 0))

    def reset(self) -> None:
        self.http.post("/_mock/reset").raise_for_status()


@pytest.fixture(scope="session")
def mock() -> Iterator[Mock]:
    with MockServer(MockConfig()) as server:
        m = Mock(server)
        yield m
        m.http.close()


@pytest.fixture(scope="session")
def gateway(mock: Mock, tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    gw = GatewayProcess(e2e_config(mock.url), Path(tmp_path_factory.mktemp("gateway")))
    yield gw
    gw.stop()


@pytest.fixture(autouse=True)
def _fresh_mock(request: pytest.FixtureRequest) -> None:
    if "mock" in request.fixturenames:
        request.getfixturevalue("mock").reset()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """Debian's Chromium, headless, for a module's console tests (skipped, saying why, without it)."""
    if not have_chromium():
        pytest.skip(f"no chromium at {CHROMIUM}: run scripts/install-os-deps.sh")
    with sync_playwright() as pw:
        launched = pw.chromium.launch(executable_path=CHROMIUM, headless=True)
        yield launched
        launched.close()
