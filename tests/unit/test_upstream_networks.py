"""Where an upstream may live: the address rules (gateway/config/upstream.py) and
their connect-time enforcement (gateway/upstream/guard.py) through a real
:class:`AiohttpClient` on loopback, with a name lookup the test controls (DNS
rebinding: a name whose answer is a metadata address)."""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import AsyncIterator

import pytest
from aiohttp import web
from aiohttp.abc import AbstractResolver, ResolveResult

from gateway.config.loader import ConfigError, parse_config
from gateway.config.upstream import UpstreamSettings, address_refusal, base_url_problems, host_refusal
from gateway.errors import UpstreamAddressRefused, UpstreamUnavailable
from gateway.providers.base import WireRequest
from gateway.upstream.guard import AddressRefused, GuardedResolver, guarded_socket_factory, refusal_in
from gateway.upstream.http import AiohttpClient

DEFAULT = UpstreamSettings()
DENY_PRIVATE = UpstreamSettings(allow_private=False)
ALLOW_ALL = UpstreamSettings(allow_link_local=True)

LINK_LOCAL = [
    "169.254.169.254",
    "169.254.0.1",
    "169.254.170.2",
    "fe80::1",
    "febf::1",
    "::ffff:169.254.169.254",  # IPv4-mapped
    "2002:a9fe:a9fe::1",  # 6to4 of 169.254.169.254
    "64:ff9b::a9fe:a9fe",  # NAT64 of 169.254.169.254
    "::a9fe:a9fe",  # IPv4-compatible
    "fd00:ec2::254",  # AWS IMDS over IPv6 (inside the private fc00::/7)
    "100.100.100.200",  # Alibaba metadata (inside the private 100.64/10)
]
PRIVATE = ["127.0.0.1", "127.1.2.3", "::1", "10.1.2.3", "172.16.0.1", "192.168.1.1", "100.64.0.1", "fd12::1", "0.0.0.0"]
PUBLIC = ["8.8.8.8", "1.1.1.1", "2606:4700::1111", "172.32.0.1", "169.253.0.1", "::ffff:8.8.8.8"]


def ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    return ipaddress.ip_address(text)


@pytest.mark.parametrize("address", LINK_LOCAL)
def test_link_local_and_metadata_addresses_are_refused_unless_allowed(address: str) -> None:
    why = address_refusal(ip(address), DEFAULT)
    assert why is not None and "upstream.allow_link_local" in why
    assert address not in why, "the reason names the switch, not the address"
    assert address_refusal(ip(address), ALLOW_ALL) is None


@pytest.mark.parametrize("address", [*PRIVATE, "::ffff:127.0.0.1"])
def test_private_addresses_are_allowed_by_default_and_refused_on_demand(address: str) -> None:
    assert address_refusal(ip(address), DEFAULT) is None
    why = address_refusal(ip(address), DENY_PRIVATE)
    assert why is not None and "upstream.allow_private" in why


@pytest.mark.parametrize("address", PUBLIC)
def test_public_addresses_are_always_allowed(address: str) -> None:
    assert address_refusal(ip(address), DENY_PRIVATE) is None


@pytest.mark.parametrize(
    ("host", "settings", "refused"),
    [
        ("metadata.google.internal", DEFAULT, True),
        ("METADATA.google.internal.", DEFAULT, True),
        ("metadata.goog", DEFAULT, True),
        ("metadata.google.internal", ALLOW_ALL, False),
        ("[fe80::1]", DEFAULT, True),
        ("169.254.169.254", DEFAULT, True),
        ("localhost", DEFAULT, False),
        ("localhost", DENY_PRIVATE, True),
        ("api.localhost", DENY_PRIVATE, True),
        ("api.openai.com", DENY_PRIVATE, False),
    ],
)
def test_host_names_refused_before_any_lookup(host: str, settings: UpstreamSettings, refused: bool) -> None:
    assert (host_refusal(host, settings) is not None) is refused


def test_base_url_problems_name_the_field_never_the_url() -> None:
    urls = ["https://api.openai.com/v1", "http://169.254.169.254/latest", None, "http://[::ffff:a9fe:a9fe]:80/v1"]
    problems = base_url_problems("m", urls, DEFAULT)
    assert [p.split(":", 1)[0] for p in problems] == [
        "models.m.deployments[1].base_url",
        "models.m.deployments[3].base_url",
    ]
    assert not any("169.254" in p or "a9fe" in p for p in problems)


def test_the_upstream_section_is_strict_and_a_metadata_base_url_still_loads() -> None:
    text = """
upstream: {allow_link_local: "true", max_sse_line_bytes: 1024}
models:
  m: {deployments: [{provider: openai, model: x, base_url: 'http://169.254.169.254/v1', api_key: k}]}
"""
    settings = parse_config(text, env={}, source="t").settings.upstream
    assert settings.allow_link_local is True and settings.max_sse_line_bytes == 1024
    # the file loads with the default rules too: the refusal happens at connect time
    parse_config(text.replace('allow_link_local: "true", ', ""), env={}, source="t")
    with pytest.raises(ConfigError) as exc:
        parse_config("upstream: {max_decompression_ratio: 0.5, follow_redirects: true}\n", env={}, source="t")
    assert "upstream.max_decompression_ratio" in str(exc.value)
    assert "upstream.follow_redirects" in str(exc.value)


# --- the resolver and the socket hook -------------------------------------------------------


class Lookup(AbstractResolver):
    """A name lookup the test controls: name -> addresses; records each lookup."""

    def __init__(self, answers: dict[str, list[str]]) -> None:
        self.answers = answers
        self.asked: list[str] = []

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        self.asked.append(host)
        if host not in self.answers:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return [
            ResolveResult(
                hostname=host,
                host=a,
                port=port,
                family=socket.AF_INET6 if ":" in a else socket.AF_INET,
                proto=0,
                flags=socket.AI_NUMERICHOST,
            )
            for a in self.answers[host]
        ]

    async def close(self) -> None:
        return None


async def test_the_resolver_drops_refused_answers_and_refuses_when_none_is_left() -> None:
    lookup = Lookup({"mixed.test": ["169.254.169.254", "127.0.0.1"], "rebind.test": ["169.254.169.254", "fe80::1"]})
    guarded = GuardedResolver(DEFAULT, lookup)
    assert [a["host"] for a in await guarded.resolve("mixed.test", 80)] == ["127.0.0.1"]
    with pytest.raises(AddressRefused) as exc:
        await guarded.resolve("rebind.test", 80)
    assert "rebind.test" in str(exc.value) and "allow_link_local" in str(exc.value)
    with pytest.raises(AddressRefused):
        await guarded.resolve("metadata.google.internal", 80)
    assert lookup.asked == ["mixed.test", "rebind.test"], "a metadata name is never looked up"


def test_the_socket_hook_refuses_the_address_it_would_connect_to() -> None:
    make = guarded_socket_factory(DEFAULT)
    with pytest.raises(AddressRefused) as exc:
        make((socket.AF_INET, socket.SOCK_STREAM, 0, "", ("169.254.169.254", 80)))
    assert refusal_in(exc.value) is not None
    sock = make((socket.AF_INET, socket.SOCK_STREAM, 0, "", ("127.0.0.1", 80)))
    sock.close()
    folded = OSError("Multiple exceptions: " + str(exc.value) + ", " + str(exc.value))
    assert (refusal_in(folded) or "").startswith("upstream address refused: 169.254.169.254")
    assert refusal_in(OSError("connection refused")) is None


@pytest.fixture
async def upstream() -> AsyncIterator[tuple[int, list[str]]]:
    """A loopback server answering ``{}`` and recording the Host of each request."""
    seen: list[str] = []

    async def answer(request: web.Request) -> web.Response:
        seen.append(request.host)
        return web.json_response({})

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", answer)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    yield port, seen
    await runner.cleanup()


async def _send(client: AiohttpClient, url: str) -> int:
    resp = await client.send(WireRequest("POST", url, {}, b"{}"), connect_s=2, first_byte_s=5)
    try:
        await resp.read(5)
        return resp.status
    finally:
        resp.close()


async def test_a_name_that_resolves_to_a_metadata_address_is_refused_at_connect_time(
    upstream: tuple[int, list[str]],
) -> None:
    port, seen = upstream
    lookup = Lookup(
        {"good.test": ["127.0.0.1"], "rebind.test": ["169.254.169.254"], "mixed.test": ["169.254.169.254", "127.0.0.1"]}
    )
    client = AiohttpClient(resolver=lookup)
    try:
        assert await _send(client, f"http://good.test:{port}/v1") == 200
        with pytest.raises(UpstreamAddressRefused) as exc:
            await _send(client, f"http://rebind.test:{port}/v1")
        assert exc.value.code == "upstream_address_refused" and exc.value.http_status == 502
        assert exc.value.retryable is False and exc.value.fallback is True
        assert "allow_link_local" in exc.value.message
        assert await _send(client, f"http://mixed.test:{port}/v1") == 200  # only the loopback answer is used
    finally:
        await client.aclose()
    assert seen == [f"good.test:{port}", f"mixed.test:{port}"]


@pytest.mark.parametrize(
    "host", ["169.254.169.254", "[fe80::1]", "[::ffff:169.254.169.254]", "metadata.google.internal"]
)
async def test_metadata_literals_and_names_are_refused_before_connecting(host: str) -> None:
    client = AiohttpClient()
    try:
        with pytest.raises(UpstreamAddressRefused):
            await _send(client, f"http://{host}/latest/meta-data")
    finally:
        await client.aclose()


async def test_denying_private_networks_refuses_loopback_by_literal_name_and_lookup(
    upstream: tuple[int, list[str]],
) -> None:
    port, seen = upstream
    client = AiohttpClient(settings=DENY_PRIVATE, resolver=Lookup({"internal.test": ["10.0.0.7", "127.0.0.1"]}))
    try:
        for host in ("127.0.0.1", "[::ffff:127.0.0.1]", "localhost", "internal.test"):
            with pytest.raises(UpstreamAddressRefused) as exc:
                await _send(client, f"http://{host}:{port}/v1")
            assert "allow_private" in exc.value.message
    finally:
        await client.aclose()
    assert seen == [], "no refused upstream got a request"
    allowed = AiohttpClient(settings=ALLOW_ALL)
    try:
        assert await _send(allowed, f"http://127.0.0.1:{port}/v1") == 200
    finally:
        await allowed.aclose()


@pytest.mark.parametrize("answers", [{}, {"nowhere.test": []}], ids=["unknown", "no-address"])
async def test_a_name_without_an_address_is_still_a_connect_error(answers: dict[str, list[str]]) -> None:
    client = AiohttpClient(resolver=Lookup(answers))
    try:
        with pytest.raises(UpstreamUnavailable) as exc:
            await _send(client, "http://nowhere.test:9/v1")
        assert not isinstance(exc.value, UpstreamAddressRefused)
    finally:
        await client.aclose()
