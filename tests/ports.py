"""Free loopback ports for tests that need a run of consecutive ones."""

from __future__ import annotations

import socket


def free_port_run(n: int) -> range:
    """``n`` consecutive ports free on 127.0.0.1 right now (tried again until a run is found)."""
    for _ in range(100):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            first = int(probe.getsockname()[1])
        if first + n > 65536:
            continue
        held: list[socket.socket] = []
        try:
            for port in range(first, first + n):
                s = socket.socket()
                held.append(s)
                s.bind(("127.0.0.1", port))
        except OSError:
            continue
        finally:
            for s in held:
                s.close()
        return range(first, first + n)
    raise RuntimeError(f"no run of {n} free ports on 127.0.0.1")
