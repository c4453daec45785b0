"""How the Redis backend reaches Redis: its URL read into a redis-py client
(standalone, Sentinel or Cluster) with the backend's timeouts and retry
policy, every call bounded and its errors mapped to
:class:`BackendUnavailable`.

URLs: ``redis://`` / ``rediss://`` (``Redis.from_url``),
``redis+sentinel://[:password@]h1:p1,h2:p2/service_name[/db]`` (the master of
``service_name``, found through the sentinels) and
``redis+cluster://[:password@]h1:p1[,h2:p2]`` (``RedisCluster``). Query
parameters (``?ssl_cert_reqs=...``) are honoured for ``redis://`` and
``rediss://`` only.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar, cast
from urllib.parse import unquote

from hiredis import pack_command
from redis.asyncio import Redis, RedisCluster, Sentinel
from redis.asyncio.cluster import ClusterNode
from redis.asyncio.connection import AbstractConnection
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisClusterException, RedisError, ResponseError

from gateway.state.base import BackendUnavailable

T = TypeVar("T")

Client = Redis | RedisCluster
Command = tuple[bytes | str | int, ...]
"""A Redis command and its arguments, for :meth:`RedisConnection.packed`."""

REDIS_ERRORS: tuple[type[Exception], ...] = (
    RedisError,  # ConnectionError, TimeoutError, ResponseError, ClusterDownError, ... of redis-py
    RedisClusterException,
    OSError,  # ConnectionResetError, BrokenPipeError, ... a socket that failed under the client
    TimeoutError,  # the deadline of RedisConnection.call
    EOFError,  # asyncio.IncompleteReadError: the server closed the connection mid-reply
    RuntimeError,  # a closed transport written to (uvloop: "the handler is closed"), a closed loop
)
"""Everything a Redis call can raise that means "the backend is unavailable".
A caller maps each to :class:`BackendUnavailable` (:func:`unavailable`), whatever
the state of the connection it happened in (idle in the pool, in flight,
closed under the client): never an internal error."""


def unavailable(exc: BaseException) -> BackendUnavailable:
    return BackendUnavailable(f"redis: {type(exc).__name__}: {exc}")


def parse_hosts(url: str, default_port: int) -> tuple[dict[str, str], list[tuple[str, int]], list[str]]:
    """``scheme://[user:password@]h1:p1,h2:p2/a/b`` -> (auth, hosts, path parts)."""
    rest = url.split("://", 1)[1].split("?", 1)[0]
    netloc, _, path = rest.partition("/")
    auth: dict[str, str] = {}
    if "@" in netloc:
        creds, netloc = netloc.rsplit("@", 1)
        user, _, password = creds.partition(":")
        auth = {k: unquote(v) for k, v in (("username", user), ("password", password)) if v}
    hosts = []
    for loc in netloc.split(","):
        host, _, port = loc.rpartition(":") if ":" in loc else (loc, "", "")
        hosts.append((host, int(port or default_port)))
    return auth, hosts, [p for p in path.split("/") if p]


class RedisConnection:
    """One backend's redis-py client for its URL (no I/O until the first call).

    Socket and connect timeouts are ``socket_timeout_s``; a dropped connection
    is retried once at once, a timeout never; :meth:`call` bounds every call by
    ``deadline_s`` (4 x the socket timeout: Sentinel discovery, Cluster
    re-discovery)."""

    def __init__(self, url: str, *, socket_timeout_s: float, max_connections: int) -> None:
        self.url = url
        self.timeout_s = socket_timeout_s
        self.deadline_s = 4 * socket_timeout_s
        self._max_connections = max_connections
        self.sentinel: Sentinel | None = None
        self._service = ""
        self._auth: dict[str, str] = {}
        self._nodes: dict[str, Redis] = {}
        self.client: Client = self._connect(url)

    @property
    def cluster(self) -> bool:
        return isinstance(self.client, RedisCluster)

    def options(self) -> dict[str, Any]:
        """The redis-py connection options of this backend (also given to ``limits`` on a Cluster)."""
        return {
            "socket_timeout": self.timeout_s,
            "socket_connect_timeout": self.timeout_s,
            "max_connections": self._max_connections,
            # One quick retry for a dropped connection (a pooled socket that died
            # with a Redis restart); never on a timeout, which would double the wait.
            "retry": Retry(ExponentialBackoff(cap=0.05, base=0.01), 1, supported_errors=(RedisConnectionError,)),
        }

    def _connect(self, url: str) -> Client:
        if url.startswith("redis+sentinel://"):
            auth, hosts, path = parse_hosts(url, 26379)
            if not path:
                raise ValueError("redis+sentinel:// needs a service name: redis+sentinel://host:port/service_name")
            options = self.options()  # for the sentinels too: a burst of new connections asks them
            connection: dict[str, Any] = {**options, **auth}
            self.sentinel = Sentinel(hosts, sentinel_kwargs=options, **connection)
            db = int(path[1]) if len(path) > 1 else 0
            self._service = path[0]
            return cast(Redis, self.sentinel.master_for(path[0], db=db))
        if url.startswith("redis+cluster://"):
            auth, hosts, _ = parse_hosts(url, 6379)
            self._auth = auth
            nodes = [ClusterNode(host, port) for host, port in hosts]
            user, password = auth.get("username"), auth.get("password")
            return RedisCluster(startup_nodes=nodes, username=user, password=password, **self.options())
        return Redis.from_url(url, **self.options())

    async def call(self, aw: Awaitable[T]) -> T:
        """``aw``'s result within the deadline; any Redis failure as :class:`BackendUnavailable`."""
        try:
            async with asyncio.timeout(self.deadline_s):
                return await aw
        except REDIS_ERRORS as exc:
            raise unavailable(exc) from exc

    async def multi(self, fill: Callable[[Any], object]) -> list[Any]:
        """Run the commands ``fill(pipeline)`` queues as one MULTI/EXEC (unbounded: wrap in :meth:`call`)."""
        return await self.pipelined(fill, transaction=True)

    async def pipelined(self, fill: Callable[[Any], object], *, transaction: bool = False) -> list[Any]:
        """Run the commands ``fill(pipeline)`` queues as one pipeline, by default not a
        transaction (on a Cluster, one per node); unbounded: wrap in :meth:`call`."""
        if isinstance(self.client, RedisCluster):
            # redis-py 8.1: a pipeline created before the slot map is loaded fails
            # ("attached to a different loop"); initialize() is a no-op once loaded.
            await self.client.initialize()
        pipe = self.client.pipeline(transaction=transaction)
        fill(pipe)
        result: list[Any] = await pipe.execute()
        return result

    async def packed(self, commands: Sequence[Command]) -> list[Any]:
        """``commands`` as one pipeline (not a transaction) on one of the client's pooled
        connections, their replies in order, an error reply (``ResponseError``) in its
        command's place. Standalone and Sentinel only: a Cluster spreads keys over nodes
        (use :meth:`pipelined` there). Unbounded: wrap in :meth:`call`.

        What redis-py's ``pipeline(transaction=False).execute(raise_on_error=False)`` does,
        less its per-command work (queueing, encoding every argument in Python, reply
        callbacks and hooks): the batch is packed by hiredis and written at once, 185
        against 292 µs of CPU for a request's pipeline (docs/performance.md). The
        connection is redis-py's (it connects, AUTHs, SELECTs and follows Sentinel); any
        failure but an error reply (a dropped socket, a timeout, a cancelled call)
        disconnects it before it goes back to the pool, so no unread reply is ever left on
        it; a dropped connection is tried again as the client's retry policy says (once),
        as a redis-py pipeline is."""
        if not isinstance(self.client, Redis):
            raise TypeError("RedisConnection.packed needs a standalone or Sentinel client, not a Cluster")
        payload = b"".join([_pack(command) for command in commands])
        pool = self.client.connection_pool
        conn = await pool.get_connection()  # type: ignore[no-untyped-call]  # untyped in redis-py
        try:
            replies: list[Any] = await conn.retry.call_with_retry(
                lambda: _exchange(conn, payload, len(commands)), lambda _error: conn.disconnect()
            )
            return replies
        finally:
            await pool.release(conn)

    async def node_client(self, key: str) -> Redis:
        """A plain client of the node that serves ``key`` (on a Cluster; elsewhere the client
        itself), for commands that must travel on one connection with a script: ``WAIT``
        counts the replicas that hold *this connection's* writes. Unbounded: wrap in :meth:`call`."""
        if not isinstance(self.client, RedisCluster):
            return self.client
        await self.client.initialize()
        node = self.client.get_node_from_key(key)
        if node is None:
            raise RedisClusterException(f"no node serves the slot of {key}")
        found = self._nodes.get(node.name)
        if found is None:
            options: dict[str, Any] = {**self.options(), **self._auth, "max_connections": 4}
            found = self._nodes[node.name] = Redis(host=node.host, port=int(node.port), **options)
        return found

    async def forget_topology(self) -> None:
        """After a failed call on a node client: the slot map is read again (a failover moves a
        node's slots to its replica). Unbounded: wrap in :meth:`call`."""
        if isinstance(self.client, RedisCluster):
            await self.client.nodes_manager.initialize()

    async def aclose(self) -> None:
        for node in self._nodes.values():
            await node.aclose()
        await self.client.aclose()
        if self.sentinel is not None:
            for sentinel in self.sentinel.sentinels:
                await sentinel.aclose()


def _pack(command: Command) -> bytes:
    """One command in RESP, packed by hiredis."""
    packed: bytes = pack_command(command)  # type: ignore[arg-type]  # its stub types a 1-tuple
    return packed


async def _exchange(conn: AbstractConnection, payload: bytes, count: int) -> list[Any]:
    """Write ``payload`` (``count`` commands), then read ``count`` replies, each whole (an
    error reply too, so the connection stays in step). The first reply waits at most the
    socket timeout; the rest are read without a timer of their own (they come with it or
    just after, and the caller's deadline bounds the whole exchange)."""
    await conn.send_packed_command(payload)
    replies: list[Any] = []
    for i in range(count):
        try:
            replies.append(await conn.read_response(timeout=None if i == 0 else math.inf))
        except ResponseError as err:
            replies.append(err)
    return replies
