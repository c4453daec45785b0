"""Run the mock as a real loopback server in a background thread (for tests and demos).

with MockServer(MockConfig()) as mock:
    client = openai.OpenAI(base_url=mock.url + "/v1", api_key="x")
"""

from __future__ import annotations

import json
import socket
import threading
import time
import urllib.request
from types import TracebackType
from typing import Any, Literal

import uvicorn

from gateway.mock.app import create_mock_app
from gateway.mock.behaviour import MockConfig

_START_TIMEOUT_S = 10.0

Fmt = Literal["openai", "anthropic", "gemini"]


class MockServer:
    """A uvicorn server for the mock on a free port of ``host``; :meth:`start` waits
    until ``/_mock/health`` answers, :meth:`stop` shuts it down."""

    def __init__(self, config: MockConfig | None = None, host: str = "127.0.0.1") -> None:
        self.app = create_mock_app(config)
        self.host = host
        self.port = 0
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._sock: socket.socket | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, 0))
        self._sock, self.port = sock, sock.getsockname()[1]
        config = uvicorn.Config(
            self.app, log_level="warning", access_log=False, lifespan="off", timeout_graceful_shutdown=1
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [sock]}, daemon=True)
        self._thread.start()
        self._wait_healthy()

    def _wait_healthy(self) -> None:
        deadline = time.monotonic() + _START_TIMEOUT_S
        while time.monotonic() < deadline:
            try:
                if self.get("/_mock/health") == {"status": "ok"}:
                    return
            except OSError:
                time.sleep(0.02)
        self.stop()
        raise RuntimeError(f"mock server on {self.url} did not become healthy")

    def get(self, path: str) -> Any:
        """GET a control route and decode its JSON (blocking; for fixtures)."""
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        with opener.open(self.url + path, timeout=5) as resp:
            return json.loads(resp.read())

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=5)
        if self._sock is not None:
            self._sock.close()
        self._server = self._thread = self._sock = None

    def __enter__(self) -> MockServer:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def parse_sse(body: bytes) -> list[tuple[str, str]]:
    """``(event, data)`` pairs of a complete SSE body (``event`` is ``"message"`` when
    unnamed); events may be separated by LF or CRLF blank lines."""
    events: list[tuple[str, str]] = []
    for block in body.replace(b"\r\n", b"\n").decode().split("\n\n"):
        name, data = "message", []
        for line in block.splitlines():
            field, _, value = line.partition(":")
            value = value.removeprefix(" ")
            if field == "event":
                name = value
            elif field == "data":
                data.append(value)
        if data:
            events.append((name, "\n".join(data)))
    return events


def chat_request(fmt: Fmt, model: str = "m", stream: bool = False, text: str = "hi") -> tuple[str, dict[str, Any]]:
    """Path and body of a minimal chat request in ``fmt`` (one user message)."""
    if fmt == "openai":
        return "/v1/chat/completions", {
            "model": model,
            "messages": [{"role": "user", "content": text}],
            "stream": stream,
        }
    if fmt == "anthropic":
        messages = [{"role": "user", "content": text}]
        return "/v1/messages", {"model": model, "max_tokens": 50, "messages": messages, "stream": stream}
    method = "streamGenerateContent?alt=sse" if stream else "generateContent"
    return f"/v1beta/models/{model}:{method}", {"contents": [{"role": "user", "parts": [{"text": text}]}]}
