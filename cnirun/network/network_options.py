"""Per-network options: how a container's ports, static addresses, MAC and rate limits become each ADD's arguments.

`options_for` is the one place run options are built (every entry point
calls it); `keep_addresses` asks again for what a container had at its last
start.
"""
from __future__ import annotations

import os

from ..cni import cache as cnicache
from ..cni.config import (
    BANDWIDTH_CAPABILITY, IPS_CAPABILITY, MAC_CAPABILITY, PORT_CAPABILITY, NetworkConfigList, bridge_of,
    conflist_from_bytes, host_local_dirs,
)
from ..core.errors import ArgumentError
from ..core.value import Value
from .attachment import Attachment

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from ..cni.runtime import CNI
    from .options import ContainerNetworkSpec


class NetworkOptions(Value):
    """Per-network runtime arguments (capability args and CNI_ARGS), and the container's DNS names there."""

    _fields = ("capability_args", "args", "names", "fallback")
    __match_args__ = _fields

    def __init__(
        self, capability_args: dict[str, Any] | None = None, args: list[tuple[str, str]] | None = None,
        names: list[str] | None = None, fallback: "NetworkOptions | None" = None,
    ) -> None:
        self.capability_args = {} if capability_args is None else capability_args
        self.args = [] if args is None else args
        self.names = [] if names is None else names  # name, aliases: what the network's resolver answers for
        # What to ADD with when the ADD with these options fails: the same without the
        # addresses and MAC keep_addresses asked for again (a wish, never a reason to fail).
        self.fallback = fallback

    def pinned(self) -> list[str]:
        """The addresses these options ask for (the ips capability, else host-local's IP= arguments)."""
        ips = self.capability_args.get(IPS_CAPABILITY)
        if isinstance(ips, list):
            return [str(ip) for ip in ips]
        return [ip for k, v in self.args if k == "IP" for ip in v.split(",") if ip]

    def set_arg(self, key: str, value: str) -> None:
        """A CNI_ARGS pair (with IgnoreUnknown, which host-local, bridge and tuning read); checked for separators."""
        from .options import check_cni_arg

        check_cni_arg(key, value)
        if ("IgnoreUnknown", "1") not in self.args:
            self.args.append(("IgnoreUnknown", "1"))
        self.args.append((key, value))


def declares(net: NetworkConfigList, capability: str) -> bool:
    """Whether a plugin of `net`'s chain takes `capability`."""
    return any(capability in p.capabilities for p in net.plugins)


def _host_local_dir(net: NetworkConfigList) -> str:
    """The first of `net`'s host-local reservation directories ('' when its chain has no host-local)."""
    return next(iter(host_local_dirs(net)), "")


def options_for(
    spec: ContainerNetworkSpec, networks: list[NetworkConfigList], cni: CNI | None = None, container_id: str = ""
) -> list[NetworkOptions]:
    """Turn a container's ports, static IPs and MAC into per-network runtime arguments.

    The one place run options are built, for `cnirun run` (every mode), the
    OCI hook and compose:
    - ports go to the first network whose chain takes `portMappings` (two
      portmap chains would DNAT the same host port twice);
    - a static IP goes to the network it names (spec.ips; a bare --ip is the
      first network's), checked against the network's subnets and host-local's
      reservations; an IPv6 one (spec.ips6, --ip6) likewise, and only to a
      network with an IPv6 subnet; both go in one `ips` list (host-local
      takes one address per range set);
    - a MAC goes to eth0, as docker run's --mac-address does, unless another
      container's attachment in `cni`'s cache has it on the same network or
      bridge (mac_user; `container_id`'s own do not count);
    - rate limits go to the first network whose chain takes `bandwidth`
      (rates.capability; one limit per container, like its ports).
    Capabilities are used when the chain declares them, else CNI_ARGS
    (IP=/MAC= with IgnoreUnknown).
    """
    opts = [NetworkOptions(names=spec.names_on(n.name)) for n in networks]
    if not networks:
        return opts
    names = [n.name for n in networks]
    for name, ip in [*spec.ips.items(), *spec.ips6.items()]:
        if name not in names:
            raise ArgumentError(
                f"static IP {ip} is for network {name!r}, which this container does not join "
                f"({', '.join(names)}): add --network {name} or drop the IP"
            )
    if spec.ports:
        target = _first_declaring(networks, PORT_CAPABILITY,
                                  "published ports need a network with the portmap plugin (capabilities portMappings)",
                                  "")
        opts[target].capability_args[PORT_CAPABILITY] = [p.to_cni() for p in spec.ports]
    if spec.ingress_rate is not None or spec.egress_rate is not None:
        from .rates import capability

        target = _first_declaring(networks, BANDWIDTH_CAPABILITY,
                                  "rate limits need a network with the bandwidth plugin (capabilities bandwidth)",
                                  ": add it to the network's chain or drop the rate")
        opts[target].capability_args[BANDWIDTH_CAPABILITY] = capability(spec.ingress_rate, spec.egress_rate)
    _firewall_policy(spec, networks, opts)
    for net, o in zip(networks, opts):
        _static_ips(spec, net, o)
    if spec.mac:
        _static_mac(cni, networks[0], opts[0], spec.mac, container_id)
    return opts


def _firewall_policy(spec: ContainerNetworkSpec, networks: list[NetworkConfigList], opts: list[NetworkOptions]) -> None:
    """The policy goes to every network: a network without the plugin would be a way round it."""
    from .policies import CAPABILITY, capability

    value = capability(spec.ingress_allow, spec.egress_allow)
    if value is None:
        return
    lacking = [n.name for n in networks if not declares(n, CAPABILITY)]
    if lacking:
        raise ArgumentError(
            f"a firewall policy (--ingress-allow/--egress-allow) needs the cnirun-policy plugin on every network "
            f"of the container; {', '.join(lacking)} has none: add "
            '{"type": "cnirun-policy", "capabilities": {"firewallPolicy": true}} to its chain, or leave it out'
        )
    for o in opts:
        o.capability_args[CAPABILITY] = value


def pinned_ranges(net: NetworkConfigList, ips: list[str]) -> NetworkConfigList | None:
    """`net` with each host-local range set that holds none of `ips` in its ranges, though one of its
    subnets does (outside the span of its ranges: a hole between two is an aux_address, reserved),
    narrowed to that one address (its subnet and gateway kept); None when there is none such.

    A network's ranges are where addresses are handed out (compose's ip_range); a pinned address may
    be anywhere in the subnet, as Docker allows. host-local takes a requested address only from its
    ranges, so the ADD that pins one outside them sees a range of just that address; it records it as
    its last address there, which later ADDs, not in any of their ranges, start again from the first
    range. The cached config keeps the narrowed ranges for the DEL, which frees by container ID.
    """
    from ..core import cidr
    from ..core.jsonfast import dumps, loads

    def span(r: dict[str, Any]) -> tuple[int, int, int] | None:  # (version, first, last) of a range
        try:
            net_ = cidr.parse(str(r.get("subnet", "")))
            first = cidr.parse(str(r["rangeStart"])).value if r.get("rangeStart") else net_.network + 1
            last = cidr.parse(str(r["rangeEnd"])).value if r.get("rangeEnd") else \
                net_.last - (1 if net_.version == 4 else 0)
        except (ValueError, KeyError):
            return None
        return net_.version, first, last

    raw = loads(dumps(net.raw))
    changed = False
    for plugin in raw.get("plugins") or []:
        ipam = plugin.get("ipam") if isinstance(plugin, dict) else None
        if not isinstance(ipam, dict) or ipam.get("type") != "host-local" or not isinstance(ipam.get("ranges"), list):
            continue
        for i, rs in enumerate(ipam["ranges"]):
            if not isinstance(rs, list) or not all(isinstance(r, dict) for r in rs):
                continue
            for ip in ips:
                try:
                    addr = cidr.parse(ip)
                except ValueError:
                    continue
                spans = [(r, span(r)) for r in rs]
                mine = [sp for _, sp in spans if sp and sp[0] == addr.version]
                if any(first <= addr.value <= last for _, first, last in mine):
                    continue  # host-local can hand it out as it is
                if mine and min(f for _, f, _ in mine) <= addr.value <= max(la for _, _, la in mine):
                    continue  # a hole between ranges: an aux_address, reserved (host-local refuses it)
                # Inside a subnet, never its network address nor (IPv4) its broadcast address.
                home = next((r for r, sp in spans if sp and sp[0] == addr.version
                             and _host_address(cidr.parse(str(r["subnet"])), addr.value)), None)
                if home is None:
                    continue
                narrowed = {k: v for k, v in home.items() if k in ("subnet", "gateway")}
                ipam["ranges"][i] = [dict(narrowed, rangeStart=ip, rangeEnd=ip)]
                changed = True
    if not changed:
        return None
    return conflist_from_bytes(dumps(raw).encode(), net.source)


def _host_address(subnet: Any, value: int) -> bool:
    """Whether `value` is an address a container may have in `subnet` (a cidr.Net)."""
    last = subnet.last - (1 if subnet.version == 4 else 0)
    return subnet.network < value <= last


def _first_declaring(networks: list[NetworkConfigList], capability: str, need: str, hint: str) -> int:
    """The index of the first network whose chain takes `capability`; none: ArgumentError `need`, `hint`."""
    target = next((i for i, n in enumerate(networks) if declares(n, capability)), None)
    if target is None:
        raise ArgumentError(f"{need}; none of {', '.join(n.name for n in networks)} has one{hint}")
    return target


def _static_ips(spec: ContainerNetworkSpec, net: NetworkConfigList, o: NetworkOptions) -> None:
    """The --ip/--ip6 addresses asked for on `net`, checked, into `o` (the ips capability, else IP=)."""
    from .options import ip_in_network

    wanted = [ip for ip in (spec.ips.get(net.name), spec.ips6.get(net.name)) if ip]
    if not wanted:
        return
    subnets = net.subnets()
    if net.name in spec.ips6:
        _check_ip6(net.name, spec.ips6[net.name], spec.ips.get(net.name, ""), subnets)
    for ip in wanted:
        if not ip_in_network(ip, subnets):
            raise ArgumentError(
                f"IP address {ip} is outside network {net.name}'s subnet {', '.join(subnets)}: "
                "pick an address inside it"
            )
        d = _host_local_dir(net)
        if d and os.path.exists(os.path.join(d, ip)):
            raise ArgumentError(f"IP address {ip} is already taken on network {net.name}: pick another address")
    if declares(net, IPS_CAPABILITY):
        o.capability_args[IPS_CAPABILITY] = wanted
    elif len(wanted) > 1:
        raise ArgumentError(
            f"network {net.name}'s chain does not take the ips capability and host-local reads one IP= "
            f"from CNI_ARGS: give either {wanted[0]} or {wanted[1]}, not both"
        )
    else:
        o.set_arg("IP", wanted[0])


def _static_mac(cni: CNI | None, net: NetworkConfigList, o: NetworkOptions, mac: str, container_id: str) -> None:
    """--mac-address on eth0's network `net`, unless another container has it there (mac_user)."""
    other = mac_user(cni, net, mac, container_id) if cni is not None else ""
    if other:
        raise ArgumentError(
            f"MAC address {mac} is already used on network {net.name} by container {other[:12]}: "
            "pick another MAC address (or none)"
        )
    if declares(net, MAC_CAPABILITY):
        o.capability_args[MAC_CAPABILITY] = mac
    else:
        o.set_arg("MAC", mac)


def _check_ip6(network: str, ip6: str, ip: str, subnets: list[str]) -> None:
    """--ip6 needs a network with an IPv6 subnet, and one IPv6 address per network."""
    if subnets and not any(":" in s for s in subnets):
        raise ArgumentError(
            f"--ip6 {ip6}: network {network} has no IPv6 subnet ({', '.join(subnets)}): "
            "use a dual-stack network (cnirun network create --ipv6) or drop --ip6"
        )
    if ":" in ip:
        raise ArgumentError(f"two IPv6 addresses for network {network} ({ip} and {ip6}): keep one")


def _macs(att: cnicache.CachedAttachment) -> set[str]:
    """The MACs a cached attachment has or asks for (a pending ADD has no result yet)."""
    out = {Attachment.from_cache(att).mac()}
    out.add(str(att.capability_args.get(MAC_CAPABILITY) or "").lower())
    out.update(str(v).lower() for k, v in att.cni_args if k == "MAC")
    return out - {""}


def mac_user(cni: CNI, net: NetworkConfigList, mac: str, container_id: str = "") -> str:
    """The ID of another container whose cached attachment on `net`, or on its bridge, has `mac`; '' if none.

    Two interfaces with one MAC on a bridge steal each other's frames: a MAC
    must not be copied from a container on the same layer 2.
    """
    from ..core import jsonfast as json

    mac = mac.lower()
    bridge = bridge_of(net)
    for att in cnicache.list_attachments(cni.cache_dir):
        if att.container_id == container_id:
            continue
        if att.network_name != net.name:
            if not bridge:
                continue
            try:
                if bridge_of(json.loads(att.config)) != bridge:
                    continue
            except ValueError:
                continue
        if mac in _macs(att):
            return att.container_id
    return ""


def _reserved_by(data_dir: str, ip: str) -> str:
    """The container ID host-local's reservation of `ip` names ('' when it is free or not host-local's)."""
    if not data_dir:
        return ""
    try:
        with open(os.path.join(data_dir, ip), "rb") as f:
            return f.read(512).decode(errors="replace").splitlines()[0].strip()
    except (OSError, IndexError):
        return ""


def keep_addresses(
    cni: CNI, net: NetworkConfigList, opts: NetworkOptions, had: dict[str, Any], container_id: str
) -> list[str]:
    """Ask again for the addresses and MAC the container had on `net` (had: {"ips": [...], "mac": ...}).

    Only where `opts` ask for none of their own (--ip, --mac), through the
    `ips`/`mac` capabilities where the chain takes them, else CNI_ARGS
    (host-local's IP=, one address; tuning's MAC=). An address outside the
    network's subnets now or reserved by another container meanwhile, and a
    MAC another container's attachment there has (mac_user), are not asked
    for; opts.fallback is set to the options without the wishes, for an ADD
    that fails with them. Returns a note for each thing that cannot be kept.
    """
    from .options import ip_in_network

    notes: list[str] = []
    caps = opts.capability_args
    keys = {k for k, _ in opts.args}
    ips: list[str] = []
    if IPS_CAPABILITY not in caps and "IP" not in keys:
        subnets, data_dir = net.subnets(), _host_local_dir(net)
        for ip in had.get("ips") or []:
            holder = _reserved_by(data_dir, ip)
            if not ip_in_network(ip, subnets):
                notes.append(f"network {net.name}: {ip} is outside its subnets now: a new address")
            elif holder and holder != container_id:
                notes.append(f"network {net.name}: {ip} is taken by container {holder[:12]} now: a new address")
            else:
                ips.append(ip)
    mac = str(had.get("mac") or "")
    if mac and (MAC_CAPABILITY in caps or "MAC" in keys):
        mac = ""
    if mac and (declares(net, MAC_CAPABILITY) or any(p.type == "tuning" for p in net.plugins)):
        other = mac_user(cni, net, mac, container_id)
        if other:
            notes.append(f"network {net.name}: MAC {mac} is used by container {other[:12]} now: a new MAC")
            mac = ""
    else:
        mac = ""  # the chain cannot set a MAC
    if not ips and not mac:
        return notes
    opts.fallback = NetworkOptions(dict(caps), list(opts.args), opts.names)
    if ips and declares(net, IPS_CAPABILITY):
        caps[IPS_CAPABILITY] = ips
    elif ips:
        opts.set_arg("IP", ips[0])
    if mac and declares(net, MAC_CAPABILITY):
        caps[MAC_CAPABILITY] = mac
    elif mac:
        opts.set_arg("MAC", mac)
    return notes
