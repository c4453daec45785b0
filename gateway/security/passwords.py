"""Password hashing with scrypt (memory-hard, Python's standard library).

A stored hash is ``scrypt$<n>$<r>$<p>$<salt b64>$<hash b64>`` with a 16-byte
random salt and a 32-byte derived key, so the parameters travel with each hash
and can be raised later without breaking old ones. The default cost is the
OWASP recommendation for scrypt: ``n = 2**17``, ``r = 8``, ``p = 1``, which
takes 128 MiB and about a quarter of a second per hash on one core. The admin
setting ``admin.scrypt_n`` lowers ``n`` (never below ``2**14``, 16 MiB).

Hashing is CPU- and memory-heavy: :class:`PasswordHasher` runs it on a worker
thread, at most ``concurrency`` at a time, so the event loop never blocks and a
burst of logins cannot take more than ``concurrency * 128 * r * n`` bytes.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import os

R, P = 8, 1
DEFAULT_N = 2**17
MIN_N = 2**14
_DKLEN = 32


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


def _scrypt(password: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    return hashlib.scrypt(password.encode(), salt=salt, n=n, r=r, p=p, maxmem=256 * r * n + 2**20, dklen=_DKLEN)


def hash_password(password: str, n: int = DEFAULT_N) -> str:
    if n < MIN_N or n & (n - 1):
        raise ValueError(f"scrypt n must be a power of two of at least {MIN_N}, got {n}")
    salt = os.urandom(16)
    return f"scrypt${n}${R}${P}${_b64(salt)}${_b64(_scrypt(password, salt, n, R, P))}"


def verify_password(password: str, stored: str) -> bool:
    """True if ``password`` matches ``stored``; False for a malformed hash too."""
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        if scheme != "scrypt":
            return False
        expected = base64.b64decode(digest, validate=True)
        got = _scrypt(password, base64.b64decode(salt, validate=True), int(n), int(r), int(p))
    except ValueError:
        return False
    return hmac.compare_digest(got, expected)


class PasswordHasher:
    """Async hashing and checking off the event loop, bounded in concurrency."""

    def __init__(self, n: int = DEFAULT_N, *, concurrency: int = 2) -> None:
        self.n = n
        self._gate = asyncio.Semaphore(concurrency)
        self._dummy: str | None = None

    async def hash(self, password: str) -> str:
        async with self._gate:
            return await asyncio.to_thread(hash_password, password, self.n)

    async def verify(self, password: str, stored: str | None) -> bool:
        """``stored=None`` (no such user) still costs one hash, so a wrong
        username takes as long as a wrong password."""
        if stored is None:
            if self._dummy is None:
                self._dummy = await self.hash(os.urandom(16).hex())
            stored = self._dummy
            await self._verify(password, stored)
            return False
        return await self._verify(password, stored)

    async def _verify(self, password: str, stored: str) -> bool:
        async with self._gate:
            return await asyncio.to_thread(verify_password, password, stored)
