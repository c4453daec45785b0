"""``python -m bench.stored_responses``: what a long conversation keeps in the response store.

Drives the real :class:`~gateway.state.response_store.ResponseStore` on an embedded
backend in a temporary directory: a conversation of ``--turns`` turns of ``--size`` bytes,
each continuing the one before, as ``previous_response_id`` does. Prints the conversation's
size, the bytes its records' segments keep (and that as a multiple of the conversation),
what storing the whole conversation with every turn would keep (the sum of its prefixes,
the design before chains), the longest chain a continuation read, and the time a save and
a continuation's load took per turn. No server, no network.

    python -m bench.stored_responses                      # the three cases of docs/dialects.md
    python -m bench.stored_responses --turns 500 --size 4000
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from bench.procs import at_least_one
from gateway.state.embedded import EmbeddedBackend
from gateway.state.response_store import Conversation, ResponseStore

CASES = ((100, 20_000), (1_000, 1_000), (16_000, 1_000))
"""(turns, bytes a turn) run when none is given."""
TTL_S = 30 * 86400.0


@dataclass(frozen=True)
class Kept:
    turns: int
    size: int
    conversation: int
    """The whole conversation's items as JSON, bytes."""
    kept: int
    """The bytes every record's segment holds."""
    whole_each_turn: int
    """What storing the whole conversation with every turn would hold (the sum of its prefixes)."""
    longest_chain: int
    save_ms: float
    load_ms: float

    def line(self) -> str:
        return (
            f"{self.turns:,} turns of {self.size:,} bytes: conversation {self.conversation / 1e6:.2f} MB, "
            f"segments kept {self.kept / 1e6:.2f} MB = {self.kept / self.conversation:.1f}x "
            f"(whole conversation with every turn: {self.whole_each_turn / 1e6:,.1f} MB = "
            f"{self.whole_each_turn / self.conversation:,.0f}x); longest chain {self.longest_chain}; "
            f"per turn: save {self.save_ms:.2f} ms, load {self.load_ms:.2f} ms"
        )


async def converse(turns: int, size: int, db: Path) -> Kept:
    backend = EmbeddedBackend(str(db))
    try:
        store = ResponseStore(backend, TTL_S, 1 << 40)
        previous: Conversation | None = None
        kept = prefixes = longest = 0
        saving = loading = 0.0
        for n in range(turns):
            rid = f"resp_{n:048x}"
            items = [{"type": "message", "role": "user", "content": "x" * size}]
            began = time.perf_counter()
            assert await store.save("bench", {"id": rid, "object": "response"}, items, previous)
            saving += time.perf_counter() - began
            began = time.perf_counter()
            previous = await store.conversation("bench", rid)
            loading += time.perf_counter() - began
            assert previous is not None
            kept += previous.last.link.size
            prefixes += previous.last.total_bytes
            longest = max(longest, len(previous.last.chain))
        assert previous is not None
        total = previous.last.total_bytes
        return Kept(turns, size, total, kept, prefixes, longest, saving * 1e3 / turns, loading * 1e3 / turns)
    finally:
        await backend.aclose()


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench.stored_responses", description=__doc__.splitlines()[0])
    p.add_argument("--turns", type=at_least_one, help="turns of one conversation (with --size)")
    p.add_argument("--size", type=at_least_one, help="bytes of each turn's item (with --turns)")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if (args.turns is None) != (args.size is None):
        parser().error("--turns and --size go together")
    cases = CASES if args.turns is None else ((args.turns, args.size),)
    with tempfile.TemporaryDirectory(prefix="gw-stored-") as tmp:
        for i, (turns, size) in enumerate(cases):
            print(asyncio.run(converse(turns, size, Path(tmp) / f"{i}.db")).line(), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
