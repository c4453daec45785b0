"""A message in each receiver's form (gateway/notify/render.py), the delivery result's
summary, the notifications' metrics, and the report delivery's period and subject."""

from __future__ import annotations

import asyncio
from datetime import date

from prometheus_client import CollectorRegistry, generate_latest

from gateway.config.notify import NotificationsSettings
from gateway.notify import DeliveryResult, Message, Notifier
from gateway.notify.render import SLACK_MAX_CHARS, email_message, slack_payload, to_mrkdwn, webhook_payload
from gateway.observability.metrics import Metrics
from gateway.observability.notify_metrics import NotifyCollector
from gateway.reports.delivery import last_period_day

MARKDOWN = """# Gateway report: weekly 2026-W48

Period 2026-11-23 to 2026-11-29 (UTC); from the gateway's statistics.

> Prometheus was not used: <refused> & more

## KPIs against the operations manual's targets

| KPI | value | target | verdict |
|---|---|---|---|
| Availability | 99.95 % | >= 99.90 % | **met** |
| p95 latency | 1,200 ms | <= 2,000 ms | met |

The **end**."""


def test_markdown_becomes_slack_mrkdwn() -> None:
    assert to_mrkdwn(MARKDOWN).splitlines() == [
        "*Gateway report: weekly 2026-W48*",
        "",
        "Period 2026-11-23 to 2026-11-29 (UTC); from the gateway's statistics.",
        "",
        "> Prometheus was not used: &lt;refused&gt; &amp; more",
        "",
        "*KPIs against the operations manual's targets*",
        "",
        "```",
        "| KPI | value | target | verdict |",
        "| Availability | 99.95 % | &gt;= 99.90 % | **met** |",
        "| p95 latency | 1,200 ms | &lt;= 2,000 ms | met |",
        "```",
        "",
        "The *end*.",
    ]


def test_a_table_at_the_end_is_closed() -> None:
    assert to_mrkdwn("| a |\n|---|\n| 1 |") == "```\n| a |\n| 1 |\n```"


def test_each_receiver_form() -> None:
    message = Message(subject="Weekly\nreport <W48>", text="**hi**", html="<p>hi</p>", kind="reports")
    assert webhook_payload(message) == {
        "subject": "Weekly report <W48>",
        "text": "**hi**",
        "kind": "reports",
        "html": "<p>hi</p>",
    }
    assert "html" not in webhook_payload(Message(subject="s", text="t", kind="events"))
    assert slack_payload(message) == {"text": "*Weekly report &lt;W48&gt;*\n\n*hi*", "mrkdwn": True}
    mail = email_message(message, "gw@example.com", ["a@example.com", "b@example.com"])
    assert (mail["Subject"], mail["From"], mail["To"], mail["X-Gateway-Kind"]) == (
        "Weekly report <W48>",
        "gw@example.com",
        "a@example.com, b@example.com",
        "reports",
    )
    assert mail.is_multipart()
    plain, html = (part.get_content_type() for part in mail.iter_parts())
    assert (plain, html) == ("text/plain", "text/html")
    assert mail.get_body(("plain",)).get_content().strip() == "**hi**"  # type: ignore[union-attr]
    assert not email_message(Message(subject="s", text="t", kind="events"), "gw@example.com", ["a@x.io"]).is_multipart()


def test_a_long_slack_message_is_cut_without_an_open_code_block() -> None:
    table = "\n".join(f"| row {i} | {'x' * 40} |" for i in range(2000))
    text = slack_payload(Message(subject="big", text=f"# T\n\n{table}\n", kind="reports"))["text"]
    assert SLACK_MAX_CHARS < len(text) < 40_000
    assert text.count("```") % 2 == 0
    assert text.endswith("longer than a Slack message can be)")


def test_the_result_summary() -> None:
    assert DeliveryResult("reports").summary() == "no receiver routed for reports (notifications.routes.reports)"
    assert DeliveryResult("reports").ok
    both = DeliveryResult("reports", ("mail", "hook"), (), 2)
    assert (both.ok, both.summary()) == (True, "sent to 2 of 2 receiver(s)")
    one = DeliveryResult("reports", ("hook",), ("mail",), 4)
    assert (one.ok, one.receivers, one.summary()) == (False, 2, "sent to 1 of 2 receiver(s) (failed: mail)")


def test_a_kind_routed_nowhere_is_not_sent() -> None:
    notifier = Notifier(NotificationsSettings())
    result = asyncio.run(notifier.send(Message(subject="s", text="t", kind="security")))
    assert (result.delivered, result.failed, result.attempts) == ((), (), 0)
    assert set(notifier.counts().values()) == {0}


def test_the_metric_has_every_kind_and_outcome_from_zero() -> None:
    registry = CollectorRegistry()
    counts = {("email", "failed"): 2, ("webhook", "ok"): 5}
    registry.register(NotifyCollector(lambda: counts))
    text = generate_latest(registry).decode()
    assert "# TYPE gateway_notifications_total counter" in text
    for kind in ("webhook", "slack", "email"):
        for outcome in ("ok", "failed"):
            value = float(counts.get((kind, outcome), 0))
            assert f'gateway_notifications_total{{outcome="{outcome}",receiver_kind="{kind}"}} {value}' in text


def test_the_catalog_reads_the_notifier() -> None:
    metrics = Metrics()
    notifier = Notifier(NotificationsSettings())
    notifier.deliveries["ops", "slack", "failed"] += 3
    metrics.sources.notifications.read = notifier.counts
    body, _ = metrics.render()
    assert b'gateway_notifications_total{outcome="failed",receiver_kind="slack"} 3.0' in body
    assert b'gateway_notifications_total{outcome="ok",receiver_kind="email"} 0.0' in body


def test_the_period_that_just_ended() -> None:
    # Monday 2026-12-07 09:00: last week is Monday 11-30 to Sunday 12-06.
    assert last_period_day("weekly", date(2026, 12, 7)) == date(2026, 11, 30)
    assert last_period_day("weekly", date(2026, 12, 13)) == date(2026, 11, 30)  # a Sunday: still last week
    assert last_period_day("monthly", date(2026, 12, 1)) == date(2026, 11, 1)
    assert last_period_day("monthly", date(2027, 1, 1)) == date(2026, 12, 1)
    assert last_period_day("monthly", date(2027, 3, 31)) == date(2027, 2, 1)
