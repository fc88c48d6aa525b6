"""Which addresses builtin.http may call (pure: no sockets)."""

from __future__ import annotations

import ipaddress

import pytest

from foldflow.workers.builtin_http import HttpOptions, _pin
from foldflow.workers.netpolicy import NetworkPolicy, forbidden_reason, parse_allow
from foldflow.workers.registry import NonRetryableError


@pytest.mark.parametrize(("address", "why"), [
    ("127.0.0.1", "loopback"), ("127.8.9.1", "loopback"), ("::1", "loopback"),
    ("10.1.2.3", "private"), ("172.16.0.1", "private"), ("192.168.1.1", "private"),
    ("fd12:3456::1", "private"), ("169.254.10.10", "link-local"), ("fe80::1", "link-local"),
    ("169.254.169.254", "metadata"), ("fd00:ec2::254", "metadata"),
    ("168.63.129.16", "metadata"), ("100.100.100.200", "metadata"),
    ("100.64.0.1", "CGNAT"), ("0.0.0.0", "unspecified"), ("::", "unspecified"),
    ("224.0.0.1", "multicast"), ("239.255.0.1", "multicast"), ("ff02::1", "multicast"),
    ("240.0.0.1", "reserved"), ("255.255.255.255", "reserved"), ("2001:db8::1", "private"),
    ("198.18.0.1", "private"), ("::ffff:127.0.0.1", "loopback"),
    ("::ffff:169.254.169.254", "metadata"), ("64:ff9b::a00:1", "private"),
    ("2002:7f00:1::", "loopback"),
])
def test_everything_but_public_unicast_is_refused(address: str, why: str) -> None:
    reason = forbidden_reason(ipaddress.ip_address(address))
    assert reason is not None and why in reason


@pytest.mark.parametrize("address", ["8.8.8.8", "1.1.1.1", "2606:4700:4700::1111"])
def test_public_addresses_are_allowed(address: str) -> None:
    assert forbidden_reason(ipaddress.ip_address(address)) is None
    assert NetworkPolicy().refusal("example.org", ipaddress.ip_address(address), 443) is None


def test_the_allow_list_opens_networks_ports_and_names() -> None:
    policy = NetworkPolicy.of(["10.0.0.0/8", "127.0.0.1:8080", "[::1]:9000",
                               "Billing.Internal.:443", "169.254.0.0/16"])
    ip = ipaddress.ip_address
    assert policy.refusal("x", ip("10.9.9.9"), 1234) is None
    assert policy.refusal("127.0.0.1", ip("127.0.0.1"), 8080) is None
    assert policy.refusal("127.0.0.1", ip("127.0.0.1"), 9101) is not None  # other port
    assert policy.refusal("localhost", ip("::1"), 9000) is None
    assert policy.refusal("billing.internal", ip("192.168.7.7"), 443) is None
    assert policy.refusal("billing.internal", ip("192.168.7.7"), 80) is not None
    assert policy.refusal("x", ip("169.254.1.1"), 80) is None
    # a metadata address is opened only by an entry naming exactly it
    assert policy.refusal("x", ip("169.254.169.254"), 80) is not None
    assert NetworkPolicy.of(["169.254.169.254"]).refusal(
        "x", ip("169.254.169.254"), 80) is None


@pytest.mark.parametrize("bad", ["", "10.0.0.0/8:0", "host:http", "[::1", "a b", "x/y"])
def test_bad_entries_are_named(bad: str) -> None:
    with pytest.raises(ValueError):
        parse_allow([bad])


async def test_the_connection_goes_to_the_checked_address_with_the_names_kept() -> None:
    async def resolver(host: str, port: int) -> list[ipaddress.IPv4Address | ipaddress.IPv6Address]:
        return {"api.example": [ipaddress.ip_address("93.184.216.34")],
                "mixed.example": [ipaddress.ip_address("93.184.216.34"),
                                  ipaddress.ip_address("10.0.0.5")]}[host]

    options = HttpOptions(resolver=resolver)
    target = await _pin("https://api.example:8443/pay?x=1", options)
    assert str(target.url) == "https://93.184.216.34:8443/pay?x=1"
    assert (target.host_header, target.sni) == ("api.example:8443", "api.example")
    plain = await _pin("http://api.example/", options)
    assert (plain.host_header, plain.sni) == ("api.example", None)
    # one internal address among public ones refuses the call
    with pytest.raises(NonRetryableError, match=r"mixed.example \(10.0.0.5\) is a private"):
        await _pin("https://mixed.example/", options)
