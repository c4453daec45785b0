"""The ``upstream`` section: what the gateway accepts from its upstreams, and
where an upstream may live.

Upstream answers are untrusted input. Every cap below is enforced as the bytes
arrive (never after buffering them), and exceeding one ends the attempt at once
with ``502 upstream_response_too_large`` naming the cap.

The address rules are pure functions of an IP address (or a host name) so the
config schema (early feedback on a ``base_url``) and the HTTP client's resolver
and socket hook (the check that matters: every connection, on the address it
really connects to) apply the same ones:

- *link-local and cloud metadata* (``169.254.0.0/16``, ``fe80::/10``, the
  metadata addresses and host names of the big clouds): refused unless
  ``allow_link_local``;
- *private* (loopback, RFC 1918, carrier-grade NAT, unique-local IPv6, the
  unspecified address): allowed unless ``allow_private`` is false.

IPv4 addresses written as IPv6 (``::ffff:169.254.169.254``, 6to4, NAT64,
IPv4-compatible) are judged as the IPv4 address they carry.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from typing import Annotated
from urllib.parse import urlsplit

from pydantic import Field

from gateway.config.fields import Flag, PositiveInt
from gateway.config.fields import Strict as _Strict

MiB = 1024 * 1024
RATIO_FLOOR_BYTES = MiB
"""The decompression ratio is judged once this many decoded bytes arrived
(a small, very repetitive JSON answer may compress far better than the ratio)."""

SSE_LINE_BYTES = 4 * MiB
SSE_EVENT_BYTES = 8 * MiB

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

LINK_LOCAL_NETWORKS = tuple(ipaddress.ip_network(n) for n in ("169.254.0.0/16", "fe80::/10"))
METADATA_ADDRESSES = frozenset(
    ipaddress.ip_address(a)
    for a in (
        "169.254.169.254",  # AWS, GCP, Azure, Oracle, DigitalOcean, OpenStack
        "169.254.170.2",  # AWS ECS task metadata
        "fd00:ec2::254",  # AWS IMDS over IPv6
        "100.100.100.200",  # Alibaba Cloud
    )
)
METADATA_HOSTS = frozenset(
    {
        "metadata",
        "metadata.google.internal",
        "metadata.goog",
        "instance-data",
        "instance-data.ec2.internal",
        "metadata.azure.internal",
        "metadata.tencentyun.com",
    }
)
PRIVATE_NETWORKS = tuple(
    ipaddress.ip_network(n)
    for n in (
        "0.0.0.0/8",  # "this host": connecting to 0.0.0.0 reaches the loopback
        "10.0.0.0/8",
        "100.64.0.0/10",
        "127.0.0.0/8",
        "172.16.0.0/12",
        "192.168.0.0/16",
        "::/128",
        "::1/128",
        "fc00::/7",
        "fec0::/10",  # the deprecated site-local range
    )
)
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_V4_COMPATIBLE = ipaddress.ip_network("::/96")


class UpstreamSettings(_Strict):
    """Caps on upstream answers and the networks an upstream may live on."""

    max_response_bytes: PositiveInt = 32 * MiB
    """A non-streaming answer's body as it travels (compressed, when it is)."""
    max_decompressed_bytes: PositiveInt = 64 * MiB
    """A non-streaming answer's body after decompression."""
    max_decompression_ratio: Annotated[float, Field(ge=1)] = 100.0
    """Decoded bytes per received byte of a compressed answer (streams too)."""
    max_sse_line_bytes: PositiveInt = SSE_LINE_BYTES
    """One line of an event stream."""
    max_sse_event_bytes: PositiveInt = SSE_EVENT_BYTES
    """The ``data`` of one event of an event stream."""
    max_header_bytes: Annotated[int, Field(ge=256)] = 16 * 1024
    """The status line and each response header line."""
    max_headers: Annotated[int, Field(ge=8)] = 128
    """Response header lines."""
    allow_link_local: Flag = False
    """Link-local and cloud metadata addresses and host names as upstreams."""
    allow_private: Flag = True
    """Loopback and private addresses as upstreams (self-hosted servers, the mock)."""


def _embedded_v4(ip: IPAddress) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address carries (mapped, 6to4, NAT64, compatible)."""
    if not isinstance(ip, ipaddress.IPv6Address):
        return None
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip.sixtofour is not None:
        return ip.sixtofour
    if ip in _NAT64 or (ip in _V4_COMPATIBLE and int(ip) > 1):
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return None


def address_refusal(ip: IPAddress, settings: UpstreamSettings) -> str | None:
    """Why ``ip`` may not be connected to as an upstream, or None when it may.
    The reason names the switch that would allow it (never the address)."""
    inner = _embedded_v4(ip)
    if inner is not None:
        return address_refusal(inner, settings)
    if not settings.allow_link_local and (ip in METADATA_ADDRESSES or any(ip in n for n in LINK_LOCAL_NETWORKS)):
        return "a link-local or cloud metadata address (allowed by upstream.allow_link_local: true)"
    if not settings.allow_private and any(ip in n for n in PRIVATE_NETWORKS):
        return "a loopback or private address (refused by upstream.allow_private: false)"
    return None


def host_refusal(host: str, settings: UpstreamSettings) -> str | None:
    """Why a host (a name or an address literal, as in a URL) is refused before
    any lookup, or None: the address rules for literals, the metadata host names,
    and ``localhost`` when private addresses are refused. A name that passes here
    is still judged on every address it resolves to, at connect time."""
    name = host.strip("[]").rstrip(".").lower()
    try:
        ip = ipaddress.ip_address(name.split("%", 1)[0])
    except ValueError:
        ip = None
    if ip is not None:
        return address_refusal(ip, settings)
    if not settings.allow_link_local and name in METADATA_HOSTS:
        return "a cloud metadata host name (allowed by upstream.allow_link_local: true)"
    if not settings.allow_private and (name == "localhost" or name.endswith(".localhost")):
        return "a loopback host name (refused by upstream.allow_private: false)"
    return None


def base_url_refusal(base_url: str, settings: UpstreamSettings) -> str | None:
    """:func:`host_refusal` of a ``base_url``'s host (None when it has none)."""
    try:
        host = urlsplit(base_url).hostname
    except ValueError:
        return None  # the schema's own URL check names the problem
    return host_refusal(host, settings) if host else None


def base_url_problems(alias: str, base_urls: Sequence[str | None], settings: UpstreamSettings) -> list[str]:
    """Early feedback on an alias's deployments (the admin API's, before a model is
    stored): one problem per refused ``base_url``, naming the field, never the URL
    (it may come from ``${VAR}``). The connect-time check is the one that holds."""
    return [
        f"models.{alias}.deployments[{i}].base_url: the upstream's host is {why}"
        for i, url in enumerate(base_urls)
        if url and (why := base_url_refusal(url, settings))
    ]
