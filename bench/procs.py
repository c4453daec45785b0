"""Process plumbing shared by the benchmark: free ports, CPU pinning, readiness
polling, memory sampling and clean shutdown of the processes we start."""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType, TracebackType
from typing import IO, Self

SERVER_CORE = 0  # the process under test (gateway, or the client-comparison app)
LOAD_CORE = 1  # nginx and wrk
_PR_SET_PDEATHSIG = 1


class BenchError(RuntimeError):
    """A setup step failed (a process did not start, wrk failed, ...)."""


def at_least_one(text: str) -> int:
    """An argparse ``type``: an integer of at least 1 (rounds, seconds, connections, requests)."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def exit_cleanly_on_signals() -> None:
    """SIGTERM and SIGHUP unwind like Ctrl-C, so the ``with`` blocks stop nginx and the gateway."""
    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGHUP, _interrupt)


def free_port() -> int:
    """A currently free TCP port on 127.0.0.1 (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass(frozen=True)
class Pinning:
    """CPU pinning with ``taskset``; ``enabled`` is false (with a reason) when it cannot be done."""

    enabled: bool
    reason: str

    @classmethod
    def detect(cls, cores: Sequence[int] = (SERVER_CORE, LOAD_CORE)) -> Pinning:
        if shutil.which("taskset") is None:
            return cls(False, "taskset is not installed: running unpinned")
        allowed = os.sched_getaffinity(0)
        missing = [c for c in cores if c not in allowed]
        if missing:
            return cls(False, f"cores {missing} are not available (allowed: {sorted(allowed)}): running unpinned")
        return cls(True, f"pinned: server under test on core {SERVER_CORE}, nginx and wrk on core {LOAD_CORE}")

    def prefix(self, core: int) -> list[str]:
        return ["taskset", "-c", str(core)] if self.enabled else []


_prctl: Callable[..., int] | None
try:  # looked up once here: the child between fork and exec should only make the call
    _prctl = ctypes.CDLL(None, use_errno=True).prctl
except (OSError, AttributeError):  # not Linux
    _prctl = None


def die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    """If the benchmark is killed outright, its children get SIGTERM instead of lingering."""
    if _prctl is not None:
        _prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def spawn(
    argv: Sequence[str], *, log: IO[bytes], env: dict[str, str] | None = None, user: str | None = None
) -> subprocess.Popen[bytes]:
    """Start a long-running child in its own session (so Ctrl-C reaches only us, and we
    stop it in order), with its output going to ``log``; as ``user`` (and its group) if given."""
    return subprocess.Popen(
        list(argv),
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
        start_new_session=True,
        preexec_fn=die_with_parent,  # noqa: PLW1509 - only a prctl call, looked up at import
        user=user,
        group=user,
        extra_groups=None if user is None else [],
    )


def stop(proc: subprocess.Popen[bytes], *, sig: int = signal.SIGTERM, timeout_s: float = 10.0) -> None:
    """Stop a child started by :func:`spawn` and everything in its process group."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=timeout_s)
    # Leftovers in the group (nginx workers, a killed gateway's children).
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=5)


def wait_until(
    check: Callable[[], bool], *, proc: subprocess.Popen[bytes], timeout_s: float, what: str, log_path: Path
) -> None:
    """Poll ``check`` until it is true; fail early if ``proc`` exits, late after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise BenchError(f"{what} exited with status {proc.returncode}\n{log_tail(log_path)}")
        if check():
            return
        time.sleep(0.1)
    raise BenchError(f"{what} did not become ready within {timeout_s:.0f}s\n{log_tail(log_path)}")


def http_ok(url: str, *, data: bytes | None = None, headers: dict[str, str] | None = None) -> bool:
    """True when ``url`` answers 2xx (GET, or POST with ``data``)."""
    req = urllib.request.Request(url, data=data, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=2) as resp:
            status: int = resp.status
            resp.read()
            return 200 <= status < 300
    except (OSError, urllib.error.HTTPError):
        return False


def log_tail(path: Path, lines: int = 30) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return f"(no log at {path})"
    tail = text.splitlines()[-lines:]
    return f"--- last {len(tail)} lines of {path} ---\n" + "\n".join(tail)


@dataclass(frozen=True)
class MemSample:
    """Memory of one process from ``/proc/<pid>/status`` (KiB as the kernel reports it)."""

    rss_kib: int
    hwm_kib: int
    at: float  # time.monotonic()

    @property
    def rss_mib(self) -> float:
        return self.rss_kib / 1024

    @property
    def hwm_mib(self) -> float:
        return self.hwm_kib / 1024


def parse_proc_status(text: str) -> tuple[int, int]:
    """``(VmRSS, VmHWM)`` in KiB from the text of ``/proc/<pid>/status``."""
    values: dict[str, int] = {}
    for line in text.splitlines():
        key, _, rest = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            values[key] = int(rest.split()[0])
    if "VmRSS" not in values or "VmHWM" not in values:
        raise ValueError("VmRSS/VmHWM not found in /proc status text")
    return values["VmRSS"], values["VmHWM"]


def cpu_seconds(pid: int) -> float | None:
    """CPU time the process has used so far, all its threads (the scheduler's count in
    ``/proc/PID/task/*/schedstat``, to the nanosecond: clock ticks would charge a thread
    woken on a tick the whole tick); None when /proc is unavailable. A thread that has
    ended is no longer counted: measure a process whose threads live on (the gateway's do)."""
    split = cpu_seconds_split(pid)
    return None if split is None else split[0] + split[1]


def cpu_seconds_split(pid: int) -> tuple[float, float] | None:
    """:func:`cpu_seconds`, split: (the main thread's, every other thread's). The gateway's
    main thread runs its event loop; the others are its worker threads (SQLite's writer,
    the executor's). None when /proc is unavailable."""
    main = others = 0
    try:
        for task in Path(f"/proc/{pid}/task").iterdir():
            with contextlib.suppress(FileNotFoundError):  # a thread that has just ended
                ns = int((task / "schedstat").read_text().split()[0])
                if task.name == str(pid):
                    main += ns
                else:
                    others += ns
    except (OSError, ValueError, IndexError):
        return None
    return main / 1e9, others / 1e9


def tree_cpu_seconds(pid: int) -> float | None:
    """:func:`cpu_seconds` of the process and of its children, theirs and so on (a server
    whose workers are processes of their own: granian); None when /proc is unavailable."""
    total = cpu_seconds(pid)
    if total is None:
        return None
    try:
        children = [int(c) for task in Path(f"/proc/{pid}/task").iterdir() for c in _children(task)]
    except (OSError, ValueError):
        return None
    for child in children:
        total += tree_cpu_seconds(child) or 0.0  # a child that has just ended is not counted
    return total


def _children(task: Path) -> list[str]:
    try:
        return (task / "children").read_text().split()
    except FileNotFoundError:  # a thread that has just ended
        return []


def read_mem(pid: int) -> MemSample | None:
    """The process's memory now, or None when it is gone or /proc is unavailable."""
    try:
        rss, hwm = parse_proc_status(Path(f"/proc/{pid}/status").read_text())
    except (OSError, ValueError):
        return None
    return MemSample(rss, hwm, time.monotonic())


class ChildServer:
    """A server the benchmark starts on entering a ``with`` block (ready when :meth:`ready`
    says so) and stops on leaving it, its output in ``log_path``. A subclass says what to
    run (:meth:`command`) and when it is ready; :meth:`prepare` runs first (config files)."""

    what = "the server"
    ready_timeout_s = 15.0
    stop_signal = signal.SIGTERM
    stop_timeout_s = 10.0
    user: str | None = None

    def __init__(self, log_path: Path) -> None:
        self.log_path = log_path
        self.wait_log_path = log_path
        """The log a failed start shows the tail of."""
        self.proc: subprocess.Popen[bytes] | None = None

    def command(self) -> list[str]:
        raise NotImplementedError

    def ready(self) -> bool:
        raise NotImplementedError

    def prepare(self) -> None:
        """Before the process starts."""

    def child_env(self) -> dict[str, str] | None:
        """The child's environment (None: the benchmark's own)."""
        return None

    @property
    def pid(self) -> int:
        if self.proc is None:
            raise RuntimeError(f"{self.what} is not running")
        return self.proc.pid

    def __enter__(self) -> Self:
        try:
            self.prepare()
            with self.log_path.open("ab") as log:  # taskset execs: the child keeps the pid
                self.proc = spawn(self.command(), log=log, env=self.child_env(), user=self.user)
            wait_until(
                self.ready, proc=self.proc, timeout_s=self.ready_timeout_s, what=self.what, log_path=self.wait_log_path
            )
        except BaseException:
            self.close()
            raise
        return self

    def close(self) -> None:
        if self.proc is not None:
            stop(self.proc, sig=self.stop_signal, timeout_s=self.stop_timeout_s)
            self.proc = None

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


class AppServer(ChildServer):
    """A child that serves chat completions over HTTP on ``port`` and answers ``GET /health``
    once ready (the gateway, the floor app)."""

    def __init__(self, log_path: Path, port: int) -> None:
        super().__init__(log_path)
        self.port = port

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def chat_url(self) -> str:
        return f"{self.base}/v1/chat/completions"

    def ready(self) -> bool:
        return http_ok(f"{self.base}/health")

    def restart(self) -> None:
        """Stop the process and start a new one on the same files and port (``bench.ratio
        --fresh``: two starts of the same code differ in speed by a few per cent). Only for
        the app servers: a server whose ``close`` removes its data (PostgreSQL) has no restart."""
        self.close()
        self.__enter__()
