"""deploy/nginx.conf, the front proxy of docker-compose.yml and scripts/stack.sh, bounds requests
before they reach a gateway, at most as loosely as the gateway's own defaults (docs/security.md,
"Request limits"). Checked statically, then by ``nginx -t`` on the stack's loopback layout."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from gateway.config.settings import ServerSettings
from scripts import stack

ROOT = Path(__file__).resolve().parents[2]
CONF = ROOT / "deploy" / "nginx.conf"
UNITS = {"": 1, "k": 1024, "m": 1024 * 1024}


def server_directives(text: str) -> dict[str, list[str]]:
    """The directives written directly in the ``server { ... }`` block (not in its locations)."""
    block = re.search(r"^\s*server\s*\{(.*?)^\s*location\b", text, re.M | re.S)
    assert block is not None, "deploy/nginx.conf has no server block with a location"
    out: dict[str, list[str]] = {}
    for raw in block.group(1).splitlines():
        line = raw.split("#", 1)[0].strip()
        if line.endswith(";"):
            name, *args = line[:-1].split()
            out[name] = args
    return out


def size(text: str) -> int:
    m = re.fullmatch(r"(\d+)([km]?)", text.lower())
    assert m is not None, f"not an nginx size: {text!r}"
    return int(m.group(1)) * UNITS[m.group(2)]


def seconds(text: str) -> float:
    m = re.fullmatch(r"(\d+)(ms|s|m)?", text)
    assert m is not None, f"not an nginx time: {text!r}"
    return int(m.group(1)) * {"ms": 0.001, "s": 1.0, "m": 60.0, None: 1.0}[m.group(2)]


@pytest.fixture(scope="module")
def directives() -> dict[str, list[str]]:
    return server_directives(CONF.read_text())


def test_the_body_limit_is_the_gateways(directives: dict[str, list[str]]) -> None:
    (limit,) = directives["client_max_body_size"]
    assert size(limit) == ServerSettings().max_body_bytes


def test_the_head_is_bounded_like_the_gateways(directives: dict[str, list[str]]) -> None:
    count, each = directives["large_client_header_buffers"]
    # nginx: the request line and every header line fit one buffer, the whole head the buffers.
    assert int(count) * size(each) <= ServerSettings().max_header_bytes
    assert size(each) >= 4096  # a long bearer token or cookie line still fits


def test_a_half_sent_head_or_body_is_closed(directives: dict[str, list[str]]) -> None:
    (head,) = directives["client_header_timeout"]
    (body,) = directives["client_body_timeout"]
    assert 0 < seconds(head) <= ServerSettings().header_timeout_s
    assert 0 < seconds(body) <= 30


def test_the_directives_are_read_from_the_server_block() -> None:
    text = "http {\n  server {\n    listen 1;\n    client_max_body_size 2m;  # x\n    location / {\n      a b;\n"
    assert server_directives(text) == {"listen": ["1"], "client_max_body_size": ["2m"]}
    assert (size("8k"), size("2m"), size("100"), seconds("10s"), seconds("1m")) == (8192, 2 << 20, 100, 10.0, 60.0)


def test_the_loopback_stack_keeps_every_limit(tmp_path: Path) -> None:
    """scripts/stack.py rewrites only the listen address (nginx -t of the result: test_stack_script.py)."""
    conf = stack.nginx_config(CONF.read_text(), listen=18080, upstreams=[18081, 18082], workdir=tmp_path, as_root=False)
    assert server_directives(conf) == server_directives(CONF.read_text()) | {"listen": ["127.0.0.1:18080"]}
