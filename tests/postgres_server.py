"""A real PostgreSQL server (Debian's package) on a free loopback port, for tests:
``initdb`` into a temporary directory, start, kill -9, restart on the same port and
data (to test outages and crash recovery), stop.

PostgreSQL refuses to run as root; run as root (as CI does), the server and
``initdb`` run as the ``postgres`` user the package creates (``Popen(user=...)``), on a
directory it owns.
Trust authentication on loopback only (a throwaway cluster)."""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType

from tests.ports import free_port


def postgres_bin() -> Path | None:
    """The newest installed ``/usr/lib/postgresql/<v>/bin`` with a server, or None."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/postgres"), key=lambda p: int(p.split("/")[4]))
    return Path(found[-1]).parent if found else None


class PostgresServer:
    def __init__(self, replica_of: PostgresServer | None = None) -> None:
        """``replica_of``: a streaming hot standby of that (running) server, made by
        ``pg_basebackup -R`` instead of ``initdb``."""
        bindir = postgres_bin()
        if bindir is None:
            raise RuntimeError("PostgreSQL is not installed (make test installs it: scripts/install-os-deps.sh)")
        self.bin = bindir
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="gw-pg-"))
        self.data = self.dir / "data"
        self.proc: subprocess.Popen[bytes] | None = None
        self._as: dict[str, object] = {}
        if os.geteuid() == 0:  # the server itself (not a runuser around it), so kill() reaches the postmaster
            self._as = {"user": "postgres", "group": "postgres", "extra_groups": []}
            shutil.chown(self.dir, "postgres", "postgres")
        if replica_of is None:
            initdb = [str(self.bin / "initdb"), "-D", str(self.data), "-U", "gateway", "-A", "trust", "-E", "UTF8"]
            self._run([*initdb, "--no-sync"])
        else:
            source = ["-h", "127.0.0.1", "-p", str(replica_of.port), "-U", "gateway"]
            self._run(
                [
                    str(self.bin / "pg_basebackup"),
                    "-D",
                    str(self.data),
                    *source,
                    "-R",
                    "-X",
                    "stream",
                    "-N",
                    "-c",
                    "fast",
                ]
            )

    @property
    def url(self) -> str:
        return f"postgresql://gateway@127.0.0.1:{self.port}/postgres"

    def _run(self, args: list[str]) -> None:
        done = subprocess.run(args, check=False, capture_output=True, timeout=120, **self._as)  # type: ignore[call-overload]
        if done.returncode != 0:
            raise RuntimeError(f"{args[0]} failed: {done.stderr.decode(errors='replace')[-2000:]}")

    def start(self) -> None:
        args = [
            str(self.bin / "postgres"),
            "-D",
            str(self.data),
            "-p",
            str(self.port),
            "-c",
            "listen_addresses=127.0.0.1",
            "-c",
            f"unix_socket_directories={self.dir}",
            "-c",
            "fsync=off",  # a throwaway cluster: crash tests kill the server, not the machine
            "-c",
            "max_connections=200",
        ]
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, **self._as)  # type: ignore[call-overload]
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            ready = subprocess.run(
                [str(self.bin / "pg_isready"), "-h", "127.0.0.1", "-p", str(self.port), "-U", "gateway"],
                check=False,
                capture_output=True,
            )
            if ready.returncode == 0:
                return
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        self.kill()
        raise RuntimeError(f"postgres did not start on port {self.port}")

    def kill(self) -> None:
        """Stop it abruptly (SIGKILL to the postmaster, as a crash would); the next
        :meth:`start` recovers from the write-ahead log."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)
            # the postmaster's children exit once they see it gone; wait for the port
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and _listening(self.port):
                time.sleep(0.05)
        self.proc = None

    def restart(self) -> None:
        self.kill()
        self.start()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self.proc = None
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> PostgresServer:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def _listening(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False
