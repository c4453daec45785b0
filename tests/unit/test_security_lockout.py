"""gateway.security.lockout on a real embedded backend: guesses reserve their places
atomically, a success gives back only its own place, failures lock, epochs start
fresh windows. (The same over real HTTP, also on two replicas sharing Redis:
tests/e2e/test_login_concurrency.py.)"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from gateway.config.operations import LockoutSettings
from gateway.security.lockout import FAILURES, Guess, Lockout
from gateway.state.embedded import EmbeddedBackend

POLICY = LockoutSettings(max_failures=5, window_s=600, duration_s=900)


@pytest.fixture
async def backend(tmp_path: Path) -> AsyncIterator[EmbeddedBackend]:
    b = EmbeddedBackend(str(tmp_path / "gw.db"))
    yield b
    await b.aclose()


async def burst(lockout: Lockout, username: str, n: int) -> tuple[list[Guess], list[Guess]]:
    """``n`` guesses at once: (those with a place, those refused)."""
    guesses = await asyncio.gather(*(lockout.reserve(username, POLICY) for _ in range(n)))
    return [g for g in guesses if g.refused_until is None], [g for g in guesses if g.refused_until is not None]


async def test_of_many_guesses_at_once_only_max_failures_get_a_place(backend: EmbeddedBackend) -> None:
    lockout = Lockout(backend)
    placed, refused = await burst(lockout, "alice", 25)
    assert len(placed) == 5 and len(refused) == 20
    ends = {round(g.window_end) for g in placed}
    assert len(ends) == 1, "one window"
    for g in refused:
        assert g.refused_until is not None and g.refused_until == pytest.approx(placed[0].window_end, abs=1)
        assert g.refused_until > time.time() + 590, "refused until the window ends"
    locks = [await lockout.failed(g, POLICY) for g in placed]
    assert locks[:4] == [None] * 4 and locks[4] is not None, "the fifth failure locks"
    assert await lockout.locked_until("alice") == locks[4]


async def test_a_success_gives_back_only_its_own_place(backend: EmbeddedBackend) -> None:
    lockout = Lockout(backend)
    placed, refused = await burst(lockout, "bob", 25)
    assert len(placed) == 5 and len(refused) == 20
    right, wrong = placed[2], placed[:2] + placed[3:]
    for g in wrong:
        assert await lockout.failed(g, POLICY) is None, "four failures do not lock"
    await lockout.release(right)
    assert await lockout.locked_until("bob") is None
    again, more_refused = await burst(lockout, "bob", 3)
    assert len(again) == 1 and len(more_refused) == 2, "the success freed one place, not the failures' four"
    assert await lockout.failed(again[0], POLICY) is not None, "the fifth failure in the window locks"


async def test_a_success_does_not_reset_earlier_failures(backend: EmbeddedBackend) -> None:
    lockout = Lockout(backend)
    for _ in range(3):
        (g,), _ = await burst(lockout, "carol", 1)
        assert await lockout.failed(g, POLICY) is None
    (right,), _ = await burst(lockout, "carol", 1)
    await lockout.release(right)
    for _ in range(10):  # the owner logs in again and again: each success gives its place back
        (ok,), _ = await burst(lockout, "carol", 1)
        await lockout.release(ok)
    (g,), _ = await burst(lockout, "carol", 1)
    assert await lockout.failed(g, POLICY) is None
    (g,), _ = await burst(lockout, "carol", 1)
    assert await lockout.failed(g, POLICY) is not None, "3 + 2 failures in one window lock, successes between"


async def test_while_locked_no_guess_gets_a_place_and_the_lock_is_shared(backend: EmbeddedBackend) -> None:
    a, b = Lockout(backend), Lockout(backend)  # two users of one backend (an embedded process's parts)
    placed, _ = await burst(a, "dave", 5)
    until = None
    for g in placed:
        until = await a.failed(g, POLICY) or until
    assert until is not None
    placed_b, refused_b = await burst(b, "dave", 4)
    assert placed_b == [] and all(g.refused_until == until for g in refused_b)
    assert (await backend.get(FAILURES, "dave")) == {"locked_until": until, "epoch": until}


async def test_an_unlock_starts_fresh_windows(backend: EmbeddedBackend) -> None:
    lockout = Lockout(backend)
    placed, _ = await burst(lockout, "erin", 5)
    for g in placed:
        await lockout.failed(g, POLICY)
    assert await lockout.locked_until("erin") is not None
    await lockout.clear("erin")
    assert await lockout.locked_until("erin") is None
    placed, refused = await burst(lockout, "erin", 7)
    assert len(placed) == 5 and len(refused) == 2, "a full set of places again, and no more"


async def test_a_refund_after_its_window_ended_changes_nothing(backend: EmbeddedBackend) -> None:
    # a window long enough that the three calls after the sleep fall in the one it opens
    short = LockoutSettings(max_failures=2, window_s=1.0, duration_s=900)
    lockout = Lockout(backend)
    first = await lockout.reserve("frank", short)
    await asyncio.sleep(1.1)  # windows are told apart by their end (to 0.25 s: state/base.py)
    fresh = [await lockout.reserve("frank", short) for _ in range(2)]
    await lockout.release(first)  # its window is over: the new window keeps both places
    third = await lockout.reserve("frank", short)
    assert [g.refused_until is None for g in fresh] == [True, True] and third.refused_until is not None


async def test_a_totp_step_is_claimed_once_even_at_the_same_instant(backend: EmbeddedBackend) -> None:
    lockout = Lockout(backend)
    claims = await asyncio.gather(*(lockout.claim_step("alice", 59_000_001, 90) for _ in range(10)))
    assert claims.count(True) == 1, "ten logins with one code at once: one is accepted"
    assert await lockout.claim_step("alice", 59_000_002, 90), "the next step is a new code"
    assert await lockout.claim_step("bob", 59_000_001, 90), "another user's step is theirs"
    assert not await lockout.claim_step("alice", 59_000_001, 90), "and later still refused"
