"""Ablations: a part of the gateway's request path swapped, inside the serving gateway,
for a stand-in that skips its work, and switched on and off between the rounds of
``python -m bench.ablate``.

Why inside one gateway: two starts of the same code differ by a few per cent for as long
as they run (docs/performance.md, "One process is one sample"), so a part that costs a few
per cent can only be weighed in one process, switched between rounds. An ablation is
for measuring only: what it leaves out is work the gateway has to do (a stand-in may even
answer wrongly, as ``responses-stream-as-chat`` does), and it runs only in the bench's own
gateway, through the ``sitecustomize`` that :func:`write_sitecustomize` writes.

How the switch works: :func:`install` (run by that ``sitecustomize`` before the gateway
starts) replaces each target with a dispatcher that calls the stand-in while its ablation
is the chosen one and the original otherwise. SIGUSR1 makes the gateway read the chosen
one's name (or :data:`AS_BUILT`) from the control file and write it back to
``<control>.ack``, so the caller knows the switch has happened before it measures.
"""

from __future__ import annotations

import importlib
import os
import signal
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

import orjson

AS_BUILT = "as-built"
"""The name of the variant with no ablation: the gateway's own code everywhere."""
CONTROL_ENV = "BENCH_ABLATE_CONTROL"
"""The environment variable that names the control file in the gateway's environment."""

Factory = Callable[[Any], Any]
"""The original callable -> its stand-in (same arguments)."""


@dataclass(frozen=True)
class Ablation:
    name: str
    leaves_out: str
    """What the stand-in does not do: one line for the report."""
    swaps: tuple[tuple[str, Factory], ...]
    """(target, factory) pairs; a target is ``module:attribute`` or ``module:Class.attribute``."""
    streams_only: bool = False
    """It swaps a part that only streams use: weighed on whole answers it would weigh nothing."""


def _no_stored_row(original: Any) -> Any:
    async def save(self: Any, key_id: str, response: Any, turn: list[Any], previous: Any) -> bool:
        return bool(orjson.dumps({"response": response, "items": turn}))  # serialised as before, not put

    return save


SMALL_ROW_BYTES = 300
"""What ``stored-row-300-bytes`` keeps of a stored Response's row (a bench record is ~1.4 KB)."""


def _cut_put(original: Any) -> Any:
    def put(self: Any, key: str, value: bytes, expires_at: float) -> None:
        if key.startswith("resp:"):  # a stored Response (gateway/state/response_store.py); not feedback owners
            value = value[:SMALL_ROW_BYTES]
        original(self, key, value, expires_at)

    return put


def _no_op(original: Any) -> Any:
    def nothing(*args: Any, **kwargs: Any) -> None:
        return None

    return nothing


def _one_by_one(original: Any) -> Any:
    def ended(self: Any, record: Any) -> None:  # each request recorded as it ends (before batching)
        self._in_flight -= 1
        if self._held:  # held before the switch
            self.drain()
        record()

    return ended


def _unwatched(original: Any) -> Any:
    def __init__(self: Any, receive: Any) -> None:  # no task waiting on receive(): a client that leaves goes unseen
        self.disconnected = False
        self.stopped = False
        self._task = None

    return __init__


_COMPLETED = b'event: response.completed\ndata: {"type":"response.completed"}\n\n'


def _chunks_as_chat(original: Any) -> Any:
    from gateway.server.streaming import render_chunks

    def chunks(self: Any, batch: list[Any]) -> bytes:
        self._started = True  # finish() then opens nothing either
        return render_chunks(batch, True)

    return chunks


def _finish_as_chat(original: Any) -> Any:
    def finish(self: Any) -> bytes:
        return _COMPLETED  # what the bench's wrk script looks for at the end of a Responses stream

    return finish


def _blob_puts_inline(original: Any) -> Any:
    from gateway.state.embedded import _Db  # the SQLite side: its blob_put writes a write-behind batch

    async def run(self: Any, fn: Any, *args: Any) -> Any:
        if getattr(fn, "__func__", None) is _Db.blob_put:
            return fn(*args)  # on the event loop's thread: no hop to the worker and back
        return await original(self, fn, *args)

    return run


ABLATIONS: dict[str, Ablation] = {
    a.name: a
    for a in (
        Ablation(
            "no-stored-row",
            "a stored Response's row (its record still serialised, nothing put)",
            (("gateway.state.response_store:ResponseStore.save", _no_stored_row),),
        ),
        Ablation(
            "blob-writes-inline",
            "nothing: the embedded backend's write-behind batches written on the event loop's thread, "
            "not handed to its worker thread (what the hop and the second thread cost)",
            (("gateway.state.embedded:EmbeddedBackend._run", _blob_puts_inline),),
        ),
        Ablation(
            "no-blob-writes",
            "every write-behind blob put of the embedded backend (stored Responses, feedback owners)",
            (("gateway.state.embedded_blobs:WriteBehind.put", _no_op),),
        ),
        Ablation(
            "stored-row-300-bytes",
            "all but the first 300 bytes of a stored Response's row (the row still written: what its size costs)",
            (("gateway.state.embedded_blobs:WriteBehind.put", _cut_put),),
        ),
        Ablation(
            "no-request-record",
            "everything recorded when a request ends: its metrics, access log line, in-process sinks and span",
            (("gateway.server.exchange:Guard._record", _no_op),),
        ),
        Ablation(
            "records-one-by-one",
            "nothing: each request's record step runs as it ends, not with the others' (gateway/server/records.py)",
            (("gateway.server.records:RecordBatch.ended", _one_by_one),),
        ),
        Ablation(
            "no-feedback-owner",
            "the feedback owner record a finished request files (who may score it)",
            (("gateway.server.feedback_owners:OwnerRecords.record", _no_op),),
        ),
        Ablation(
            "no-live-view",
            "the console's live view of the request",
            (("gateway.admin.live:LiveWindow.record", _no_op),),
        ),
        Ablation(
            "no-report-stats",
            "the report statistics a finished request counts",
            (("gateway.reports.store:StatsStore.record", _no_op),),
        ),
        Ablation(
            "no-span",
            "the request's trace span being finished (tracing on, no exporter)",
            (("gateway.observability.tracing:RequestSpan.finish", _no_op),),
        ),
        Ablation(
            "no-access-log",
            "the JSON access log line",
            (("gateway.observability.logs:AccessLog.emit", _no_op),),
        ),
        Ablation(
            "no-request-metrics",
            "the Prometheus series a finished request updates (Metrics.request_done)",
            (("gateway.observability.metrics:Metrics.request_done", _no_op),),
        ),
        Ablation(
            "no-disconnect-watch",
            "the task per request that watches for the client leaving (a client that leaves goes unseen)",
            (("gateway.server.asgi:DisconnectWatch.__init__", _unwatched),),
        ),
        Ablation(
            "responses-stream-as-chat",
            "the Responses stream encoder (batches rendered as chat chunks: a wrong stream, for its upper"
            " bound); on a stored route also the stored row (the stream leaves no Response to store)",
            (
                ("gateway.dialects.responses_stream:ResponsesStream.chunks", _chunks_as_chat),
                ("gateway.dialects.responses_stream:ResponsesStream.finish", _finish_as_chat),
            ),
            streams_only=True,
        ),
    )
}


def resolve(target: str) -> tuple[Any, str]:
    """(the object that holds the target's attribute, the attribute's name)."""
    module_name, _, path = target.partition(":")
    holder: Any = importlib.import_module(module_name)
    *owners, attribute = path.split(".")
    for owner in owners:
        holder = getattr(holder, owner)
    if not callable(getattr(holder, attribute, None)):
        raise AttributeError(f"{target}: no such callable")
    return holder, attribute


class _Chosen:
    """The variant a gateway runs now, shared by its dispatchers and its SIGUSR1 handler."""

    name = AS_BUILT


def _dispatcher(chosen: _Chosen, name: str, original: Any, stand_in: Any) -> Any:
    def dispatch(*args: Any, **kwargs: Any) -> Any:
        return (stand_in if chosen.name == name else original)(*args, **kwargs)

    dispatch.__name__ = getattr(original, "__name__", "dispatch")
    dispatch.__qualname__ = getattr(original, "__qualname__", "dispatch")
    return dispatch


def install(control: Path) -> None:
    """Put every ablation's dispatchers in place (all off) and switch on SIGUSR1. Every
    target is resolved first: one that is gone raises before anything is swapped."""
    chosen = _Chosen()
    swaps = [
        (ablation.name, *resolve(target), factory)
        for ablation in ABLATIONS.values()
        for target, factory in ablation.swaps
    ]
    for name, holder, attribute, factory in swaps:
        original = getattr(holder, attribute)
        setattr(holder, attribute, _dispatcher(chosen, name, original, factory(original)))

    def switch(signum: int, frame: FrameType | None) -> None:
        name = control.read_text().strip()
        chosen.name = name if name in ABLATIONS else AS_BUILT
        control.with_name(control.name + ".ack").write_text(chosen.name)

    signal.signal(signal.SIGUSR1, switch)


def install_from_env() -> None:
    """:func:`install` with the control file :data:`CONTROL_ENV` names; nothing without it."""
    control = os.environ.get(CONTROL_ENV)
    if control:
        install(Path(control))


SITECUSTOMIZE = '''"""Written by bench/ablations.py: the ablation switch of python -m bench.ablate."""
from bench.ablations import install_from_env

install_from_env()
'''


def write_sitecustomize(folder: Path) -> Path:
    """A folder to put first on the gateway's ``PYTHONPATH`` (with the repository after it)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "sitecustomize.py").write_text(SITECUSTOMIZE)
    return folder
