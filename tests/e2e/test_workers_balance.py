"""``gateway serve --workers 2``: each worker listens on a socket of its own (SO_REUSEPORT),
so keep-alive connections opened at once spread over both workers; SIGHUP to the parent still
replaces every worker, and SIGTERM still stops them all.

The kernel picks a worker's socket for each connection by a hash of its addresses and ports:
over 64 connections the split is binomial (n=64, p=1/2, standard deviation 4), so about 40 % of
single batches fall outside 32 +- 3. The test therefore asserts what the mechanism promises:
no batch lands on one worker alone, and over 20 batches (1280 connections, standard deviation
18) the total is within 10 % of even (+-64; a fair hash misses that once in about 3,000 runs).
"""

from __future__ import annotations

import asyncio
import re
import signal
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.e2e.conftest import Mock
from tests.e2e.harness import MASTER_KEY, GatewayProcess, e2e_config, wait_until
from tests.ports import free_port_run
from tests.redis_server import RedisServer

BATCH = 64
BATCHES = 20
BODY = b'{"model": "chat", "messages": [{"role": "user", "content": "hello"}]}'
REQUEST = (
    b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
    + f"Authorization: Bearer {MASTER_KEY}\r\nContent-Length: {len(BODY)}\r\n\r\n".encode()
    + BODY
)


@pytest.fixture(scope="module")
def redis_server() -> Iterator[RedisServer]:
    with RedisServer() as server:
        yield server


class Workers:
    """A gateway with two workers and the ports of their own /metrics."""

    def __init__(self, mock: Mock, redis_server: RedisServer, workdir: Path) -> None:
        self.metrics_ports = list(free_port_run(2))
        state = f"state: {{backend: redis, url: '{redis_server.url}'}}\n"
        args = ["--workers", "2", "--metrics-port", str(self.metrics_ports[0])]
        self.gw = GatewayProcess(state + e2e_config(mock.url), workdir, extra_args=args)

    def served(self) -> list[float] | None:
        """Chat requests each worker has answered (None while one cannot be scraped)."""
        counts = []
        pattern = re.compile(r'^gateway_requests_total\{[^}]*route="chat"[^}]*\} (\S+)$', re.M)
        for port in self.metrics_ports:
            try:
                resp = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5)
            except httpx.TransportError:
                return None
            if resp.status_code != 200:
                return None
            counts.append(sum(float(v) for v in pattern.findall(resp.text)))
        return counts

    def batch(self, n: int = BATCH) -> list[int]:
        """Opens ``n`` connections at once, then one request on each while all stay open;
        returns how many of them each worker answered."""
        before = self.served()
        assert before is not None
        statuses = asyncio.run(open_at_once(self.gw.port, n))
        assert statuses == [200] * n, statuses
        # A worker counts a request once its answer is sent (settlement ends after the
        # last byte), so a scrape right after the answers may miss the last few: wait
        # (bounded) until every answer is counted.
        split: list[int] = []

        def counted() -> bool:
            after = self.served()
            if after is None:
                return False
            split[:] = [round(a - b) for a, b in zip(after, before, strict=True)]
            return sum(split) >= n

        wait_until(counted, 10)
        return split

    def wait_both_listening(self, timeout: float = 30) -> str | None:
        """None once each worker has answered a connection (each binds its socket as it
        starts, so right after /ready one of them may not be listening yet); else what
        was seen, for the failure message."""
        seen = [0, 0]

        def both() -> bool:
            for worker, count in enumerate(self.batch(8)):
                seen[worker] += count
            return min(seen) > 0

        if not wait_until(lambda: self.served() is not None, timeout):
            return f"a worker's /metrics on {self.metrics_ports} never answered\n{self.gw.log()[-3000:]}"
        if not wait_until(both, timeout):
            return f"requests answered per worker: {seen}\n{self.gw.log()[-3000:]}"
        return None


async def open_at_once(port: int, n: int) -> list[int]:
    """The status of one keep-alive request on each of ``n`` connections, all opened before any request."""
    conns = await asyncio.gather(*(asyncio.open_connection("127.0.0.1", port) for _ in range(n)))
    try:
        for _, writer in conns:
            writer.write(REQUEST)
        return list(await asyncio.gather(*(read_answer(reader) for reader, _ in conns)))
    finally:
        for _, writer in conns:
            writer.close()


async def read_answer(reader: asyncio.StreamReader) -> int:
    """The status of one answer, read whole (Content-Length or chunked) so that the connection stays usable."""
    head = (await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 30)).decode("latin-1").lower()
    assert "connection: close" not in head, head  # a keep-alive connection stays open
    length = re.search(r"^content-length: *(\d+)", head, re.M)
    if length is not None:
        await reader.readexactly(int(length.group(1)))
    else:
        assert "transfer-encoding: chunked" in head, head
        while size := int((await reader.readuntil(b"\r\n")).split(b";")[0], 16):
            await reader.readexactly(size + 2)
        await reader.readuntil(b"\r\n")
    return int(head.split(" ", 2)[1])


def test_connections_opened_at_once_spread_over_both_workers(
    mock: Mock, redis_server: RedisServer, tmp_path: Path
) -> None:
    workers = Workers(mock, redis_server, tmp_path)
    try:
        assert (problem := workers.wait_both_listening()) is None, problem
        splits = [workers.batch() for _ in range(BATCHES)]
        print("connections per worker, batch by batch:", splits)
        assert all(sum(split) == BATCH for split in splits), splits  # each answer counted once
        assert all(min(split) > 0 for split in splits), f"a batch landed on one worker: {splits}"
        first = sum(split[0] for split in splits)
        even = BATCH * BATCHES / 2
        assert abs(first - even) <= 0.1 * even, f"{first} of {BATCH * BATCHES} on the first worker: {splits}"
    finally:
        workers.gw.stop()


def test_sighup_replaces_every_worker_and_sigterm_stops_them(
    mock: Mock, redis_server: RedisServer, tmp_path: Path
) -> None:
    workers = Workers(mock, redis_server, tmp_path)
    gw = workers.gw
    try:
        assert (problem := workers.wait_both_listening()) is None, problem
        started = set(re.findall(r"Started server process \[(\d+)\]", gw.log()))
        assert len(started) == 2, gw.log()[-3000:]
        gw.sighup()
        # uvicorn starts each replacement, waits until it is ready, then retires the old worker
        gone = [f"Finished server process [{pid}]" for pid in started]
        assert wait_until(lambda: all(line in gw.log() for line in gone), 60), gw.log()[-3000:]
        restarted = set(re.findall(r"Started server process \[(\d+)\]", gw.log())) - started
        assert len(restarted) == 2, gw.log()[-3000:]
        # The old workers' sockets are closed and the parent's never listens: these
        # connections are answered by the new workers' own sockets.
        assert asyncio.run(open_at_once(gw.port, BATCH)) == [200] * BATCH
        # each new worker took a /metrics port as an old one gave it up: both are scraped, and
        # what they count is the new workers' (the requests since the reload)
        # (counted once each answer is sent: wait until all are)
        assert wait_until(lambda: sum(workers.served() or []) >= BATCH, 10), gw.log()[-3000:]
        assert sum(workers.served() or []) == BATCH, (workers.served(), gw.log()[-3000:])
        gw.proc.send_signal(signal.SIGTERM)
        assert gw.proc.wait(timeout=40) == 0, gw.log()[-3000:]
        log = gw.log()
        assert all(f"Finished server process [{pid}]" in log for pid in restarted), log[-3000:]
    finally:
        gw.stop()
