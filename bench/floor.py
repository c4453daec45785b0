"""The floor app as a process: ``bench.clients_app`` (uvicorn + uvloop + httptools, one
shared HTTP client) pinned to the server core, forwarding to the bench nginx.

It is the floor of this design: what one Python process on one core serves when it only
forwards a body and relays the answer. ``bench.clients`` runs it with each client;
``bench.ratio`` runs it with aiohttp beside the gateways and weighs them against it.
"""

from __future__ import annotations

import sys
from pathlib import Path

from bench.procs import SERVER_CORE, AppServer, Pinning, free_port


class FloorServer(AppServer):
    """``python -m bench.clients_app`` on a free port: JSON requests go to ``json_url``; with
    ``sse_url``, requests that accept ``text/event-stream`` are relayed from there."""

    key = ""
    """What the load sends as its key: the floor checks none."""
    ready_timeout_s = 30.0

    def __init__(
        self,
        workdir: Path,
        pinning: Pinning,
        *,
        json_url: str,
        sse_url: str | None = None,
        client: str = "aiohttp",
        server: str = "uvicorn",
    ) -> None:
        super().__init__(workdir / f"floor-{client}-{server}.log", free_port())
        self.what = f"the floor app ({client}, {server})"
        self.argv = [*pinning.prefix(SERVER_CORE), sys.executable, "-m", "bench.clients_app", "--client", client]
        self.argv += ["--port", str(self.port), "--upstream", json_url, "--server", server]
        if sse_url is not None:
            self.argv += ["--stream-upstream", sse_url]

    def command(self) -> list[str]:
        return self.argv
