"""Delivery end to end, against real servers on 127.0.0.1: an SMTP server (aiosmtpd, with a
login) and a webhook sink (aiohttp). Last week's report, built from statistics in a real
embedded state backend, arrives by e-mail (HTML alternative) and at the webhook and the
Slack-style hook with its KPIs; a receiver that refuses connections, answers 500 or is too
slow is retried with backoff and then counted failed while the others still get it; a 404 or a
refused login is not retried; and no password or webhook secret reaches the log."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from aiohttp import web
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

from gateway.config.loader import parse_config
from gateway.config.settings import Settings
from gateway.notify import Message, Notifier
from gateway.observability.logs import RequestRecord
from gateway.reports.builder import ReportSources, make_report
from gateway.reports.delivery import DeliveryFailed, deliver_report, report_subject
from gateway.reports.store import StatsStore
from gateway.reports.text import kpi_value
from gateway.state.embedded import EmbeddedBackend
from tests.ports import free_port

pytestmark = pytest.mark.timeout(60)

PASSWORD = "smtp-Pa55word-never-logged"
HOOK_TOKEN = "hook-token-never-logged"
SLACK_SECRET = "T0001/B0002/slackSecretPath"
MONDAY = datetime(2026, 12, 7, 9, 0, tzinfo=UTC)  # the weekly_report job's time: last week is 11-30 to 12-06


# --- the SMTP server ----------------------------------------------------------------------


class MailSink:
    def __init__(self) -> None:
        self.mails: list[tuple[Envelope, EmailMessage]] = []

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        raw = envelope.original_content or b""
        parsed = message_from_bytes(raw, policy=policy.default)
        assert isinstance(parsed, EmailMessage)
        self.mails.append((envelope, parsed))
        return "250 OK"


def authenticate(server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any) -> AuthResult:
    ok = isinstance(data, LoginPassword) and data.login == b"gateway" and data.password == PASSWORD.encode()
    return AuthResult(success=ok, handled=False)


@pytest.fixture
def smtp() -> Iterator[tuple[MailSink, int]]:
    sink, port = MailSink(), free_port()
    controller = Controller(
        sink, hostname="127.0.0.1", port=port, authenticator=authenticate, auth_require_tls=False, ready_timeout=10
    )
    controller.start()
    try:
        yield sink, port
    finally:
        controller.stop()


# --- the webhook sink ---------------------------------------------------------------------


@dataclass
class HookSink:
    url: str = ""
    received: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    headers: dict[str, list[str]] = field(default_factory=dict)
    hits: dict[str, int] = field(default_factory=dict)


@pytest.fixture
async def hooks() -> AsyncIterator[HookSink]:
    sink = HookSink()

    async def handle(request: web.Request) -> web.Response:
        name = request.match_info["name"]
        sink.hits[name] = sink.hits.get(name, 0) + 1
        if name == "fail500":
            return web.Response(status=500, text="down")
        if name == "gone404":
            return web.Response(status=404, text="no such hook")
        if name == "slow":
            await asyncio.sleep(5)
        sink.received.setdefault(name, []).append(await request.json())
        sink.headers.setdefault(name, []).append(request.headers.get("Authorization", ""))
        return web.Response(text="ok")

    async def handle_slack(request: web.Request) -> web.Response:
        sink.hits["slack"] = sink.hits.get("slack", 0) + 1
        sink.received.setdefault("slack", []).append(await request.json())
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_post("/hook/{name}", handle)
    app.router.add_post("/services/{a}/{b}/{c}", handle_slack)

    runner = web.AppRunner(app, shutdown_timeout=1)
    await runner.setup()
    port = free_port()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    sink.url = f"http://127.0.0.1:{port}"
    try:
        yield sink
    finally:
        await runner.cleanup()


# --- the state behind the report -----------------------------------------------------------


async def last_week_sources(tmp_path: Path) -> tuple[ReportSources, EmbeddedBackend]:
    """Ten requests over last week (one a 500) in a real embedded backend's statistics."""
    backend = EmbeddedBackend(str(tmp_path / "state.db"))
    store = StatsStore(backend, tz=ZoneInfo("UTC"), replica_id="test")
    start = datetime(2026, 11, 30, 12, tzinfo=UTC).timestamp()
    for i in range(10):
        store.record(
            RequestRecord(
                ts=start + i * 3600 * 12,
                request_id=f"r{i}",
                route="chat",
                status=500 if i == 3 else 200,
                latency_ms=300.0 + 10 * i,
                alias="chat",
                team="search",
                prompt_tokens=100,
                completion_tokens=20,
                cost_usd=0.01,
            )
        )
    assert await store.flush()

    async def teams() -> list[dict[str, Any]]:
        return [{"id": "search", "name": "Search team"}]

    return ReportSources(store, backend.read_spend, teams, lambda: ["chat"]), backend


def settings_for(port: int, hooks: HookSink, reports: list[str], password: str = PASSWORD, **extra: Any) -> Settings:
    slack_url = f"{hooks.url}/services/{SLACK_SECRET}"
    refused = f"http://127.0.0.1:{free_port()}/hook/refused"
    text = f"""
notifications:
  attempts: {extra.get("attempts", 3)}
  backoff_s: 0.05
  receivers:
    mail:
      kind: email
      smtp: {{host: 127.0.0.1, port: {port}, from: gateway@example.com, to: [ops@example.com, fin@example.com],
             username: gateway, password: "${{SMTP_PASSWORD}}", starttls: false}}
    tls-mail:
      kind: email
      timeout_s: 5
      smtp: {{host: 127.0.0.1, port: {port}, from: gateway@example.com, to: [ops@example.com]}}
    hook: {{kind: webhook, url: "{hooks.url}/hook/ok", headers: {{Authorization: "Bearer ${{HOOK_TOKEN}}"}}}}
    chat: {{kind: slack, url: "${{SLACK_URL}}"}}
    fail500: {{kind: webhook, url: "{hooks.url}/hook/fail500"}}
    gone404: {{kind: webhook, url: "{hooks.url}/hook/gone404"}}
    slow: {{kind: webhook, url: "{hooks.url}/hook/slow", timeout_s: 0.3}}
    refused: {{kind: slack, url: "{refused}"}}
  routes:
    reports: {reports}
"""
    env = {"SMTP_PASSWORD": password, "HOOK_TOKEN": HOOK_TOKEN, "SLACK_URL": slack_url}
    return parse_config(text, env=env).settings


SERVER_LOGGERS = ("aiohttp.access", "aiohttp.server", "aiohttp.web", "mail.log")
"""The test's own servers (the sink logs the paths it is sent to): not the gateway's log."""


def gateway_log(caplog: pytest.LogCaptureFixture) -> str:
    """Every line logged in the test, but by the test's own servers."""
    return "\n".join(
        f"{r.name} {r.getMessage()} {r.exc_text or ''}" for r in caplog.records if not r.name.startswith(SERVER_LOGGERS)
    )


def assert_no_secret(text: str, *more: str) -> None:
    for secret in (PASSWORD, HOOK_TOKEN, SLACK_SECRET, *more):
        assert secret not in text


class Waits:
    def __init__(self) -> None:
        self.waits: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)
        await asyncio.sleep(0)


# --- the tests ------------------------------------------------------------------------------


async def test_the_weekly_report_arrives_by_mail_webhook_and_slack(
    tmp_path: Path, smtp: tuple[MailSink, int], hooks: HookSink, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    mail, port = smtp
    settings = settings_for(port, hooks, ["mail", "hook", "chat"])
    sources, backend = await last_week_sources(tmp_path)
    try:
        notifier = Notifier(settings.notifications)
        summary = await deliver_report("weekly", settings, sources, notifier.send, now=MONDAY)
        report = await make_report("weekly", MONDAY.date() - timedelta(days=7), settings, sources, now=MONDAY)
    finally:
        await backend.aclose()

    label = "2026-W49 (2026-11-30 to 2026-12-06)"
    assert summary == f"weekly report {label} sent to 3 of 3 receiver(s)"
    subject = report_subject(report)
    assert subject.startswith(f"Gateway weekly report {label}: 10 requests, ")
    availability = next(k for k in report.kpis if k.name == "availability")
    assert kpi_value(availability) == "90.000 %"  # one 500 in ten

    # The e-mail: both recipients, the subject, the Markdown and the HTML report.
    [(envelope, message)] = mail.mails
    assert envelope.rcpt_tos == ["ops@example.com", "fin@example.com"]
    assert envelope.mail_from == "gateway@example.com"
    assert message["Subject"] == subject
    plain = message.get_body(("plain",))
    html = message.get_body(("html",))
    assert plain is not None and html is not None
    assert f"# Gateway report: weekly {label}" in plain.get_content()
    assert "| Availability | 90.000 % |" in plain.get_content()
    assert "90.000 %" in html.get_content() and "<table" in html.get_content()

    # The webhook: JSON with the subject, the Markdown text, the kind and the HTML; its header.
    [body] = hooks.received["ok"]
    assert (body["subject"], body["kind"]) == (subject, "reports")
    assert "| Availability | 90.000 % |" in body["text"]
    assert "<table" in body["html"]
    assert hooks.headers["ok"] == [f"Bearer {HOOK_TOKEN}"]

    # Slack: mrkdwn, the tables in code blocks.
    [slack] = hooks.received["slack"]
    assert slack["text"].startswith(f"*{subject}*")
    assert "```\n| KPI | value | target | verdict |" in slack["text"]
    assert "| Availability | 90.000 % |" in slack["text"]

    assert notifier.counts()["email", "ok"] == 1
    assert notifier.counts()["webhook", "ok"] == 1
    assert notifier.counts()["slack", "ok"] == 1
    assert "delivered to mail (email)" in gateway_log(caplog)
    assert_no_secret(gateway_log(caplog))


async def test_failing_receivers_are_retried_then_counted_while_the_others_get_it(
    smtp: tuple[MailSink, int], hooks: HookSink, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    mail, port = smtp
    settings = settings_for(port, hooks, ["mail", "fail500", "refused", "hook", "gone404", "slow"])
    waits = Waits()
    notifier = Notifier(settings.notifications, sleep=waits)
    result = await notifier.send(Message(subject="Weekly report", text="**KPIs**", html="<b>KPIs</b>", kind="reports"))

    assert result.delivered == ("mail", "hook")
    assert result.failed == ("fail500", "refused", "gone404", "slow")
    assert result.summary() == "sent to 2 of 6 receiver(s) (failed: fail500, refused, gone404, slow)"
    # 500, connection refused and a timeout: three attempts each; a 404 is not retried.
    assert hooks.hits["fail500"] == 3
    assert hooks.hits["gone404"] == 1
    assert hooks.hits["slow"] == 3
    assert result.attempts == 1 + 3 + 3 + 1 + 1 + 3
    assert sorted(waits.waits) == sorted([0.05, 0.1] * 3)  # exponential: 0.05 then 0.1, per retried receiver
    assert len(mail.mails) == 1 and len(hooks.received["ok"]) == 1
    counts = notifier.counts()
    assert (counts["webhook", "ok"], counts["webhook", "failed"]) == (1, 3)
    assert (counts["email", "ok"], counts["slack", "failed"]) == (1, 1)
    assert notifier.deliveries["refused", "slack", "failed"] == 1

    log = gateway_log(caplog)
    assert "to fail500 (webhook) failed after 3 attempt(s): HTTP 500" in log
    assert "to refused (slack) failed after 3 attempt(s): cannot connect: connection refused" in log
    assert "to gone404 (webhook) failed after 1 attempt(s): HTTP 404" in log
    assert "to slow (webhook) failed after 3 attempt(s): timed out" in log
    assert "/hook/" not in log and hooks.url not in log  # no URL in the log
    assert_no_secret(log)


async def test_a_refused_login_is_not_retried_and_its_password_not_logged(
    smtp: tuple[MailSink, int], hooks: HookSink, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    mail, port = smtp
    wrong = "Wrong-smtp-Password-9"
    settings = settings_for(port, hooks, ["mail"], password=wrong)
    notifier = Notifier(settings.notifications, sleep=Waits())
    result = await notifier.send(Message(subject="s", text="t", kind="reports"))
    assert (result.delivered, result.failed, result.attempts) == ((), ("mail",), 1)
    log = gateway_log(caplog)
    assert "to mail (email) failed after 1 attempt(s): SMTP 535 (authentication refused)" in log
    assert mail.mails == []
    assert_no_secret(log, wrong)
    assert notifier.counts()["email", "failed"] == 1


async def test_starttls_asked_of_a_server_without_it_fails_rather_than_send_in_the_clear(
    smtp: tuple[MailSink, int], hooks: HookSink, caplog: pytest.LogCaptureFixture
) -> None:
    mail, port = smtp
    settings = settings_for(port, hooks, ["tls-mail"])
    assert settings.notifications.receivers["tls-mail"].smtp.starttls  # type: ignore[union-attr]
    result = await Notifier(settings.notifications, sleep=Waits()).send(Message(subject="s", text="t", kind="reports"))
    assert (result.failed, result.attempts) == (("tls-mail",), 1)
    assert "does not offer STARTTLS or AUTH" in caplog.text
    assert mail.mails == []


async def test_a_report_no_receiver_took_fails_the_job(tmp_path: Path, hooks: HookSink) -> None:
    settings = settings_for(1, hooks, ["gone404"])
    sources, backend = await last_week_sources(tmp_path)
    try:
        with pytest.raises(DeliveryFailed, match=r"weekly report 2026-W49 .* sent to 0 of 1 receiver\(s\)"):
            await deliver_report("weekly", settings, sources, Notifier(settings.notifications).send, now=MONDAY)
        unrouted = settings_for(1, hooks, [])
        line = await deliver_report("monthly", unrouted, sources, Notifier(unrouted.notifications).send, now=MONDAY)
    finally:
        await backend.aclose()
    assert line == "monthly report not sent: notifications.routes.reports names no receiver"
