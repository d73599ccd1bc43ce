"""Attaching one container to several networks, and detaching it again.

Shared by every entry point (`cnirun exec`, `cnirun run`, the OCI hook), so
that there is one code path for "eth0, eth1, ... in order; undo all on
failure" and "DEL everything cached for this container".
"""
from __future__ import annotations

from . import cache as cnicache
from .config import NetworkConfigList
from .errors import CNIError
from .runtime import CNI, RuntimeConf
from .value import Value

TYPE_CHECKING = False  # no typing/dataclasses at run time: this is on the OCI hook path
if TYPE_CHECKING:
    from typing import Any

    from .options import ContainerNetworkSpec


class Attachment(Value):
    """One network attached to a container: which interface and what it got."""

    _fields = ("network", "ifname", "result")
    __match_args__ = _fields

    def __init__(self, network: str, ifname: str, result: dict[str, Any]) -> None:
        self.network = network
        self.ifname = ifname
        self.result = result

    def addresses(self) -> list[str]:
        ips = self.result.get("ips") or []
        out = [str(ip.get("address", "")) for ip in ips if isinstance(ip, dict)]
        for key in ("ip4", "ip6"):  # 0.1/0.2 results
            if isinstance(self.result.get(key), dict) and self.result[key].get("ip"):
                out.append(str(self.result[key]["ip"]))
        return [a for a in out if a]


class NetworkOptions(Value):
    """Per-network runtime arguments (capability args and CNI_ARGS)."""

    _fields = ("capability_args", "args")
    __match_args__ = _fields

    def __init__(
        self, capability_args: dict[str, Any] | None = None, args: list[tuple[str, str]] | None = None
    ) -> None:
        self.capability_args = {} if capability_args is None else capability_args
        self.args = [] if args is None else args


def ifname_for(index: int) -> str:
    return f"eth{index}"


def attach(
    cni: CNI,
    networks: list[NetworkConfigList],
    container_id: str,
    netns: str,
    options: list[NetworkOptions] | None = None,
) -> list[Attachment]:
    """ADD each network as eth0, eth1, ...; on any failure DEL those done, then raise."""
    done: list[Attachment] = []
    try:
        for i, net in enumerate(networks):
            opts = options[i] if options and i < len(options) else NetworkOptions()
            rt = RuntimeConf(
                container_id=container_id,
                netns=netns,
                ifname=ifname_for(i),
                args=list(opts.args),
                capability_args=dict(opts.capability_args),
            )
            result = cni.add(net, rt)
            done.append(Attachment(net.name, rt.ifname, result))
    except BaseException:
        for att in reversed(done):
            try:
                cni.delete(att.network, RuntimeConf(container_id=container_id, netns=netns, ifname=att.ifname))
            except CNIError:
                pass  # the original error matters more; gc retries from the cache
        raise
    return done


def cached_attachments(cni: CNI, container_id: str) -> list[cnicache.CachedAttachment]:
    """Every cached attachment of a container, in interface order."""
    atts = cnicache.list_attachments(cni.cache_dir, container_id=container_id)
    return sorted(atts, key=lambda a: (len(a.ifname), a.ifname))


def detach(
    cni: CNI,
    container_id: str,
    netns: str = "",
    attachments: list[cnicache.CachedAttachment] | None = None,
) -> list[CNIError]:
    """DEL every cached attachment of the container, last interface first.

    `attachments`: what cached_attachments() returned, when the caller has
    already listed them. Goes on past errors (each failed one keeps its cache
    file for `cnirun gc`) and returns them.
    """
    errors: list[CNIError] = []
    if attachments is None:
        attachments = cached_attachments(cni, container_id)
    for att in reversed(attachments):
        try:
            cni.delete(att.network_name, RuntimeConf(container_id=container_id, netns=netns, ifname=att.ifname))
        except CNIError as e:
            errors.append(e)
    return errors


def _declares(net: NetworkConfigList, capability: str) -> bool:
    return any(capability in p.capabilities for p in net.plugins)


def options_for(spec: "ContainerNetworkSpec", networks: list[NetworkConfigList]) -> list[NetworkOptions]:
    """Turn a container's --ip/--mac/-p into per-network runtime arguments.

    Shared by `cnirun run` and the OCI hook so both attach the same way:
    - ports go to the first network whose chain takes `portMappings` (two
      portmap chains would DNAT the same host port twice);
    - a static IP and a MAC go to eth0, the first network (as docker run's
      --ip/--mac-address apply to the first network); the IP must be in its subnet.
    Capabilities are used when the chain declares them, else CNI_ARGS
    (IP=/MAC= with IgnoreUnknown, which host-local, bridge and tuning read).
    """
    from .errors import ArgumentError
    from .options import check_cni_arg, ip_in_network

    opts = [NetworkOptions() for _ in networks]
    if not networks:
        return opts

    def set_arg(o: NetworkOptions, key: str, value: str) -> None:
        check_cni_arg(key, value)  # the values come from container labels: no smuggled pairs
        if ("IgnoreUnknown", "1") not in o.args:
            o.args.append(("IgnoreUnknown", "1"))
        o.args.append((key, value))

    if spec.ports:
        target = next((i for i, n in enumerate(networks) if _declares(n, "portMappings")), None)
        if target is None:
            raise ArgumentError(
                f"published ports need a network with the portmap plugin (capabilities portMappings); "
                f"none of {', '.join(n.name for n in networks)} has one"
            )
        opts[target].capability_args["portMappings"] = [p.to_cni() for p in spec.ports]
    if spec.ip:
        subnets = networks[0].subnets()
        if not ip_in_network(spec.ip, subnets):
            raise ArgumentError(
                f"IP address {spec.ip} is outside network {networks[0].name}'s subnet {', '.join(subnets)}: "
                "pick an address inside it"
            )
        if _declares(networks[0], "ips"):
            opts[0].capability_args["ips"] = [spec.ip]
        else:
            set_arg(opts[0], "IP", spec.ip)
    if spec.mac:
        if _declares(networks[0], "mac"):
            opts[0].capability_args["mac"] = spec.mac
        else:
            set_arg(opts[0], "MAC", spec.mac)
    return opts


def reattach(
    cni: CNI, container_id: str, netns: str, attachments: list[cnicache.CachedAttachment]
) -> list[Attachment]:
    """Attach again, into a new netns, what a container had: same networks, interfaces and options.

    For a container whose netns holder was restarted (dockerd restarted, the
    helper was stopped): the old netns is gone, so each cached attachment is
    DELeted (plugins clean up the host side, cnirun sweeps what bridge leaves)
    and ADDed again with its cached config and arguments, asking for the
    address it had where the chain takes the `ips` capability. Raises like
    attach(), after undoing what it re-added.
    """
    from .config import conflist_from_bytes
    from .errors import CNIError
    from .runtime import NO_NETNS

    plans: list[tuple[NetworkConfigList, RuntimeConf]] = []
    for att in sorted(attachments, key=lambda a: (len(a.ifname), a.ifname)):
        net = conflist_from_bytes(att.config, f"cached config of {att.path}") if att.config else cni.network(
            att.network_name
        )
        caps = dict(att.capability_args)
        old = Attachment(att.network_name, att.ifname, att.result or {}).addresses()
        if old and "ips" not in caps and _declares(net, "ips"):
            caps["ips"] = old
        plans.append((net, RuntimeConf(container_id, netns, att.ifname, [(k, v) for k, v in att.cni_args], caps)))
    for net, rt in reversed(plans):
        # Never the cached path: a /proc/<pid> path may be another process's netns by now.
        cni.delete(net.name, RuntimeConf(container_id=container_id, ifname=rt.ifname, netns=NO_NETNS))
    done: list[Attachment] = []
    try:
        for net, rt in plans:
            try:
                result = cni.add(net, rt)
            except CNIError:
                if "ips" not in rt.capability_args:
                    raise
                # The old address was taken meanwhile: any address beats none.
                rt.capability_args = {k: v for k, v in rt.capability_args.items() if k != "ips"}
                result = cni.add(net, rt)
            done.append(Attachment(net.name, rt.ifname, result))
    except BaseException:
        for a in reversed(done):
            try:
                cni.delete(a.network, RuntimeConf(container_id=container_id, netns=netns, ifname=a.ifname))
            except CNIError:
                pass
        raise
    return done
