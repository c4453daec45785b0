"""One delivery attempt per receiver kind: an HTTP POST (webhook, Slack) with aiohttp, or
an e-mail with the standard library's smtplib (in a worker thread). A failure is raised as
:class:`DeliveryError` with a reason safe to log (a status, an SMTP code, an OS error name:
never a URL, a header or a password) and whether another attempt may succeed."""

from __future__ import annotations

import asyncio
import smtplib
import socket
import ssl
from collections.abc import Mapping
from email.message import EmailMessage
from typing import Any

import aiohttp

from gateway.config.notify import SmtpSettings

RETRY_STATUSES = frozenset({408, 425, 429})
"""Besides every 5xx: answers after which the same POST may succeed later."""


class DeliveryError(Exception):
    def __init__(self, reason: str, *, retry: bool) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry = retry


def _os_reason(exc: OSError) -> str:
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, socket.gaierror):
        return "host name not resolved"
    return f"{type(exc).__name__}" + (f" ({exc.strerror})" if exc.strerror else "")


async def post_json(
    session: aiohttp.ClientSession, url: str, body: Mapping[str, Any], headers: Mapping[str, str], timeout_s: float
) -> None:
    """POST ``body``; any 2xx is delivered. Redirects are not followed (a 3xx fails)."""
    try:
        async with asyncio.timeout(timeout_s):
            async with session.post(
                url, json=dict(body), headers=dict(headers), allow_redirects=False, raise_for_status=False
            ) as resp:
                status = resp.status
                await resp.read()
    except TimeoutError:
        raise DeliveryError("timed out", retry=True) from None
    except aiohttp.ClientConnectorError as exc:
        raise DeliveryError(f"cannot connect: {_os_reason(exc.os_error)}", retry=True) from None
    except aiohttp.ClientError as exc:
        raise DeliveryError(f"HTTP client error ({type(exc).__name__})", retry=True) from None
    except OSError as exc:
        raise DeliveryError(_os_reason(exc), retry=True) from None
    if 200 <= status < 300:
        return
    retry = status >= 500 or status in RETRY_STATUSES
    raise DeliveryError(f"HTTP {status}", retry=retry)


def send_mail(smtp: SmtpSettings, mail: EmailMessage, timeout_s: float) -> None:
    """Deliver ``mail`` through ``smtp`` (blocking: run it in a thread). STARTTLS and SSL verify
    the server's certificate; a server without STARTTLS when it is asked for fails (no silent
    downgrade to plain text)."""
    try:
        _send(smtp, mail, timeout_s)
    except ssl.SSLError as exc:
        raise DeliveryError(f"TLS failed ({type(exc).__name__})", retry=False) from None
    except smtplib.SMTPNotSupportedError:
        raise DeliveryError("the server does not offer STARTTLS or AUTH as asked", retry=False) from None
    except smtplib.SMTPRecipientsRefused as exc:
        codes = sorted({code for code, _ in exc.recipients.values()})
        raise DeliveryError(f"SMTP recipients refused ({', '.join(map(str, codes))})", retry=False) from None
    except smtplib.SMTPServerDisconnected:
        raise DeliveryError("SMTP server closed the connection", retry=True) from None
    except smtplib.SMTPResponseException as exc:
        code = exc.smtp_code
        what = "authentication refused" if isinstance(exc, smtplib.SMTPAuthenticationError) else "refused"
        raise DeliveryError(f"SMTP {code} ({what})", retry=not 500 <= code < 600) from None
    except smtplib.SMTPException as exc:
        raise DeliveryError(f"SMTP error ({type(exc).__name__})", retry=False) from None
    except TimeoutError:
        raise DeliveryError("timed out", retry=True) from None
    except OSError as exc:
        raise DeliveryError(_os_reason(exc), retry=True) from None


def _send(smtp: SmtpSettings, mail: EmailMessage, timeout_s: float) -> None:
    context = ssl.create_default_context()
    local = socket.gethostname()  # not getfqdn(): no DNS lookup before the first byte
    client = (
        smtplib.SMTP_SSL(smtp.host, smtp.port, local_hostname=local, timeout=timeout_s, context=context)
        if smtp.ssl
        else smtplib.SMTP(smtp.host, smtp.port, local_hostname=local, timeout=timeout_s)
    )
    with client:
        if smtp.starttls:
            client.starttls(context=context)
        if smtp.username is not None and smtp.password is not None:
            client.login(smtp.username, smtp.password)
        client.send_message(mail, from_addr=smtp.sender, to_addrs=list(smtp.to))
