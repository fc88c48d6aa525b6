"""Which addresses ``builtin.http`` may call (pure: parsing and checks, no I/O).

By default only public (globally routable, unicast) addresses: a definition must not turn
the worker against the operator's own network — loopback (the services' ``/metrics``),
link-local and cloud metadata (``169.254.169.254``, ``fd00:ec2::254``), private ranges
(RFC 1918, ULA), shared CGNAT space, unspecified, multicast and reserved addresses are
refused, also when they hide inside an IPv6 address (IPv4-mapped, 6to4, Teredo, NAT64).
An allow-list opens what the operator wants: a network (``10.1.0.0/16``), an address
with a port (``127.0.0.1:8080``, ``[::1]:8080``) or a host name with or without a port
(``billing.internal:443``: whatever that name resolves to). A cloud metadata address is
opened only by an entry naming exactly it.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass

__all__ = ["METADATA_ADDRESSES", "AllowEntry", "NetworkPolicy", "parse_allow"]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

#: Cloud instance metadata endpoints (AWS, GCP, Azure, OpenStack, Oracle; Alibaba; the
#: ECS task endpoint; Azure's wire server, which is a public address).
METADATA_ADDRESSES = frozenset(
    ipaddress.ip_address(a)
    for a in ("169.254.169.254", "fd00:ec2::254", "100.100.100.200", "169.254.170.2",
              "168.63.129.16")
)
_NAT64 = (ipaddress.ip_network("64:ff9b::/96"), ipaddress.ip_network("64:ff9b:1::/48"))
_CGNAT = ipaddress.ip_network("100.64.0.0/10")


@dataclass(frozen=True)
class AllowEntry:
    """One allow-list entry: a network or a host name, and a port (None: any)."""

    network: IPNetwork | None = None
    host: str | None = None
    port: int | None = None

    def allows(self, host: str, address: IPAddress, port: int) -> bool:
        """Whether this entry opens ``address`` (reached as ``host``) on ``port``."""
        if self.port is not None and self.port != port:
            return False
        if self.host is not None:
            return self.host == host
        assert self.network is not None
        if address.version != self.network.version or address not in self.network:
            return False
        return address not in METADATA_ADDRESSES or self.network.num_addresses == 1


def _port(text: str, entry: str) -> int:
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise ValueError(f"{entry!r}: port must be 1..65535")
    return int(text)


def _host_name(text: str) -> str:
    return text.rstrip(".").lower()


def _entry(text: str) -> AllowEntry:
    raw = text.strip()
    if not raw:
        raise ValueError("an empty allow-list entry")
    port: int | None = None
    body = raw
    if raw.startswith("["):  # [IPv6 or IPv6/prefix]:port
        inner, sep, rest = raw[1:].partition("]")
        if not sep or (rest and not rest.startswith(":")):
            raise ValueError(f"{raw!r}: expected [address]:port")
        body = inner
        port = _port(rest[1:], raw) if rest else None
    elif raw.count(":") == 1:  # IPv4, IPv4/prefix or a host name, with a port
        body, _, port_text = raw.partition(":")
        port = _port(port_text, raw)
    try:
        return AllowEntry(network=ipaddress.ip_network(body, strict=False), port=port)
    except ValueError:
        pass
    name = _host_name(body)
    if not name or "/" in name or any(c.isspace() for c in name):
        raise ValueError(f"{raw!r} is neither an address, a network nor a host name")
    return AllowEntry(host=name, port=port)


def parse_allow(entries: Iterable[str]) -> tuple[AllowEntry, ...]:
    """Parse allow-list entries (raises ValueError naming the bad one)."""
    return tuple(_entry(e) for e in entries)


def _embedded(address: IPAddress) -> list[IPAddress]:
    """The address and any IPv4 address an IPv6 one carries."""
    found: list[IPAddress] = [address]
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            found.append(address.ipv4_mapped)
        if address.sixtofour is not None:
            found.append(address.sixtofour)
        if address.teredo is not None:
            found.extend(address.teredo)
        if any(address in net for net in _NAT64):
            found.append(ipaddress.IPv4Address(int(address) & 0xFFFFFFFF))
    return found


def forbidden_reason(address: IPAddress) -> str | None:
    """Why ``address`` is not public (None: it is a global unicast address)."""
    for a in reversed(_embedded(address)):  # what an IPv6 address carries says most
        if a in METADATA_ADDRESSES:
            return "a cloud metadata address"
        if a.is_loopback:
            return "a loopback address"
        if a.is_link_local:
            return "a link-local address"
        if a.is_unspecified:
            return "the unspecified address"
        if a.is_multicast:
            return "a multicast address"
        if isinstance(a, ipaddress.IPv4Address) and a in _CGNAT:
            return "a shared (CGNAT) address"
        if a.is_reserved:
            return "a reserved address"
        if a.is_private:
            return "a private address"
        if not a.is_global:
            return "a reserved address"
    return None


@dataclass(frozen=True)
class NetworkPolicy:
    """The addresses ``builtin.http`` may connect to."""

    allow: tuple[AllowEntry, ...] = ()

    @classmethod
    def of(cls, entries: Iterable[str]) -> NetworkPolicy:
        """A policy from allow-list entries (see the module doc)."""
        return cls(allow=parse_allow(entries))

    def refusal(self, host: str, address: IPAddress, port: int) -> str | None:
        """Why ``host`` resolved to ``address`` may not be called on ``port`` (None: it may)."""
        name = _host_name(host)
        if any(entry.allows(name, address, port) for entry in self.allow):
            return None
        why = forbidden_reason(address)
        if why is None:
            return None
        shown = f"{host} ({address})" if name != str(address) else str(address)
        return f"{shown} is {why}"
