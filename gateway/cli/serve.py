"""``gateway serve``: the gateway under uvicorn, one process or several workers (each with
a listening socket of its own: serve_workers.py), optionally with the mock upstream beside it
(``--mock-port``) and local development defaults (``--dev``)."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import uvicorn

from gateway.app.gateway_app import create_app
from gateway.cli import dev, serve_workers
from gateway.cli.config_file import CONFIG_ENV, DEFAULT_CONFIG, default_config, load_or_say
from gateway.config.loader import load_config
from gateway.observability import worker_metrics
from gateway.server.collector import tune_collector
from gateway.server.protocol import HeadLimits, protocol_class


def app_from_env() -> object:
    """uvicorn factory for multi-worker serving: the config path comes from
    ``GATEWAY_CONFIG`` (each worker process builds its own app)."""
    path = default_config(os.environ)
    ports = os.environ.get(worker_metrics.PORTS_ENV)
    loaded = load_config(path)
    app = create_app(loaded, config_path=path, worker_metrics=worker_metrics.parse_ports(ports) if ports else None)
    tune_collector(loaded.settings.server.gc_threshold)
    return app


def add_parser(sub: Any) -> None:
    serve = sub.add_parser("serve", help="run the gateway")
    serve.add_argument(
        "--config",
        default=default_config(os.environ),
        help=f"config file (YAML; default ${CONFIG_ENV}, else {DEFAULT_CONFIG}; `gateway init` writes one)",
    )
    serve.add_argument("--host", default=None, help="listen address (default: server.host of the config)")
    serve.add_argument("--port", type=int, default=None, help="listen port (default: $PORT, else server.port)")
    serve.add_argument("--workers", type=int, default=1, help="worker processes (default 1)")
    serve.add_argument(
        "--metrics-port",
        type=int,
        default=None,
        help="with --workers N: each worker serves its own /metrics on one of the ports P .. P+N-1 "
        "(scrape them all); required with more than one worker",
    )
    serve.add_argument(
        "--mock-port",
        type=int,
        default=None,
        help="also start the mock upstream on this port (the demo aliases use it)",
    )
    serve.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    serve.add_argument(
        "--dev",
        action="store_true",
        help="local development (what `make run` uses): the development master key and secrets made once in .dev/",
    )


def _config_problem(path: str) -> str | None:
    """Why ``path`` cannot be read as a config, said so that a newcomer knows what to do."""
    if Path(path).exists():
        return None
    return (
        f"no config file at {path!r} (from {Path.cwd()}). Pass --config FILE or set {CONFIG_ENV}; "
        f"`gateway init` writes a starter config (`gateway init {DEFAULT_CONFIG}`), or run `make run` "
        "in the repository"
    )


def run(args: argparse.Namespace) -> int:
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    problem = _config_problem(args.config)
    if problem is not None:
        print(problem, file=sys.stderr)
        return 2
    if args.dev:
        for line in dev.apply_dev_defaults(os.environ):
            print(f"gateway --dev: {line}", file=sys.stderr)
    if args.mock_port:
        # The default config's demo aliases point at ${MOCK_BASE_URL}: the mock we start.
        os.environ.setdefault("MOCK_BASE_URL", f"http://127.0.0.1:{args.mock_port}")
    loaded = load_or_say(args.config)
    if loaded is None:
        return 2
    server = loaded.settings.server
    host = args.host or server.host
    refusal = dev.refuse_public_dev_key(host, loaded.settings.auth.master_key)
    if refusal is not None:
        print(refusal, file=sys.stderr)
        return 2
    port = args.port if args.port is not None else os.environ.get("PORT", server.port)
    if not str(port).isdigit() or not 0 <= int(port) <= 65535:
        print(f"PORT must be a number from 0 to 65535, got {port!r}", file=sys.stderr)
        return 2
    port = int(port)
    if args.workers > 1 and loaded.settings.state.backend == "embedded":
        print(
            "--workers > 1 needs the redis or postgres state backend: with the embedded one each worker process "
            "would keep its own keys, limits, cache and spend (a key revoked through one worker would stay valid "
            "in the others). Set state.backend: redis (or postgres), or run one worker.",
            file=sys.stderr,
        )
        return 2
    if args.workers > 1:
        if args.metrics_port is None:
            print(
                "--workers > 1 needs --metrics-port P: the workers share the main port, so each serves its own "
                f"/metrics on one of P .. P+{args.workers - 1} and Prometheus scrapes every one "
                "(see docs/metrics.md, 'Several worker processes')",
                file=sys.stderr,
            )
            return 2
        last = args.metrics_port + args.workers - 1
        if not 0 < args.metrics_port <= last <= 65535 or port in range(args.metrics_port, last + 1):
            print(
                f"--metrics-port {args.metrics_port}: the ports {args.metrics_port}-{last} must be within "
                f"1-65535 and must not include the main port {port}",
                file=sys.stderr,
            )
            return 2
        os.environ[worker_metrics.PORTS_ENV] = f"{host}:{args.metrics_port}-{last}"
    mock = _start_mock(args.mock_port) if args.mock_port else None
    # uvicorn re-raises the SIGTERM it caught once it has shut down; turn that
    # into SystemExit so the `finally` below still stops the mock.
    signal.signal(signal.SIGTERM, _exit_on_signal)
    try:
        common = dict(
            host=host,
            port=port,
            loop="uvloop",
            # httptools with the request head bounded: size, field count, read timeout (server/protocol.py)
            http=protocol_class(HeadLimits.of(server)),
            timeout_keep_alive=server.keepalive_timeout_s,
            lifespan="on",
            access_log=False,
            log_level=args.log_level,
            # SIGTERM: stop accepting, let requests and streams in flight finish, cut what is
            # left after the grace (docs/deployment.md, "Graceful shutdown").
            timeout_graceful_shutdown=server.shutdown_grace_s,
            # The client address is the socket's peer: X-Forwarded-For is read only by the
            # admin gate, and only from admin.trusted_proxies (gateway/admin/gate.py).
            proxy_headers=False,
        )
        if args.workers > 1:
            os.environ[CONFIG_ENV] = str(Path(args.config).resolve())
            # A listening socket per worker, balanced by the kernel (serve_workers.py).
            serve_workers.run(
                uvicorn.Config("gateway.cli.serve:app_from_env", factory=True, workers=args.workers, **common)
            )
        else:
            app = create_app(loaded, config_path=args.config)
            tune_collector(server.gc_threshold)
            uvicorn.run(app, **common)
    finally:
        if mock is not None:
            mock.terminate()
            mock.wait(timeout=10)
    return 0


def _exit_on_signal(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)


def _start_mock(port: int) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen([sys.executable, "-m", "gateway", "mock", "--port", str(port)])
    url = f"http://127.0.0.1:{port}/_mock/health"
    for _ in range(100):
        try:
            with urllib.request.urlopen(url, timeout=1):
                logging.getLogger("gateway").info("mock upstream listening on 127.0.0.1:%d", port)
                return proc
        except OSError:
            if proc.poll() is not None:
                raise SystemExit(f"the mock upstream failed to start on port {port}") from None
            time.sleep(0.1)
    proc.terminate()
    raise SystemExit(f"the mock upstream did not answer on port {port}")
