"""Finished requests recorded together (:class:`RecordBatch`).

What a request records once it has been answered (its metrics, access log line, span and
the in-process sinks: report statistics, live view, feedback owner) is the same work for
every request. Done for each request as it ends, between the steps of the others, that
work runs with the processor's caches full of everything else; done for the requests of
a few milliseconds back to back, it costs a chat request about 21 µs less of its ~335
(docs/performance.md, "The request record", measured inside one gateway with
``python -m bench.ablate``).

So a request that ends while others are still in flight is held, and recorded with the
others at most ``server.record_batch_ms`` (5 ms by default) later; the last
request in flight to end records every one held, itself included, at once. A gateway with
nothing else to do records each request as it ends, as before. What the record says does
not depend on when it is written: the latency and the time are taken as the request ends.

Readers of what the records feed see every request that has ended: the app calls
:meth:`RecordBatch.drain` before it serves anything but the client API's own calls
(the admin API and console, the health endpoints), before every ``/metrics`` exposition
(main port or listener), before ``POST /v1/feedback``, before a reload puts new logging or
sinks in force, and on shutdown (from then on each request is recorded as it ends). A
span ends, and a record's latency and time are taken, when the request ends; only the
timestamps prometheus_client gives exemplars are those of the write.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

log = logging.getLogger("gateway.server")

MAX_HELD = 256
"""Ended requests held at most: the 257th writes them all (a held request keeps its exchange,
bodies included, alive; one batch never stalls the loop for long)."""

Record = Callable[[], None]
"""One ended request's record step, ready to run."""


class RecordBatch:
    """Counts the requests in flight; holds the record steps of those that end while
    others are still in flight (see the module docstring)."""

    __slots__ = ("_delay_s", "_held", "_in_flight", "_timer")

    def __init__(self, delay_s: float) -> None:
        """``delay_s``: how long an ended request may wait for others (0: none)."""
        self._delay_s = delay_s
        self._held: list[Record] = []
        self._in_flight = 0
        self._timer: asyncio.TimerHandle | None = None

    @property
    def held(self) -> int:
        """Ended requests not recorded yet."""
        return len(self._held)

    def began(self) -> None:
        self._in_flight += 1

    def ended(self, record: Record) -> None:
        """A request has ended: record it now, or hold it for the batch."""
        self._in_flight -= 1
        self._held.append(record)
        if self._in_flight > 0 and self._delay_s > 0 and len(self._held) <= MAX_HELD:
            if self._timer is None:
                self._timer = asyncio.get_running_loop().call_later(self._delay_s, self.drain)
            return
        self.drain()

    def close(self) -> None:
        """Record what is held and, from now on, every request as it ends (shutdown: requests
        still ending meanwhile are not left behind a timer)."""
        self._delay_s = 0
        self.drain()

    def drain(self) -> None:
        """Record every request held, in the order they ended."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        held, self._held = self._held, []
        for record in held:
            _run(record)


def _run(record: Record) -> None:
    try:
        record()
    except Exception:  # one request's record must not cost the others theirs
        log.exception("recording a finished request failed")
