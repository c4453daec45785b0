"""The :class:`Notifier`: a message to every receiver its kind is routed to, at the same
time, each with up to ``notifications.attempts`` attempts and exponential backoff between
them. It never raises: a receiver that fails after every attempt is logged (its name, kind
and a reason that quotes no URL, header or password) and counted, and the others still get
the message."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping

import aiohttp

from gateway.config.notify import RECEIVER_KINDS, NotificationsSettings, Receiver
from gateway.notify.message import DeliveryResult, Message
from gateway.notify.render import email_message, slack_payload, webhook_payload
from gateway.notify.senders import DeliveryError, post_json, send_mail

log = logging.getLogger("gateway.notify")

OUTCOMES = ("ok", "failed")
Sleep = Callable[[float], Awaitable[None]]


class Notifier:
    """Delivers messages to the receivers of ``settings`` (replace ``settings`` on a reload;
    the counts stay). ``sleep`` is the wait between attempts (tests pass a recorder)."""

    def __init__(self, settings: NotificationsSettings, *, sleep: Sleep = asyncio.sleep) -> None:
        self.settings = settings
        self._sleep = sleep
        self.deliveries: Counter[tuple[str, str, str]] = Counter()
        """(receiver name, receiver kind, outcome) -> deliveries (one per message, whatever its attempts)."""

    def counts(self) -> Mapping[tuple[str, str], int]:
        """(receiver kind, outcome) -> deliveries, every kind and outcome present (for the metrics)."""
        out: dict[tuple[str, str], int] = {(kind, outcome): 0 for kind in RECEIVER_KINDS for outcome in OUTCOMES}
        for (_, kind, outcome), n in self.deliveries.items():
            out[kind, outcome] += n
        return out

    async def send(self, message: Message) -> DeliveryResult:
        settings = self.settings
        try:
            targets = settings.receivers_for(message.kind)
            if not targets:
                log.info("notification %r (%s): no receiver routed for this kind", message.subject, message.kind)
                return DeliveryResult(message.kind)
            async with aiohttp.ClientSession() as session:
                outcomes = await asyncio.gather(
                    *(self._deliver(session, settings, name, receiver, message) for name, receiver in targets)
                )
        except Exception:  # a bug must not take the caller (a job, a registration) down with it
            log.exception("notification %r (%s) could not be sent", message.subject, message.kind)
            names = tuple(name for name, _ in settings.receivers_for(message.kind))
            return DeliveryResult(message.kind, failed=names)
        delivered = tuple(name for (name, _), (ok, _) in zip(targets, outcomes, strict=True) if ok)
        failed = tuple(name for (name, _), (ok, _) in zip(targets, outcomes, strict=True) if not ok)
        return DeliveryResult(message.kind, delivered, failed, sum(n for _, n in outcomes))

    async def _deliver(
        self,
        session: aiohttp.ClientSession,
        settings: NotificationsSettings,
        name: str,
        receiver: Receiver,
        message: Message,
    ) -> tuple[bool, int]:
        """(delivered, attempts made)."""
        started = time.monotonic()
        attempt = 0
        reason = ""
        while attempt < settings.attempts:
            attempt += 1
            try:
                await self._attempt(session, receiver, message)
            except DeliveryError as exc:
                reason = _scrub(exc.reason, receiver)
                if not exc.retry or attempt >= settings.attempts:
                    break
                wait = settings.backoff_s * 2 ** (attempt - 1)
                log.info(
                    "notification to %s (%s), attempt %d of %d: %s; next in %.1f s",
                    name,
                    receiver.kind,
                    attempt,
                    settings.attempts,
                    reason,
                    wait,
                )
                await self._sleep(wait)
            except Exception as exc:
                reason = f"unexpected {type(exc).__name__}"
                log.exception("notification to %s (%s): %s", name, receiver.kind, reason)
                break
            else:
                self.deliveries[name, receiver.kind, "ok"] += 1
                log.info(
                    "notification %r (%s) delivered to %s (%s) in %.2f s, attempt %d",
                    message.subject,
                    message.kind,
                    name,
                    receiver.kind,
                    time.monotonic() - started,
                    attempt,
                )
                return True, attempt
        self.deliveries[name, receiver.kind, "failed"] += 1
        log.warning(
            "notification %r (%s) to %s (%s) failed after %d attempt(s): %s",
            message.subject,
            message.kind,
            name,
            receiver.kind,
            attempt,
            reason,
        )
        return False, attempt

    @staticmethod
    async def _attempt(session: aiohttp.ClientSession, receiver: Receiver, message: Message) -> None:
        if receiver.kind == "email":
            assert receiver.smtp is not None  # the config requires it
            mail = email_message(message, receiver.smtp.sender, list(receiver.smtp.to))
            work = asyncio.to_thread(send_mail, receiver.smtp, mail, receiver.timeout_s)
            try:  # the socket timeout bounds each SMTP step; this bounds the whole conversation
                await asyncio.wait_for(work, timeout=receiver.timeout_s * 3)
            except TimeoutError:
                raise DeliveryError("timed out", retry=True) from None
            return
        assert receiver.url is not None  # the config requires it
        body = slack_payload(message) if receiver.kind == "slack" else webhook_payload(message)
        await post_json(session, receiver.url, body, receiver.headers, receiver.timeout_s)


def _scrub(reason: str, receiver: Receiver) -> str:
    """``reason`` without anything of the receiver that may be secret (a second line of
    defence: the senders' reasons are built to quote none of it)."""
    secrets = [receiver.url or "", *receiver.headers.values()]
    if receiver.smtp is not None:
        secrets.append(receiver.smtp.password or "")
    for secret in sorted((s for s in secrets if len(s) >= 4), key=len, reverse=True):
        reason = reason.replace(secret, "[REDACTED]")
    return reason
