"""User satisfaction end to end (issue 16, item 7): a real gateway and the mock upstream;
a request's ``x-request-id`` scored through ``POST /v1/feedback`` shows in ``/metrics`` and in
the daily report (JSON and Markdown); another key's request, an unknown id, a second score and
bad bodies are refused, each naming its field; the comment is kept only with payload logging."""

from __future__ import annotations

import json
import re
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.conftest import Mock
from tests.e2e.harness import GatewayProcess
from tests.redis_server import RedisServer

CHAT = {"model": "fb-chat", "messages": [{"role": "user", "content": "hello"}]}


def feedback_config(mock_url: str, state: Path, *, log_payloads: bool, flush_s: float = 0.1) -> str:
    return f"""
state: {{path: '{state}', flush_interval_s: 0.1}}
auth: {{master_key: "${{GATEWAY_MASTER_KEY}}"}}
reports: {{flush_interval_s: 0.1}}
feedback: {{flush_interval_s: {flush_s}}}
logging: {{log_payloads: {str(log_payloads).lower()}}}
models:
  fb-chat: {{deployments: [{{provider: openai, model: fb-model, base_url: '{mock_url}/v1', api_key: k}}]}}
"""


def new_key(gw: GatewayProcess, name: str) -> str:
    resp = gw.http.post("/admin/keys", json={"name": name})
    assert resp.status_code == 201, resp.text
    return str(resp.json()["key"])


def ask(client: httpx.Client, key: str) -> str:
    """One chat request by ``key``; its request id (the answer's ``x-request-id``)."""
    resp = client.post("/v1/chat/completions", json=CHAT, headers={"authorization": f"Bearer {key}"})
    assert resp.status_code == 200, resp.text
    return resp.headers["x-request-id"]


def score(client: httpx.Client, key: str, body: Any) -> httpx.Response:
    payload = {"content": body} if isinstance(body, bytes) else {"json": body}
    return client.post("/v1/feedback", headers={"authorization": f"Bearer {key}"}, **payload)


def refused(resp: httpx.Response, status: int, code: str, param: str | None) -> None:
    assert resp.status_code == status, resp.text
    error = resp.json()["error"]
    assert (error["code"], error["param"]) == (code, param), error
    assert resp.headers["x-request-id"]


def metric(text: str, name: str, **labels: str) -> float:
    """The value of one series of the exposition (0 when absent)."""
    want = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    for line in text.splitlines():
        match = re.fullmatch(r"([a-z_]+)(?:\{(.*)\})? (\S+)", line)
        if match and match.group(1) == name:
            have = ",".join(sorted((match.group(2) or "").split(","))) if match.group(2) else ""
            if have == want:
                return float(match.group(3))
    return 0.0


def stored_feedback(state: Path) -> list[dict[str, Any]]:
    with sqlite3.connect(state) as db:
        rows = db.execute("SELECT json FROM records WHERE tbl LIKE 'feedback:%'").fetchall()
    return [json.loads(row[0]) for row in rows]


@pytest.fixture
def gateway(mock: Mock, tmp_path: Path) -> Iterator[GatewayProcess]:
    gw = GatewayProcess(feedback_config(mock.url, tmp_path / "state.db", log_payloads=False), tmp_path)
    yield gw
    gw.stop()


def test_feedback_in_metrics_and_report_and_refusals(gateway: GatewayProcess, tmp_path: Path) -> None:
    gw = gateway
    alice, bob = new_key(gw, "alice"), new_key(gw, "bob")
    with httpx.Client(base_url=gw.url, timeout=30) as client:
        mine, theirs = ask(client, alice), ask(client, bob)

        # Another key's request: not found, exactly like an id that never existed.
        refused(score(client, alice, {"request_id": theirs, "score": 5}), 404, "request_not_found", "request_id")
        refused(
            score(client, alice, {"request_id": "req_never_made", "score": 5}), 404, "request_not_found", "request_id"
        )
        # Bad bodies, each naming its field.
        for bad_score, code in [
            (0, "invalid_value"),
            (6, "invalid_value"),
            (4.5, "invalid_type"),
            ("5", "invalid_type"),
        ]:
            refused(score(client, alice, {"request_id": mine, "score": bad_score}), 400, code, "score")
        refused(score(client, alice, {"request_id": mine, "score": True}), 400, "invalid_type", "score")
        refused(score(client, alice, {"request_id": mine}), 400, "missing_required_parameter", "score")
        refused(score(client, alice, {"score": 3}), 400, "missing_required_parameter", "request_id")
        refused(score(client, alice, {"request_id": 7, "score": 3}), 400, "invalid_type", "request_id")
        refused(score(client, alice, {"request_id": "a b", "score": 3}), 400, "invalid_value", "request_id")
        refused(score(client, alice, {"request_id": mine, "score": 3, "stars": 3}), 400, "unknown_parameter", "stars")
        long = {"request_id": mine, "score": 3, "comment": "x" * 2001}
        refused(score(client, alice, long), 400, "invalid_value", "comment")
        refused(score(client, alice, {"request_id": mine, "score": 3, "comment": 1}), 400, "invalid_type", "comment")
        refused(score(client, alice, b"not json"), 400, "invalid_json", "body")
        refused(score(client, "sk-not-a-key", {"request_id": mine, "score": 3}), 401, "invalid_api_key", None)

        # Scored by its own key: accepted once; the comment dropped (payload logging off).
        resp = score(client, alice, {"request_id": mine, "score": 4, "comment": "good, thanks"})
        assert resp.status_code == 200, resp.text
        answer = resp.json()
        assert answer["object"] == "feedback"
        assert (answer["request_id"], answer["model"], answer["score"]) == (mine, "fb-chat", 4)
        assert answer["comment_stored"] is False and "log_payloads" in answer["comment_note"]
        refused(score(client, alice, {"request_id": mine, "score": 5}), 409, "feedback_exists", "request_id")
        resp = score(client, bob, {"request_id": theirs, "score": 2})
        assert resp.status_code == 200 and resp.json()["comment_stored"] is False, resp.text

    text = gw.http.get("/metrics").text
    assert metric(text, "gateway_feedback_score_count", alias="fb-chat") == 2
    assert metric(text, "gateway_feedback_score_sum", alias="fb-chat") == 6
    assert metric(text, "gateway_feedback_score_bucket", alias="fb-chat", le="2.0") == 1
    assert metric(text, "gateway_feedback_total", alias="fb-chat", comment="dropped") == 1
    assert metric(text, "gateway_feedback_total", alias="fb-chat", comment="none") == 1
    assert metric(text, "gateway_feedback_refused_total", reason="unknown_request") == 2
    assert metric(text, "gateway_feedback_refused_total", reason="already_scored") == 1
    assert metric(text, "gateway_feedback_refused_total", reason="unauthenticated") == 1
    assert metric(text, "gateway_feedback_refused_total", reason="invalid") == 13

    report = gw.http.get("/admin/reports/daily", params={"format": "json"})
    assert report.status_code == 200, report.text
    section = report.json()["satisfaction"]
    assert section["target"] == 4.5
    assert section["total"] == {
        "name": "all",
        "count": 2,
        "average": 3.0,
        "distribution": [0, 1, 0, 1, 0],
        "met": False,
    }
    assert [row["name"] for row in section["by_alias"]] == ["fb-chat"]
    markdown = gw.http.get("/admin/reports/daily", params={"format": "md"}).text
    assert "## User satisfaction, 7 days" in markdown
    assert "| all | 2 | 3.00 | ≥ 4.5 | MISSED | 0 | 1 | 0 | 1 | 0 |" in markdown
    html = gw.http.get("/admin/reports/daily", params={"format": "html"}).text
    assert "User satisfaction, 7 days" in html and '<span class="missed">MISSED</span>' in html

    gw.stop()
    stored = {r["key_id"]: r for r in stored_feedback(tmp_path / "state.db")}
    assert len(stored) == 2 and all("comment" not in r for r in stored.values())
    assert sorted(r["score"] for r in stored.values()) == [2, 4]


def test_comment_kept_with_payload_logging_and_scores_survive_a_restart(mock: Mock, tmp_path: Path) -> None:
    state = tmp_path / "state.db"
    config = feedback_config(mock.url, state, log_payloads=True, flush_s=10)  # written at shutdown, not before
    gw = GatewayProcess(config, tmp_path)
    try:
        key = new_key(gw, "carol")
        with httpx.Client(base_url=gw.url, timeout=30) as client:
            first, second = ask(client, key), ask(client, key)
            resp = score(client, key, {"request_id": first, "score": 5, "comment": "great; mail me at a@example.com"})
            assert resp.status_code == 200, resp.text
            assert resp.json()["comment_stored"] is True and "comment_note" not in resp.json()
    finally:
        gw.stop()  # the records of both requests are written now
    gw = GatewayProcess(config, tmp_path)
    try:
        with httpx.Client(base_url=gw.url, timeout=30) as client:
            resp = score(client, key, {"request_id": second, "score": 5})
            assert resp.status_code == 200, resp.text
            refused(score(client, key, {"request_id": first, "score": 1}), 409, "feedback_exists", "request_id")
        section = gw.http.get("/admin/reports/daily", params={"format": "json"}).json()["satisfaction"]
        assert (section["total"]["count"], section["total"]["met"]) == (2, True)
    finally:
        gw.stop()
    comments = [r.get("comment") for r in stored_feedback(state)]
    assert sorted(comments, key=lambda c: c or "") == [None, "great; mail me at [REDACTED:email]"]


def test_two_replicas_on_redis_score_each_others_requests_once(mock: Mock, tmp_path: Path) -> None:
    """A request answered by one replica is scored through the other (its record may not be written
    yet: the other looks once more after two write intervals); a second score on either is refused."""
    with RedisServer() as redis:
        config = feedback_config(mock.url, tmp_path / "unused.db", log_payloads=False, flush_s=0.3).replace(
            f"state: {{path: '{tmp_path / 'unused.db'}', flush_interval_s: 0.1}}",
            f"state: {{backend: redis, url: '{redis.url}', flush_interval_s: 0.1, refresh_interval_s: 0.1}}",
        )
        (tmp_path / "a").mkdir()
        (tmp_path / "b").mkdir()
        a = GatewayProcess(config, tmp_path / "a")
        try:
            b = GatewayProcess(config, tmp_path / "b")
            try:
                key = new_key(a, "dave")
                with httpx.Client(base_url=a.url, timeout=30) as on_a, httpx.Client(base_url=b.url, timeout=30) as on_b:
                    rid = ask(on_a, key)
                    resp = score(on_b, key, {"request_id": rid, "score": 3})  # at once: maybe not written yet
                    assert resp.status_code == 200, resp.text
                    refused(score(on_a, key, {"request_id": rid, "score": 5}), 409, "feedback_exists", "request_id")
                    refused(score(on_b, key, {"request_id": rid, "score": 5}), 409, "feedback_exists", "request_id")
                    other = new_key(b, "erin")
                    refused(score(on_b, other, {"request_id": rid, "score": 1}), 404, "request_not_found", "request_id")
                for gw in (a, b):
                    section = gw.http.get("/admin/reports/daily", params={"format": "json"}).json()["satisfaction"]
                    assert (section["total"]["count"], section["total"]["average"]) == (1, 3.0)
                assert metric(b.http.get("/metrics").text, "gateway_feedback_score_count", alias="fb-chat") == 1
                assert metric(a.http.get("/metrics").text, "gateway_feedback_score_count", alias="fb-chat") == 0
            finally:
                b.stop()
        finally:
            a.stop()
