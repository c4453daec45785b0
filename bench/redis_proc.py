"""A throwaway ``redis-server`` for the traffic-control run: a free loopback
port, no persistence, pinned to the load core like nginx."""

from __future__ import annotations

import shutil
import socket
import subprocess
from pathlib import Path
from types import TracebackType

from bench.procs import LOAD_CORE, BenchError, Pinning, free_port, spawn, stop, wait_until

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


class RedisServer:
    def __init__(self, workdir: Path, pinning: Pinning) -> None:
        exe = shutil.which(REDIS_SERVER)
        if exe is None:
            raise BenchError("redis-server is not installed (make bench installs it: scripts/install-os-deps.sh)")
        self.exe = exe
        self.workdir = workdir
        self.pinning = pinning
        self.port = free_port()
        self.log_path = workdir / "redis.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def __enter__(self) -> RedisServer:
        cmd = [*self.pinning.prefix(LOAD_CORE), *redis_args(self.exe, port=self.port, workdir=self.workdir)]
        with self.log_path.open("ab") as log:
            self.proc = spawn(cmd, log=log)
        try:
            wait_until(
                lambda: redis_ping(self.port), proc=self.proc, timeout_s=15, what="redis-server", log_path=self.log_path
            )
        except BaseException:
            self.close()
            raise
        return self

    def close(self) -> None:
        if self.proc is not None:
            stop(self.proc)
            self.proc = None

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
