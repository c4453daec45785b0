"""How the PostgreSQL backend reaches PostgreSQL: an asyncpg pool made at first
use (then the schema is migrated, ``postgres_schema.py``), every call bounded by a
timeout and its errors mapped to :class:`BackendUnavailable`.

asyncpg: the field's fastest well-kept asyncio driver (binary protocol, prepared
statements cached per connection). A call waits at most ``acquire_timeout_s`` for
a connection of the pool (``max_connections``): a saturated pool fails the call
instead of queueing it without bound, and counts it (:attr:`Pool.saturated`).
While the server is down, a call fails after at most ``connect_timeout_s`` and
the pool reconnects by itself when it is back.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, NamedTuple, TypeVar

import asyncpg

from gateway.state.base import BackendUnavailable
from gateway.state.postgres_schema import migrate

T = TypeVar("T")

PG_ERRORS: tuple[type[Exception], ...] = (
    asyncpg.PostgresError,  # from the server: a statement, a serialization failure, shutting down
    asyncpg.InterfaceError,  # the client: a connection closed under it, a pool closing
    asyncpg.InternalClientError,  # the client's protocol state after its server vanished mid-call
    OSError,  # refused, reset, unreachable
    TimeoutError,  # a statement, a connect or a pool acquire past its timeout
    EOFError,
)
"""Everything a PostgreSQL call can raise that means "the backend is unavailable"."""
_SERVER_GONE = (asyncpg.CannotConnectNowError, asyncpg.AdminShutdownError, asyncpg.CrashShutdownError)
"""Server answers that say it is not serving (starting, shutting down, crashed)."""


def redact(url: str) -> str:
    """``url`` without its password (for messages and logs)."""
    scheme, sep, rest = url.partition("://")
    if "@" not in rest:
        return url
    creds, _, host = rest.rpartition("@")
    user = creds.split(":", 1)[0]
    return f"{scheme}{sep}{user}:***@{host}" if ":" in creds else url


_LAG = """
SELECT CASE
  WHEN NOT pg_is_in_recovery() THEN 0
  WHEN pg_last_wal_receive_lsn() = pg_last_wal_replay_lsn() THEN 0
  ELSE GREATEST(0, EXTRACT(EPOCH FROM now() - pg_last_xact_replay_timestamp()))
END
"""


class PoolFacts(NamedTuple):
    """What the metrics read of a pool at each scrape."""

    up: bool | None
    in_use: int
    size: int
    max_connections: int
    saturated: int
    failures: int
    replica_up: bool | None = None
    """None: no read replica configured."""
    replica_lag_s: float | None = None


class Pool:
    """The pool of one PostgreSQL database (see the module docstring)."""

    def __init__(
        self,
        url: str,
        *,
        max_connections: int = 20,
        statement_timeout_s: float = 5.0,
        connect_timeout_s: float = 2.0,
        acquire_timeout_s: float = 1.0,
        migrate_schema: bool = True,
    ) -> None:
        self.url = url
        self.max_connections = max_connections
        self._statement_timeout_s = statement_timeout_s
        self._connect_timeout_s = connect_timeout_s
        self._acquire_timeout_s = acquire_timeout_s
        self._migrate = migrate_schema
        self._pool: asyncpg.Pool | None = None
        self._opening = asyncio.Lock()
        self.saturated = 0
        """Calls that found every connection busy for ``acquire_timeout_s``."""
        self.failures = 0
        """Calls that failed (server down, an error, a timeout)."""
        self.lag_s: float | None = None
        """A replica's replication lag as last measured (:meth:`replica_lag`)."""
        self.up: bool | None = None
        """Whether the last call reached the server (None before the first)."""

    async def _open(self) -> asyncpg.Pool:
        if self._pool is not None:
            return self._pool
        async with self._opening:
            if self._pool is None:
                pool = await asyncpg.create_pool(
                    self.url,
                    min_size=1,
                    max_size=self.max_connections,
                    timeout=self._connect_timeout_s,
                    command_timeout=self._statement_timeout_s,
                )
                try:
                    if self._migrate:
                        async with pool.acquire() as conn:
                            await migrate(conn)
                except BaseException:
                    await pool.close()
                    raise
                self._pool = pool
        return self._pool

    async def run(self, work: Callable[[Any], Awaitable[T]]) -> T:
        """``work(connection)`` on a pooled connection; every failure a :class:`BackendUnavailable`."""
        try:
            pool = await asyncio.wait_for(self._open(), 2 * self._connect_timeout_s + self._statement_timeout_s)
            try:
                conn = await pool.acquire(timeout=self._acquire_timeout_s)
            except TimeoutError:
                if pool.get_size() >= self.max_connections and pool.get_idle_size() == 0:
                    self.saturated += 1
                    raise BackendUnavailable(
                        f"postgresql: every one of the pool's {self.max_connections} connections is busy"
                    ) from None
                raise
            try:
                result = await work(conn)
            except BaseException as exc:
                if not isinstance(exc, asyncpg.PostgresError):
                    conn.terminate()  # not the server's answer: the connection goes, never back to the pool
                raise
            finally:
                await pool.release(conn, timeout=self._statement_timeout_s)
        except PG_ERRORS as exc:
            self.failures += 1
            self.up = isinstance(exc, asyncpg.PostgresError) and not isinstance(exc, _SERVER_GONE)
            raise BackendUnavailable(f"postgresql: {type(exc).__name__}: {exc}") from exc
        except BackendUnavailable:
            self.failures += 1
            raise
        self.up = True
        return result

    async def replica_lag(self) -> float | None:
        """Seconds this (replica) database's replay is behind its primary: 0 when it has
        replayed all it received, else the age of the last transaction it replayed; None when
        it cannot be reached. Sets :attr:`lag_s`."""
        try:
            lag = await self.run(lambda c: c.fetchval(_LAG))
        except BackendUnavailable:
            lag = None
        self.lag_s = None if lag is None else float(lag)
        return self.lag_s

    async def probe(self) -> bool:
        """One ``SELECT 1``: whether the server answers now (sets :attr:`up`; never raises
        :class:`BackendUnavailable`). The app runs it every few seconds, so ``up`` is
        current even when no call needed the database."""
        try:
            return bool(await self.run(lambda c: c.fetchval("SELECT 1")) == 1)
        except BackendUnavailable:
            return False

    def facts(self) -> PoolFacts:
        pool = self._pool
        size = 0 if pool is None else pool.get_size()
        return PoolFacts(self.up, self.in_use(), size, self.max_connections, self.saturated, self.failures)

    def in_use(self) -> int:
        """Connections checked out now."""
        pool = self._pool
        return 0 if pool is None else pool.get_size() - pool.get_idle_size()

    async def aclose(self) -> None:
        if self._pool is not None:
            pool, self._pool = self._pool, None
            try:
                await asyncio.wait_for(pool.close(), 5)
            except PG_ERRORS:  # a timeout included
                pool.terminate()
