"""A throwaway ``redis-server`` for the traffic-control run: a free loopback
port, no persistence, pinned to the load core like nginx."""

from __future__ import annotations

import shutil
import socket
from pathlib import Path

from bench.procs import LOAD_CORE, BenchError, ChildServer, Pinning, free_port

REDIS_SERVER = "redis-server"


def redis_args(exe: str, *, port: int, workdir: Path) -> list[str]:
    """No snapshots, no append-only file: only the gateway's state lives there, for one run."""
    args = [exe, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(workdir)]
    return [*args, "--save", "", "--appendonly", "no", "--protected-mode", "no"]


def redis_ping(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


class RedisServer(ChildServer):
    what = "redis-server"

    def __init__(self, workdir: Path, pinning: Pinning) -> None:
        exe = shutil.which(REDIS_SERVER)
        if exe is None:
            raise BenchError("redis-server is not installed (make bench installs it: scripts/install-os-deps.sh)")
        super().__init__(workdir / "redis.log")
        self.exe = exe
        self.workdir = workdir
        self.pinning = pinning
        self.port = free_port()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def command(self) -> list[str]:
        return [*self.pinning.prefix(LOAD_CORE), *redis_args(self.exe, port=self.port, workdir=self.workdir)]

    def ready(self) -> bool:
        return redis_ping(self.port)
