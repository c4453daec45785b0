"""The /metrics listener (per worker, or a single process's ``metrics.port``) over real loopback
sockets, and who may read it (``metrics.bearer_token``)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from gateway.config.operations import MetricsSettings
from gateway.observability.worker_metrics import MetricsExposure, WorkerMetricsListener, parse_ports
from tests.ports import free_port_run


def render(accept: str) -> tuple[bytes, str]:
    return f"requests_total 7\n# accept={accept}\n".encode(), "text/plain; version=0.0.4"


@pytest.fixture
def ports() -> Iterator[range]:
    yield free_port_run(3)


async def ask(port: int, raw: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(raw)
    await writer.drain()
    answer = await asyncio.wait_for(reader.read(), 5)
    writer.close()
    await writer.wait_closed()
    return answer


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("9100-9101", "must look like"),
        ("127.0.0.1:9100", "must look like"),
        ("127.0.0.1:a-b", "must look like"),
        ("127.0.0.1:9101-9100", "first <= last"),
        ("127.0.0.1:0-2", "ports must be"),
        ("127.0.0.1:65535-65536", "ports must be"),
    ],
)
def test_bad_port_ranges_are_named(text: str, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        parse_ports(text)


def test_a_port_range() -> None:
    assert parse_ports("0.0.0.0:9100-9103") == ("0.0.0.0", range(9100, 9104))


async def test_workers_take_one_port_each_and_serve_only_metrics(ports: range) -> None:
    first, second = WorkerMetricsListener(render, "127.0.0.1", ports), WorkerMetricsListener(render, "127.0.0.1", ports)
    try:
        assert await first.start() == ports[0]
        assert await second.start() == ports[1], "the first port is taken: the next one"
        ok = await ask(ports[1], b"GET /metrics HTTP/1.1\r\nHost: x\r\nAccept: application/openmetrics-text\r\n\r\n")
        assert ok.startswith(b"HTTP/1.1 200 OK\r\n")
        assert b"requests_total 7" in ok and b"accept=application/openmetrics-text" in ok
        assert (await ask(ports[0], b"HEAD /metrics HTTP/1.1\r\n\r\n")).startswith(b"HTTP/1.1 200 OK")
        assert (await ask(ports[0], b"GET /admin/keys HTTP/1.1\r\n\r\n")).startswith(b"HTTP/1.1 404")
        assert (await ask(ports[0], b"POST /metrics HTTP/1.1\r\n\r\n")).startswith(b"HTTP/1.1 405")
        assert (await ask(ports[0], b"GARBAGE\r\n\r\n")).startswith(b"HTTP/1.1 400")
    finally:
        await first.aclose()
        await second.aclose()


async def test_an_incomplete_request_is_answered_400_after_the_read_timeout(ports: range) -> None:
    listener = WorkerMetricsListener(render, "127.0.0.1", ports, read_timeout_s=0.2)
    try:
        port = await listener.start()
        assert port is not None
        assert (await ask(port, b"GET /metrics HTTP/1.1\r\n")).startswith(b"HTTP/1.1 400")
    finally:
        await listener.aclose()


async def test_every_port_taken_is_logged_not_fatal(ports: range, caplog: pytest.LogCaptureFixture) -> None:
    holders = [WorkerMetricsListener(render, "127.0.0.1", ports) for _ in ports]
    extra = WorkerMetricsListener(render, "127.0.0.1", ports)
    try:
        assert [await h.start() for h in holders] == list(ports)
        assert await extra.start() is None
        assert "no free port for this worker's /metrics" in caplog.text
    finally:
        for h in holders:
            await h.aclose()
        await extra.aclose()


TOKEN = "metrics-token-0123456789abcdef"


async def test_with_a_token_only_its_bearer_reads_the_metrics(ports: range) -> None:
    refusals: list[str] = []
    exposure = MetricsExposure(token=TOKEN.encode(), host="127.0.0.1", ports=ports)
    listener = WorkerMetricsListener(render, "127.0.0.1", ports, exposure=exposure, refused=refusals.append)
    try:
        port = await listener.start()
        assert port is not None
        none = await ask(port, b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        assert none.startswith(b"HTTP/1.1 401") and b'WWW-Authenticate: Bearer realm="metrics"' in none
        assert b"requests_total" not in none and b"Authorization: Bearer" in none
        wrong = await ask(port, b"GET /metrics HTTP/1.1\r\nAuthorization: Bearer " + b"x" * 30 + b"\r\n\r\n")
        assert wrong.startswith(b"HTTP/1.1 401") and b"requests_total" not in wrong
        basic = await ask(port, f"GET /metrics HTTP/1.1\r\nAuthorization: Basic {TOKEN}\r\n\r\n".encode())
        assert basic.startswith(b"HTTP/1.1 401")
        ok = await ask(port, f"GET /metrics HTTP/1.1\r\nauthorization: bearer {TOKEN}\r\n\r\n".encode())
        assert ok.startswith(b"HTTP/1.1 200 OK") and b"requests_total 7" in ok
        assert refusals == ["missing_metrics_token", "invalid_metrics_token", "missing_metrics_token"]
    finally:
        await listener.aclose()


def test_exposure_from_settings() -> None:
    open_ = MetricsExposure.of(MetricsSettings(), "127.0.0.1", None)
    assert open_.ports is None and open_.refusal(None) is None, "no token, no port: open on the client port"
    own = MetricsExposure.of(MetricsSettings(port=9464, bearer_token=TOKEN), "0.0.0.0", None)
    assert (own.host, own.ports, own.per_worker) == ("0.0.0.0", range(9464, 9465), False)
    assert own.where() == "http://0.0.0.0:9464/metrics"
    assert own.refusal(f"Bearer {TOKEN}") is None and own.refusal(f"Bearer {TOKEN}x") == "invalid_metrics_token"
    assert own.refusal("Bearer ") == "missing_metrics_token" and own.refusal("Bearer\u00e9 x") is not None
    elsewhere = MetricsExposure.of(MetricsSettings(port=9464, host="10.0.0.5"), "0.0.0.0", None)
    assert elsewhere.where() == "http://10.0.0.5:9464/metrics"
    workers = MetricsExposure.of(MetricsSettings(port=9464), "127.0.0.1", ("127.0.0.1", range(9100, 9102)))
    assert workers.per_worker and workers.where() == "http://127.0.0.1:9100-9101/metrics", "--metrics-port wins"


async def bound(listener: WorkerMetricsListener, within_s: float = 2.0) -> int | None:
    """The port ``listener`` holds once it has one (None if it has none within ``within_s``)."""
    for _ in range(int(within_s / 0.02)):
        if listener.port is not None:
            return listener.port
        await asyncio.sleep(0.02)
    return listener.port


async def test_a_worker_with_no_free_port_takes_one_as_soon_as_it_frees(ports: range) -> None:
    # A reload replaces workers one by one: the new worker starts while the old ones hold every port.
    holders = [WorkerMetricsListener(render, "127.0.0.1", ports) for _ in ports]
    late = WorkerMetricsListener(render, "127.0.0.1", ports)
    try:
        assert [await h.start() for h in holders] == list(ports)
        assert await late.start() is None
        late.keep_trying(every_s=0.05, for_s=5)
        await asyncio.sleep(0.15)
        assert late.port is None, "every port is still taken"
        await holders[1].aclose()  # an old worker exits
        assert await bound(late) == ports[1]
        assert (await ask(ports[1], b"GET /metrics HTTP/1.1\r\n\r\n")).startswith(b"HTTP/1.1 200 OK")
    finally:
        for h in holders:
            await h.aclose()
        await late.aclose()


async def test_trying_again_stops_at_close(ports: range) -> None:
    holders = [WorkerMetricsListener(render, "127.0.0.1", ports) for _ in ports]
    late = WorkerMetricsListener(render, "127.0.0.1", ports)
    try:
        for h in holders:
            await h.start()
        assert await late.start() is None
        late.keep_trying(every_s=0.05, for_s=5)
        await late.aclose()
        await holders[0].aclose()
        await asyncio.sleep(0.2)
        assert late.port is None, "closed: it no longer tries"
    finally:
        for h in holders:
            await h.aclose()
