"""How one event-loop turn's script calls reach Redis (the transport under
:class:`~gateway.state.script_batch.ScriptBatch`).

- :class:`PipelineTransport`: one pipeline per batch (EVALSHA each) on a pooled
  redis-py connection, packed and parsed by ``hiredis``
  (:meth:`RedisConnection.packed`). Standalone, Sentinel, TLS and unix sockets.
- :class:`ConcurrentTransport`: Redis Cluster, whose client refuses scripts
  in pipelines: each call on its own, all of the batch's at once.

A hand-written RESP connection carried these scripts before; redis-py with
hiredis and explicit pipelines kept 95 % of its throughput, so it went
(docs/architecture.md has the numbers and the command).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any, Protocol

from redis.asyncio import RedisCluster
from redis.commands.core import AsyncScript

from gateway.state.redis_client import Command, RedisConnection

ScriptCall = tuple[AsyncScript, list[bytes], list[bytes]]
"""A script, its keys and its arguments (already encoded)."""


class ScriptTransport(Protocol):
    name: str
    """"redis-py" or "cluster"."""

    async def send(self, calls: Sequence[ScriptCall]) -> list[Any]:
        """Each call's reply in order; a call that Redis refused has its error
        in its place (a redis-py ``ResponseError``; NOSCRIPT as ``NoScriptError``).
        Raises when the whole batch failed."""
        ...

    async def aclose(self) -> None: ...


class PipelineTransport:
    """EVALSHA through one pipeline per batch, without MULTI
    (:meth:`~gateway.state.redis_client.RedisConnection.packed`)."""

    name = "redis-py"

    def __init__(self, connection: RedisConnection) -> None:
        self.connection = connection

    async def send(self, calls: Sequence[ScriptCall]) -> list[Any]:
        commands: list[Command] = [(b"EVALSHA", script.sha, len(keys), *keys, *args) for script, keys, args in calls]
        return await self.connection.packed(commands)

    async def aclose(self) -> None:
        """Nothing of its own: it borrows the client's pool."""


class ConcurrentTransport:
    """Redis Cluster: one call each, overlapped (a script missing on a node is
    loaded there by redis-py itself)."""

    name = "cluster"

    async def send(self, calls: Sequence[ScriptCall]) -> list[Any]:
        return list(
            await asyncio.gather(
                *(script(keys=keys, args=args) for script, keys, args in calls), return_exceptions=True
            )
        )

    async def aclose(self) -> None:
        """Nothing of its own: it borrows the client's pool."""


def choose_transport(connection: RedisConnection) -> ScriptTransport:
    """Cluster: each call on its own; everything else: one pipeline per batch."""
    if isinstance(connection.client, RedisCluster):
        return ConcurrentTransport()
    return PipelineTransport(connection)
