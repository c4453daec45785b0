"""Structured logs: one line per client request, and the audit events.

Two loggers carry them, each line a JSON object (or ``key=value`` text with
``logging.format: text``) on standard error:

- ``gateway.access``: one line per chat or embeddings request, built from a
  :class:`RequestRecord` (never the key itself, only its id; prompts and
  completions only with ``logging.log_payloads: true``, and then redacted);
- ``gateway.audit``: security and admin events, each with an ``event`` field:
  ``auth.failed``, ``admin.denied``, ``key.created``, ``key.updated``,
  ``key.revoked``, ``key.rotated``, ``team.created``, ``team.updated``,
  ``team.deleted``, ``budget.threshold``, ``budget.exhausted``.

Emitters pass their fields in the log record (``extra={"fields": ...}``); the
handler that :func:`install_handlers` puts on the two loggers renders them, so
the format is decided in one place. Any other handler sees the event name.
"""

from __future__ import annotations

import asyncio
import logging
import re
import sys
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, fields
from datetime import UTC, datetime
from typing import Any

import orjson

from gateway.canonical import JSON
from gateway.config.operations import LoggingSettings

ACCESS_LOGGER = "gateway.access"
AUDIT_LOGGER = "gateway.audit"

_audit = logging.getLogger(AUDIT_LOGGER)


@dataclass(slots=True)
class RequestRecord:
    """What one client request came to: the access log line, the span's
    closing attributes, and what in-process subscribers receive."""

    ts: float
    """When the request was received (seconds since the epoch)."""
    request_id: str
    route: str
    """``chat`` or ``embeddings``."""
    status: int
    latency_ms: float
    trace_id: str | None = None
    key_id: str | None = None
    team: str | None = None
    alias: str = "unknown"
    deployment: str | None = None
    provider: str | None = None
    model: str | None = None
    """The upstream model of the deployment that answered."""
    attempts: int = 0
    ttft_ms: float | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    cost_usd: float | None = None
    cache: str | None = None
    """``hit``, ``miss``, ``refresh`` or ``off`` (the ``x-gateway-cache`` value); None before the cache step."""
    error_code: str | None = None
    stream: bool = False


RECORD_FIELDS = tuple(f.name for f in fields(RequestRecord))
RequestSink = Callable[[RequestRecord], None]


def iso_time(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


# --- redaction ---------------------------------------------------------------------

BUILTIN_PATTERNS: tuple[tuple[str, str], ...] = (
    ("key", r"\b(?:sk|pk|rk)-[A-Za-z0-9_\-]{12,}"),
    ("key", r"\bAIza[0-9A-Za-z_\-]{30,}"),
    ("key", r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b"),
    ("key", r"\b(?:ghp|gho|ghs|github_pat|xox[abpr])_?[A-Za-z0-9_\-]{16,}"),
    ("key", r"(?i)\bbearer\s+[A-Za-z0-9._~+/=\-]{8,}"),
    ("email", r"[A-Za-z0-9._%+\-]+@[A-Za-z0-9\-]+(?:\.[A-Za-z0-9\-]+)*\.[A-Za-z]{2,}"),
)
_CARD = re.compile(r"(?<!\d)(?:\d[ \-]?){12,18}\d(?!\d)")


def _luhn(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def _card(match: re.Match[str]) -> str:
    digits = re.sub(r"\D", "", match.group(0))
    return "[REDACTED:card]" if 13 <= len(digits) <= 19 and _luhn(digits) else match.group(0)


class Redactor:
    """Replaces secrets and personal data in text with ``[REDACTED:<kind>]``:
    API keys and bearer tokens, e-mail addresses, card numbers (those passing
    the Luhn check) and whatever the configured extra patterns match."""

    def __init__(self, extra_patterns: Iterable[str] = ()) -> None:
        self._patterns = [(re.compile(p), f"[REDACTED:{kind}]") for kind, p in BUILTIN_PATTERNS]
        self._patterns += [(re.compile(p), "[REDACTED]") for p in extra_patterns]

    def __call__(self, text: str) -> str:
        for pattern, replacement in self._patterns:
            text = pattern.sub(replacement, text)
        return _CARD.sub(_card, text)


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit] + f"...[{len(text) - limit} more chars]"


def prompt_text(req: JSON) -> str:
    """The request's messages (chat) or input (embeddings), as JSON text."""
    part = req.get("messages") if "messages" in req else req.get("input")
    return orjson.dumps(part).decode()


def completion_text(answer: JSON) -> str:
    """The assistant's content and tool calls of a chat completion."""
    parts: list[Any] = []
    for choice in answer.get("choices") or ():
        message = choice.get("message") if isinstance(choice, dict) else None
        if isinstance(message, dict):
            if message.get("content") is not None:
                parts.append(message["content"])
            if message.get("tool_calls"):
                parts.append(message["tool_calls"])
    if len(parts) == 1 and isinstance(parts[0], str):
        return parts[0]
    return orjson.dumps(parts).decode()


# --- the access log ----------------------------------------------------------------


class AccessLog:
    """Writes one ``gateway.access`` line per finished request.

    While the logger's only handler is the one :func:`install_handlers` put
    there (the normal case), the line is rendered here and written straight to
    that handler's stream: the same bytes the handler would write, without
    building a ``LogRecord`` (which costs several times the rest). Any other
    logging setup gets an ordinary log record."""

    def __init__(self, settings: LoggingSettings) -> None:
        self._logger = logging.getLogger(ACCESS_LOGGER)
        self.payloads = settings.log_payloads
        self._limit = settings.payload_max_chars
        self._redact = Redactor(settings.redact_patterns) if settings.log_payloads else None
        handlers = self._logger.handlers
        direct = handlers[0] if len(handlers) == 1 and isinstance(handlers[0], _StructuredHandler) else None
        self._direct = direct if direct is not None and not self._logger.propagate else None
        self._second = -1
        self._second_text = ""

    def _time(self, ts: float) -> str:
        """``iso_time(ts)``, the date part formatted once per second."""
        second = int(ts)
        if second != self._second:
            self._second, self._second_text = second, iso_time(second)[:-5]
        return f"{self._second_text}.{int((ts - second) * 1000):03d}Z"

    def emit(self, record: RequestRecord, req: JSON | None = None, answer: JSON | None = None) -> None:
        logger = self._logger
        if not logger.isEnabledFor(logging.INFO):
            return
        line: dict[str, Any] = {"ts": self._time(record.ts), "logger": ACCESS_LOGGER, "level": "info"}
        for name in RECORD_FIELDS[1:]:
            line[name] = getattr(record, name)
        if self._redact is not None:
            if req is not None:
                line["prompt"] = _clip(self._redact(prompt_text(req)), self._limit)
            if answer is not None and answer.get("object") != "list":
                line["completion"] = _clip(self._redact(completion_text(answer)), self._limit)
        if self._direct is not None:
            self._direct.write_line(line)
        else:
            logger.info("request", extra={"fields": line})


def deliver(sinks: Iterable[RequestSink], record: RequestRecord) -> None:
    """Hand ``record`` to each in-process subscriber; one that fails is logged
    and the others still get it."""
    for sink in sinks:
        try:
            sink(record)
        except Exception:
            logging.getLogger(__name__).exception("request record subscriber %r failed", sink)


# --- audit events ------------------------------------------------------------------


def audit(event: str, level: int = logging.INFO, /, **fields: Any) -> None:
    """One ``gateway.audit`` line: ``event`` plus ``fields`` (never a secret)."""
    if _audit.isEnabledFor(level):
        _audit.log(level, event, extra={"fields": {"event": event, **fields}})


def audit_budget_event(event: Any) -> None:
    """``budget.threshold`` / ``budget.exhausted`` (a :class:`gateway.policies.budget.BudgetEvent`)."""
    audit(
        f"budget.{event.kind}",
        logging.WARNING,
        scope=event.scope,
        id=event.id,
        period=event.period,
        period_id=event.period_id,
        spent_usd=event.spent,
        limit_usd=event.limit,
    )


def client_address(scope: Mapping[str, Any]) -> str:
    client = scope.get("client")
    return str(client[0]) if client else ""


# --- rendering ---------------------------------------------------------------------


class _LineFormatter(logging.Formatter):
    def render(self, line: dict[str, Any]) -> str:
        raise NotImplementedError

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {"ts": iso_time(record.created), "logger": record.name}
        line["level"] = record.levelname.lower()
        given = getattr(record, "fields", None)
        if isinstance(given, dict):
            line.update(given)
        else:
            line["message"] = record.getMessage()
        return self.render(line)


class JsonLineFormatter(_LineFormatter):
    """One JSON object per record: ``ts``, ``logger``, ``level`` and the fields."""

    def render(self, line: dict[str, Any]) -> str:
        return orjson.dumps(line, default=str).decode()


def _text_value(value: Any) -> str:
    if value is None:
        return "-"
    text = value if isinstance(value, str) else orjson.dumps(value, default=str).decode()
    if not text or any(c in text for c in ' "=\n\t'):
        return orjson.dumps(text).decode()
    return text


class TextLineFormatter(_LineFormatter):
    """``<ts> <logger> <level> key=value ...`` (values with spaces quoted)."""

    def render(self, line: dict[str, Any]) -> str:
        body = " ".join(f"{k}={_text_value(v)}" for k, v in line.items() if k not in ("ts", "logger", "level"))
        return f"{line['ts']} {line['logger']} {line['level']} {body}"


class _StructuredHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """The handler :func:`install_handlers` owns (so it can replace it).

    Access lines written from the event loop are buffered, as nginx's
    ``access_log ... buffer= flush=`` does: one write per ``FLUSH_LINES`` lines
    or ``FLUSH_S`` seconds, whichever comes first, instead of a write (a system
    call) per request. :meth:`flush`, which logging calls at exit, writes what
    is waiting; so does the app's shutdown."""

    FLUSH_LINES = 256
    FLUSH_S = 0.1

    def __init__(self, stream: Any, formatter: _LineFormatter) -> None:
        super().__init__(stream)
        self.setFormatter(formatter)
        self._render = formatter.render
        self._waiting: list[str] = []
        self._timer: asyncio.TimerHandle | None = None

    def write_line(self, line: dict[str, Any]) -> None:
        """Write an already complete line (``ts``, ``logger``, ``level`` first)."""
        self._waiting.append(self._render(line) + self.terminator)
        if len(self._waiting) >= self.FLUSH_LINES:
            self.flush()
        elif self._timer is None:
            try:
                self._timer = asyncio.get_running_loop().call_later(self.FLUSH_S, self.flush)
            except RuntimeError:  # no event loop: nothing would flush later, so now
                self.flush()

    def flush(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        waiting, self._waiting = self._waiting, []
        if getattr(self.stream, "closed", False):
            return  # the stream went first (interpreter exit, a test's captured output): nothing to write to
        self.acquire()
        try:
            if waiting:
                self.stream.write("".join(waiting))
            super().flush()
        except Exception:
            self.handleError(logging.makeLogRecord({"msg": "access line", "name": ACCESS_LOGGER}))
        finally:
            self.release()

    def close(self) -> None:
        self.flush()
        super().close()


def flush_handlers() -> None:
    """Write the access lines still buffered (at shutdown)."""
    for name in (ACCESS_LOGGER, AUDIT_LOGGER):
        for handler in logging.getLogger(name).handlers:
            if isinstance(handler, _StructuredHandler):
                handler.flush()


def install_handlers(settings: LoggingSettings, stream: Any = None) -> None:
    """Give the access and audit loggers their own handler (standard error by
    default) in ``settings.format``; they no longer propagate to the root
    logger. Replaces the handlers a previous call installed (config reload)."""
    formatter: _LineFormatter = JsonLineFormatter() if settings.format == "json" else TextLineFormatter()
    for name in (ACCESS_LOGGER, AUDIT_LOGGER):
        logger = logging.getLogger(name)
        for old in [h for h in logger.handlers if isinstance(h, _StructuredHandler)]:
            old.flush()  # the lines it still holds
            logger.removeHandler(old)
        logger.addHandler(_StructuredHandler(stream if stream is not None else sys.stderr, formatter))
        logger.setLevel(logging.INFO)
        logger.propagate = False
