"""What a network's config and a CNI result say about names by DNS.

Every network with a gateway on the host (the bridge plugin's isGateway) gets
a resolver listening on that gateway address (cnirun.dns.resolver). A
conflist with `"cnirun": {"dns": false}` opts out (`network create
--no-dns`, compose `x-cni: {dns: false}`).
"""
from __future__ import annotations

from ..cni.config import ipam_ranges, meta_of

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from ..cni.config import NetworkConfigList


def enabled(net: NetworkConfigList) -> bool:
    """Whether the network wants DNS: not opted out with `"cnirun": {"dns": false}`."""
    return meta_of(net).get("dns") is not False


def outside_names(net: NetworkConfigList) -> bool:
    """Whether the network's resolver may answer names with a dot (`www.example.com`): only with
    `"cnirun": {"dnsOutsideNames": true}` (x-cni `dns_outside_names: true`). Without it a dotted name, as
    alias, hostname or container name, is not answered there: it would shadow the real domain for every
    container on the network (queries for it never leave the host)."""
    return meta_of(net).get("dnsOutsideNames") is True


def is_local(ip: str) -> bool:
    """Whether `ip` is an address of this host (bind succeeds only for a local address)."""
    import _socket

    fam = _socket.AF_INET6 if ":" in ip else _socket.AF_INET
    s = _socket.socket(fam, _socket.SOCK_DGRAM)
    try:
        s.bind((ip, 0))
        return True
    except OSError:
        return False
    finally:
        s.close()


def result_addresses(result: dict[str, Any]) -> list[str]:
    """The container's addresses in a CNI result (both families), without prefix."""
    out: list[str] = []
    for ip in result.get("ips") or []:
        if isinstance(ip, dict) and isinstance(ip.get("address"), str):
            a = ip["address"].split("/", 1)[0]
            if a and a not in out:
                out.append(a)
    return out


def result_gateways(result: dict[str, Any]) -> list[str]:
    """The result's gateways that are addresses of this host (a bridge with isGateway), IPv4 first."""
    gws: list[str] = []
    for ip in result.get("ips") or []:
        gw = ip.get("gateway") if isinstance(ip, dict) else None
        if isinstance(gw, str) and gw and gw not in gws and is_local(gw):
            gws.append(gw)
    return sorted(gws, key=lambda g: ":" in g)


def planned_resolver(net: NetworkConfigList) -> str:
    """The IPv4 resolver address a container of `net` will use, from the config alone ('' for none).

    For Docker hook mode, where dockerd writes resolv.conf before the hook
    ADDs: the bridge's gateway (ipam `gateway`, else the subnet's first
    address, as host-local does).
    """
    import ipaddress

    if not enabled(net):
        return ""
    for p in net.plugins:
        raw = p.raw
        if raw.get("type") != "bridge" or not (raw.get("isGateway") or raw.get("isDefaultGateway")):
            continue
        for r in ipam_ranges(raw):
            try:
                subnet = ipaddress.ip_network(str(r.get("subnet")), strict=False)
            except ValueError:
                continue
            if subnet.version == 4:
                return str(r.get("gateway") or subnet.network_address + 1)
    return ""
