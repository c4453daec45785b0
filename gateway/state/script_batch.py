"""The Redis backend's request-path scripts, batched: every call issued in one
event-loop turn goes to Redis as one pipeline (see :class:`ScriptBatch`)."""

from __future__ import annotations

import asyncio
from typing import Any

from redis.commands.core import AsyncScript
from redis.exceptions import NoScriptError

from gateway.state.base import BackendUnavailable
from gateway.state.redis_client import REDIS_ERRORS, Client, unavailable
from gateway.state.script_transport import ScriptCall, ScriptTransport

Queued = tuple[AsyncScript, list[bytes], list[bytes], asyncio.Future[Any]]
"""A call waiting for its batch: the script, its keys and arguments, and its caller's future."""

IN_FLIGHT = 2
"""Batches out at once: calls made while that many are in flight go in the next, so under
load a batch carries more calls (fewer round trips, less client work per call) at the
price of waiting for a reply at most."""


def noscript(result: object) -> bool:
    return isinstance(result, NoScriptError)


class ScriptBatch:
    """The hot-path scripts (windows and slots, at the start and end of every
    request) issued in one event-loop turn go to Redis as one pipeline: one
    write and one read for all of them instead of one round trip each. Under
    load many requests are in the same turn; a lone request goes at once (the
    batch is sent at the end of the turn that started it, with no timer). At
    most :data:`IN_FLIGHT` batches are out at once; the calls made meanwhile go
    together in the next (docs/architecture.md has the measurements).
    Scripts run by SHA; a Redis that lost them (a restart) gets them loaded
    again and the refused calls are re-run. How a batch travels is the
    ``transport``'s business (script_transport.py)."""

    def __init__(self, client: Client, deadline_s: float, transport: ScriptTransport) -> None:
        self._client = client
        self._deadline_s = deadline_s
        self.transport = transport
        self._queue: list[Queued] = []
        self._draining = 0  # batches in flight (at most IN_FLIGHT), each sender sending batch after batch
        self._senders: set[asyncio.Task[None]] = set()  # held until done (the loop keeps weak references)

    def submit(self, script: AsyncScript, keys: list[bytes], args: list[bytes]) -> asyncio.Future[Any]:
        """The script's answer, or :class:`BackendUnavailable` (each batch is bounded by the
        backend's deadline)."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        self._queue.append((script, keys, args, future))
        if len(self._queue) == 1 and self._draining < IN_FLIGHT:  # goes when this turn's tasks have run
            self._draining += 1
            task = loop.create_task(self._drain())
            self._senders.add(task)
            task.add_done_callback(self._senders.discard)
        return future

    async def _drain(self) -> None:
        """Batch after batch while calls are queued: what is submitted while IN_FLIGHT batches
        are out goes in the next one."""
        try:
            while self._queue:
                batch, self._queue = self._queue, []
                await self._send(batch)
        except BaseException:
            left, self._queue = self._queue, []  # this sender was cancelled (shutdown)
            for *_, future in left:
                if not future.done():
                    future.set_exception(BackendUnavailable("redis: the script batch was cancelled"))
            raise
        finally:
            self._draining -= 1  # before any other task runs: a call queued next starts a sender

    async def _send(self, batch: list[Queued]) -> None:
        try:
            async with asyncio.timeout(self._deadline_s):
                results = await self._run([(script, keys, args) for script, keys, args, _ in batch])
        except BaseException as exc:  # the whole pipeline failed: every caller hears of it
            error = unavailable(exc) if isinstance(exc, REDIS_ERRORS) else exc
            for *_, future in batch:
                if not future.done():
                    future.set_exception(error if isinstance(error, Exception) else asyncio.CancelledError())
            if not isinstance(exc, Exception):
                raise
            return
        for (*_, future), result in zip(batch, results, strict=True):
            if future.done():  # its caller gave up (a client disconnect)
                continue
            if isinstance(result, Exception):
                future.set_exception(unavailable(result) if isinstance(result, REDIS_ERRORS) else result)
            else:
                future.set_result(result)

    async def _run(self, calls: list[ScriptCall]) -> list[Any]:
        results = await self.transport.send(calls)
        missing = [i for i, r in enumerate(results) if noscript(r)]
        if missing:  # Redis lost its scripts (a restart): load each once, run the refused calls again
            for script in {calls[i][0].sha: calls[i][0] for i in missing}.values():
                await self._client.script_load(script.script)
            for i, result in zip(missing, await self.transport.send([calls[i] for i in missing]), strict=True):
                results[i] = result
        return results
