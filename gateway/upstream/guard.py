"""Where an upstream may live, checked on every connection (docs/security.md).

Two hooks of aiohttp's connector, both on the path of every new connection:

- :class:`GuardedResolver` wraps the default resolver: a refused host name
  (a cloud metadata name, ``localhost`` when private addresses are refused) is
  never looked up, and each address a lookup returns is judged; refused ones are
  dropped, and when none is left the connection fails with :class:`AddressRefused`.
  A name that answered a public address at model creation and a metadata
  address later (DNS rebinding) is caught here, at connect time.
- :func:`guarded_socket_factory` judges the address the socket is about to
  connect to: address literals in a ``base_url`` (which aiohttp never hands to
  the resolver) and anything a resolver let through.

The rules themselves (:func:`gateway.config.upstream.address_refusal`) are the
ones the config schema applies to a ``base_url`` for early feedback.
"""

from __future__ import annotations

import errno
import ipaddress
import socket

from aiohappyeyeballs import AddrInfoType, SocketFactoryType
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver

from gateway.config.upstream import UpstreamSettings, address_refusal, host_refusal

MARKER = "upstream address refused"


class AddressRefused(OSError):
    """A connection the address rules refuse (raised inside aiohttp's connect path,
    so it arrives wrapped in ``ClientConnectorError``)."""

    def __init__(self, host: str, why: str) -> None:
        self.text = f"{MARKER}: {host} is {why}"
        super().__init__(errno.EACCES, self.text)


def judge(host: str, settings: UpstreamSettings) -> str | None:
    """Why the address literal ``host`` (an IPv6 scope allowed) is refused, or None."""
    try:
        ip = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return "not an IP address"
    return address_refusal(ip, settings)


class GuardedResolver(AbstractResolver):
    """The default resolver, with the refused addresses taken out of its answers."""

    def __init__(self, settings: UpstreamSettings, inner: AbstractResolver | None = None) -> None:
        self._settings = settings
        self._inner = inner if inner is not None else DefaultResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        why = host_refusal(host, self._settings)
        if why is not None:
            raise AddressRefused(host, why)
        answers = await self._inner.resolve(host, port, family)
        if not answers:
            raise OSError(errno.ENOENT, f"the name {host} has no address")
        allowed = [a for a in answers if judge(a["host"], self._settings) is None]
        if not allowed:
            first = answers[0]["host"]
            raise AddressRefused(f"{host} ({first})", judge(first, self._settings) or "refused")
        return allowed

    async def close(self) -> None:
        await self._inner.close()


def guarded_socket_factory(settings: UpstreamSettings) -> SocketFactoryType:
    """A socket factory that refuses to make a socket for a refused address."""

    def make(addr_info: AddrInfoType) -> socket.socket:
        family, type_, proto, _, address = addr_info
        host = str(address[0])
        why = judge(host, settings)
        if why is not None:
            raise AddressRefused(host, why)
        return socket.socket(family=family, type=type_, proto=proto)

    return make


def refusal_in(exc: BaseException) -> str | None:
    """The refusal text of an :class:`AddressRefused` inside a connector error (also
    when happy eyeballs folded several refusals into one ``OSError``), or None."""
    inner = getattr(exc, "os_error", None)
    if isinstance(inner, AddressRefused):
        return inner.text
    text = str(inner if isinstance(inner, OSError) else exc)
    return text[text.index(MARKER) :] if MARKER in text else None
