"""How one event-loop turn's script calls reach Redis (the transport under
:class:`~gateway.state.script_batch.ScriptBatch`).

- :class:`PipelineTransport`: one redis-py pipeline per batch
  (``pipeline(transaction=False)``, EVALSHA each), replies parsed by ``hiredis``
  (locked with the runtime dependencies; redis-py picks it up by itself).
  Standalone, Sentinel, TLS and unix sockets.
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

from gateway.state.redis_client import Client, RedisConnection

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
    """EVALSHA through one redis-py pipeline per batch, without MULTI."""

    name = "redis-py"

    def __init__(self, client: Client) -> None:
        self.client = client

    async def send(self, calls: Sequence[ScriptCall]) -> list[Any]:
        pipe = self.client.pipeline(transaction=False)
        for script, keys, args in calls:
            pipe.evalsha(script.sha, len(keys), *keys, *args)
        results: list[Any] = await pipe.execute(raise_on_error=False)
        return results

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
    """Cluster: each call on its own; everything else: one redis-py pipeline per batch."""
    if isinstance(connection.client, RedisCluster):
        return ConcurrentTransport()
    return PipelineTransport(connection.client)
