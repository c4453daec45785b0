"""The console's audit view sends its filters to GET /admin/audit (one request per
page, with limit, actor, action, since, until and the before cursor) and shows a
filter the gateway refuses; in real Chromium (Debian's ``chromium`` through
Playwright) against a real gateway."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
from playwright.sync_api import Browser, Request, expect

from tests.e2e.conftest import Mock
from tests.e2e.console_pages import go, open_page, sign_in_master
from tests.e2e.harness import GatewayProcess, e2e_config


@pytest.fixture(scope="module")
def gw(mock: Mock, tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    g = GatewayProcess(e2e_config(mock.url), Path(tmp_path_factory.mktemp("console-audit")))
    yield g
    g.stop()


def test_filters_go_to_the_gateway_one_request_a_page(browser: Browser, gw: GatewayProcess) -> None:
    for i in range(60):  # more than a page (50) of one action
        assert gw.http.post("/admin/teams", json={"id": f"ct-{i:02d}"}).status_code == 201
    for i in range(3):
        assert gw.http.patch(f"/admin/teams/ct-{i:02d}", json={"rpm": 5}).status_code == 200
    with open_page(browser) as page:
        sent: list[dict[str, list[str]]] = []

        def seen(request: Request) -> None:
            url = urlsplit(request.url)
            if url.path == "/admin/audit":
                sent.append(parse_qs(url.query))

        page.on("request", seen)
        sign_in_master(page, gw)
        go(page, "audit")
        rows = page.locator("#audit-table tbody tr")
        expect(rows).to_have_count(50)
        assert sent == [{"limit": ["50"]}]

        sent.clear()
        page.fill("#audit-filters [name=action]", "teams.create")
        page.fill("#audit-filters [name=actor]", "master")
        page.fill("#audit-filters [name=from]", "2001-01-01T00:00")
        page.click("#audit-filters button[type=submit]")
        expect(rows.first.locator("td[data-label=target]")).to_have_text("teams/ct-59")
        expect(rows).to_have_count(50)
        assert len(sent) == 1
        query = sent[0]
        assert (query["action"], query["actor"], query["limit"]) == (["teams.create"], ["master"], ["50"])
        since = datetime.fromisoformat(query["since"][0])
        assert since.tzinfo is not None and since.astimezone(UTC).year in (2000, 2001)  # local 2001-01-01 00:00
        assert "until" not in query and "before" not in query

        sent.clear()
        page.click("#audit-older")
        expect(rows).to_have_count(10)
        assert [r.split("/")[1] for r in rows.locator("td[data-label=target]").all_inner_texts()] == [
            f"ct-{i:02d}" for i in range(9, -1, -1)
        ]
        assert len(sent) == 1 and sent[0]["action"] == ["teams.create"] and "before" in sent[0]
        expect(page.locator("#audit-older")).to_be_hidden()  # the end of the log

        sent.clear()
        page.fill("#audit-filters [name=action]", "teams create")  # refused by the gateway
        page.click("#audit-filters button[type=submit]")
        expect(page.locator("#audit-table td.note")).to_contain_text("action must be")
        expect(page.locator("#status")).to_contain_text("action must be")
        assert len(sent) == 1
