"""Upstream back-pressure: an upstream's "not now" turned into a pause of its deployment.

An answer pauses (*paces*) its deployment, :attr:`LiveDeployment.paced_until`, and the
router skips a paced deployment as it skips one at its ``max_concurrency``:

- an error answer: a 429 always; a 503 or 529 only with a Retry-After. The pause is
  the Retry-After (``retry-after-ms``, ``Retry-After`` in seconds or as an HTTP date,
  else what the provider read from the body, such as Gemini's ``RetryInfo``); a 429
  without one waits for the reset of the budget its rate-limit headers say is spent,
  else ``router.pacing.default_s``;
- a successful answer whose rate-limit headers say a budget (requests or tokens) is
  spent, its remaining count 0: until that budget's reset (the latest, when several
  are spent; ``default_s`` when the reset is missing or unreadable).

The headers, by the provider kind of the deployment (Gemini sends none)::

    OpenAI, Novita, OpenAI-compatible
        x-ratelimit-remaining-requests, x-ratelimit-reset-requests
        x-ratelimit-remaining-tokens,   x-ratelimit-reset-tokens
        resets are durations: "1s", "6m0s", "20ms", "1h2m3.5s"
    Anthropic
        anthropic-ratelimit-{requests,tokens,input-tokens,output-tokens}-remaining
        anthropic-ratelimit-{requests,tokens,input-tokens,output-tokens}-reset
        resets are RFC 3339 times: "2025-01-01T00:00:05Z"

Every pause is capped at ``router.pacing.max_s``, so a bogus header cannot park a
deployment for hours, and a value that does not parse is ignored (never raised).
A successful answer costs two (OpenAI) or four (Anthropic) header lookups and
allocates nothing unless a budget is spent.

The observer (metrics) hears when a pause begins and, on the event loop, when it ends.
"""

from __future__ import annotations

import asyncio
import math
import re
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

from gateway.config.pacing import PacingSettings
from gateway.routing.attempt import AttemptObserver
from gateway.routing.deployment import LiveDeployment

RETRY_AFTER = "retry_after"
"""Source of a pause an error answer asked for (its Retry-After, or the default)."""
RATELIMIT_HEADERS = "ratelimit_headers"
"""Source of a pause until the reset of a spent rate-limit budget."""

PACED_STATUSES = frozenset({429, 503, 529})

Budget = tuple[str, str]
"""(remaining-count header, reset header) of one rate-limit budget."""

OPENAI_BUDGETS: tuple[Budget, ...] = (
    ("x-ratelimit-remaining-requests", "x-ratelimit-reset-requests"),
    ("x-ratelimit-remaining-tokens", "x-ratelimit-reset-tokens"),
)
ANTHROPIC_BUDGETS: tuple[Budget, ...] = tuple(
    (f"anthropic-ratelimit-{kind}-remaining", f"anthropic-ratelimit-{kind}-reset")
    for kind in ("requests", "tokens", "input-tokens", "output-tokens")
)
BUDGETS: Mapping[str, tuple[Budget, ...]] = {
    "openai": OPENAI_BUDGETS,
    "novita": OPENAI_BUDGETS,
    "openai_compatible": OPENAI_BUDGETS,
    "anthropic": ANTHROPIC_BUDGETS,
}
"""A provider kind's rate-limit budgets; Anthropic's resets are times, the others' durations."""

_UNIT_S = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 1e-3, "us": 1e-6, "µs": 1e-6, "ns": 1e-9}
_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(h|ms|m|s|us|µs|ns)")


def parse_duration(text: str) -> float | None:
    """Seconds of a Go-style duration (``1s``, ``6m0s``, ``20ms``, ``1h2m3.5s``) or of
    a bare number of seconds; None when it is neither."""
    text = text.strip()
    try:
        seconds = float(text)
    except ValueError:
        pass
    else:
        return seconds if math.isfinite(seconds) and seconds >= 0 else None
    total, pos = 0.0, 0
    for part in _DURATION_PART.finditer(text):
        if part.start() != pos:
            return None
        total += float(part.group(1)) * _UNIT_S[part.group(2)]
        pos = part.end()
    return total if text and pos == len(text) and math.isfinite(total) else None


def parse_retry_after(headers: Mapping[str, str], now: float | None = None) -> float | None:
    """Seconds from ``retry-after-ms``, else ``Retry-After`` (seconds, or an HTTP date
    counted from ``now``, the wall clock when None; a date past is 0); None when absent
    or unreadable (not a finite number, not a date)."""
    ms = headers.get("retry-after-ms")
    if ms:
        seconds = _finite(ms)
        if seconds is not None:
            return max(0.0, seconds / 1000.0)
    value = headers.get("retry-after")
    if not value:
        return None
    seconds = _finite(value)
    if seconds is not None:
        return max(0.0, seconds)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when.tzinfo is None:  # "-0000": GMT, as every HTTP date is
        when = when.replace(tzinfo=UTC)
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def _finite(text: str) -> float | None:
    try:
        number = float(text)
    except ValueError:
        return None
    return number if math.isfinite(number) else None


def parse_time(text: str, now: float) -> float | None:
    """Seconds from ``now`` (wall clock) to an RFC 3339 time (0 when it is past); None
    when it does not parse. A time without an offset is taken as UTC."""
    try:
        when = datetime.fromisoformat(text.strip())
    except ValueError:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, when.timestamp() - now)


def is_spent(remaining: str) -> bool:
    """A remaining count of 0 (``"0"``, ``"0.0"``); anything else, unreadable included, is not."""
    if remaining == "0":
        return True
    if remaining.isdigit():
        return False
    try:
        return float(remaining) == 0.0
    except ValueError:
        return False


def spent_reset(provider: str, headers: Mapping[str, str], now: float | None = None) -> float | None:
    """Seconds until the latest reset of the budgets whose remaining count is 0: None when
    none is spent, NaN when one is but its reset is missing or unreadable. ``now``: the
    wall clock that Anthropic's reset times are counted from (read when None)."""
    budgets = BUDGETS.get(provider)
    if budgets is None:
        return None
    absolute = budgets is ANTHROPIC_BUDGETS
    wait: float | None = None
    for remaining, reset in budgets:
        left = headers.get(remaining)
        if left is None or not is_spent(left):
            continue
        when = headers.get(reset)
        if when is None:
            seconds = None
        elif absolute:
            seconds = parse_time(when, time.time() if now is None else now)
        else:
            seconds = parse_duration(when)
        if seconds is None:
            seconds = math.nan
        if wait is None or math.isnan(wait) or seconds > wait:
            wait = seconds
    return wait


class Pacer:
    """Paces deployments from their upstreams' answers (the module docstring); one per
    router. The code that talks to the upstream tells it of every answer's head."""

    __slots__ = ("_default_s", "_max_s", "_observer", "enabled")

    def __init__(self, settings: PacingSettings | None = None, observer: AttemptObserver | None = None) -> None:
        """``settings`` None: pacing off (the router still skips deployments paced by another)."""
        self.enabled = settings is not None and settings.enabled
        self._default_s = settings.default_s if settings is not None else 1.0
        self._max_s = settings.max_s if settings is not None else 60.0
        self._observer = observer

    def on_answer(self, dep: LiveDeployment, headers: Mapping[str, str]) -> None:
        """A successful answer's head: paced when a rate-limit budget is spent."""
        if not self.enabled:
            return
        wait = spent_reset(dep.spec.provider, headers)
        if wait is not None:
            self.pace(dep, self._default_s if math.isnan(wait) else wait, RATELIMIT_HEADERS)

    def on_error(
        self, dep: LiveDeployment, status: int, headers: Mapping[str, str], retry_after: float | None = None
    ) -> None:
        """An error answer: ``retry_after`` is what the provider read from it, used when
        the headers say nothing readable (Gemini's RetryInfo is in the body)."""
        if not self.enabled or status not in PACED_STATUSES:
            return
        seconds = parse_retry_after(headers)
        if seconds is None and retry_after is not None and math.isfinite(retry_after):
            seconds = retry_after
        if seconds is not None:
            self.pace(dep, seconds, RETRY_AFTER)
        elif status == 429:
            wait = spent_reset(dep.spec.provider, headers)
            if wait is None or math.isnan(wait):
                self.pace(dep, self._default_s, RETRY_AFTER)
            else:
                self.pace(dep, wait, RATELIMIT_HEADERS)

    def pace(self, dep: LiveDeployment, seconds: float, source: str) -> None:
        """No requests to ``dep`` for ``seconds`` (capped at ``max_s``; 0 or less: none)."""
        seconds = min(seconds, self._max_s)
        if not seconds > 0:
            return
        if dep.pace(seconds, time.monotonic()) and self._observer is not None:
            self._observer.paced(dep, seconds, source)
            self._watch(dep)

    def _watch(self, dep: LiveDeployment) -> None:
        """Tell the observer when the pause is over (it may be made longer meanwhile)."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # no loop, no timer: the end is not told
            return
        left = dep.paced_until - time.monotonic()
        if left > 0:
            loop.call_later(left, self._watch, dep)
        elif self._observer is not None:
            self._observer.pacing_ended(dep)
