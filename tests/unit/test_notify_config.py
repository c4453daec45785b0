"""The ``notifications`` section (gateway/config/notify.py): receivers of each kind, routes
by message kind, and every mistake refused naming its path and quoting no URL or password."""

from __future__ import annotations

import pytest

from gateway.config.loader import ConfigError, parse_config
from gateway.config.notify import NotificationsSettings

SECRET_PATH = "T0001/B0002/sEcReTtOkEn42"

GOOD = """
notifications:
  attempts: 4
  backoff_s: 0.5
  receivers:
    mail:
      kind: email
      timeout_s: 5
      smtp: {host: smtp.example.com, from: gw@example.com, to: [ops@example.com], username: gw,
             password: "${SMTP_PASSWORD}"}
    hook: {kind: webhook, url: "https://hooks.example.com/x", headers: {Authorization: "Bearer ${HOOK_TOKEN}"}}
    chat: {kind: slack, url: "https://hooks.slack.com/services/${SLACK_PATH}"}
  routes:
    reports: [mail, hook]
    security: [mail]
    events: [chat]
"""
ENV = {"SMTP_PASSWORD": "pw-Secret-123", "HOOK_TOKEN": "tok-Secret-456", "SLACK_PATH": SECRET_PATH}


def problems(text: str, env: dict[str, str] | None = None) -> str:
    with pytest.raises(ConfigError) as info:
        parse_config(text, env=ENV if env is None else env)
    return str(info.value)


def test_a_full_section_loads() -> None:
    n = parse_config(GOOD, env=ENV).settings.notifications
    assert (n.attempts, n.backoff_s) == (4, 0.5)
    mail = n.receivers["mail"]
    assert mail.smtp is not None
    assert (mail.smtp.host, mail.smtp.port, mail.smtp.sender, mail.smtp.to) == (
        "smtp.example.com",
        587,
        "gw@example.com",
        ["ops@example.com"],
    )
    assert (mail.smtp.password, mail.smtp.starttls, mail.smtp.ssl, mail.timeout_s) == ("pw-Secret-123", True, False, 5)
    assert n.receivers["hook"].headers == {"Authorization": "Bearer tok-Secret-456"}
    assert n.receivers["chat"].url == f"https://hooks.slack.com/services/{SECRET_PATH}"
    assert [name for name, _ in n.receivers_for("reports")] == ["mail", "hook"]
    assert [name for name, _ in n.receivers_for("events")] == ["chat"]
    assert n.receivers_for("weekly") == []  # an unknown kind is routed nowhere


def test_the_default_sends_nothing() -> None:
    n = parse_config("", env={}).settings.notifications
    assert n == NotificationsSettings()
    assert (n.receivers, n.attempts, n.backoff_s) == ({}, 3, 1.0)
    assert all(n.receivers_for(kind) == [] for kind in ("reports", "security", "events"))


@pytest.mark.parametrize(
    ("snippet", "expected"),
    [
        (
            "receivers: {hook: {kind: webhook, url: 'http://127.0.0.1/x'}}\n  routes: {reports: [hook, ops]}",
            "notifications: routes.reports[1]: unknown receiver 'ops' (receivers: hook)",
        ),
        (
            "routes: {security: [ops]}",
            "notifications: routes.security[0]: unknown receiver 'ops' (receivers: none defined)",
        ),
        (
            "receivers: {hook: {kind: webhook, url: 'http://127.0.0.1/x'}}\n  routes: {events: [hook, hook]}",
            "notifications: routes.events[1]: receiver 'hook' is listed twice",
        ),
        ("receivers: {hook: {kind: webhook}}", "notifications.receivers.hook: url is required for kind webhook"),
        ("receivers: {hook: {kind: sms, url: 'http://x/'}}", "notifications.receivers.hook.kind: Input should be"),
        (
            "receivers: {hook: {kind: webhook, url: 'ftp://files.example.com/x'}}",
            "notifications.receivers.hook: url must be an http(s) URL with a host",
        ),
        (
            "receivers: {hook: {kind: slack, url: 'https:///nohost'}}",
            "notifications.receivers.hook: url must be an http(s) URL with a host",
        ),
        (
            "receivers: {hook: {kind: slack, url: 'https://h.example.com/x', headers: {A: b}}}",
            "notifications.receivers.hook: headers are for webhook receivers",
        ),
        ("receivers: {mail: {kind: email}}", "notifications.receivers.mail: smtp is required for kind email"),
        (
            "receivers: {mail: {kind: email, smtp: {host: h, to: [a@example.com]}}}",
            "notifications.receivers.mail.smtp.from: Field required",
        ),
        (
            "receivers: {mail: {kind: email, smtp: {from: a@example.com, to: [a@example.com]}}}",
            "notifications.receivers.mail.smtp.host: Field required",
        ),
        (
            "receivers: {mail: {kind: email, smtp: {host: h, from: a@example.com, to: []}}}",
            "notifications.receivers.mail.smtp.to: List should have at least 1 item",
        ),
        (
            "receivers: {mail: {kind: email, smtp: {host: h, from: a@example.com, to: [nobody]}}}",
            "notifications.receivers.mail.smtp: to[0]: not an e-mail address",
        ),
        (
            "receivers: {mail: {kind: email, smtp: {host: h, from: a@example.com, to: [b@example.com], ssl: true}}}",
            "notifications.receivers.mail.smtp: ssl and starttls: choose one",
        ),
        (
            "receivers: {mail: {kind: email, smtp: {host: h, from: a@example.com, to: [b@example.com], username: u}}}",
            "notifications.receivers.mail.smtp: username and password: set both",
        ),
        (
            "receivers: {mail: {kind: email, url: 'http://h/', smtp: {host: h, from: a@example.com, to: [b@x.io]}}}",
            "notifications.receivers.mail: url and headers are for webhook and slack receivers",
        ),
        (
            "receivers: {'bad name': {kind: webhook, url: 'http://h/'}}",
            "notifications: receivers.bad name: a name is letters, digits",
        ),
        ("attempts: 0", "notifications.attempts: Input should be greater than or equal to 1"),
        ("backoff_s: 61", "notifications.backoff_s: Input should be less than or equal to 60"),
        ("receivers: {h: {kind: webhook, url: 'http://h/', timeout_s: 0}}", "notifications.receivers.h.timeout_s"),
        ("channels: {}", "notifications.channels: unknown key"),
    ],
)
def test_mistakes_are_refused_naming_the_path(snippet: str, expected: str) -> None:
    assert expected in problems(f"notifications:\n  {snippet}\n")


def test_a_bad_url_from_the_environment_is_not_quoted() -> None:
    text = "notifications:\n  receivers: {chat: {kind: slack, url: '${SLACK_URL}'}}\n"
    secret = f"hooks.slack.com/services/{SECRET_PATH}"  # no scheme: refused
    message = problems(text, {"SLACK_URL": secret})
    assert "notifications.receivers.chat: url must be an http(s) URL" in message
    assert SECRET_PATH not in message


def test_a_password_is_never_quoted_in_a_problem() -> None:
    text = GOOD.replace("from: gw@example.com", "from: '${SMTP_PASSWORD}'")
    message = problems(text, {**ENV, "SMTP_PASSWORD": "pw-Secret-123"})
    assert "smtp: from: not an e-mail address" in message
    assert "pw-Secret-123" not in message
