"""The CNI conflists compose `networks:` entries become (the entries themselves: network_spec.py).

Conversion (`Planner.conflist`) picks what the file leaves open (subnet,
bridge name) so that no two networks share a bridge or overlap, and refuses
explicit subnets that collide with another network or a host route.
"""
from __future__ import annotations

import hashlib
import ipaddress
import json
import os
from typing import Any

from ..cni.config import (
    BANDWIDTH_CAPABILITY, FIREWALL_POLICY_CAPABILITY, IPS_CAPABILITY, MAC_CAPABILITY, META_KEY, PORT_CAPABILITY,
    NetworkConfigList, bridge_of, conflist_from_bytes,
)
from ..core.errors import ConfigError
from .network_spec import IPNet, NetworkSpec, Pool, file_specs

CNI_VERSION = "1.0.0"  # the reference plugins 1.1.x speak up to 1.0.0
DEFAULT_POOL = "10.89.0.0/16"
POOL_ENV = "CNIRUN_SUBNET_POOL"
IPAM_DIR_ENV = "CNIRUN_IPAM_DATA_DIR"


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
        taken = {(bridge_of(n), n.name) for n in self.existing}
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
    if not data_dir:
        from ..core.paths import host_local_data_dir, rootless

        # A user's network keeps its reservations in their runtime dir (host-local's own default is root's).
        data_dir = host_local_data_dir() if rootless() else ""
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
    main["capabilities"] = {IPS_CAPABILITY: True}
    main["ipam"] = ipam
    chain = [main]
    if not spec.internal:
        chain.append({"type": "portmap", "capabilities": {PORT_CAPABILITY: True}})
    chain.append({"type": "firewall", "ingressPolicy": "same-bridge"} if spec.isolate == "same-bridge"
                 else {"type": "firewall"})
    if not spec.icc:
        # enable_icc=false: the kernel's bridge port isolation (cnirun/plugins/isolation.py)
        chain.append({"type": "isolation"})
    chain.append({"type": "tuning", "capabilities": {MAC_CAPABILITY: True}})
    # No limit unless a container asks (--ingress-rate, cnirun update): then it passes prevResult through.
    chain.append({"type": "bandwidth", "capabilities": {BANDWIDTH_CAPABILITY: True}})
    # No policy unless a container asks (--ingress-allow, --egress-allow); without one cnirun's runtime runs no
    # program for it (cni/policy_record.py). Last: it filters in the container's netns and needs the result's gateways.
    chain.append({"type": "cnirun-policy", "capabilities": {FIREWALL_POLICY_CAPABILITY: True}})
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
    main["capabilities"] = {IPS_CAPABILITY: True}
    main["ipam"] = ipam
    chain = [main]
    if spec.driver == "macvlan":
        chain.append({"type": "tuning", "capabilities": {MAC_CAPABILITY: True}})
    return chain


def load_networks_file(path: str | os.PathLike[str], netconf_path: str | None = None) -> list[NetworkConfigList]:
    """The networks a YAML file defines, as runnable conflists (nothing installed).

    External networks are not defined by the file and are left out; the
    caller finds those in NETCONFPATH as usual.
    """
    from ..cni.runtime import CNI

    specs = [s for s in file_specs(path) if not s.external]
    planner = Planner(CNI(netconf_path=netconf_path).networks())
    return [planner.to_network(s, {"source": os.path.abspath(str(path))}) for s in specs]
