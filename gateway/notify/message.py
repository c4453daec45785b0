"""What is sent (:class:`Message`) and what came of it (:class:`DeliveryResult`)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, kw_only=True)
class Message:
    subject: str
    """One line (line breaks become spaces when sent)."""
    text: str
    """The body as Markdown: the webhook's ``text``, Slack's (as mrkdwn), the e-mail's plain part."""
    html: str | None = None
    """An HTML body: the e-mail's alternative part and the webhook's ``html``; Slack ignores it."""
    kind: str
    """The route: ``reports``, ``security`` or ``events`` (``notifications.routes``)."""


@dataclass(frozen=True)
class DeliveryResult:
    kind: str
    delivered: tuple[str, ...] = ()
    """The receivers that took the message."""
    failed: tuple[str, ...] = ()
    """The receivers that did not, after every attempt."""
    attempts: int = 0
    """Attempts over all receivers."""

    @property
    def ok(self) -> bool:
        """Every receiver routed to took it (also true when none is routed to)."""
        return not self.failed

    @property
    def receivers(self) -> int:
        return len(self.delivered) + len(self.failed)

    def summary(self) -> str:
        """One line for a job's outcome, e.g. ``sent to 2 of 3 receivers (failed: ops-mail)``."""
        if not self.receivers:
            return f"no receiver routed for {self.kind} (notifications.routes.{self.kind})"
        line = f"sent to {len(self.delivered)} of {self.receivers} receiver(s)"
        return f"{line} (failed: {', '.join(self.failed)})" if self.failed else line
