"""The floor app as a process: ``bench.clients_app`` (uvicorn + uvloop + httptools, one
shared HTTP client) pinned to the server core, forwarding to the bench nginx.

It is the floor of this design: what one Python process on one core serves when it only
forwards a body and relays the answer. ``bench.clients`` runs it with each client;
``bench.ratio`` runs it with aiohttp beside the gateways and weighs them against it.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from types import TracebackType

from bench.procs import SERVER_CORE, Pinning, free_port, http_ok, spawn, stop, wait_until


class FloorServer:
    """``python -m bench.clients_app`` on a free port: JSON requests go to ``json_url``; with
    ``sse_url``, requests that accept ``text/event-stream`` are relayed from there."""

    key = ""
    """What the load sends as its key: the floor checks none."""

    def __init__(
        self, workdir: Path, pinning: Pinning, *, json_url: str, sse_url: str | None = None, client: str = "aiohttp"
    ) -> None:
        self.pinning = pinning
        self.port = free_port()
        self.client = client
        self.log_path = workdir / f"floor-{client}.log"
        self.command = [*pinning.prefix(SERVER_CORE), sys.executable, "-m", "bench.clients_app", "--client", client]
        self.command += ["--port", str(self.port), "--upstream", json_url]
        if sse_url is not None:
            self.command += ["--stream-upstream", sse_url]
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def chat_url(self) -> str:
        return f"{self.base}/v1/chat/completions"

    @property
    def pid(self) -> int:
        if self.proc is None:
            raise RuntimeError("the floor app is not running")
        return self.proc.pid

    def __enter__(self) -> FloorServer:
        with self.log_path.open("ab") as log:
            self.proc = spawn(self.command, log=log)  # taskset execs: the same pid as the app
        try:
            wait_until(
                lambda: http_ok(f"{self.base}/health"),
                proc=self.proc,
                timeout_s=30,
                what=f"the floor app ({self.client})",
                log_path=self.log_path,
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
