"""The cyclic garbage collector of a process that serves requests (docs/performance.md, "The
garbage collector"). Imports nothing of the gateway, so the benchmarks' floor app sets up its
collector with the same function."""

from __future__ import annotations

import gc


def tune_collector(threshold: int) -> None:
    """Set up the collector once the app is built: what exists now (chiefly the imported modules,
    which live as long as the process) is collected once and frozen out of every later
    collection, and the first generation's threshold is raised to ``threshold``, so that the
    objects of the requests in flight stop triggering collections that promote them towards the
    full ones. Called by ``gateway serve`` (gateway/cli/serve.py), not by ``create_app``: a
    process that hosts an app among other work (the tests) keeps its collector as it is."""
    gc.collect()
    gc.freeze()
    _, second, third = gc.get_threshold()
    gc.set_threshold(threshold, second, third)
