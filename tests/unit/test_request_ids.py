"""gateway.server.asgi.request_id: the client's sane ``x-request-id``, else a fresh id
made so that later ids sort later (each finished request files a record under its id:
a B-tree takes ordered keys at its edge)."""

from __future__ import annotations

import re
import time

from gateway.server.asgi import new_request_id, request_id


def scope_with(*headers: tuple[bytes, bytes]) -> dict[str, object]:
    return {"type": "http", "headers": list(headers)}


def test_fresh_ids_are_time_first_and_sort_in_the_order_made() -> None:
    before = time.time_ns()
    ids = [new_request_id() for _ in range(2000)]
    after = time.time_ns()
    assert all(re.fullmatch(r"req_[0-9a-f]{32}", i) for i in ids)
    assert len(set(ids)) == len(ids)
    assert all(before <= int(i[4:20], 16) <= after for i in ids)
    stamps = [i[4:20] for i in ids]
    assert stamps == sorted(stamps)


def test_a_sane_client_id_is_kept_and_anything_else_replaced() -> None:
    assert request_id(scope_with((b"x-request-id", b"client-42_a"))) == "client-42_a"
    for bad in (b"", b"has space", b"semi;colon", b"x" * 129, "ünï".encode()):
        got = request_id(scope_with((b"x-request-id", bad)))
        assert re.fullmatch(r"req_[0-9a-f]{32}", got), bad
    assert re.fullmatch(r"req_[0-9a-f]{32}", request_id(scope_with()))
