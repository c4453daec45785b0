"""A lean pipelined Redis connection for the request path's two scripts.

redis-py spends more time per command than Redis does: packing every argument,
a pool lock, a timeout and instrumentation per reply. The rate-limit scripts
run twice per request, so the Redis backend sends them through this instead:
one TCP connection, commands packed by the caller (window keys are encoded
once and reused), any number of batches in flight, and one reader task that
hands the replies back in order (Redis answers a connection's commands in the
order it received them). Everything else still goes through redis-py.

It speaks RESP2 over plain TCP with AUTH and SELECT; :class:`RedisBackend`
uses it only where that is enough (``redis://`` and Sentinel URLs without
TLS), and redis-py's pipeline elsewhere. Any failure, or a batch whose caller
timed out, closes the connection and fails every batch in flight on it (a
late reply must never be taken for the answer to a later command); the next
batch connects afresh.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

Opener = Callable[[], Awaitable[tuple[str, int]]]
"""Where to connect now (host, port): a Sentinel's current master, or a fixed address."""


class RespError(Exception):
    """An error reply (``-ERR ...``, ``-NOSCRIPT ...``)."""

    @property
    def noscript(self) -> bool:
        return str(self).startswith("NOSCRIPT")


class RespConnectionError(ConnectionError):
    """The connection failed or was closed with commands unanswered."""


def bulk(value: bytes) -> bytes:
    """One RESP bulk string."""
    return b"$%d\r\n%s\r\n" % (len(value), value)


def command(*parts: bytes) -> bytes:
    """A whole command from already encoded parts."""
    return b"*%d\r\n" % len(parts) + b"".join(bulk(p) for p in parts)


class _Batch:
    __slots__ = ("future", "left", "results")

    def __init__(self, n: int, future: asyncio.Future[list[Any]]) -> None:
        self.left = n
        self.results: list[Any] = []
        self.future = future


class RespPipe:
    def __init__(
        self,
        address: Opener,
        *,
        username: str | None = None,
        password: str | None = None,
        db: int = 0,
        connect_timeout_s: float = 0.5,
    ) -> None:
        self._address = address
        self._setup: list[bytes] = []
        if password:
            auth = (b"AUTH", username.encode(), password.encode()) if username else (b"AUTH", password.encode())
            self._setup.append(command(*auth))
        if db:
            self._setup.append(command(b"SELECT", str(db).encode()))
        self._connect_timeout_s = connect_timeout_s
        self._writer: asyncio.StreamWriter | None = None
        self._reader_task: asyncio.Task[None] | None = None
        self._waiting: deque[_Batch] = deque()
        self._connecting: asyncio.Lock = asyncio.Lock()

    async def call(self, commands: Sequence[bytes]) -> list[Any]:
        """Send packed commands as one write; their replies in order (an error
        reply is a :class:`RespError` in its place). Raises
        :class:`RespConnectionError` or ``OSError`` when the connection fails."""
        writer = self._writer if self._writer is not None else await self._connect()
        future: asyncio.Future[list[Any]] = asyncio.get_running_loop().create_future()
        self._waiting.append(_Batch(len(commands), future))
        writer.write(b"".join(commands))
        try:
            return await future
        except asyncio.CancelledError:  # a timeout above: replies would arrive for the wrong batch
            self.reset(RespConnectionError("a batch was abandoned before its replies came"))
            raise

    def reset(self, error: Exception) -> None:
        """Close the connection; every batch in flight fails with ``error``."""
        writer, self._writer = self._writer, None
        if writer is not None:
            writer.close()
        task, self._reader_task = self._reader_task, None
        if task is not None and task is not asyncio.current_task():
            task.cancel()
        waiting, self._waiting = self._waiting, deque()
        for batch in waiting:
            if not batch.future.done():
                batch.future.set_exception(error)

    async def aclose(self) -> None:
        task = self._reader_task
        self.reset(RespConnectionError("closed"))
        if task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _connect(self) -> asyncio.StreamWriter:
        async with self._connecting:
            if self._writer is not None:
                return self._writer
            async with asyncio.timeout(self._connect_timeout_s):
                host, port = await self._address()
                reader, writer = await asyncio.open_connection(host, port)
                try:
                    if self._setup:
                        writer.write(b"".join(self._setup))
                        for _ in self._setup:
                            reply = await read_reply(reader)
                            if isinstance(reply, RespError):
                                raise RespConnectionError(f"redis refused the connection setup: {reply}")
                except BaseException:
                    writer.close()
                    raise
            self._writer = writer
            self._reader_task = asyncio.get_running_loop().create_task(self._read(reader))
            return writer

    async def _read(self, reader: asyncio.StreamReader) -> None:
        try:
            while True:
                reply = await read_reply(reader)
                if not self._waiting:
                    raise RespConnectionError("a reply came for no command")
                batch = self._waiting[0]
                batch.results.append(reply)
                batch.left -= 1
                if batch.left == 0:
                    self._waiting.popleft()
                    if not batch.future.done():
                        batch.future.set_result(batch.results)
        except asyncio.CancelledError:
            raise
        except (OSError, EOFError, asyncio.IncompleteReadError, RespConnectionError, ValueError) as exc:
            error = exc if isinstance(exc, RespConnectionError) else RespConnectionError(f"redis connection: {exc!r}")
            self.reset(error)


async def read_reply(reader: asyncio.StreamReader) -> Any:
    """One RESP2 reply: bytes, int, None, a list, or a :class:`RespError`."""
    line = await reader.readuntil(b"\r\n")
    kind, rest = line[:1], line[1:-2]
    if kind == b"$":
        size = int(rest)
        if size < 0:
            return None
        return (await reader.readexactly(size + 2))[:-2]
    if kind == b":":
        return int(rest)
    if kind == b"+":
        return rest
    if kind == b"-":
        return RespError(rest.decode(errors="replace"))
    if kind == b"*":
        count = int(rest)
        return None if count < 0 else [await read_reply(reader) for _ in range(count)]
    raise ValueError(f"not a RESP2 reply: {line[:40]!r}")
