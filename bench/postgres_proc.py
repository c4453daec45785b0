"""A throwaway PostgreSQL for ``bench.ratio --postgres``: ``initdb`` into a fresh
directory, the server on a free loopback port pinned to the load core (like
redis-server), trust authentication on loopback only, stopped and removed afterwards.

PostgreSQL refuses to run as root; run as root, ``initdb`` and the server run as the
``postgres`` user Debian's package creates (``Popen(user=...)``), in a directory of its
own (the benchmark's temporary directory is private to the benchmark's user).
Durability is PostgreSQL's default (fsync on): the gateway's request path should not
wait for it, and the benchmark would show it if it did.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
from pathlib import Path

from bench.procs import LOAD_CORE, BenchError, ChildServer, Pinning, free_port

PG_ROOT = Path("/usr/lib/postgresql")
PG_USER = "gateway"
"""The cluster's superuser (``initdb -U``), the one the gateway connects as."""
RUN_AS_ROOT = "postgres"
"""The system user that runs the server when the benchmark runs as root."""


def postgres_bin(root: Path = PG_ROOT) -> Path | None:
    """The newest ``<root>/<version>/bin`` that holds a ``postgres`` server, or None."""
    found = [p.parent for p in root.glob("*/bin/postgres") if p.parent.parent.name.isdigit()]
    return max(found, key=lambda bindir: int(bindir.parent.name)) if found else None


def initdb_args(bindir: Path, data: Path) -> list[str]:
    """A UTF-8 cluster whose superuser is :data:`PG_USER`, trusted (loopback only, one run)."""
    return [str(bindir / "initdb"), "-D", str(data), "-U", PG_USER, "-A", "trust", "-E", "UTF8", "--no-sync"]


def postgres_args(bindir: Path, *, data: Path, port: int, socket_dir: Path) -> list[str]:
    """The server on 127.0.0.1:``port`` only, its Unix socket in ``socket_dir``."""
    args = [str(bindir / "postgres"), "-D", str(data), "-p", str(port)]
    return [*args, "-c", "listen_addresses=127.0.0.1", "-c", f"unix_socket_directories={socket_dir}"]


def postgres_url(port: int) -> str:
    return f"postgresql://{PG_USER}@127.0.0.1:{port}/postgres"


class PostgresServer(ChildServer):
    what = "postgres"
    ready_timeout_s = 30.0
    stop_signal = signal.SIGINT  # a fast shutdown: SIGTERM waits for the clients
    stop_timeout_s = 20.0

    def __init__(self, workdir: Path, pinning: Pinning) -> None:
        bindir = postgres_bin()
        if bindir is None:
            raise BenchError("PostgreSQL is not installed (scripts/install-os-deps.sh installs it)")
        super().__init__(workdir / "postgres.log")
        self.bin = bindir
        self.pinning = pinning
        self.port = free_port()
        self.user = RUN_AS_ROOT if os.geteuid() == 0 else None
        self.dir: Path | None = None

    @property
    def url(self) -> str:
        return postgres_url(self.port)

    def prepare(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="gw-bench-pg-"))
        if self.user is not None:
            shutil.chown(self.dir, self.user, self.user)
        self._initdb(self.dir / "data")

    def command(self) -> list[str]:
        assert self.dir is not None
        cmd = postgres_args(self.bin, data=self.dir / "data", port=self.port, socket_dir=self.dir)
        return [*self.pinning.prefix(LOAD_CORE), *cmd]

    def _initdb(self, data: Path) -> None:
        done = subprocess.run(
            initdb_args(self.bin, data),
            capture_output=True,
            timeout=120,
            check=False,
            user=self.user,
            group=self.user,
            extra_groups=None if self.user is None else [],
        )
        if done.returncode != 0:
            raise BenchError(f"initdb failed: {done.stderr.decode(errors='replace')[-2000:]}")

    def ready(self) -> bool:
        """Accepting queries (a listening port alone may still answer "starting up")."""
        cmd = [str(self.bin / "pg_isready"), "-q", "-h", "127.0.0.1", "-p", str(self.port), "-U", PG_USER]
        cmd += ["-d", "postgres"]  # not the user's name, a database that does not exist (a FATAL in the log)
        return subprocess.run(cmd, capture_output=True, timeout=10, check=False).returncode == 0

    def count(self, table: str) -> int:
        """The rows of ``table`` (psql over loopback), to show what reached the database."""
        cmd = [str(self.bin / "psql"), "-X", "-A", "-t", "-h", "127.0.0.1", "-p", str(self.port), "-U", PG_USER]
        done = subprocess.run(
            [*cmd, "-d", "postgres", "-c", f"SELECT count(*) FROM {table}"],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        if done.returncode != 0:
            raise BenchError(f"psql: counting {table} failed: {done.stderr.strip()[-500:]}")
        return int(done.stdout.strip())

    def close(self) -> None:
        super().close()
        if self.dir is not None:
            shutil.rmtree(self.dir, ignore_errors=True)
            self.dir = None
