"""Free loopback ports for the servers the tests start.

A port the kernel hands out for ``bind(("127.0.0.1", 0))`` comes from the ephemeral range, the
same range every outgoing connection takes its local port from. Between choosing such a port
and the server binding it (seconds, for a process that starts up), any connection the suite
opens (to Redis, the mock, a /ready poll) may take it as its local port, and the server then
cannot bind: a failure once in a few thousand starts, seen in CI. The ports here come from
outside the ephemeral range, where no outgoing connection ever lands; each is checked free by
binding it before it is returned.
"""

from __future__ import annotations

import functools
import os
import random
import socket
from pathlib import Path

_RANGE_FILE = Path("/proc/sys/net/ipv4/ip_local_port_range")
_LOWEST = 10000
"""Below this are well-known and registered services a developer machine may run."""
_BLOCK = 64


def _ephemeral() -> range:
    """The kernel's ephemeral port range (Linux's default where it cannot be read)."""
    try:
        low, high = (int(part) for part in _RANGE_FILE.read_text().split())
    except (OSError, ValueError):
        return range(32768, 61000)
    return range(low, high + 1)


@functools.cache
def _candidates() -> tuple[int, ...]:
    """Ports outside the ephemeral range; under pytest-xdist, only this worker's share (blocks of
    64 ports dealt out in turn), so two workers never pick the same port at the same moment."""
    ephemeral = _ephemeral()
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    count = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1") or 1)
    index = int(worker[2:]) if worker.startswith("gw") and worker[2:].isdigit() else 0
    return tuple(p for p in range(_LOWEST, 65536) if p not in ephemeral and (p // _BLOCK) % count == index % count)


@functools.cache
def _allowed() -> frozenset[int]:
    return frozenset(_candidates())


def _bindable(ports: range) -> bool:
    held: list[socket.socket] = []
    try:
        for port in ports:
            s = socket.socket()
            held.append(s)
            s.bind(("127.0.0.1", port))
    except OSError:
        return False
    finally:
        for s in held:
            s.close()
    return True


def free_port_run(n: int) -> range:
    """``n`` consecutive ports free on 127.0.0.1 right now, outside the ephemeral range."""
    candidates = _candidates()
    if len(candidates) < 1000:  # the ephemeral range covers nearly everything: take what bind(0) gives
        return _ephemeral_run(n)
    allowed = _allowed()
    for _ in range(200):
        first = random.choice(candidates)
        ports = range(first, first + n)
        if all(p in allowed for p in ports) and _bindable(ports):
            return ports
    raise RuntimeError(f"no run of {n} free ports on 127.0.0.1 outside the ephemeral range")


def free_port() -> int:
    """One port free on 127.0.0.1 right now, outside the ephemeral range."""
    return free_port_run(1)[0]


def port_is_free(port: int) -> bool:
    """Whether ``port`` can be bound on 127.0.0.1 right now."""
    return _bindable(range(port, port + 1))


def free_ports(count: int) -> list[int]:
    """``count`` distinct free ports (not necessarily consecutive)."""
    chosen: list[int] = []
    while len(chosen) < count:
        port = free_port()
        if port not in chosen:
            chosen.append(port)
    return chosen


def _ephemeral_run(n: int) -> range:
    for _ in range(100):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            first = int(probe.getsockname()[1])
        if first + n <= 65536 and _bindable(range(first, first + n)):
            return range(first, first + n)
    raise RuntimeError(f"no run of {n} free ports on 127.0.0.1")
