"""Keep the browser off the user's own machine and network (server-side request forgery).

A web page can steer the model into opening ``http://127.0.0.1:8000/...`` or a cloud metadata
address, so every connection the browser makes is checked *at connect time*, after name
resolution: the host is resolved once, each address is checked, and the connection is made to
that checked address (TLS still verifies the certificate against the host name). Because the
check sits in the connection layer, it covers the first request, every redirect and every
spelling of an address (``2130706433``, ``0x7f.1``, ``[::ffff:127.0.0.1]``), and a DNS answer
that changes between check and connect (rebinding) cannot slip through.

Allowed: addresses that are globally reachable (``ipaddress`` ``is_global``), including the IPv4
address inside IPv4-mapped, 6to4, Teredo and NAT64 IPv6 forms. Everything else (loopback,
private, link-local, carrier-grade NAT, multicast, reserved, unspecified) is refused unless the
user allow-lists the host name or an address range.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")


class BlockedAddressError(OSError):
    """A connection to a non-public address that the allow-list does not name."""


@dataclass(frozen=True)
class AllowList:
    """Host names and address ranges the browser may reach even though they are not public."""

    hosts: frozenset[str] = frozenset()
    networks: tuple[IPNetwork, ...] = ()

    @classmethod
    def parse(cls, entries: Iterable[str]) -> AllowList:
        """Entries are host names (``intranet.local``) or addresses / CIDR ranges
        (``127.0.0.1``, ``192.168.1.0/24``, ``::1``); ValueError names a malformed range."""
        hosts: set[str] = set()
        networks: list[IPNetwork] = []
        for raw in entries:
            entry = raw.strip().lower().strip("[]")
            if not entry:
                continue
            try:
                networks.append(ipaddress.ip_network(entry, strict=False))
            except ValueError:
                if "/" in entry or ":" in entry:
                    raise ValueError(f"{raw!r} is neither a host name nor an IP address or "
                                     "range like 192.168.1.0/24") from None
                hosts.add(entry.rstrip("."))
        return cls(frozenset(hosts), tuple(networks))

    def allows(self, host: str, address: IPAddress) -> bool:
        return (host.lower().rstrip(".") in self.hosts
                or any(address in network for network in self.networks))


def embedded_ipv4(address: IPAddress) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address carries (mapped, 6to4, Teredo, NAT64), if any."""
    if not isinstance(address, ipaddress.IPv6Address):
        return None
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address.teredo is not None:
        return address.teredo[1]
    if address in _NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def is_public(address: IPAddress) -> bool:
    """Whether ``address`` (and any IPv4 address inside it) is globally reachable."""
    inner = embedded_ipv4(address)
    if inner is not None and not is_public(inner):
        return False
    return address.is_global and not address.is_multicast


def check_address(host: str, address: str, allow: AllowList) -> None:
    """Raise BlockedAddressError unless ``address`` (what ``host`` resolved to) may be reached."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if is_public(ip) or allow.allows(host, ip):
        return
    what = f"{host} is" if host.strip("[]") == address else f"{host} resolves to {ip}, which is"
    raise BlockedAddressError(
        f"{what} a local or private address; the browser only opens public addresses (allow "
        "it with the browser setting allow_hosts)")


class GuardedNetworkBackend:
    """An httpcore network backend that resolves, checks and then connects to the address.

    Wraps the backend httpcore would use; only ``connect_tcp`` changes. Unix sockets are
    refused outright.
    """

    def __init__(self, inner: Any, allow: AllowList) -> None:
        self._inner = inner
        self._allow = allow

    async def connect_tcp(self, host: str, port: int, timeout: float | None = None,
                          local_address: str | None = None,
                          socket_options: Any = None) -> Any:
        import anyio

        try:
            infos = await anyio.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except OSError as err:
            raise OSError(f"cannot resolve {host}: {err}") from err
        addresses = list(dict.fromkeys(str(info[4][0]) for info in infos))
        if not addresses:
            raise OSError(f"cannot resolve {host}")
        for address in addresses:  # every answer must pass, so no retry reaches a bad one
            check_address(host, address, self._allow)
        last: BaseException | None = None
        for address in addresses:
            try:
                return await self._inner.connect_tcp(
                    address, port, timeout=timeout, local_address=local_address,
                    socket_options=socket_options)
            except Exception as err:  # try the next address, as a resolver-based connect would
                last = err
        assert last is not None
        raise last

    async def connect_unix_socket(self, *args: Any, **kwargs: Any) -> Any:
        raise BlockedAddressError("the browser does not connect to Unix sockets")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


def guarded_transport(allow: AllowList, **kwargs: Any) -> Any:
    """An ``httpx.AsyncHTTPTransport`` whose connections go through ``GuardedNetworkBackend``.

    Fails closed: if httpx's internals ever change shape, this raises instead of returning an
    unguarded transport.
    """
    import httpx

    transport = httpx.AsyncHTTPTransport(**kwargs)
    pool = getattr(transport, "_pool", None)
    if pool is None or not hasattr(pool, "_network_backend"):
        raise RuntimeError("this httpx version does not expose its connection pool; the "
                           "browser cannot check addresses and refuses to fetch")
    pool._network_backend = GuardedNetworkBackend(pool._network_backend, allow)
    return transport
