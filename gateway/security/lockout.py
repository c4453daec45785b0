"""Account lock-out that holds under concurrency and across replicas.

Every login guess for a username first *reserves a place* in that name's window of
guesses, one atomic step on the state backend (:meth:`StateBackend.hit_windows`:
in process memory for the embedded backend, one Lua script on Redis), and only a
guess that got a place has its password hashed. The window is a fixed window of
``window_s`` that holds ``max_failures`` places, so whatever the number of guesses
sent at once, to however many replicas, at most ``max_failures`` of them are
checked in a window; the others are refused as locked out without hashing.

How a checked guess ends:

- **wrong** (password, or TOTP code): it keeps its place, and it is counted in a
  second window, of failures only (same length); the failure that brings that
  count to ``max_failures`` locks the account for ``duration_s``
  (``locked_until`` in the ``login_failures`` table);
- **right** (the password matched, whether or not the login then succeeds:
  TOTP still needed, account disabled): it gives back *its own* place and
  nothing else. A success never erases a failure: not those of guesses checked
  at the same time, not earlier ones. Failures age out only with their window,
  or when an admin unlocks the account;
- **no answer** (the backend failed, the client went away): the place stays
  taken until the window ends; it is no failure.

So with ``max_failures`` N, at most N wrong guesses are checked per window,
whatever the concurrency; a right guess checked meanwhile can free one place,
which one more guess may take. While the account is locked every guess is refused
unchecked. A lock that ends (or an admin's unlock) starts fresh windows: the
window keys carry an *epoch* stored with the lock record, so every replica
switches to the same new windows at once.

The lock record is in the backend's tables (SQLite or Redis), so a lock survives a
restart; the windows of the embedded backend are in memory (a restart forgets
a partial count, never a lock).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from gateway.config.operations import LockoutSettings
from gateway.state.base import Record, StateBackend, WindowAdjust, WindowSpec

FAILURES = "login_failures"


@dataclass(frozen=True, slots=True)
class Guess:
    """One login guess and the place it reserved (or why it has none)."""

    username: str
    places: str
    """The window key of the guesses checked (its place is one of them)."""
    failures: str
    """The window key of the wrong guesses."""
    period_s: float
    window_end: float
    """When the places window ends (epoch seconds): a refund applies only within it."""
    refused_until: float | None = None
    """Set when the guess got no place: refuse it unchecked, until this instant."""


class Lockout:
    """The lock-out state of every username, on one state backend."""

    def __init__(self, backend: StateBackend, *, clock: Callable[[], float] = time.time) -> None:
        self._backend = backend
        self._clock = clock

    async def _record(self, username: str) -> Record:
        return await self._backend.get(FAILURES, username) or {}

    def _until(self, record: Record) -> float | None:
        until = record.get("locked_until")
        return float(until) if until and float(until) > self._clock() else None

    async def locked_until(self, username: str) -> float | None:
        return self._until(await self._record(username))

    async def reserve(self, username: str, policy: LockoutSettings) -> Guess:
        """A place for one guess of ``username``'s password, taken before it is checked."""
        record = await self._record(username)
        epoch = record.get("epoch", 0)
        places, failures = f"login:{username}:{epoch}", f"login-failed:{username}:{epoch}"
        locked = self._until(record)
        if locked is not None:
            return Guess(username, places, failures, policy.window_s, locked, refused_until=locked)
        hit = await self._backend.hit_windows([WindowSpec(places, policy.window_s, 1, policy.max_failures)])
        window_end = time.time() + hit.resets_s[0]  # the windows' own clock (see adjust_windows)
        refused = window_end if hit.refused >= 0 else None
        return Guess(username, places, failures, policy.window_s, window_end, refused_until=refused)

    async def failed(self, guess: Guess, policy: LockoutSettings) -> float | None:
        """``guess`` was wrong: it keeps its place and counts as a failure; when
        the failures reach ``max_failures`` the account locks (the time it unlocks)."""
        hit = await self._backend.hit_windows([WindowSpec(guess.failures, policy.window_s, 1, policy.max_failures)])
        if hit.refused < 0 and hit.counts[0] < policy.max_failures:
            return None
        until = self._clock() + policy.duration_s
        # The lock's end is also the next epoch: when it passes, fresh windows begin.
        await self._backend.put(FAILURES, guess.username, {"locked_until": until, "epoch": until})
        return until

    async def release(self, guess: Guess) -> None:
        """``guess`` was right: give its own place back (no other guess's)."""
        refund = WindowAdjust(guess.places, guess.period_s, -1, guess.window_end)
        await self._backend.adjust_windows([refund])

    async def claim_step(self, username: str, step: int, period_s: float) -> bool:
        """Take TOTP ``step`` of ``username`` for good: True for the one caller that got it,
        False for every other, even at the same instant and on another replica (one atomic
        window of one place, kept ``period_s``: as long as a code of that step is accepted)."""
        hit = await self._backend.hit_windows([WindowSpec(f"totp-step:{username}:{step}", period_s, 1, 1)])
        return hit.refused < 0

    async def clear(self, username: str) -> None:
        """Unlock ``username`` and forget its failures: a new epoch, fresh windows."""
        await self._backend.put(FAILURES, username, {"epoch": self._clock()})
