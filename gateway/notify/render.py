"""A :class:`Message` in each receiver's form: the webhook's JSON, a Slack-compatible
``{"text": ...}`` in mrkdwn, and an e-mail (plain Markdown text, with an HTML alternative
when the message has one). Pure functions, no I/O."""

from __future__ import annotations

import re
import socket
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from typing import Any

from gateway.notify.message import Message

SLACK_MAX_CHARS = 39_000
"""Slack takes at most 40,000 characters of ``text``; longer messages are cut below that."""
_HEADING = re.compile(r"^#{1,6}\s+(.*?)\s*#*\s*$")
_BOLD = re.compile(r"\*\*(.+?)\*\*")
_TABLE_RULE = re.compile(r"^\|?\s*:?-{3,}:?\s*(\|\s*:?-{3,}:?\s*)*\|?\s*$")


def one_line(text: str) -> str:
    """A subject on one line (a line break in a header would start another header)."""
    return " ".join(text.split())


def webhook_payload(message: Message) -> dict[str, Any]:
    body: dict[str, Any] = {"subject": one_line(message.subject), "text": message.text, "kind": message.kind}
    if message.html is not None:
        body["html"] = message.html
    return body


def slack_escape(text: str) -> str:
    """Slack's three control characters, as its formatting rules ask."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def to_mrkdwn(markdown: str) -> str:
    """Markdown as Slack's mrkdwn: headings and ``**bold**`` become ``*bold*``, tables (which
    Slack does not draw) become code blocks so their columns stay aligned, quotes stay quotes."""
    out: list[str] = []
    table: list[str] = []

    def flush() -> None:
        if table:
            out.extend(["```", *table, "```"])
            table.clear()

    for raw in markdown.splitlines():
        line = raw.rstrip()
        if line.startswith("|"):
            if not _TABLE_RULE.match(line):
                table.append(slack_escape(line))
            continue
        flush()
        quote = line.startswith("> ")
        text = slack_escape(line[2:] if quote else line)
        heading = _HEADING.match(text)
        text = f"*{heading.group(1)}*" if heading else _BOLD.sub(r"*\1*", text)
        out.append(f"> {text}" if quote else text)
    flush()
    return "\n".join(out)


def slack_payload(message: Message) -> dict[str, Any]:
    text = f"*{slack_escape(one_line(message.subject))}*\n\n{to_mrkdwn(message.text)}"
    if len(text) > SLACK_MAX_CHARS:
        cut = text[:SLACK_MAX_CHARS]
        if cut.count("```") % 2:  # do not leave a code block open
            cut += "\n```"
        text = cut + "\n… (cut here: the message is longer than a Slack message can be)"
    return {"text": text, "mrkdwn": True}


def email_message(message: Message, sender: str, to: list[str]) -> EmailMessage:
    mail = EmailMessage()
    mail["Subject"] = one_line(message.subject)
    mail["From"] = sender
    mail["To"] = ", ".join(to)
    mail["Date"] = formatdate(localtime=False)
    mail["Message-ID"] = make_msgid(domain=sender.rpartition("@")[2] or socket.gethostname())
    mail["X-Gateway-Kind"] = message.kind
    mail.set_content(message.text)
    if message.html is not None:
        mail.add_alternative(message.html, subtype="html")
    return mail
