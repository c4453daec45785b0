"""The scheduled deliveries through a running gateway: its ``weekly_report`` job (run by hand,
``POST /admin/jobs/weekly_report/run``) delivers the report to a local SMTP server and a webhook,
the ``security_review`` job delivers the review to the receivers for security, and a user
created through the admin API sends the info notice to the receivers for events."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest

from tests.e2e.conftest import Mock
from tests.e2e.harness import MASTER_KEY, GatewayProcess, e2e_config
from tests.e2e.test_notify_delivery import PASSWORD, HookSink, MailSink, hooks, smtp

__all__ = ["hooks", "smtp"]  # the fixtures this module uses, from the delivery tests


def notifications(port: int, hook_url: str) -> str:
    return f"""
notifications:
  backoff_s: 0.05
  receivers:
    mail:
      kind: email
      smtp: {{host: 127.0.0.1, port: {port}, from: gateway@example.com, to: [ops@example.com],
             username: gateway, password: "${{SMTP_PASSWORD}}", starttls: false}}
    reports-hook: {{kind: webhook, url: "{hook_url}/hook/reports"}}
    security-hook: {{kind: webhook, url: "{hook_url}/hook/security"}}
    events-hook: {{kind: webhook, url: "{hook_url}/hook/events"}}
  routes:
    reports: [mail, reports-hook]
    security: [security-hook]
    events: [events-hook]
"""


@pytest.mark.timeout(120)
async def test_the_gateway_delivers_reports_reviews_and_notices(
    mock: Mock, smtp: tuple[MailSink, int], hooks: HookSink, tmp_path: Path
) -> None:
    mails, port = smtp
    config = notifications(port, hooks.url) + e2e_config(mock.url)
    gw = await asyncio.to_thread(GatewayProcess, config, tmp_path, extra_env={"SMTP_PASSWORD": PASSWORD})
    try:
        auth = {"authorization": f"Bearer {MASTER_KEY}"}
        async with httpx.AsyncClient(base_url=gw.url, headers=auth, timeout=60) as client:
            report = await client.post("/admin/jobs/weekly_report/run")
            assert report.status_code == 200 and report.json()["last_outcome"] == "ok", report.text
            assert "sent to 2 of 2 receiver(s)" in report.json()["last_summary"]
            review = await client.post("/admin/jobs/security_review/run")
            assert review.status_code == 200 and review.json()["last_outcome"] == "ok", review.text
            user = await client.post(
                "/admin/users", json={"username": "dana", "password": "Quiet-Harbor-2026!", "role": "viewer"}
            )
            assert user.status_code == 201, user.text
            for _ in range(100):  # the notice is sent in the background
                if hooks.received.get("events"):
                    break
                await asyncio.sleep(0.05)
        [(envelope, mail)] = mails.mails
        assert envelope.rcpt_tos == ["ops@example.com"] and "weekly" in str(mail["Subject"]).lower()
        [hook] = hooks.received["reports"]
        assert "weekly" in hook["subject"].lower() and hook["kind"] == "reports"
        [security] = hooks.received["security"]
        assert security["subject"].startswith("Security review")
        [notice] = hooks.received["events"]
        assert notice["subject"] == "New gateway user dana (viewer)"
        assert "**dana**" in notice["text"] and "master" in notice["text"]
    finally:
        await asyncio.to_thread(gw.stop)
