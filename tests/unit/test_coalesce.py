"""An answer of known size leaves in one write, head and body together; a stream's head
goes at once (gateway/server/coalesce.py), over raw sockets to a real uvicorn server on
loopback running the gateway's protocol.

The app under the server parks after ``http.response.start`` until the test lets it go
on, so what the client can read meanwhile is what was written at the start. Every wait
is bounded; nothing asserts how fast anything is."""

from __future__ import annotations

import asyncio
import select
import socket
import threading
from collections.abc import Iterator
from typing import Any

import pytest
import uvicorn

from gateway.server.protocol import HeadLimits, protocol_class
from tests.ports import free_port

WAIT_S = 10.0
QUIET_S = 0.3
"""How long the client watches for bytes that must not come."""


class ParkedApp:
    """ASGI app: ``/sized`` answers ``hello`` with a Content-Length, ``/stream`` two chunks,
    ``/broken`` a start and then an exception; each parks after its start."""

    def __init__(self) -> None:
        self.started = threading.Event()
        self.loop: asyncio.AbstractEventLoop | None = None
        self.go_on: asyncio.Event | None = None

    def release(self) -> None:
        assert self.loop is not None and self.go_on is not None
        self.loop.call_soon_threadsafe(self.go_on.set)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        self.loop, self.go_on = asyncio.get_running_loop(), asyncio.Event()
        path = scope["path"]
        headers = [(b"content-type", b"text/plain")]
        if path != "/stream":
            headers.append((b"content-length", b"5"))
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        self.started.set()
        await asyncio.wait_for(self.go_on.wait(), WAIT_S)
        if path == "/broken":
            raise RuntimeError("the app failed after its start")
        if path == "/stream":
            await send({"type": "http.response.body", "body": b"hel", "more_body": True})
            await send({"type": "http.response.body", "body": b"lo"})
        else:
            await send({"type": "http.response.body", "body": b"hello" if scope["method"] != "HEAD" else b""})


@pytest.fixture(scope="module")
def served() -> Iterator[tuple[ParkedApp, int]]:
    app = ParkedApp()
    port = free_port()
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=port,
        loop="asyncio",
        http=protocol_class(HeadLimits(16384, 100, 10.0)),
        lifespan="off",
        log_level="critical",
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = threading.Event()
    for _ in range(200):
        if server.started:
            break
        deadline.wait(0.05)
    assert server.started, "the test server did not start"
    yield app, port
    server.should_exit = True
    thread.join(WAIT_S)


def _ask(port: int, method: str, path: str, app: ParkedApp) -> socket.socket:
    app.started.clear()
    sock = socket.create_connection(("127.0.0.1", port), timeout=WAIT_S)
    sock.sendall(f"{method} {path} HTTP/1.1\r\nHost: t\r\n\r\n".encode())
    assert app.started.wait(WAIT_S), "the app never sent its start"
    return sock


def _readable(sock: socket.socket, timeout: float) -> bool:
    return bool(select.select([sock], [], [], timeout)[0])


def _read_until(sock: socket.socket, end: bytes) -> bytes:
    data = b""
    while not data.endswith(end):
        chunk = sock.recv(65536)
        assert chunk, data
        data += chunk
    return data


def test_a_sized_answer_head_waits_for_its_body_and_both_go_in_one_write(served: tuple[ParkedApp, int]) -> None:
    app, port = served
    with _ask(port, "GET", "/sized", app) as sock:
        assert not _readable(sock, QUIET_S)  # the head is held: nothing was written at the start
        app.release()
        assert _readable(sock, WAIT_S)
        first = sock.recv(65536)  # head and body were written together: one read has both
    head, body = first.split(b"\r\n\r\n", 1)
    assert head.startswith(b"HTTP/1.1 200 OK\r\n"), head
    assert b"content-length: 5" in head and b"content-type: text/plain" in head
    assert b"transfer-encoding" not in head
    assert body == b"hello"


def test_a_head_request_gets_its_head_once_the_app_ends(served: tuple[ParkedApp, int]) -> None:
    app, port = served
    with _ask(port, "HEAD", "/sized", app) as sock:
        assert not _readable(sock, QUIET_S)
        app.release()
        answer = _read_until(sock, b"\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 200 OK\r\n") and b"content-length: 5" in answer


def test_a_streams_head_goes_at_once(served: tuple[ParkedApp, int]) -> None:
    app, port = served
    with _ask(port, "GET", "/stream", app) as sock:
        assert _readable(sock, WAIT_S)  # the head, before any chunk was sent
        head = _read_until(sock, b"\r\n\r\n")
        assert b"transfer-encoding: chunked" in head
        assert not _readable(sock, QUIET_S)  # and nothing else yet
        app.release()
        assert _read_until(sock, b"0\r\n\r\n") == b"3\r\nhel\r\n2\r\nlo\r\n0\r\n\r\n"


def test_an_app_that_fails_after_its_start_closes_the_connection_with_nothing_written(
    served: tuple[ParkedApp, int],
) -> None:
    app, port = served
    with _ask(port, "GET", "/broken", app) as sock:
        app.release()
        assert _readable(sock, WAIT_S)
        assert sock.recv(65536) == b""  # closed; no half answer (the held head is dropped)


def test_keep_alive_answers_follow_one_another_on_one_connection(served: tuple[ParkedApp, int]) -> None:
    app, port = served
    with socket.create_connection(("127.0.0.1", port), timeout=WAIT_S) as sock:
        for _ in range(3):
            app.started.clear()
            sock.sendall(b"GET /sized HTTP/1.1\r\nHost: t\r\n\r\n")
            assert app.started.wait(WAIT_S)
            app.release()
            assert _read_until(sock, b"hello").endswith(b"\r\n\r\nhello")
