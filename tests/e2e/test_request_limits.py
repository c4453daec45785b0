"""Requests are bounded before they are read, over raw sockets to a real ``gateway serve``:
bodies (every route, /admin/login included), JSON depth (client API and admin), the request
head's size and field count, and the head's read timeout (gateway/server/protocol.py); then the
shipped nginx front proxy refusing the same attacks before they reach a gateway.

Every wait is bounded by a socket timeout; nothing here asserts how fast anything is."""

from __future__ import annotations

import contextlib
import os
import re
import select
import shutil
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from scripts import stack
from tests.e2e.conftest import Mock
from tests.e2e.harness import MASTER_KEY, ROOT, GatewayProcess, e2e_config, wait_until
from tests.ports import free_port

HEAD_TIMEOUT_S = 1.0
WAIT_S = 15.0
"""Upper bound of every wait for an answer (many times any limit configured here)."""
AUTH = f"Authorization: Bearer {MASTER_KEY}\r\n".encode()
REASONS = ("request_too_large", "json_too_deep", "headers_too_large", "too_many_headers", "header_timeout")


@pytest.fixture(scope="module")
def gw(mock: Mock, tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    base = e2e_config(mock.url)
    text = base.replace(
        "server: {max_body_bytes: 65536}", f"server: {{max_body_bytes: 65536, header_timeout_s: {HEAD_TIMEOUT_S}}}"
    )
    assert text != base
    g = GatewayProcess(text, Path(tmp_path_factory.mktemp("limits")))
    yield g
    g.stop()


# --- raw HTTP/1.1 --------------------------------------------------------------------------


def connect(port: int) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=WAIT_S)


def send(sock: socket.socket, data: bytes) -> None:
    """Send what the server takes: it may answer and close before the last byte."""
    with contextlib.suppress(BrokenPipeError, ConnectionResetError):
        sock.sendall(data)


def one_answer(sock: socket.socket) -> bytes:
    """One answer with a Content-Length, read whole; the connection stays open."""
    data = b""
    while b"\r\n\r\n" not in data:
        data += sock.recv(65536)
    head, body = data.split(b"\r\n\r\n", 1)
    m = re.search(rb"content-length: (\d+)", head, re.I)
    assert m is not None, head
    while len(body) < int(m.group(1)):
        body += sock.recv(65536)
    return head + b"\r\n\r\n" + body


def answer(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection (bounded by the timeout)."""
    data = b""
    try:
        while chunk := sock.recv(65536):
            data += chunk
    except ConnectionResetError:
        pass  # the server closed with our unread bytes in its buffer: what it sent first is kept
    finally:
        sock.close()
    return data


def status(data: bytes) -> int:
    m = re.match(rb"HTTP/1\.[01] (\d{3}) ", data)
    assert m is not None, f"no HTTP answer: {data[:200]!r}"
    return int(m.group(1))


def error_of(data: bytes) -> dict[str, Any]:
    body = data.split(b"\r\n\r\n", 1)[1]
    if b"transfer-encoding: chunked" in data.split(b"\r\n\r\n", 1)[0].lower():
        size, rest = body.split(b"\r\n", 1)
        body = rest[: int(size, 16)]
    error: dict[str, Any] = orjson.loads(body)["error"]
    return error


def post_head(path: str, length: int | None, extra: bytes = b"") -> bytes:
    framing = f"Content-Length: {length}\r\n" if length is not None else "Transfer-Encoding: chunked\r\n"
    return f"POST {path} HTTP/1.1\r\nHost: gw\r\nContent-Type: application/json\r\n{framing}".encode() + extra + b"\r\n"


def readable(sock: socket.socket) -> bool:
    return bool(select.select([sock], [], [], 0)[0])


def refused_counts(gw: GatewayProcess) -> dict[str, float]:
    text = gw.http.get("/metrics").text
    found = re.findall(r'^gateway_requests_refused_total\{reason="(\w+)"\} ([\d.e+]+)$', text, re.M)
    return {reason: float(value) for reason, value in found}


def deep(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


# --- bodies --------------------------------------------------------------------------------


def test_a_10_mb_login_body_is_refused_before_it_is_read(gw: GatewayProcess) -> None:
    sock = connect(gw.port)
    sock.sendall(post_head("/admin/login", 10 * 1024 * 1024) + b"x" * 65536)
    data = answer(sock)  # the answer came while the client had sent 64 KiB of the 10 MiB
    assert status(data) == 413, data[:300]
    assert error_of(data)["code"] == "request_too_large"
    assert b"connection: close" in data.lower(), "the server must not go on to read the rest"


@pytest.mark.parametrize(
    ("path", "auth"), [("/admin/login", b""), ("/admin/teams", AUTH), ("/v1/chat/completions", AUTH)]
)
def test_a_chunked_body_is_refused_once_past_the_limit(gw: GatewayProcess, path: str, auth: bytes) -> None:
    """1 MiB outside /v1 (server.max_admin_body_bytes), 64 KiB on /v1 here (max_body_bytes)."""
    sock = connect(gw.port)
    sock.sendall(post_head(path, None, auth))
    # far more than loopback socket buffers hold: the client can only get this far if the server reads it all
    piece, sent, budget = b"x" * 16384, 0, 64 * 1024 * 1024
    try:
        while sent < budget and not readable(sock):
            sock.sendall(b"%x\r\n%s\r\n" % (len(piece), piece))
            sent += len(piece)
    except (BrokenPipeError, ConnectionResetError):
        pass  # the server answered and closed while we were still sending
    data = answer(sock)
    assert status(data) == 413 and error_of(data)["code"] == "request_too_large", data[:300]
    assert sent < budget, "the refusal must come while the body is still arriving"


# --- JSON depth ----------------------------------------------------------------------------

CHAT = b'{"model": "chat", "messages": [{"role": "user", "content": "hi"}], "metadata_x": %s}'


@pytest.mark.parametrize("depth", [300, 5000])
@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/v1/chat/completions", CHAT),
        ("/v1/embeddings", b'{"model": "embed", "input": "x", "extra": %s}'),
        ("/admin/teams", b'{"id": "t-deep", "x": %s}'),
        ("/admin/models", b'{"name": "deep", "deployments": %s}'),
        ("/admin/keys", b'{"name": "deep", "metadata": %s}'),
        ("/admin/login", b'{"username": "u", "password": %s}'),
    ],
)
def test_deep_json_is_400_naming_the_parameter_never_500(
    gw: GatewayProcess, path: str, body: bytes, depth: int
) -> None:
    resp = gw.http.post(path, content=body % deep(depth), headers={"content-type": "application/json"})
    assert resp.status_code == 400, resp.text
    error = resp.json()["error"]
    assert (error["code"], error["param"]) == ("json_too_deep", "body")
    assert "64 levels" in error["message"] and "server.max_json_depth" in error["message"]


def test_json_at_the_limit_is_served(gw: GatewayProcess) -> None:
    # the body object, then 63 levels: 64 in all, the default limit; the mock answers it
    resp = gw.http.post("/v1/chat/completions", content=CHAT % deep(63), headers={"content-type": "application/json"})
    assert resp.status_code == 200, resp.text
    over = gw.http.post("/v1/chat/completions", content=CHAT % deep(64), headers={"content-type": "application/json"})
    assert over.status_code == 400 and over.json()["error"]["code"] == "json_too_deep"


def test_no_traceback_was_logged(gw: GatewayProcess) -> None:
    for depth in (300, 900):  # between the parser's limit and the encoder's: the old 500s
        gw.http.post("/v1/chat/completions", content=CHAT % deep(depth), headers={"content-type": "application/json"})
        gw.http.post("/admin/teams", content=b'{"id": "t", "x": %s}' % deep(depth))
    assert "Traceback" not in gw.log()


# --- the request head ----------------------------------------------------------------------


def test_a_200_kb_header_is_refused(gw: GatewayProcess) -> None:
    sock = connect(gw.port)
    send(sock, b"GET /health HTTP/1.1\r\nHost: gw\r\nX-Big: " + b"a" * 200_000 + b"\r\n\r\n")
    data = answer(sock)
    assert status(data) == 431 and error_of(data)["code"] == "headers_too_large", data[:300]


def test_5000_headers_are_refused(gw: GatewayProcess) -> None:
    sock = connect(gw.port)
    send(sock, b"GET /health HTTP/1.1\r\nHost: gw\r\n" + b"".join(b"X-%d: v\r\n" % i for i in range(5000)) + b"\r\n")
    data = answer(sock)
    assert status(data) == 431 and error_of(data)["code"] in ("too_many_headers", "headers_too_large"), data[:300]


def test_101_small_headers_are_too_many_and_100_are_fine(gw: GatewayProcess) -> None:
    def head(count: int) -> bytes:  # Host, count - 2 others, Connection
        others = b"".join(b"X-%d: v\r\n" % i for i in range(count - 2))
        return b"GET /health HTTP/1.1\r\nHost: gw\r\n" + others + b"Connection: close\r\n\r\n"

    sock = connect(gw.port)
    sock.sendall(head(101))
    data = answer(sock)
    assert status(data) == 431 and error_of(data)["code"] == "too_many_headers"
    sock = connect(gw.port)
    sock.sendall(head(100))
    assert status(answer(sock)) == 200


def test_a_half_sent_head_is_closed_within_the_timeout(gw: GatewayProcess) -> None:
    sock = connect(gw.port)
    sock.sendall(b"GET /health HTTP/1.1\r\nHost: gw\r\n")  # and never the blank line
    data = answer(sock)  # returns once the server closes; the socket timeout bounds the wait
    assert status(data) == 408 and error_of(data)["code"] == "header_timeout"


def test_a_connection_that_sends_nothing_is_closed(gw: GatewayProcess) -> None:
    assert answer(connect(gw.port)) == b""


def test_a_head_sent_in_parts_within_the_timeout_is_served(gw: GatewayProcess) -> None:
    sock = connect(gw.port)
    sock.sendall(b"GET /health HTTP/1.1\r\n")
    sock.sendall(b"Host: gw\r\nConnection: close\r\n\r\n")
    assert status(answer(sock)) == 200


def test_a_large_body_in_the_same_piece_as_a_small_head_is_served(gw: GatewayProcess) -> None:
    """The head is measured, not the bytes that came with it."""
    text = "hi " * 15_000  # about 45 KB: over max_header_bytes, under max_body_bytes
    body = orjson.dumps({"model": "chat", "messages": [{"role": "user", "content": text}]})
    sock = connect(gw.port)
    sock.sendall(post_head("/v1/chat/completions", len(body), AUTH + b"Connection: close\r\n") + body)
    assert status(answer(sock)) == 200


def test_pipelined_requests_are_each_served(gw: GatewayProcess) -> None:
    one = b"GET /health HTTP/1.1\r\nHost: gw\r\n\r\n"
    sock = connect(gw.port)
    sock.sendall(one * 3 + b"GET /health HTTP/1.1\r\nHost: gw\r\nConnection: close\r\n\r\n")
    assert answer(sock).count(b"HTTP/1.1 200 OK") == 4


def test_keep_alive_requests_each_get_their_own_head_clock(gw: GatewayProcess) -> None:
    with httpx.Client(base_url=gw.url, timeout=WAIT_S) as client:
        for _ in range(5):
            assert client.get("/health").status_code == 200
    sock = connect(gw.port)
    sock.sendall(b"GET /health HTTP/1.1\r\nHost: gw\r\n\r\n")
    assert status(one_answer(sock)) == 200
    sock.sendall(b"GET /health HTTP/1.1\r\nHost: gw\r\n")  # a second head, never finished
    data = answer(sock)
    assert status(data) == 408, data[:200]


def test_every_refusal_is_counted(gw: GatewayProcess) -> None:
    before = refused_counts(gw)
    assert set(before) == set(REASONS)
    attacks = [
        post_head("/admin/login", 10 * 1024 * 1024),
        b"GET /health HTTP/1.1\r\nHost: gw\r\nX-Big: " + b"a" * 40_000 + b"\r\n\r\n",
        b"GET /health HTTP/1.1\r\n" + b"".join(b"X-%d: v\r\n" % i for i in range(200)) + b"\r\n",
        b"GET /health HTTP/1.1\r\n",
    ]
    for attack in attacks:
        sock = connect(gw.port)
        sock.sendall(attack)
        answer(sock)
    gw.http.post("/admin/teams", content=b'{"x": %s}' % deep(100))
    assert wait_until(lambda: all(refused_counts(gw)[r] > before[r] for r in REASONS), timeout=WAIT_S)


# --- the front proxy -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def nginx(gw: GatewayProcess, tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    exe = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None)
    if exe is None:
        pytest.skip("nginx is not installed (apt-get install nginx-light)")
    work = Path(tmp_path_factory.mktemp("nginx"))
    for name in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"):
        (work / f"tmp_{name}").mkdir()
    port = free_port()
    conf = stack.nginx_config(
        (ROOT / "deploy" / "nginx.conf").read_text(),
        listen=port,
        upstreams=[gw.port, gw.port],
        workdir=work,
        as_root=os.geteuid() == 0,
    )
    (work / "nginx.conf").write_text(conf)
    proc = subprocess.Popen([exe, "-c", str(work / "nginx.conf"), "-p", str(work), "-e", str(work / "error.log")])
    try:
        assert wait_until(lambda: _health(port), timeout=WAIT_S), (work / "error.log").read_text()
        yield port
    finally:
        proc.terminate()
        proc.wait(timeout=WAIT_S)


def _health(port: int) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200
    except httpx.TransportError:
        return False


@pytest.mark.parametrize(
    "attack",
    [
        b"GET /health HTTP/1.1\r\nHost: gw\r\nX-Big: " + b"a" * 200_000 + b"\r\n\r\n",
        b"GET /health HTTP/1.1\r\nHost: gw\r\n" + b"".join(b"X-%d: value\r\n" % i for i in range(5000)) + b"\r\n",
        post_head("/admin/login", 10 * 1024 * 1024),
    ],
    ids=["200-kb-header", "5000-headers", "10-mb-body"],
)
def test_nginx_refuses_before_the_gateway(nginx: int, attack: bytes) -> None:
    sock = connect(nginx)
    send(sock, attack)
    data = answer(sock)
    assert status(data) in (400, 413, 414, 431), data[:300]
    assert b"server: nginx" in data.lower()
