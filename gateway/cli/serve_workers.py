"""``gateway serve --workers N``: uvicorn's supervisor, with a listening socket per worker.

uvicorn binds one socket in the parent and hands each worker a duplicate of it: the workers
then race for one accept queue, and keep-alive connections opened at once often all land on
the worker that wakes first (64/0 splits seen), so such a run uses one core. Here the parent
binds its address with ``SO_REUSEPORT`` and hands the workers a :class:`ReusePortSocket`
instead. uvicorn passes its sockets to a spawned worker by pickling them, and this one travels
as its address: the worker unpickles it by binding a socket of its own to that address, in
the same reuse-port group. Linux gives each new connection to one of the group's listening
sockets by a hash of its addresses and ports: even on average, random per connection
(docs/configuration.md, "Several workers").

The rest is uvicorn's ``Multiprocess`` as before: a worker that dies is restarted, SIGHUP to
the parent replaces the workers one by one, SIGTERM stops them gracefully. The parent's own
socket stays bound but never listens: it takes no connections and keeps the port reserved
while workers come and go. Where the platform has no ``SO_REUSEPORT`` (or refuses it), the
workers share the parent's listening socket as before, with a logged note.
"""

from __future__ import annotations

import logging
import os
import socket
import sys

import uvicorn
from uvicorn.config import STARTUP_FAILURE
from uvicorn.supervisors import Multiprocess

log = logging.getLogger("gateway.serve")

REUSE_PORT: int | None = getattr(socket, "SO_REUSEPORT", None)
"""The option's number on this platform; None where it has none."""


class ReusePortSocket(socket.socket):
    """The parent's socket, bound with ``SO_REUSEPORT``; pickled, it is its address, and
    unpickling it (in a worker) binds a socket of that worker's own (:func:`bind_reuse_port`)."""

    def __reduce__(self) -> tuple[object, tuple[int, str, int]]:
        host, port = self.getsockname()[:2]
        return bind_reuse_port, (int(self.family), host, port)


def bind_reuse_port(family: int, host: str, port: int) -> socket.socket:
    """A worker's own socket on ``(host, port)``, in the parent's reuse-port group. A worker
    that cannot bind exits with uvicorn's start-up failure code, which stops the parent
    (rather than restarting the worker for ever)."""
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        _reuse(sock, socket.SO_REUSEPORT)
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        log.error("worker %d cannot bind %s:%d with SO_REUSEPORT: %s", os.getpid(), host, port, exc)
        sys.exit(STARTUP_FAILURE)
    return sock


def listening_socket(config: uvicorn.Config, option: int | None = REUSE_PORT) -> socket.socket:
    """The socket to hand the workers: a :class:`ReusePortSocket` bound to the config's
    address, or, where ``option`` (``SO_REUSEPORT``) is None or refused, uvicorn's one shared
    socket, with a note. An address that cannot be bound stops the start, as in uvicorn."""
    family = socket.AF_INET6 if ":" in config.host else socket.AF_INET
    sock = ReusePortSocket(family, socket.SOCK_STREAM)
    refusal = "this platform has no SO_REUSEPORT" if option is None else _refusal(sock, option)
    if refusal is not None:
        sock.close()
        log.warning(
            "the workers share one listening socket (%s): the kernel may give most connections to one of them",
            refusal,
        )
        return config.bind_socket()
    try:
        sock.bind((config.host, config.port))
    except OSError as exc:
        sock.close()
        log.error("cannot listen on %s:%d: %s", config.host, config.port, exc)
        sys.exit(STARTUP_FAILURE)
    log.info(
        "listening on %s:%d with a socket per worker (SO_REUSEPORT): the kernel spreads connections over %d workers",
        config.host,
        sock.getsockname()[1],
        config.workers,
    )
    return sock


def run(config: uvicorn.Config) -> None:
    """What ``uvicorn.run`` does with ``workers`` > 1, with the socket of :func:`listening_socket`."""
    sock = listening_socket(config)
    try:
        Multiprocess(config, sockets=[sock]).run()
    except KeyboardInterrupt:
        pass
    finally:
        sock.close()


def _reuse(sock: socket.socket, option: int) -> None:
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, option, 1)


def _refusal(sock: socket.socket, option: int) -> str | None:
    """None once ``sock`` has the option set; else why the platform refused it."""
    try:
        _reuse(sock, option)
    except OSError as exc:
        return f"SO_REUSEPORT refused: {exc}"
    return None
