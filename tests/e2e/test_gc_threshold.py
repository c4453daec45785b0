"""``server.gc_threshold`` in a real ``gateway serve``: with Python's default threshold (700) the
objects of the requests in flight keep triggering the cyclic collector; with the gateway's
default (100,000) the same requests leave it idle. Read from the process's own
``python_gc_collections_total`` (docs/performance.md, "The garbage collector"). Nothing is timed:
only collections are counted."""

from __future__ import annotations

import re
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from tests.e2e.conftest import Mock
from tests.e2e.harness import GatewayProcess, e2e_config, wait_until

REQUESTS = 400
IN_FLIGHT = 16
SERVER = "server: {max_body_bytes: 65536}"


def collections(gw: GatewayProcess) -> dict[str, float]:
    """``python_gc_collections_total`` by generation, scraped from ``gw``."""
    text = gw.http.get("/metrics").text
    found = re.findall(r'^python_gc_collections_total\{generation="(\d)"\} (\S+)$', text, re.M)
    return {generation: float(value) for generation, value in found}


def gen0_collections_during_load(gw: GatewayProcess) -> float:
    body = {"model": "chat", "messages": [{"role": "user", "content": "hello"}]}

    def one(_: int) -> int:
        return gw.http.post("/v1/chat/completions", json=body).status_code

    before = collections(gw)
    assert set(before) == {"0", "1", "2"}, before
    with ThreadPoolExecutor(IN_FLIGHT) as pool:
        assert set(pool.map(one, range(REQUESTS))) == {200}
    return collections(gw)["0"] - before["0"]


def serve(mock: Mock, workdir: Path, server: str) -> GatewayProcess:
    workdir.mkdir()
    config = e2e_config(mock.url)
    assert SERVER in config
    gw = GatewayProcess(config.replace(SERVER, server), workdir)
    assert wait_until(lambda: gw.http.get("/metrics").status_code == 200, timeout=20), gw.log()[-2000:]
    return gw


def test_the_default_threshold_leaves_the_collector_idle_where_pythons_keeps_it_busy(
    mock: Mock, tmp_path: Path
) -> None:
    python_default = serve(mock, tmp_path / "700", "server: {max_body_bytes: 65536, gc_threshold: 700}")
    try:
        busy = gen0_collections_during_load(python_default)
    finally:
        python_default.stop()
    gateway_default = serve(mock, tmp_path / "default", SERVER)
    try:
        idle = gen0_collections_during_load(gateway_default)
    finally:
        gateway_default.stop()
    assert busy >= 5, f"{busy} collections of generation 0 with a threshold of 700"
    assert idle <= 2, f"{idle} collections of generation 0 with the default threshold"
