"""CIDRs as integers: parse, format, collapse - what ipaddress gives, for the paths timed against a CNI ADD.

`import ipaddress` costs ~4 ms (it loads functools and collections), paid by
every `cnirun update --ingress-allow` and every ADD with a firewall policy.
These functions agree with ipaddress on what they accept and print
(tests/test_core_cidr.py compares them on random and odd inputs): a prefix
is decimal, an address is what inet_pton takes (no leading zeros in IPv4),
IPv6 is printed in the RFC 5952 form ipaddress prints.
"""
from __future__ import annotations

import _socket

_BITS = {4: 32, 6: 128}
_FAMILY = {4: _socket.AF_INET, 6: _socket.AF_INET6}


class Net:
    """An address with a prefix: `version` 4 or 6, `value` the address as an int, `prefixlen`."""

    __slots__ = ("version", "value", "prefixlen")

    def __init__(self, version: int, value: int, prefixlen: int) -> None:
        self.version, self.value, self.prefixlen = version, value, prefixlen

    @property
    def network(self) -> int:
        """The address with its host bits cleared."""
        host = (1 << (_BITS[self.version] - self.prefixlen)) - 1
        return self.value & ~host

    @property
    def last(self) -> int:
        return self.network | ((1 << (_BITS[self.version] - self.prefixlen)) - 1)

    def network_str(self) -> str:
        """'network/prefixlen', as str(ipaddress.ip_network(text, strict=False))."""
        return f"{address_str(self.version, self.network)}/{self.prefixlen}"


def parse(text: str) -> Net:
    """'ADDR' or 'ADDR/LEN' (a host address: the full length); ValueError when it is neither."""
    addr, sep, plen = text.partition("/")
    version = 6 if ":" in addr else 4
    try:
        packed = _socket.inet_pton(_FAMILY[version], addr)
    except (OSError, ValueError):  # ValueError: an embedded NUL
        raise ValueError(f"{text!r} is not an IPv{version} address") from None
    if version == 4 and addr.count(".") != 3:
        raise ValueError(f"{text!r} is not an IPv4 address")
    if sep:
        if not (plen.isascii() and plen.isdigit()) or len(plen) > 3 or int(plen) > _BITS[version]:
            raise ValueError(f"{text!r}: the prefix length must be 0 to {_BITS[version]}")
        length = int(plen)
    else:
        length = _BITS[version]
    return Net(version, int.from_bytes(packed, "big"), length)


def address_str(version: int, value: int) -> str:
    text = _socket.inet_ntop(_FAMILY[version], value.to_bytes(_BITS[version] // 8, "big"))
    if version == 6 and "." in text:  # ::ffff:1.2.3.4 and ::1.2.3.4: ipaddress prints hex groups
        return _v6_hex(value)
    return text


def _v6_hex(value: int) -> str:
    groups = [(value >> (112 - 16 * i)) & 0xFFFF for i in range(8)]
    best, start = (0, 0), -1
    for i, g in enumerate(groups + [1]):
        if g == 0 and start < 0:
            start = i
        elif g != 0 and start >= 0:
            if i - start > best[1] - best[0]:
                best = (start, i)
            start = -1
    if best[1] - best[0] < 2:
        return ":".join(f"{g:x}" for g in groups)
    head = ":".join(f"{g:x}" for g in groups[:best[0]])
    tail = ":".join(f"{g:x}" for g in groups[best[1]:])
    return f"{head}::{tail}"


def collapse(nets: list[Net]) -> list[Net]:
    """The fewest CIDRs covering exactly the union of `nets` (one version), sorted, as
    ipaddress.collapse_addresses gives them."""
    if not nets:
        return []
    version = nets[0].version
    bits = _BITS[version]
    spans = sorted((n.network, n.last) for n in nets)
    merged: list[list[int]] = []
    for lo, hi in spans:
        if merged and lo <= merged[-1][1] + 1:
            merged[-1][1] = max(merged[-1][1], hi)
        else:
            merged.append([lo, hi])
    out: list[Net] = []
    for lo, hi in merged:
        while lo <= hi:
            size = (lo & -lo).bit_length() - 1 if lo else bits  # the largest block aligned at lo...
            while lo + (1 << size) - 1 > hi:  # ...that ends within the span
                size -= 1
            out.append(Net(version, lo, bits - size))
            lo += 1 << size
    return out
