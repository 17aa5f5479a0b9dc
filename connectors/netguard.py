"""Sources may only be public internet hosts (unless an operator allows private ones).

A connector's base URL is typed in by whoever configures it; without a guard it could
point the gateway, credentials and all, at the machine's own services, the cloud metadata
endpoint (169.254.169.254) or the internal network (SSRF). The guard sits where the
address is decided:

* `check_url` refuses an IP literal that is not a global unicast address, and
  `localhost`, before any request (and when a connector is created);
* `PublicOnlyResolver` resolves a host name and refuses it if ANY of its addresses is not
  global; aiohttp then connects to exactly the addresses it returned, so a second DNS
  answer (rebinding) cannot swap in a private one between check and connect.

Redirects are never followed (connectors/base.py), so a public source cannot bounce a
request inward either. Local sources (the emulators, a test HR system on the LAN) need
`allow_private_sources = true` in the settings.
"""

from __future__ import annotations

import ipaddress
import socket
from typing import Final
from urllib.parse import urlsplit

from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver

_LOCAL_NAMES: Final = ("localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback")


class PrivateAddress(ValueError):
    """A source address that is not on the public internet."""


class RefusedAddress(OSError):
    """Raised by the resolver (aiohttp wraps it in a ClientConnectorError)."""


def is_public(address: str) -> bool:
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_global and not ip.is_multicast


def check_url(url: str) -> None:
    """Refuse a URL whose host is a non-public IP literal or a local name."""
    host = (urlsplit(url).hostname or "").rstrip(".").lower()
    if not host:
        raise PrivateAddress("the URL names no host")
    if host in _LOCAL_NAMES or host.endswith(".localhost"):
        raise PrivateAddress(f"{host} is this machine")
    literal = _ip_literal(host)
    if literal is not None and not is_public(literal):
        raise PrivateAddress(f"{host} is not a public address")


def _ip_literal(host: str) -> str | None:
    """The address if `host` is an IP literal in any spelling the resolver accepts."""
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        pass
    try:
        # inet_aton takes the old forms too: 127.1, 2130706433, 0x7f000001.
        return socket.inet_ntoa(socket.inet_aton(host))
    except OSError:
        return None


class PublicOnlyResolver(AbstractResolver):
    """Resolves like aiohttp's default resolver, and refuses hosts with private addresses."""

    def __init__(self) -> None:
        self._inner = DefaultResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        results = await self._inner.resolve(host, port, family)
        for result in results:
            if not is_public(result["host"]):
                raise RefusedAddress(f"{host} resolves to an address that is not public")
        return results

    async def close(self) -> None:
        await self._inner.close()
