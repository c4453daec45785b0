"""An answer of known size leaves in one write, head and body together; a stream's head
goes with a first chunk sent in the same turn, else at the end of that turn
(gateway/server/coalesce.py).

Over raw sockets to a real uvicorn server on loopback running the gateway's protocol: the
app under the server parks after ``http.response.start`` until the test lets it go on, so
what the client can read meanwhile is what was written at the start. The writes
themselves are counted on a cycle whose transport records them (a client cannot tell
one write from two that arrived together). Every wait is bounded; nothing asserts how
fast anything is."""

from __future__ import annotations

import asyncio
import logging
import select
import socket
import threading
from collections.abc import Iterator
from typing import Any

import pytest
import uvicorn
from uvicorn.protocols.http.flow_control import FlowControl

from gateway.server.coalesce import CoalescingCycle
from gateway.server.protocol import HeadLimits, protocol_class
from tests.ports import free_port

WAIT_S = 10.0
QUIET_S = 0.3
"""How long the client watches for bytes that must not come."""


class ParkedApp:
    """ASGI app: ``/sized`` answers ``hello`` with a Content-Length, ``/stream`` two chunks,
    ``/broken`` a start and then an exception; each parks after its start; ``/stream-now``
    sends its first chunk in the turn of its start and parks after it."""

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
        if not path.startswith("/stream"):
            headers.append((b"content-length", b"5"))
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        if path == "/stream-now":
            await send({"type": "http.response.body", "body": b"hel", "more_body": True})
        self.started.set()
        await asyncio.wait_for(self.go_on.wait(), WAIT_S)
        if path == "/broken":
            raise RuntimeError("the app failed after its start")
        if path.startswith("/stream"):
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


def test_a_streams_head_and_a_first_chunk_sent_in_the_same_turn_go_in_one_write(
    served: tuple[ParkedApp, int],
) -> None:
    app, port = served
    with _ask(port, "GET", "/stream-now", app) as sock:
        assert _readable(sock, WAIT_S)
        first = sock.recv(65536)  # one write: one read has the head and the first chunk
        assert first.startswith(b"HTTP/1.1 200 OK\r\n") and b"transfer-encoding: chunked" in first
        assert first.endswith(b"\r\n\r\n3\r\nhel\r\n"), first
        app.release()
        assert _read_until(sock, b"0\r\n\r\n") == b"2\r\nlo\r\n0\r\n\r\n"


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


# --- the writes, counted ---------------------------------------------------------------------


class Recorder:
    """The transport a cycle writes to, in process: keeps each write."""

    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.closed = False

    def write(self, data: bytes) -> None:
        self.writes.append(data)

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed


def _cycle(method: str = "GET") -> tuple[CoalescingCycle, Recorder]:
    transport = Recorder()
    cycle = CoalescingCycle(
        scope={"method": method, "http_version": "1.1"},  # type: ignore[typeddict-item]
        transport=transport,  # type: ignore[arg-type]
        flow=FlowControl(transport),  # type: ignore[arg-type]
        logger=logging.getLogger("test"),
        access_logger=logging.getLogger("test"),
        access_log=False,
        default_headers=[],
        message_event=asyncio.Event(),
        expect_100_continue=False,
        keep_alive=True,
        on_response=lambda: None,
    )
    return cycle, transport


def _start(sized: bool) -> dict[str, Any]:
    headers = [(b"content-length", b"5")] if sized else []
    return {"type": "http.response.start", "status": 200, "headers": headers}


@pytest.mark.parametrize(("method", "body"), [("GET", b"hello"), ("HEAD", b"")])
def test_a_sized_answer_is_one_write(method: str, body: bytes) -> None:
    async def run() -> list[bytes]:
        cycle, transport = _cycle(method)
        await cycle.send(_start(sized=True))
        assert transport.writes == []
        await cycle.send({"type": "http.response.body", "body": body})
        return transport.writes

    writes = asyncio.run(run())
    assert len(writes) == 1
    assert writes[0].startswith(b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\n")
    assert writes[0].endswith(b"\r\n\r\n" + body)


def test_a_stream_head_shares_the_write_of_a_chunk_sent_in_its_turn() -> None:
    async def run() -> list[bytes]:
        cycle, transport = _cycle()
        await cycle.send(_start(sized=False))
        await cycle.send({"type": "http.response.body", "body": b"hel", "more_body": True})
        await asyncio.sleep(0)  # the end of the turn: nothing left to flush
        await cycle.send({"type": "http.response.body", "body": b"lo"})
        return transport.writes

    writes = asyncio.run(run())
    assert len(writes) == 2, writes
    assert writes[0].endswith(b"transfer-encoding: chunked\r\n\r\n3\r\nhel\r\n")
    assert writes[1] == b"2\r\nlo\r\n0\r\n\r\n"


def test_a_stream_head_goes_at_the_end_of_its_turn_when_no_chunk_is_ready() -> None:
    async def run() -> list[bytes]:
        cycle, transport = _cycle()
        await cycle.send(_start(sized=False))
        assert transport.writes == []
        await asyncio.sleep(0)
        assert len(transport.writes) == 1 and transport.writes[0].endswith(b"chunked\r\n\r\n")
        await cycle.send({"type": "http.response.body", "body": b""})
        return transport.writes

    assert asyncio.run(run())[1:] == [b"0\r\n\r\n"]


def test_a_held_head_is_dropped_when_the_client_is_gone() -> None:
    async def run() -> list[bytes]:
        cycle, transport = _cycle()
        await cycle.send(_start(sized=False))
        cycle.disconnected = True
        await asyncio.sleep(0)
        return transport.writes

    assert asyncio.run(run()) == []
