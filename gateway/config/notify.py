"""The ``notifications`` section: where the gateway sends what it has to tell people (the
weekly and monthly reports, the security review, info notices such as a user registered),
delivered by gateway/notify/. Receivers are named once and routed to by message kind:

- ``webhook``: a JSON POST of ``{subject, text, kind, html?}`` to ``url``;
- ``slack``: a Slack-compatible incoming webhook (``{"text": ...}`` in mrkdwn) at ``url``;
- ``email``: SMTP (``smtp``: host, port, from, to, optional login, STARTTLS or SSL).

Problems name the path (``notifications.routes.reports[1]: ...``) and never quote a URL or a
password: a webhook URL is often a secret of its own."""

from __future__ import annotations

import re
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import ConfigDict, Field, model_validator

from gateway.config.fields import Flag, PositiveFloat, Text
from gateway.config.fields import Strict as _Strict

ReceiverKind = Literal["webhook", "slack", "email"]
RECEIVER_KINDS: tuple[ReceiverKind, ...] = ("webhook", "slack", "email")
MessageKind = Literal["reports", "security", "events"]
MESSAGE_KINDS: tuple[MessageKind, ...] = ("reports", "security", "events")
"""The routes: a message of kind ``reports`` goes to the receivers ``routes.reports`` names."""

_ADDRESS = re.compile(r"^[^@\s<>,;\"]+@[^@\s<>,;\"]+\.[^@\s<>,;\"]+$")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


def url_problem(url: str) -> str | None:
    """Why ``url`` is not an http(s) URL with a host (never quoting it), or None."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 (a bad port raises here)
    except ValueError:
        return "is not a valid URL"
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return "must be an http(s) URL with a host (http://host/... or https://host/...)"
    if any(c.isspace() for c in url):
        return "must not contain whitespace"
    return None


def _address(value: str, where: str) -> str:
    if not _ADDRESS.match(value):
        raise ValueError(f"{where}: not an e-mail address (name@example.com)")
    return value


class SmtpSettings(_Strict):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True, validate_by_name=True)

    host: Annotated[str, Field(min_length=1)]
    port: Annotated[int, Field(ge=1, le=65535)] = 587
    sender: str = Field(alias="from")
    """The From address (``from`` in the file)."""
    to: Annotated[list[str], Field(min_length=1)]
    username: Text | None = None
    password: Text | None = None
    """From ``${SMTP_PASSWORD}``: never written in the file, never logged."""
    starttls: Flag = True
    """Upgrade the connection with STARTTLS (certificate verified) before logging in."""
    ssl: Flag = False
    """Implicit TLS from the first byte (port 465) instead of STARTTLS."""

    @model_validator(mode="after")
    def _check(self) -> SmtpSettings:
        _address(self.sender, "from")
        for i, address in enumerate(self.to):
            _address(address, f"to[{i}]")
        if self.ssl and self.starttls:
            raise ValueError("ssl and starttls: choose one (ssl: true needs starttls: false)")
        if (self.username is None) != (self.password is None):
            raise ValueError("username and password: set both (a login) or neither")
        return self


class Receiver(_Strict):
    kind: ReceiverKind
    url: Text | None = None
    """webhook and slack: where to POST."""
    headers: dict[str, Text] = Field(default_factory=dict)
    """webhook: extra request headers (``Authorization: Bearer ${HOOK_TOKEN}``)."""
    smtp: SmtpSettings | None = None
    """email: the SMTP server and the addresses."""
    timeout_s: Annotated[PositiveFloat, Field(le=300)] = 10.0
    """Limit of one delivery attempt (connect, send, answer)."""

    @model_validator(mode="after")
    def _check(self) -> Receiver:
        if self.kind == "email":
            if self.smtp is None:
                raise ValueError("smtp is required for kind email (host, from, to)")
            if self.url is not None or self.headers:
                raise ValueError("url and headers are for webhook and slack receivers, not email")
            return self
        if self.url is None:
            raise ValueError(f"url is required for kind {self.kind}")
        problem = url_problem(self.url)
        if problem:
            raise ValueError(f"url {problem}")
        if self.smtp is not None:
            raise ValueError(f"smtp is for email receivers, not {self.kind}")
        if self.headers and self.kind == "slack":
            raise ValueError("headers are for webhook receivers (a Slack URL carries its own token)")
        return self


class Routes(_Strict):
    reports: list[str] = Field(default_factory=list)
    """The weekly and monthly reports."""
    security: list[str] = Field(default_factory=list)
    """The weekly security review."""
    events: list[str] = Field(default_factory=list)
    """Info notices (a user registered)."""


class NotificationsSettings(_Strict):
    receivers: dict[str, Receiver] = Field(default_factory=dict)
    routes: Routes = Routes()
    attempts: Annotated[int, Field(ge=1, le=10)] = 3
    """Attempts per receiver and message (a 4xx answer or a refused login is not retried)."""
    backoff_s: Annotated[float, Field(ge=0, le=60)] = 1.0
    """The wait before the second attempt; it doubles before each later one."""

    @model_validator(mode="after")
    def _check(self) -> NotificationsSettings:
        problems = [
            f"receivers.{name}: a name is letters, digits, '_', '.', '-' (at most 64)"
            for name in self.receivers
            if not _NAME.match(name)
        ]
        for kind in MESSAGE_KINDS:
            seen: set[str] = set()
            for i, name in enumerate(getattr(self.routes, kind)):
                if name not in self.receivers:
                    known = ", ".join(sorted(self.receivers)) or "none defined"
                    problems.append(f"routes.{kind}[{i}]: unknown receiver {name!r} (receivers: {known})")
                elif name in seen:
                    problems.append(f"routes.{kind}[{i}]: receiver {name!r} is listed twice")
                seen.add(name)
        if problems:
            raise ValueError("; ".join(problems))
        return self

    def receivers_for(self, kind: str) -> list[tuple[str, Receiver]]:
        """The receivers a message of ``kind`` goes to (none for an unknown kind)."""
        names: list[str] = getattr(self.routes, kind, []) if kind in MESSAGE_KINDS else []
        return [(name, self.receivers[name]) for name in names]
