"""Sources may only be public internet hosts (unless an operator allows private ones).

A connector's base URL is typed in by whoever configures it; without a guard it could
point the gateway, credentials and all, at the machine's own services, the cloud metadata
endpoint (169.254.169.254) or the internal network (SSRF). The guard judges addresses at
three points, so that no spelling and no resolver answer slips through:

* `check_url` judges the host exactly as the HTTP client will use it: it parses the URL
  with yarl, as aiohttp does, so IDNA/UTS-46 mapping has already turned full-width digits
  or ideographic full stops into `127.0.0.1`; it reads every numeric spelling the system resolver
  accepts (`127.1`, `0x7f.1`, `2130706433`, `0177.0.0.1`, a trailing dot) as the address
  it stands for, and refuses hosts that are neither an address nor a DNS name (`%`-escapes,
  an all-numeric name that is no address). Run when a connector is created and before
  every run.
* `PublicOnlyResolver` refuses a host name if ANY of its addresses is not public; aiohttp
  then connects to exactly the addresses it returned.
* `PublicOnlyConnector` judges the address of every socket before it connects and the
  peer of every connection after it connects, so whatever path an address took (an IP
  literal aiohttp never resolves, a rebinding resolver, a future client change), no
  request is written to a private peer.

Addresses are judged against an explicit table (`REFUSED_NETWORKS`, after the IANA IPv4
and IPv6 special-purpose address registries), not `ipaddress.is_global`, whose answers
changed between Python 3.11 and 3.13: the verdicts are the same on every supported
Python. IPv6 forms that carry an IPv4 address (IPv4-mapped and -compatible, SIIT, NAT64
64:ff9b::/96, 6to4 2002::/16, Teredo 2001::/32) are unwrapped and the IPv4 address inside
is judged as well.

Redirects are never followed (connectors/base.py), so a public source cannot bounce a
request inward either. Local sources (the emulators, a test HR system on the LAN) need
`allow_private_sources = true` in the settings.
"""

from __future__ import annotations

import errno
import ipaddress
import re
import socket
from typing import Any, Final

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver
from yarl import URL

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

_LOCAL_NAMES: Final = ("localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback")
#: A DNS name as resolvers take it: LDH labels (underscores tolerated), A-labels included.
_DNS_NAME: Final = re.compile(r"(?:[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?\.)*"
                              r"[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?")  # fmt: skip
#: A label the URL standard reads as a number (so the host is an IPv4 address or invalid).
_NUMERIC_LABEL: Final = re.compile(r"(?:0x[0-9a-f]*|[0-9]+)")


def _nets(*cidrs: str) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    return tuple(ipaddress.ip_network(c) for c in cidrs)


#: Never a source: the IANA special-purpose ranges that are not globally reachable, plus
#: multicast and reserved space. Globally reachable special ranges (AS112, AMT, the PCP
#: and TURN anycasts) stay refused where they sit inside a larger refused block.
REFUSED_NETWORKS: Final = _nets(
    "0.0.0.0/8",  # "this network"; 0.0.0.0 reaches the local host on Linux
    "10.0.0.0/8",  # private use
    "100.64.0.0/10",  # shared address space (carrier-grade NAT)
    "127.0.0.0/8",  # loopback
    "169.254.0.0/16",  # link local (cloud metadata endpoints)
    "172.16.0.0/12",  # private use
    "192.0.0.0/24",  # IETF protocol assignments (DS-Lite, NAT64 discovery, ...)
    "192.0.2.0/24",  # documentation (TEST-NET-1)
    "192.88.99.0/24",  # 6to4 relay anycast (deprecated; relays inward)
    "192.168.0.0/16",  # private use
    "198.18.0.0/15",  # benchmarking
    "198.51.100.0/24",  # documentation (TEST-NET-2)
    "203.0.113.0/24",  # documentation (TEST-NET-3)
    "224.0.0.0/4",  # multicast
    "240.0.0.0/4",  # reserved, and the limited broadcast address
    "::/128",  # unspecified
    "::1/128",  # loopback
    "64:ff9b:1::/48",  # local-use IPv4/IPv6 translation
    "100::/64",  # discard only
    "100:0:0:1::/64",  # dummy prefix
    "2001::/23",  # IETF protocol assignments (Teredo is unwrapped before this applies)
    "2001:db8::/32",  # documentation
    "3fff::/20",  # documentation
    "5f00::/16",  # SRv6 SIDs
    "fc00::/7",  # unique local
    "fe80::/10",  # link local
    "fec0::/10",  # site local (deprecated)
    "ff00::/8",  # multicast
)
#: IPv6 outside global unicast (2000::/3) is unassigned or special: refused whole, apart
#: from the forms below that carry an IPv4 address.
_GLOBAL_UNICAST: Final = ipaddress.IPv6Network("2000::/3")
_NAT64: Final = ipaddress.IPv6Network("64:ff9b::/96")
_V4_COMPATIBLE: Final = ipaddress.IPv6Network("::/96")
_V4_MAPPED: Final = ipaddress.IPv6Network("::ffff:0:0/96")
_V4_TRANSLATED: Final = ipaddress.IPv6Network("::ffff:0:0:0/96")
_SIX_TO_FOUR: Final = ipaddress.IPv6Network("2002::/16")
_TEREDO: Final = ipaddress.IPv6Network("2001::/32")


class PrivateAddress(ValueError):
    """A source address that is not on the public internet."""


class RefusedAddress(OSError):
    """Raised while connecting (aiohttp wraps it in a ClientConnectorError)."""

    def __init__(self, message: str) -> None:
        super().__init__(errno.EACCES, message)


def embedded_ipv4(ip: ipaddress.IPv6Address) -> list[ipaddress.IPv4Address]:
    """The IPv4 addresses an IPv6 transition form carries (empty for a plain IPv6 one).

    Teredo carries two: the server's, and the client's with its bits inverted.
    """
    value = int(ip)
    low32 = ipaddress.IPv4Address(value & 0xFFFFFFFF)
    if ip in _V4_MAPPED or ip in _V4_TRANSLATED or ip in _NAT64 or ip in _V4_COMPATIBLE:
        return [low32]
    if ip in _SIX_TO_FOUR:
        return [ipaddress.IPv4Address((value >> 80) & 0xFFFFFFFF)]
    if ip in _TEREDO:
        server = ipaddress.IPv4Address((value >> 64) & 0xFFFFFFFF)
        return [server, ipaddress.IPv4Address(~value & 0xFFFFFFFF)]
    return []


def is_public_ip(ip: IPAddress) -> bool:
    """True for an address a source may have: global unicast and in no refused range."""
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.scope_id:
            return False
        inner = embedded_ipv4(ip)
        if inner:
            # ::, ::1 and friends unwrap to 0.0.0.x, which the IPv4 table refuses.
            return all(is_public_ip(v4) for v4 in inner)
        if ip not in _GLOBAL_UNICAST:
            return False
    return not any(ip in net for net in REFUSED_NETWORKS if net.version == ip.version)


def is_public(address: str) -> bool:
    """`is_public_ip` for an address in text (a zone id makes it link-local: refused)."""
    if "%" in address:
        return False
    try:
        return is_public_ip(ipaddress.ip_address(address))
    except ValueError:
        return False


def _parse(url: str) -> URL:
    try:
        return URL(url)
    except (ValueError, TypeError):
        raise PrivateAddress("the URL cannot be parsed") from None


def connect_host(url: str) -> str:
    """The host aiohttp will connect to for `url`: yarl's normalised `raw_host`."""
    host = _parse(url).raw_host
    if not host:
        raise PrivateAddress("the URL names no host")
    return host


def host_address(host: str) -> IPAddress | None:
    """The address `host` stands for if it is an IP literal in any spelling a resolver
    accepts (dotted, shortened, hex, octal, one number, trailing dot), else None.

    Raises `PrivateAddress` for a host that is neither an address nor a DNS name.
    """
    name = host.lower().rstrip(".")
    if not name:
        raise PrivateAddress("the URL names no host")
    if ":" in host:
        try:
            return ipaddress.IPv6Address(host)
        except ValueError:
            raise PrivateAddress(f"{host!r} is not a valid address") from None
    labels = name.split(".")
    if _NUMERIC_LABEL.fullmatch(labels[-1]):
        # The URL standard reads a host whose last label is a number as IPv4, and
        # getaddrinfo takes the old inet_aton forms (127.1, 0x7f.1, 2130706433) too.
        try:
            return ipaddress.IPv4Address(socket.inet_aton(name))
        except OSError:
            raise PrivateAddress(f"{host!r} is neither an address nor a host name") from None
    if not _DNS_NAME.fullmatch(name):
        raise PrivateAddress(f"{host!r} is not a valid host name")
    return None


def check_url(url: str) -> None:
    """Refuse a URL whose host, as the client will read it, is not a public address or is
    a name of this machine. A DNS name passes; its addresses are judged when resolved."""
    if _parse(url).scheme not in ("http", "https", "sftp"):
        raise PrivateAddress("only http, https and sftp sources are supported")
    host = connect_host(url)
    name = host.lower().rstrip(".")
    if name in _LOCAL_NAMES or name.endswith(".localhost"):
        raise PrivateAddress(f"{name} is this machine")
    address = host_address(host)
    if address is not None and not is_public_ip(address):
        raise PrivateAddress(f"{host} is not a public address")


class PublicOnlyResolver(AbstractResolver):
    """Resolves like aiohttp's default resolver, and refuses hosts with private addresses."""

    def __init__(self, inner: AbstractResolver | None = None) -> None:
        self._inner = inner or DefaultResolver()

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


def _guarded_socket(addr_info: Any) -> socket.socket:
    """aiohttp's `socket_factory`: the socket for one address, made only for a public one."""
    family, kind, proto, _, sockaddr = addr_info
    if not is_public(str(sockaddr[0])):
        raise RefusedAddress("the source address is not public")
    return socket.socket(family=family, type=kind, proto=proto)


class PublicOnlyConnector(aiohttp.TCPConnector):
    """A TCPConnector that reaches only public peers.

    Every socket is judged before it connects (`socket_factory`), and every new connection
    is judged again by its peer address once connected, before a byte of the request (and
    its credentials) is written: whatever resolved or spelled the address, a private peer
    gets nothing.
    """

    def __init__(self, *, resolver: AbstractResolver | None = None, **kwargs: Any) -> None:
        kwargs.setdefault("socket_factory", _guarded_socket)
        super().__init__(resolver=resolver or PublicOnlyResolver(), **kwargs)

    async def _create_connection(
        self,
        req: aiohttp.ClientRequest,
        traces: list[Any],
        timeout: aiohttp.ClientTimeout,
    ) -> Any:
        proto = await super()._create_connection(req, traces, timeout)
        transport = proto.transport
        peer = transport.get_extra_info("peername") if transport is not None else None
        if not peer or not is_public(str(peer[0])):
            proto.close()
            raise aiohttp.ClientConnectorError(
                req.connection_key, RefusedAddress("the source's peer address is not public")
            )
        return proto
