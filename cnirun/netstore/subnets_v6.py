"""Automatic IPv6 subnets: a free /64 for a network created with `--ipv6` or `enable_ipv6: true`.

The IPv4 picker (networks.Planner.choose_subnet) walks a /16 in /24 steps;
an IPv6 pool holds up to 2**56 /64s (fd00::/8), so this one never walks:
it jumps over every subnet in use (other networks, host routes) in one pass
over them, sorted. The pool is CNIRUN_SUBNET_POOL_V6 (comma-separated IPv6
CIDRs); by default one /48 inside fd00::/8 whose 40-bit global ID is a hash
of /etc/machine-id, as RFC 4193 (3.2.2) asks for a Unique Local prefix: stable
on one host, unlikely to be another host's, and clear of the fd00::/64 that
home routers and VMs commonly use (a host route to it is skipped anyway).
"""
from __future__ import annotations

import hashlib
import ipaddress
import os

from ..core.errors import ConfigError

POOL_ENV_V6 = "CNIRUN_SUBNET_POOL_V6"
PREFIX_V6 = 64  # SLAAC's size and Docker's: every network gets a /64
ULA = ipaddress.IPv6Network("fd00::/8")
_MACHINE_ID = ("/etc/machine-id", "/var/lib/dbus/machine-id")


def default_pool() -> ipaddress.IPv6Network:
    """fdXX:XXXX:XXXX::/48 from a hash of the machine ID (the host name when there is none)."""
    seed = b""
    for path in _MACHINE_ID:
        try:
            with open(path, "rb") as f:
                seed = f.read().strip()
        except OSError:
            continue
        if seed:
            break
    if not seed:
        seed = os.uname().nodename.encode()
    global_id = int.from_bytes(hashlib.sha256(b"cnirun-ula/" + seed).digest()[:5], "big")  # 40 bits
    return ipaddress.IPv6Network(((0xFD << 120) | (global_id << 80), 48))


def pool_v6() -> list[ipaddress.IPv6Network]:
    """Where automatic IPv6 subnets come from: CNIRUN_SUBNET_POOL_V6, else default_pool()."""
    raw = os.environ.get(POOL_ENV_V6, "").strip()
    if not raw:
        return [default_pool()]
    out: list[ipaddress.IPv6Network] = []
    for part in (p.strip() for p in raw.split(",")):
        if not part:
            continue
        try:
            net = ipaddress.ip_network(part, strict=False)
        except ValueError:
            net = None
        if not isinstance(net, ipaddress.IPv6Network):
            raise ConfigError(f"{POOL_ENV_V6}={raw!r}: {part!r} is not an IPv6 CIDR such as fd00:89::/48")
        if net.prefixlen > PREFIX_V6:
            raise ConfigError(f"{POOL_ENV_V6}={raw!r}: {part} is smaller than a /{PREFIX_V6}: use /{PREFIX_V6} or larger")
        out.append(net)
    if not out:
        raise ConfigError(f"{POOL_ENV_V6}={raw!r}: no IPv6 CIDR in it, e.g. fd00:89::/48")
    return out


def first_free(
    pool: ipaddress.IPv6Network, taken: list[ipaddress.IPv6Network], prefix: int = PREFIX_V6
) -> ipaddress.IPv6Network | None:
    """The lowest /`prefix` inside `pool` that overlaps none of `taken`; None when there is none.

    One pass over `taken` sorted by start: a candidate that overlaps a taken
    subnet moves to the first aligned block past its end, so a taken fd00::/16
    inside fd00::/8 costs one step, not 2**48.
    """
    step = 1 << (128 - prefix)
    cur = int(pool.network_address)
    end = int(pool.broadcast_address)
    spans = sorted((int(t.network_address), int(t.broadcast_address)) for t in taken if t.overlaps(pool))
    for start, stop in spans:
        if stop < cur:
            continue
        if start > cur + step - 1:
            break  # sorted: nothing later starts inside the candidate
        cur = (stop + 1 + step - 1) // step * step  # the next aligned block after this span
        if cur > end:
            return None
    if cur + step - 1 > end:
        return None
    return ipaddress.IPv6Network((cur, prefix))
