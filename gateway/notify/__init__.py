"""Notifications: telling people what the gateway has to say (the weekly and monthly
reports, the security review, info notices) through the receivers of the ``notifications``
config section: a JSON webhook, a Slack-compatible incoming webhook, or e-mail over SMTP,
each delivery retried with backoff and counted by receiver kind and outcome."""

from gateway.notify.message import DeliveryResult, Message
from gateway.notify.notifier import Notifier

__all__ = ["DeliveryResult", "Message", "Notifier"]
