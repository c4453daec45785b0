"""``/metrics`` on a port of its own: one per worker process, or the one of a single
process (config ``metrics.port``), and who may read it (``metrics.bearer_token``).

With ``gateway serve --workers N`` the workers share the main port, each with a
socket of its own, and the kernel spreads connections over them (cli/serve_workers.py):
a scrape of ``/metrics`` there would see one worker's counters, a different one
each time, and every ``rate()`` would be garbage. Each worker therefore serves
its own registry on one port of ``--metrics-port P`` .. ``P + N - 1`` (the
first it can bind), and Prometheus scrapes every one of them as a target;
``sum()`` and ``rate()`` over targets are then exact. The main port's
``/metrics`` answers 404 naming those ports. Why not prometheus_client's
multiprocess mode: it has no custom collectors (the live counters, the
process collector), keeps a file per process and metric that must be cleaned
on restart, and gauges need a merge mode each; a target per worker needs none
of that and shows each worker's own CPU and memory.

A single process serves its ``/metrics`` on a listener of its own the same way
when ``metrics.port`` is set (so the client port, which answers 404 naming it,
never shows team ids and spend to whoever can reach it). With
``metrics.bearer_token`` set, every ``/metrics`` (client port and listeners)
answers only ``Authorization: Bearer <token>``: 401 otherwise
(:class:`MetricsExposure`).

The listener is a few lines of asyncio (``GET /metrics`` only, one request per
connection, bounded header size and read time) rather than a second uvicorn
server, whose signal handling would fight the worker's own.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
from collections.abc import Callable
from dataclasses import dataclass

from gateway.config.operations import MetricsSettings

log = logging.getLogger("gateway.metrics")

PORTS_ENV = "GATEWAY_WORKER_METRICS"
"""``host:first-last``: set by ``gateway serve --workers N --metrics-port P`` for its workers."""

_MAX_HEAD = 16 * 1024
_READ_S = 5.0

_REFUSALS = {
    "missing_metrics_token": b"/metrics needs 'Authorization: Bearer <metrics.bearer_token>'\n",
    "invalid_metrics_token": b"the bearer token is not the metrics token\n",
}

Render = Callable[[str], tuple[bytes, str]]
"""The exposition for an ``Accept`` header: (body, content type)."""


@dataclass(frozen=True, slots=True)
class MetricsExposure:
    """Where ``/metrics`` is served and who may read it (built at start)."""

    token: bytes | None = None
    """``metrics.bearer_token``: required on every ``/metrics`` when set."""
    host: str = ""
    ports: range | None = None
    """A listener of its own on one of these ports; None: the client port serves it."""
    per_worker: bool = False
    """``ports`` are one per worker process (``gateway serve --workers N --metrics-port P``)."""

    @classmethod
    def of(cls, settings: MetricsSettings, server_host: str, worker_ports: tuple[str, range] | None) -> MetricsExposure:
        token = settings.bearer_token.encode() if settings.bearer_token else None
        if worker_ports is not None:
            if settings.port is not None:
                log.warning("metrics.port is not used with --workers: each worker serves /metrics on --metrics-port")
            return cls(token, worker_ports[0], worker_ports[1], per_worker=True)
        if settings.port is not None:
            return cls(token, settings.host or server_host, range(settings.port, settings.port + 1))
        return cls(token)

    def where(self) -> str:
        """Where the listeners are, for the client port's 404 (with ``ports`` set)."""
        assert self.ports is not None
        first, last = self.ports.start, self.ports.stop - 1
        return f"http://{self.host}:{first}{f'-{last}' if last != first else ''}/metrics"

    def refusal(self, authorization: str | None) -> str | None:
        """None when a request with this ``Authorization`` header may read the
        metrics; else why not: ``missing_metrics_token`` or ``invalid_metrics_token``."""
        if self.token is None:
            return None
        scheme, _, credential = (authorization or "").strip().partition(" ")
        if scheme.lower() != "bearer" or not credential.strip():
            return "missing_metrics_token"
        given = credential.strip().encode("latin-1", "replace")
        return None if hmac.compare_digest(given, self.token) else "invalid_metrics_token"


def parse_ports(text: str) -> tuple[str, range]:
    """``host:first-last`` -> (host, ports); ValueError naming the problem."""
    host, sep, span = text.rpartition(":")
    first, dash, last = span.partition("-")
    if not sep or not host or not dash or not first.isdigit() or not last.isdigit():
        raise ValueError(f"{PORTS_ENV} must look like 127.0.0.1:9100-9103, got {text!r}")
    lo, hi = int(first), int(last)
    if not 0 < lo <= hi <= 65535:
        raise ValueError(f"{PORTS_ENV}: ports must be 1-65535 with first <= last, got {text!r}")
    return host, range(lo, hi + 1)


RETRY_EVERY_S = 0.5
RETRY_FOR_S = 120.0
"""A worker with no free /metrics port tries again this often, this long (a reload's old workers exit)."""


class WorkerMetricsListener:
    def __init__(
        self,
        render: Render,
        host: str,
        ports: range,
        *,
        read_timeout_s: float = _READ_S,
        exposure: MetricsExposure | None = None,
        refused: Callable[[str], None] = lambda reason: None,
    ) -> None:
        """``exposure`` says who may read (its token); ``refused`` counts each refusal by reason."""
        self._render = render
        self._exposure = exposure or MetricsExposure()
        self._refused = refused
        self._read_timeout_s = read_timeout_s
        self._host = host
        self._ports = ports
        self._server: asyncio.Server | None = None
        self._retry: asyncio.Task[None] | None = None
        self.port: int | None = None

    async def start(self) -> int | None:
        """Bind the first free port of the range; None (logged) if all are taken."""
        port = await self._bind()
        if port is None:
            log.error(
                "no free port for this worker's /metrics in %d-%d: its metrics cannot be scraped "
                "(use a --metrics-port range as large as --workers)",
                self._ports.start,
                self._ports.stop - 1,
            )
        return port

    def keep_trying(self, every_s: float = RETRY_EVERY_S, for_s: float = RETRY_FOR_S) -> None:
        """After a failed :meth:`start`: try again every ``every_s`` for ``for_s`` (logged when
        it binds). A reload replaces workers one by one while the old ones still hold their
        ports; the new worker takes one as an old one exits."""

        async def again() -> None:
            deadline = asyncio.get_running_loop().time() + for_s
            while self.port is None and asyncio.get_running_loop().time() < deadline:
                await asyncio.sleep(every_s)
                await self._bind()

        if self.port is None and self._retry is None:
            self._retry = asyncio.get_running_loop().create_task(again())

    async def _bind(self) -> int | None:
        for port in self._ports:
            try:
                # SO_REUSEADDR: a port whose scrapes left TIME_WAIT behind (the last worker that held it)
                # can be bound; a port another worker listens on still cannot (that is SO_REUSEPORT).
                self._server = await asyncio.start_server(self._serve, self._host, port, reuse_address=True)
            except OSError:
                continue
            self.port = port
            log.info("this worker's /metrics: http://%s:%d/metrics", self._host, port)
            return port
        return None

    async def aclose(self) -> None:
        if self._retry is not None:
            self._retry.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._retry
            self._retry = None
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            async with asyncio.timeout(self._read_timeout_s):
                head = await reader.readuntil(b"\r\n\r\n")
            status, body, ctype = self._answer(head)
        except (TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
            status, body, ctype = "400 Bad Request", b"incomplete or oversized request\n", "text/plain"
        head_out = f"HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {len(body)}\r\n"
        if status.startswith("401"):
            head_out += 'WWW-Authenticate: Bearer realm="metrics"\r\n'
        with contextlib.suppress(ConnectionError):
            writer.write(head_out.encode() + b"Connection: close\r\n\r\n" + body)
            await writer.drain()
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()

    def _answer(self, head: bytes) -> tuple[str, bytes, str]:
        if len(head) > _MAX_HEAD:
            return "431 Request Header Fields Too Large", b"request head too large\n", "text/plain"
        lines = head.decode("latin-1").split("\r\n")
        parts = lines[0].split(" ")
        if len(parts) != 3:
            return "400 Bad Request", b"malformed request line\n", "text/plain"
        method, target, _ = parts
        if target.split("?", 1)[0] != "/metrics":
            return "404 Not Found", b"only /metrics is served on this port\n", "text/plain"
        if method not in ("GET", "HEAD"):
            return "405 Method Not Allowed", b"use GET\n", "text/plain"
        fields: dict[str, str] = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            fields[name.strip().lower()] = value.strip()
        refusal = self._exposure.refusal(fields.get("authorization"))
        if refusal is not None:
            self._refused(refusal)
            return "401 Unauthorized", _REFUSALS[refusal], "text/plain"
        body, ctype = self._render(fields.get("accept", ""))
        return "200 OK", b"" if method == "HEAD" else body, ctype


async def open_listener(
    exposure: MetricsExposure, render: Render, refused: Callable[[str], None]
) -> WorkerMetricsListener | None:
    """The listener ``exposure`` asks for, started (None: the client port serves /metrics).
    A worker with no free port of its range is logged and keeps trying (a reload's new worker
    gets the port an old one frees); a single process that cannot bind ``metrics.port`` does
    not start (RuntimeError)."""
    if exposure.ports is None:
        return None
    listener = WorkerMetricsListener(render, exposure.host, exposure.ports, exposure=exposure, refused=refused)
    if await listener.start() is None:
        if not exposure.per_worker:
            raise RuntimeError(f"metrics.port: cannot listen on {exposure.where()} (the address is taken or invalid)")
        listener.keep_trying()  # a reload's new worker: an old one frees its port as it exits
    return listener
