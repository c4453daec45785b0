"""A real Redis Cluster on loopback for tests: three masters with a replica each
(``redis-cli --cluster create --cluster-replicas 1``), a short node timeout so a
killed master's replica takes over in about two seconds; a node can be killed
(SIGKILL) and started again on its own directory (it rejoins as a replica)."""

from __future__ import annotations

import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType

from tests.ports import free_port, port_is_free
from tests.redis_server import wait_for_pong

NODE_TIMEOUT_MS = 1000
"""cluster-node-timeout: a master unreachable this long is failed over by its replica."""


def _free_pair() -> int:
    """A free port whose cluster bus port (port + 10000) is free too."""
    for _ in range(200):
        port = free_port()
        if port + 10000 <= 65535 and port_is_free(port + 10000):
            return port
    raise RuntimeError("no free port pair for a cluster node")


class RedisClusterServers:
    """Six ``redis-server`` processes forming one cluster (see the module docstring)."""

    def __init__(self, masters: int = 3) -> None:
        exe, cli = shutil.which("redis-server"), shutil.which("redis-cli")
        if exe is None or cli is None:
            raise RuntimeError("redis-server/redis-cli are not installed (scripts/install-os-deps.sh installs them)")
        self.exe, self.cli_exe = exe, cli
        self.dir = Path(tempfile.mkdtemp(prefix="gw-cluster-"))
        self.ports = [_free_pair() for _ in range(2 * masters)]
        self.procs: dict[int, subprocess.Popen[bytes]] = {}

    @property
    def url(self) -> str:
        """What the gateway's ``state.url`` names: every node as a startup node."""
        return "redis+cluster://" + ",".join(f"127.0.0.1:{p}" for p in self.ports)

    def start_node(self, port: int) -> None:
        node_dir = self.dir / str(port)
        node_dir.mkdir(exist_ok=True)
        args = [self.exe, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(node_dir), "--save", ""]
        args += ["--appendonly", "no", "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf"]
        args += ["--cluster-node-timeout", str(NODE_TIMEOUT_MS), "--protected-mode", "no"]
        self.procs[port] = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for_pong(port, f"cluster node {port}")

    def cli(self, port: int, *args: str) -> str:
        out = subprocess.run(
            [self.cli_exe, "-p", str(port), *args], capture_output=True, timeout=20, check=True, text=True
        )
        return out.stdout

    def start(self) -> None:
        for port in self.ports:
            self.start_node(port)
        nodes = [f"127.0.0.1:{p}" for p in self.ports]
        subprocess.run(
            [self.cli_exe, "--cluster", "create", *nodes, "--cluster-replicas", "1", "--cluster-yes"],
            capture_output=True,
            timeout=60,
            check=True,
        )
        self.wait_healthy()

    def wait_healthy(self, timeout_s: float = 30) -> None:
        """Every running node says cluster_state:ok and every replica's link to its master is up."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if all(self._healthy(port) for port in self.running()):
                return
            time.sleep(0.1)
        raise RuntimeError(f"the cluster did not become healthy in {timeout_s} s")

    def _healthy(self, port: int) -> bool:
        try:
            if "cluster_state:ok" not in self.cli(port, "cluster", "info"):
                return False
            info = self.cli(port, "info", "replication")
        except subprocess.SubprocessError:
            return False
        return "role:master" in info or "master_link_status:up" in info

    def running(self) -> list[int]:
        return [port for port, proc in self.procs.items() if proc.poll() is None]

    def master_of(self, key: str) -> int:
        """The port of the master that serves ``key``'s slot now."""
        port = self.serving(key)
        if port is None:
            raise RuntimeError(f"no master serves the slot of {key}")
        return port

    def serving(self, key: str) -> int | None:
        """The port of the master that serves ``key``'s slot now; None while none does (a failover)."""
        port = self.running()[0]
        slot = int(self.cli(port, "cluster", "keyslot", key))
        for line in self.cli(port, "cluster", "nodes").splitlines():
            fields = line.split()
            if "master" not in fields[2] or "fail" in fields[2]:
                continue
            for ranges in fields[8:]:
                low, _, high = ranges.partition("-")
                if low.isdigit() and int(low) <= slot <= int(high or low):
                    return int(fields[1].split(":")[1].split("@")[0])
        return None

    def kill(self, port: int) -> None:
        proc = self.procs[port]
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)

    def stop(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.terminate()
        for proc in self.procs.values():
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> RedisClusterServers:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
