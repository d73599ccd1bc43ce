"""Compose `networks:` entries, checked: `NetworkSpec` and its parser.

Parsing (`parse_network`) checks every key and value against what cnirun can
honour and fails with `file:line: key.path: problem: expectation`; nothing is
dropped silently. The conflists they become: networks.py.
"""
from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass, field
from typing import Any

from ..cni.config import validate_name
from ..core.errors import ConfigError
from .located import (
    Document,
    Path,
    check_keys,
    expect_bool,
    expect_int,
    expect_mapping,
    expect_str,
    string_map,
    type_name,
)

DRIVERS = ("bridge", "macvlan", "ipvlan")
ISOLATE_MODES = ("same-bridge", "none")

NETWORK_KEYS = frozenset(
    {"driver", "driver_opts", "ipam", "internal", "enable_ipv6", "labels", "external", "name", "attachable"}
)
NETWORK_UNSUPPORTED = {
    "attachable": "it is a Swarm overlay setting; remove it",
}
IPAM_KEYS = frozenset({"driver", "config", "options"})
POOL_KEYS = frozenset({"subnet", "ip_range", "gateway", "aux_addresses"})
BRIDGE_OPTS = {
    "com.docker.network.bridge.name": "the Linux bridge name (at most 15 characters)",
    "com.docker.network.driver.mtu": "the MTU of the bridge and container interfaces",
    "com.docker.network.bridge.enable_ip_masquerade": "true or false: NAT traffic leaving the host",
    "com.docker.network.bridge.enable_icc": "true, or false: no traffic between the network's containers "
                                            "(cnirun's isolation plugin: bridge port isolation)",
}
MACVLAN_OPTS = {
    "parent": "the host interface the network sits on",
    "macvlan_mode": "bridge, private, vepa or passthru",
    "com.docker.network.driver.mtu": "the MTU of the container interfaces",
}
IPVLAN_OPTS = {
    "parent": "the host interface the network sits on",
    "ipvlan_mode": "l2, l3 or l3s",
    "com.docker.network.driver.mtu": "the MTU of the container interfaces",
}
OPTS_BY_DRIVER = {"bridge": BRIDGE_OPTS, "macvlan": MACVLAN_OPTS, "ipvlan": IPVLAN_OPTS}
MACVLAN_MODES = ("bridge", "private", "vepa", "passthru")
IPVLAN_MODES = ("l2", "l3", "l3s")

IPNet = ipaddress.IPv4Network | ipaddress.IPv6Network
IPAddr = ipaddress.IPv4Address | ipaddress.IPv6Address


@dataclass
class Pool:
    """One `ipam.config` entry."""

    subnet: IPNet | None
    ip_range: IPNet | None = None
    gateway: IPAddr | None = None
    aux: dict[str, IPAddr] = field(default_factory=dict)
    path: Path = ()


@dataclass
class NetworkSpec:
    """A compose network, checked, before subnets and bridge names are chosen."""

    key: str  # the key under `networks:`
    name: str  # the CNI network name
    doc: Document
    path: Path
    driver: str = "bridge"
    external: bool = False
    internal: bool = False
    enable_ipv6: bool = False
    labels: dict[str, str] = field(default_factory=dict)
    bridge: str = ""  # explicit com.docker.network.bridge.name
    mtu: int = 0
    masquerade: bool = True
    parent: str = ""
    mode: str = ""
    pools: list[Pool] = field(default_factory=list)
    x_cni_plugins: list[dict[str, Any]] | None = None
    x_cni_append: list[dict[str, Any]] = field(default_factory=list)
    x_cni_version: str = ""
    dns: bool = True  # a resolver for the containers' names (cnirun.dns); x-cni: {dns: false} turns it off
    dns_outside_names: bool = False  # x-cni: {dns_outside_names: true}: dotted names answered (cnirun.dns)
    icc: bool = True  # enable_icc=false: the isolation plugin in the chain
    isolate: str = ""  # x-cni: {isolate: same-bridge|none} (network create --isolate); '' = cnirun's default

    def fail(self, sub: Path, message: str) -> ConfigError:
        return self.doc.error(self.path + sub, message)


# -- parsing ------------------------------------------------------------------

def _subnet(doc: Document, value: Any, path: Path) -> IPNet:
    text = expect_str(doc, value, path, "a subnet in CIDR form such as 10.89.1.0/24")
    if "/" not in text:
        doc.fail(path, f"invalid subnet {text!r}: the prefix length is missing, e.g. {text}/24")
    try:
        loose = ipaddress.ip_network(text, strict=False)
    except ValueError:
        doc.fail(path, f"invalid subnet {text!r}: expected CIDR form such as 10.89.1.0/24")
    if loose.network_address != ipaddress.ip_interface(text).ip:
        doc.fail(path, f"invalid subnet {text!r}: host bits are set; did you mean {loose}?")
    if loose.num_addresses < 4:
        doc.fail(path, f"subnet {text} is too small: use /30 or larger (/126 for IPv6)")
    return loose


def _address(doc: Document, value: Any, path: Path, subnet: IPNet | None) -> IPAddr:
    text = expect_str(doc, value, path, "an IP address")
    try:
        addr = ipaddress.ip_address(text)
    except ValueError:
        doc.fail(path, f"invalid IP address {text!r}: expected e.g. 10.89.1.1")
    if subnet is not None and addr not in subnet:
        doc.fail(path, f"{addr} is outside the subnet {subnet}: pick an address inside it")
    return addr


def _parse_pool(doc: Document, value: Any, path: Path) -> Pool:
    m = expect_mapping(doc, value, path, "a mapping with subnet, ip_range, gateway, aux_addresses")
    check_keys(doc, m, path, POOL_KEYS)
    subnet = _subnet(doc, m["subnet"], path + ("subnet",)) if m.get("subnet") is not None else None
    pool = Pool(subnet=subnet, path=path)
    if m.get("ip_range") is not None:
        if subnet is None:
            doc.fail(path + ("ip_range",), "ip_range needs a subnet in the same entry")
        rng = _subnet(doc, m["ip_range"], path + ("ip_range",))
        if rng.version != subnet.version or not rng.subnet_of(subnet):  # type: ignore[arg-type]
            doc.fail(path + ("ip_range",), f"ip_range {rng} is not inside the subnet {subnet}")
        pool.ip_range = rng
    if m.get("gateway") is not None:
        if subnet is None:
            doc.fail(path + ("gateway",), "gateway needs a subnet in the same entry")
        pool.gateway = _address(doc, m["gateway"], path + ("gateway",), subnet)
    aux = m.get("aux_addresses")
    if aux is not None:
        if subnet is None:
            doc.fail(path + ("aux_addresses",), "aux_addresses need a subnet in the same entry")
        amap = expect_mapping(doc, aux, path + ("aux_addresses",), "a mapping of name: IP address")
        for k, v in amap.items():
            pool.aux[str(k)] = _address(doc, v, path + ("aux_addresses", str(k)), subnet)
    return pool


def _parse_x_cni(spec: NetworkSpec, value: Any, path: Path) -> None:
    doc = spec.doc
    m = expect_mapping(doc, value, path, "a mapping with plugins, append, cniVersion, dns, dns_outside_names or "
                       "isolate")
    check_keys(doc, m, path, frozenset({"plugins", "append", "cniVersion", "dns", "dns_outside_names", "isolate"}))
    if "isolate" in m:
        spec.isolate = expect_str(doc, m["isolate"], path + ("isolate",), "same-bridge or none")
        if spec.isolate not in ISOLATE_MODES:
            doc.fail(path + ("isolate",), f"invalid isolate {spec.isolate!r}: expected same-bridge or none")
    for key in ("dns", "dns_outside_names"):
        if key in m:
            if not isinstance(m[key], bool):
                doc.fail(path + (key,), f"expected true or false, got {type_name(m[key])}")
            setattr(spec, key, m[key])
    for key in ("plugins", "append"):
        if key not in m:
            continue
        items = m[key]
        if not isinstance(items, list) or not items:
            doc.fail(path + (key,), f"expected a non-empty list of CNI plugin objects, got {type_name(items)}")
        for i, p in enumerate(items):
            if not isinstance(p, dict):
                doc.fail(path + (key, i), f"expected a CNI plugin object (a mapping with a type), got {type_name(p)}")
            if not isinstance(p.get("type"), str) or not p["type"] or "/" in p["type"]:
                doc.fail(path + (key, i, "type"), "every plugin needs a type: the plugin's file name in CNI_PATH")
        if key == "plugins":
            spec.x_cni_plugins = [dict(p) for p in items]
        else:
            spec.x_cni_append = [dict(p) for p in items]
    if "plugins" in m and "append" in m:
        doc.fail(path + ("append",), "use either plugins (replace the generated chain) or append, not both")
    if "cniVersion" in m:
        spec.x_cni_version = expect_str(doc, m["cniVersion"], path + ("cniVersion",), 'a version such as "1.0.0"')


def parse_network(doc: Document, key: str, value: Any, path: Path, project: str = "") -> NetworkSpec:
    """Check one `networks:` entry. `project` prefixes the name (compose's PROJECT_KEY)."""
    m = expect_mapping(doc, value, path, "a mapping of network settings (or nothing)")
    check_keys(doc, m, path, NETWORK_KEYS, NETWORK_UNSUPPORTED)
    spec = NetworkSpec(key=key, name=key, doc=doc, path=path)
    if "external" in m:
        ext = m["external"]
        if isinstance(ext, dict):  # the legacy form external: {name: X}
            check_keys(doc, ext, path + ("external",), frozenset({"name"}))
            spec.external = True
            if ext.get("name") is not None:
                spec.name = expect_str(doc, ext["name"], path + ("external", "name"))
        else:
            spec.external = expect_bool(doc, ext, path + ("external",))
    if m.get("name") is not None:
        spec.name = expect_str(doc, m["name"], path + ("name",), "a network name")
    elif project and not spec.external:
        spec.name = f"{project}_{key}"
    try:
        validate_name(spec.name, "")
    except ConfigError:
        where = ("name",) if m.get("name") is not None else ()
        doc.fail(path + where, f"invalid network name {spec.name!r}: use letters, digits, '_', '.', '-'")
    if spec.external:
        extra = [k for k in m if k not in ("external", "name") and not str(k).startswith("x-")]
        if extra:
            doc.fail(path + (extra[0],), "an external network is defined elsewhere: only name may go with external")
        return spec

    if "labels" in m:
        spec.labels = string_map(doc, m["labels"], path + ("labels",), "labels")
    if m.get("driver") is not None:
        drv = expect_str(doc, m["driver"], path + ("driver",), "a driver name")
        if drv not in DRIVERS:
            doc.fail(path + ("driver",), f"driver {drv!r} is not supported: expected one of {', '.join(DRIVERS)}")
        spec.driver = drv
    if "internal" in m:
        spec.internal = expect_bool(doc, m["internal"], path + ("internal",))
    if "enable_ipv6" in m:
        spec.enable_ipv6 = expect_bool(doc, m["enable_ipv6"], path + ("enable_ipv6",))
    _parse_driver_opts(spec, m.get("driver_opts"), path + ("driver_opts",))
    if m.get("ipam") is not None:
        ipath = path + ("ipam",)
        ipam = expect_mapping(doc, m["ipam"], ipath, "a mapping with driver and config")
        check_keys(doc, ipam, ipath, IPAM_KEYS)
        if ipam.get("driver") not in (None, "default"):
            doc.fail(ipath + ("driver",), "only the default IPAM driver is supported (host-local)")
        if ipam.get("options"):
            doc.fail(ipath + ("options",), "IPAM driver options are not supported by host-local; remove them")
        cfg = ipam.get("config")
        if cfg is not None:
            if not isinstance(cfg, list):
                doc.fail(ipath + ("config",), f"expected a list of subnet entries, got {type_name(cfg)}")
            spec.pools = [_parse_pool(doc, p, ipath + ("config", i)) for i, p in enumerate(cfg)]
    v6 = [p for p in spec.pools if p.subnet is not None and p.subnet.version == 6]
    if v6 and not spec.enable_ipv6:
        doc.fail(v6[0].path + ("subnet",), "an IPv6 subnet needs enable_ipv6: true on the network")
    # enable_ipv6 without an IPv6 subnet: Planner.conflist picks a free /64 (subnets_v6).
    if "x-cni" in m:
        _parse_x_cni(spec, m["x-cni"], path + ("x-cni",))
        if spec.x_cni_plugins is not None:
            for k in ("driver", "driver_opts", "ipam", "internal", "enable_ipv6"):
                if k in m:
                    doc.fail(path + (k,), "x-cni.plugins replaces the generated chain: remove this key or use x-cni.append")
    if spec.isolate and (spec.driver != "bridge" or spec.x_cni_plugins is not None):
        doc.fail(path + ("x-cni", "isolate"), "isolation between networks needs a generated bridge network "
                                              "(the firewall plugin's ingressPolicy works on bridges)")
    return spec


def _parse_driver_opts(spec: NetworkSpec, value: Any, path: Path) -> None:
    doc = spec.doc
    opts = string_map(doc, value, path, "driver_opts")
    allowed = OPTS_BY_DRIVER[spec.driver]
    for k, v in opts.items():
        if k not in allowed:
            known = "; ".join(f"{name} ({what})" for name, what in allowed.items())
            doc.fail(path + (k,), f"unknown option for the {spec.driver} driver: expected one of {known}")
        p = path + (k,)
        if k == "com.docker.network.bridge.name":
            if not v or len(v) > 15 or "/" in v or ":" in v or " " in v:
                doc.fail(p, f"invalid bridge name {v!r}: 1 to 15 characters, no '/', ':' or spaces")
            spec.bridge = v
        elif k == "com.docker.network.driver.mtu":
            spec.mtu = expect_int(doc, v, p, "an MTU from 68 to 65535")
            if not 68 <= spec.mtu <= 65535:
                doc.fail(p, f"MTU {spec.mtu} out of range: expected 68 to 65535")
        elif k == "com.docker.network.bridge.enable_ip_masquerade":
            spec.masquerade = expect_bool(doc, v, p)
        elif k == "com.docker.network.bridge.enable_icc":
            spec.icc = expect_bool(doc, v, p)
        elif k == "parent":
            if not v or len(v) > 15:
                doc.fail(p, f"invalid parent interface {v!r}: a host interface name such as eth0")
            spec.parent = v
        elif k == "macvlan_mode":
            if v not in MACVLAN_MODES:
                doc.fail(p, f"invalid macvlan_mode {v!r}: expected one of {', '.join(MACVLAN_MODES)}")
            spec.mode = v
        elif k == "ipvlan_mode":
            if v not in IPVLAN_MODES:
                doc.fail(p, f"invalid ipvlan_mode {v!r}: expected one of {', '.join(IPVLAN_MODES)}")
            spec.mode = v


def parse_networks_section(doc: Document, section: Any, path: Path = ("networks",),
                           project: str = "") -> list[NetworkSpec]:
    m = expect_mapping(doc, section, path, "a mapping of network name: settings")
    return [parse_network(doc, str(k), v, path + (str(k),), project) for k, v in m.items()]


def file_specs(path: str | os.PathLike[str]) -> list[NetworkSpec]:
    """The `networks:` of a YAML file, checked (other top-level keys are ignored here)."""
    from .located import load

    doc = load(path)
    top = expect_mapping(doc, doc.data, (), "a mapping with a top-level networks: key")
    if "networks" not in top:
        doc.fail((), "no top-level networks: key: a network file defines networks: {NAME: {...}}")
    return parse_networks_section(doc, top["networks"])
