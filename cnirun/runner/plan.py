"""Run planning: resolve and validate a run before anything is made on the host.

plan(req) turns a RunRequest into a Plan: the networks (from the CNI config
dir or -f), per-network options (static IPs, MAC, published ports) and, when
ports are published, the port lock. All bad input is refused here, as one
ArgumentError/ConfigError, so no engine mode has anything to undo for it.

Published ports: the lock is held from the "is the host port free" check
(portlock.reserve, the same check the OCI hook makes) until ADD has cached
the mappings, so two runs cannot both take one port; the engine modes
release it (Plan.release_ports) once ADD is done. Docker hook mode releases
it before `docker start`: the hook checks again under the lock.
"""
from __future__ import annotations

import os
TYPE_CHECKING = False  # typing costs ~7 ms of start-up on `cnirun run`: annotations only

from ..attach import NetworkOptions
from ..config import NetworkConfigList
from ..errors import ArgumentError, ConfigError
from ..request import RunRequest
from ..value import Record

if TYPE_CHECKING:
    from typing import Any


class Plan(Record):
    req: RunRequest
    cni: Any
    networks: list[NetworkConfigList]
    options: list[NetworkOptions]
    ports: list[Any]
    file_networks: list[str]  # defined by -f only: invisible to the hook
    ips: dict[str, str]  # network name -> static IP
    port_lock: Any  # held from the port check until ADD has cached the mappings

    _fields = ('req', 'cni', 'networks', 'options', 'ports', 'file_networks', 'ips', 'port_lock')
    _defaults = {'ports': list, 'file_networks': list, 'ips': dict, 'port_lock': None}

    def release_ports(self) -> None:
        if self.port_lock is not None:
            self.port_lock.release()
            self.port_lock = None


def _load_networks(req: RunRequest, cni: Any) -> tuple[list[NetworkConfigList], list[str]]:
    """The requested networks in order, and the names of those taken from -f."""
    from ..defaults import default_network_name

    from_file: dict[str, NetworkConfigList] = {}
    if req.file:
        try:
            from ..compose.networks import load_networks_file  # type: ignore[import-not-found]
        except ImportError:
            raise ConfigError("-f needs cnirun's compose support (cnirun.compose), which is not installed") from None
        from_file = {n.name: n for n in load_networks_file(req.file)}
    names = req.networks or [default_network_name()]
    if len(set(names)) != len(names):
        raise ArgumentError(f"network listed twice in --network {','.join(names)}: each network attaches once")
    if names == ["all"]:
        return cni.networks_named(names), []
    nets = [from_file[n] if n in from_file else cni.network(n) for n in names]
    return nets, [n for n in names if n in from_file]


def _host_local_dir(net: NetworkConfigList) -> str:
    for p in net.plugins:
        ipam = p.raw.get("ipam")
        if isinstance(ipam, dict) and ipam.get("type") == "host-local":
            return os.path.join(ipam.get("dataDir") or "/var/lib/cni/networks", net.name)
    return ""


def _wants(net: NetworkConfigList, capability: str) -> bool:
    return any(capability in p.capabilities for p in net.plugins)


def _static_ips(req: RunRequest, nets: list[NetworkConfigList]) -> dict[str, str]:
    """Network name -> static IP, from --ip (the first network) and per-network IPs."""
    from ..options import parse_ip

    names = [n.name for n in nets]
    ips: dict[str, str] = {}
    for name, raw in req.network_ips.items():
        if name not in names:
            raise ArgumentError(
                f"static IP {raw} is for network {name!r}, which this container does not join "
                f"({', '.join(names)}): add --network {name} or drop the IP"
            )
        ips[name] = parse_ip(raw)
    if req.ip:
        ip = parse_ip(req.ip)
        if ips.get(names[0], ip) != ip:
            raise ArgumentError(f"--ip {ip} and {ips[names[0]]} both name the address on {names[0]}: keep one")
        ips[names[0]] = ip
    return ips


def _set_arg(opts: NetworkOptions, key: str, value: str) -> None:
    from ..options import check_cni_arg

    check_cni_arg(key, value)
    if ("IgnoreUnknown", "1") not in opts.args:
        opts.args.append(("IgnoreUnknown", "1"))
    opts.args.append((key, value))


def _apply_ip(net: NetworkConfigList, opts: NetworkOptions, ip: str) -> None:
    """Validate a static IP against the network and hand it to its chain (ips capability or CNI_ARGS IP=)."""
    from ..options import ip_in_network

    subnets = net.subnets()
    if not ip_in_network(ip, subnets):
        raise ArgumentError(f"--ip {ip} is outside network {net.name}'s subnet {', '.join(subnets)}")
    d = _host_local_dir(net)
    if d and os.path.exists(os.path.join(d, ip)):
        raise ArgumentError(f"--ip {ip} is already taken on network {net.name}: pick another address")
    if _wants(net, "ips"):
        opts.capability_args["ips"] = [ip]
    else:
        _set_arg(opts, "IP", ip)


def plan(req: RunRequest) -> Plan:
    """Resolve and validate everything before anything is made on the host."""
    from ..invoke import find_plugin
    from ..options import parse_mac, parse_ports
    from ..runtime import CNI

    if os.geteuid() != 0:
        raise ArgumentError("cnirun run needs root (CAP_NET_ADMIN) to run CNI plugins: run it with sudo")
    cni = CNI()
    nets, from_file = _load_networks(req, cni)
    for net in nets:
        for p in net.plugins:
            find_plugin(p.type, cni.plugin_dirs)
    if req.spec.hostname:
        from ..options import parse_hostname

        parse_hostname(req.spec.hostname)  # it goes into hosts files
    ports = parse_ports(",".join(req.publish)) if req.publish else []
    mac = parse_mac(req.mac) if req.mac else ""
    opts = [NetworkOptions() for _ in nets]
    ips = _static_ips(req, nets)
    for net, o in zip(nets, opts):
        if net.name in ips:
            _apply_ip(net, o, ips[net.name])
    if mac:
        if _wants(nets[0], "mac"):
            opts[0].capability_args["mac"] = mac
        else:
            _set_arg(opts[0], "MAC", mac)
    result = Plan(req=req, cni=cni, networks=nets, options=opts, ports=ports, file_networks=from_file, ips=ips)
    if ports:
        target = next((i for i, n in enumerate(nets) if _wants(n, "portMappings")), None)
        if target is None:
            raise ArgumentError(
                f"-p needs a network with the portmap plugin (portMappings capability); "
                f"{', '.join(n.name for n in nets)} has none"
            )
        opts[target].capability_args["portMappings"] = [p.to_cni() for p in ports]
        # Two runs publishing one port at the same moment: the second waits
        # here until the first has cached its mappings, then sees them.
        from ..portlock import reserve
        from ..state import container_display

        result.port_lock = reserve(cni, ports, display=container_display)
    return result
