"""Shared helpers for tests driven by the recorded payloads in ``shared/fixtures``."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

FIXTURES = Path(__file__).resolve().parents[2].parent / "shared" / "fixtures"


def load_json(rel: str) -> Any:
    return json.loads((FIXTURES / rel).read_text(encoding="utf-8"))


def load_bytes(rel: str) -> bytes:
    return (FIXTURES / rel).read_bytes()


def random_pieces(raw: bytes, seed: int, max_size: int = 7) -> list[bytes]:
    """``raw`` cut into pieces of 1..max_size bytes (deterministic per seed)."""
    rng = random.Random(seed)
    pieces: list[bytes] = []
    pos = 0
    while pos < len(raw):
        size = rng.randint(1, max_size)
        pieces.append(raw[pos : pos + size])
        pos += size
    return pieces
