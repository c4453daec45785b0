"""The listening sockets of ``gateway serve --workers N`` (gateway/cli/serve_workers.py), on
real loopback sockets: a worker's copy is a socket of its own in the parent's reuse-port group,
the kernel spreads connections over the group, and what happens where that cannot be had."""

from __future__ import annotations

import logging
import pickle
import socket
from collections.abc import Iterator
from contextlib import ExitStack
from multiprocessing.reduction import ForkingPickler

import pytest
import uvicorn
from uvicorn.config import STARTUP_FAILURE

from gateway.cli.serve_workers import REUSE_PORT, ReusePortSocket, bind_reuse_port, listening_socket

pytestmark = pytest.mark.skipif(REUSE_PORT is None, reason="this platform has no SO_REUSEPORT")


def config(port: int = 0) -> uvicorn.Config:
    return uvicorn.Config("gateway.cli.serve:app_from_env", host="127.0.0.1", port=port, workers=2, log_config=None)


def handed_to_a_worker(sock: socket.socket) -> socket.socket:
    """What a spawned worker gets: uvicorn passes its sockets through multiprocessing's pickler."""
    loaded: socket.socket = pickle.loads(ForkingPickler.dumps(sock))
    return loaded


@pytest.fixture
def taken() -> Iterator[int]:
    """A port held by a listening socket without SO_REUSEPORT."""
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        yield holder.getsockname()[1]


def test_a_worker_unpickles_a_socket_of_its_own_on_the_same_address() -> None:
    with ExitStack() as stack:
        parent = stack.enter_context(listening_socket(config()))
        assert isinstance(parent, ReusePortSocket)
        worker = stack.enter_context(handed_to_a_worker(parent))
        assert type(worker) is socket.socket and worker.fileno() != parent.fileno()
        assert worker.getsockname() == parent.getsockname()
        assert worker.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT) == 1


def test_the_kernel_spreads_connections_over_the_workers_sockets() -> None:
    with ExitStack() as stack:
        parent = stack.enter_context(listening_socket(config()))
        workers = [stack.enter_context(handed_to_a_worker(parent)) for _ in range(2)]
        for sock in workers:
            sock.listen(128)
            sock.setblocking(False)
        for _ in range(64):
            stack.enter_context(socket.create_connection(parent.getsockname(), timeout=5))
        accepted = [0, 0]
        for i, sock in enumerate(workers):
            while True:
                try:
                    stack.enter_context(sock.accept()[0])
                except BlockingIOError:
                    break
                accepted[i] += 1
        assert sum(accepted) == 64, accepted  # the parent's socket never listens: it takes none
        assert min(accepted) > 0, accepted  # both take some (all on one: 2 in 2**64)


@pytest.mark.parametrize(("option", "why"), [(None, "has no SO_REUSEPORT"), (-1, "SO_REUSEPORT refused")])
def test_without_reuse_port_the_workers_share_uvicorns_socket(
    option: int | None, why: str, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, "gateway.serve"), listening_socket(config(), option) as shared:
        assert type(shared) is socket.socket  # uvicorn's, handed to the workers as a duplicate
        assert shared.getsockname()[0] == "127.0.0.1" and shared.getsockname()[1] > 0
    assert why in caplog.text and "the workers share one listening socket" in caplog.text


def test_an_address_taken_stops_the_start(taken: int, caplog: pytest.LogCaptureFixture) -> None:
    with pytest.raises(SystemExit) as exited:
        listening_socket(config(taken))
    assert exited.value.code == STARTUP_FAILURE
    assert f"cannot listen on 127.0.0.1:{taken}" in caplog.text


def test_a_worker_that_cannot_bind_exits_as_a_start_up_failure(taken: int, caplog: pytest.LogCaptureFixture) -> None:
    """uvicorn's supervisor stops on that exit code instead of restarting the worker for ever."""
    with pytest.raises(SystemExit) as exited:
        bind_reuse_port(socket.AF_INET, "127.0.0.1", taken)
    assert exited.value.code == STARTUP_FAILURE
    assert f"cannot bind 127.0.0.1:{taken} with SO_REUSEPORT" in caplog.text
