"""How one event-loop turn's script calls reach Redis (the transport under
:class:`~gateway.state.script_batch.ScriptBatch`).

- :class:`RespTransport`: EVALSHA commands packed by hand onto the lean RESP
  connection (``resp.py``); the default on ``redis://`` and Sentinel URLs
  without TLS.
- :class:`PipelineTransport`: one redis-py pipeline per batch
  (``pipeline(transaction=False)``, EVALSHA each); TLS and unix sockets always
  use it. With the ``hiredis`` package installed redis-py parses replies with
  it, nothing to configure.
- :class:`ConcurrentTransport`: Redis Cluster, whose client refuses scripts
  in pipelines: each call on its own, all of the batch's at once.

``GATEWAY_REDIS_SCRIPT_TRANSPORT`` (``resp``, the default, or ``redis-py``)
is a benchmark switch, not configuration: ``redis-py`` sends the scripts
through :class:`PipelineTransport` where :class:`RespTransport` would be
used, so ``python -m bench.ratio`` can weigh the two (the gateways it starts
inherit the environment). It is read when a Redis backend is built; Cluster
ignores it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from redis.asyncio import RedisCluster
from redis.commands.core import AsyncScript
from redis.exceptions import ResponseError

from gateway.state.redis_client import Client, RedisConnection
from gateway.state.resp import RespError, RespPipe, bulk

TRANSPORT_ENV = "GATEWAY_REDIS_SCRIPT_TRANSPORT"
TRANSPORT_CHOICES = ("resp", "redis-py")

ScriptCall = tuple[AsyncScript, list[bytes], list[bytes]]
"""A script, its keys and its arguments (already encoded)."""


class ScriptTransport(Protocol):
    name: str
    """"resp", "redis-py" or "cluster"."""

    async def send(self, calls: Sequence[ScriptCall]) -> list[Any]:
        """Each call's reply in order; a call that Redis refused has its error
        in its place (a redis-py ``ResponseError``; NOSCRIPT as ``NoScriptError``
        or a NOSCRIPT :class:`RespError`). Raises when the whole batch failed."""
        ...

    async def aclose(self) -> None: ...


class RespTransport:
    """EVALSHA over the lean RESP connection: one write per batch."""

    name = "resp"

    def __init__(self, pipe: RespPipe) -> None:
        self.pipe = pipe

    async def send(self, calls: Sequence[ScriptCall]) -> list[Any]:
        commands = [
            b"*%d\r\n$7\r\nEVALSHA\r\n" % (3 + len(keys) + len(args))
            + bulk(script.sha.encode())
            + bulk(b"%d" % len(keys))
            + b"".join(map(bulk, keys))
            + b"".join(map(bulk, args))
            for script, keys, args in calls
        ]
        replies = await self.pipe.call(commands)
        return [ResponseError(str(r)) if isinstance(r, RespError) and not r.noscript else r for r in replies]

    async def aclose(self) -> None:
        await self.pipe.aclose()


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


def transport_choice(given: str | None, env: Mapping[str, str]) -> str:
    """``given``, else ``GATEWAY_REDIS_SCRIPT_TRANSPORT`` from ``env``, else
    ``resp``; ValueError naming the variable for anything else."""
    choice = given if given is not None else env.get(TRANSPORT_ENV, "resp")
    if choice not in TRANSPORT_CHOICES:
        raise ValueError(f"{TRANSPORT_ENV}={choice!r}: expected one of {', '.join(TRANSPORT_CHOICES)}")
    return choice


def choose_transport(connection: RedisConnection, choice: str) -> ScriptTransport:
    """The transport for ``choice`` (see :func:`transport_choice`) on this
    connection: Cluster whatever the choice; the lean connection for ``resp``
    where plain TCP is enough; a redis-py pipeline otherwise."""
    choice = transport_choice(choice, {})
    if isinstance(connection.client, RedisCluster):
        return ConcurrentTransport()
    if choice == "resp":
        pipe = connection.lean_pipe()
        if pipe is not None:
            return RespTransport(pipe)
    return PipelineTransport(connection.client)
