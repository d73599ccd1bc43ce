"""Compose `networks:` entries and the CNI conflists they become.

Parsing (`parse_network`) checks every key and value against what cnirun can
honour and fails with `file:line: key.path: problem: expectation`; nothing is
dropped silently. Conversion (`Planner.conflist`) picks what the file leaves
open (subnet, bridge name) so that no two networks share a bridge or overlap,
and refuses explicit subnets that collide with another network or a host route.
"""
from __future__ import annotations

import hashlib
import ipaddress
import json
import os
from dataclasses import dataclass, field
from typing import Any

from ..cni.config import NetworkConfigList, conflist_from_bytes, validate_name
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

CNI_VERSION = "1.0.0"  # the reference plugins 1.1.x speak up to 1.0.0
META_KEY = "cnirun"  # top-level conflist key with what cnirun needs to manage the network
DEFAULT_POOL = "10.89.0.0/16"
POOL_ENV = "CNIRUN_SUBNET_POOL"
IPAM_DIR_ENV = "CNIRUN_IPAM_DATA_DIR"
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


# -- choosing subnets and bridges ------------------------------------------------

def subnet_pool() -> list[IPNet]:
    """Where automatic subnets come from: CNIRUN_SUBNET_POOL (CIDRs, comma-separated)."""
    raw = os.environ.get(POOL_ENV) or DEFAULT_POOL
    out: list[IPNet] = []
    for part in raw.split(","):
        part = part.strip()
        if not part:
            continue
        try:
            out.append(ipaddress.ip_network(part, strict=False))
        except ValueError:
            raise ConfigError(f"{POOL_ENV}={raw!r}: {part!r} is not a CIDR such as 10.89.0.0/16") from None
    return out


def auto_bridge_name(network: str, attempt: int = 0) -> str:
    """`cni-` + 11 hex digits of the name's hash: stable per network, 15 characters."""
    digest = hashlib.sha256(f"{network}/{attempt}".encode()).hexdigest()
    return "cni-" + digest[:11]


def _bridge_of(net: NetworkConfigList) -> str:
    for p in net.plugins:
        if p.type == "bridge":
            return str(p.raw.get("bridge") or "cni0")
    return ""


class Planner:
    """Chooses subnets and bridge names against what exists, and builds conflists.

    `existing` are the networks already defined (NETCONFPATH and built-ins);
    host routes are read once, on first need. Choices made by this planner are
    remembered, so several networks planned together never collide either.
    """

    def __init__(self, existing: list[NetworkConfigList], routes: list[Any] | None = None) -> None:
        self.existing = existing
        self._routes = routes
        self._claimed_subnets: list[tuple[str, IPNet]] = []
        self._claimed_bridges: dict[str, str] = {}

    def routes(self) -> list[Any]:
        if self._routes is None:
            from .hostnet import host_routes

            self._routes = host_routes()
        return self._routes

    def _subnets_in_use(self, name: str) -> list[tuple[str, IPNet]]:
        out: list[tuple[str, IPNet]] = []
        for net in self.existing:
            if net.name == name:
                continue  # redefining the same network is not a conflict
            for s in net.subnets():
                try:
                    out.append((f'network "{net.name}" ({net.source})', ipaddress.ip_network(s, strict=False)))
                except ValueError:
                    continue
        return out + [(w, s) for w, s in self._claimed_subnets if w != f'network "{name}"']

    def _conflict(self, subnet: IPNet, spec: NetworkSpec, own_devs: set[str]) -> str:
        for who, s in self._subnets_in_use(spec.name):
            if s.version == subnet.version and s.overlaps(subnet):
                return f"{who} uses {s}"
        for r in self.routes():
            if r.dev in own_devs:
                continue  # our own bridge's route (network already running)
            if r.network.version == subnet.version and r.network.overlaps(subnet):
                return f"the host routes {r.network} via {r.dev or 'a gateway'}"
        return ""

    def _own_devs(self, spec: NetworkSpec, bridge: str) -> set[str]:
        devs = {bridge} if bridge else set()
        if spec.driver in ("macvlan", "ipvlan"):
            # A macvlan/ipvlan network is meant to share the parent's LAN.
            devs.add(spec.parent or self._default_route_dev())
        return devs

    def _default_route_dev(self) -> str:
        from .hostnet import _ip_json

        for r in _ip_json("-4", "route", "show", "default"):
            return str(r.get("dev", ""))
        return ""

    def choose_bridge(self, spec: NetworkSpec) -> str:
        taken = {(_bridge_of(n), n.name) for n in self.existing}
        others = {b for b, n in taken if n != spec.name and b}
        others |= {b for n, b in self._claimed_bridges.items() if n != spec.name}
        if spec.bridge:
            if spec.bridge in others:
                owner = next(n for b, n in taken if b == spec.bridge)
                spec.doc.fail(spec.path + ("driver_opts", "com.docker.network.bridge.name"),
                              f"bridge {spec.bridge} is already used by network {owner!r}: pick another name")
            name = spec.bridge
        else:
            name = next(b for b in (auto_bridge_name(spec.name, i) for i in range(100)) if b not in others)
        self._claimed_bridges[spec.name] = name
        return name

    def choose_subnet(self, spec: NetworkSpec, own_devs: set[str]) -> IPNet:
        for pool in subnet_pool():
            size = 24 if pool.version == 4 else 64
            candidates = pool.subnets(new_prefix=size) if pool.prefixlen < size else [pool]
            for cand in candidates:
                if not self._conflict(cand, spec, own_devs):
                    return cand
        raise spec.fail((), f"no free subnet left in {os.environ.get(POOL_ENV) or DEFAULT_POOL}: "
                            f"set ipam.config[0].subnet or widen {POOL_ENV}")

    def choose_subnet_v6(self, spec: NetworkSpec, own_devs: set[str]) -> IPNet:
        """A free /64 from CNIRUN_SUBNET_POOL_V6: no other network's subnet, no host route (subnets_v6)."""
        from .subnets_v6 import POOL_ENV_V6, first_free, pool_v6

        taken = [s for _, s in self._subnets_in_use(spec.name) if s.version == 6]
        taken += [r.network for r in self.routes() if r.network.version == 6 and r.dev not in own_devs]
        pools = pool_v6()
        for pool in pools:
            cand = first_free(pool, taken)  # type: ignore[arg-type]
            if cand is not None and not self._conflict(cand, spec, own_devs):
                return cand
        raise spec.fail((), f"no free IPv6 /64 left in {', '.join(map(str, pools))}: "
                            f"set an IPv6 subnet in ipam.config or widen {POOL_ENV_V6}")

    # -- conflists -------------------------------------------------------------
    def conflist(self, spec: NetworkSpec, extra_meta: dict[str, Any] | None = None) -> dict[str, Any]:
        """The conflist (as a dict) for a non-external network."""
        if spec.external:
            raise spec.fail(("external",), "an external network is not converted: it must exist already")
        meta: dict[str, Any] = {"driver": spec.driver if spec.x_cni_plugins is None else "x-cni"}
        if spec.labels:
            meta["labels"] = dict(spec.labels)
        if not spec.dns:
            meta["dns"] = False  # cnirun.dns.netconf.enabled reads it
        if spec.dns_outside_names:
            meta["dnsOutsideNames"] = True  # cnirun.dns.netconf.outside_names reads it
        meta.update(extra_meta or {})
        if spec.x_cni_plugins is not None:
            plugins = [dict(p) for p in spec.x_cni_plugins]
        else:
            bridge = self.choose_bridge(spec) if spec.driver == "bridge" else ""
            own = self._own_devs(spec, bridge)
            pools = list(spec.pools) or [Pool(subnet=None)]
            families = {p.subnet.version for p in pools if p.subnet is not None}
            if families == {6}:
                pools.insert(0, Pool(subnet=None))  # dual stack, as Docker: IPv4 is never left out
            if spec.enable_ipv6 and 6 not in families:
                pools.append(Pool(subnet=self.choose_subnet_v6(spec, own)))
            for i, pool in enumerate(pools):
                if pool.subnet is None:
                    pool.subnet = self.choose_subnet(spec, own)
                else:
                    why = self._conflict(pool.subnet, spec, own)
                    if why:
                        where = pool.path + ("subnet",) if pool.path else spec.path
                        raise spec.doc.error(where, f"subnet {pool.subnet} overlaps: {why}: pick a free subnet")
                self._claimed_subnets.append((f'network "{spec.name}"', pool.subnet))
            ipam = _host_local(spec, pools)
            if spec.driver == "bridge":
                meta["bridge"] = bridge
                # see isolation.py: applied when the network is installed (--isolate none: not isolated)
                meta["isolated"] = spec.isolate != "none"
                plugins = _bridge_chain(spec, bridge, ipam)
            else:
                plugins = _vlan_chain(spec, ipam)
        plugins += [dict(p) for p in spec.x_cni_append]
        conf: dict[str, Any] = {"cniVersion": spec.x_cni_version or CNI_VERSION, "name": spec.name}
        conf["plugins"] = plugins
        conf[META_KEY] = meta
        return conf

    def to_network(self, spec: NetworkSpec, extra_meta: dict[str, Any] | None = None) -> NetworkConfigList:
        """The conflist parsed as cnirun's runtime would load it from a file."""
        conf = self.conflist(spec, extra_meta)
        data = json.dumps(conf, indent=2).encode()
        try:
            return conflist_from_bytes(data, f"{spec.doc.where(spec.path)}")
        except ConfigError as e:
            where = spec.path + (("x-cni",) if spec.x_cni_plugins is not None or spec.x_cni_append else ())
            raise spec.doc.error(where, f"the resulting conflist is invalid: {e.msg}") from None


def _ranges(pool: Pool) -> list[dict[str, str]]:
    """host-local range entries of one pool; aux_addresses split the range around them."""
    subnet = pool.subnet
    assert subnet is not None
    base: dict[str, str] = {"subnet": str(subnet)}
    if pool.gateway is not None:
        base["gateway"] = str(pool.gateway)
    if pool.ip_range is None and not pool.aux:
        return [base]
    first = int(subnet.network_address) + 1
    last = int(subnet.broadcast_address) - (1 if subnet.version == 4 else 0)
    if pool.ip_range is not None:
        first = max(first, int(pool.ip_range.network_address))
        last = min(last, int(pool.ip_range.broadcast_address))
    holes = sorted(int(a) for a in pool.aux.values() if first <= int(a) <= last)
    out: list[dict[str, str]] = []
    start = first
    for h in holes + [last + 1]:
        if start <= h - 1:
            make = ipaddress.ip_address
            out.append(dict(base, rangeStart=str(make(start)), rangeEnd=str(make(h - 1))))
        start = h + 1
    if not out:
        raise ConfigError(f"{pool.path}: aux_addresses leave no address to hand out")
    return out


def _host_local(spec: NetworkSpec, pools: list[Pool]) -> dict[str, Any]:
    v4 = [r for p in pools if p.subnet is not None and p.subnet.version == 4 for r in _ranges(p)]
    v6 = [r for p in pools if p.subnet is not None and p.subnet.version == 6 for r in _ranges(p)]
    ipam: dict[str, Any] = {"type": "host-local", "ranges": [rs for rs in (v4, v6) if rs]}
    if not spec.internal:
        routes = []
        if v4:
            routes.append({"dst": "0.0.0.0/0"})
        if v6:
            routes.append({"dst": "::/0"})
        ipam["routes"] = routes
    data_dir = os.environ.get(IPAM_DIR_ENV)
    if data_dir:
        ipam["dataDir"] = data_dir
    return ipam


def _bridge_chain(spec: NetworkSpec, bridge: str, ipam: dict[str, Any]) -> list[dict[str, Any]]:
    main: dict[str, Any] = {"type": "bridge", "bridge": bridge}
    if spec.internal:
        # No gateway address on the bridge, no NAT, no default route: the
        # containers talk to each other and to nothing else.
        main.update(isGateway=False, ipMasq=False)
    else:
        main.update(isGateway=True, ipMasq=spec.masquerade)
    main["hairpinMode"] = True
    if spec.mtu:
        main["mtu"] = spec.mtu
    main["capabilities"] = {"ips": True}
    main["ipam"] = ipam
    chain = [main]
    if not spec.internal:
        chain.append({"type": "portmap", "capabilities": {"portMappings": True}})
    chain.append({"type": "firewall", "ingressPolicy": "same-bridge"} if spec.isolate == "same-bridge"
                 else {"type": "firewall"})
    if not spec.icc:
        # enable_icc=false: the kernel's bridge port isolation (cnirun/plugins/isolation.py)
        chain.append({"type": "isolation"})
    chain.append({"type": "tuning", "capabilities": {"mac": True}})
    # No limit unless a container asks (--ingress-rate, cnirun update): then it passes prevResult through.
    chain.append({"type": "bandwidth", "capabilities": {"bandwidth": True}})
    return chain


def _vlan_chain(spec: NetworkSpec, ipam: dict[str, Any]) -> list[dict[str, Any]]:
    main: dict[str, Any] = {"type": spec.driver}
    if spec.parent:
        main["master"] = spec.parent  # absent: the plugin takes the default route's interface
    if spec.mode:
        main["mode"] = spec.mode
    elif spec.driver == "macvlan":
        main["mode"] = "bridge"
    if spec.mtu:
        main["mtu"] = spec.mtu
    main["capabilities"] = {"ips": True}
    main["ipam"] = ipam
    chain = [main]
    if spec.driver == "macvlan":
        chain.append({"type": "tuning", "capabilities": {"mac": True}})
    return chain


# -- files ------------------------------------------------------------------------

def file_specs(path: str | os.PathLike[str]) -> list[NetworkSpec]:
    """The `networks:` of a YAML file, checked (other top-level keys are ignored here)."""
    from .located import load

    doc = load(path)
    top = expect_mapping(doc, doc.data, (), "a mapping with a top-level networks: key")
    if "networks" not in top:
        doc.fail((), "no top-level networks: key: a network file defines networks: {NAME: {...}}")
    return parse_networks_section(doc, top["networks"])


def load_networks_file(path: str | os.PathLike[str], netconf_path: str | None = None) -> list[NetworkConfigList]:
    """The networks a YAML file defines, as runnable conflists (nothing installed).

    External networks are not defined by the file and are left out; the
    caller finds those in NETCONFPATH as usual.
    """
    from ..cni.runtime import CNI

    specs = [s for s in file_specs(path) if not s.external]
    planner = Planner(CNI(netconf_path=netconf_path).networks())
    return [planner.to_network(s, {"source": os.path.abspath(str(path))}) for s in specs]
