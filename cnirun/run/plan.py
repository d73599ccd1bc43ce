"""Run planning: resolve and validate a run before anything is made on the host.

plan(req) turns a RunRequest into a Plan: the networks (from the CNI config
dir or -f), per-network options (static IPs, MAC, published ports) and, when
ports are published, the port lock. All bad input is refused here, as one
ArgumentError/ConfigError, so no engine mode has anything to undo for it.

Published ports: the ports are claimed from the "is the host port free"
check (portlock.reserve, the same check the OCI hook makes, under the port
lock) until ADD has cached the mappings, so two runs cannot both take one
port; the engine modes release the claim (Plan.release_ports) once ADD is
done. Docker hook mode releases it before `docker start`: the hook checks
and claims again.
"""
from __future__ import annotations

import os
TYPE_CHECKING = False  # start-up cost: see cnirun.core

from ..cni.config import NetworkConfigList
from ..core.errors import ArgumentError, ConfigError
from .request import RunRequest
from ..core.value import Record

if TYPE_CHECKING:
    from typing import Any

    from ..network.network_options import NetworkOptions
    from ..network.options import ContainerNetworkSpec


class Plan(Record):
    req: RunRequest
    cni: Any
    networks: list[NetworkConfigList]
    netspec: ContainerNetworkSpec  # what to attach: also what hook mode hands the hook as labels
    options: list[NetworkOptions]  # network_options.options_for(netspec, networks)
    file_networks: list[str]  # defined by -f only: invisible to the hook
    port_lock: Any  # portlock.PortLock: the ports' claim, from the check until ADD has cached the mappings

    _fields = ('req', 'cni', 'networks', 'netspec', 'options', 'file_networks', 'port_lock')
    _defaults = {'file_networks': list, 'port_lock': None}

    @property
    def ports(self) -> list[Any]:
        return self.netspec.ports

    @property
    def ips(self) -> dict[str, str]:
        return self.netspec.ips

    def release_ports(self) -> None:
        if self.port_lock is not None:
            self.port_lock.release()
            self.port_lock = None


def _load_networks(req: RunRequest, cni: Any) -> tuple[list[NetworkConfigList], list[str]]:
    """The requested networks in order, and the names of those taken from -f."""
    from ..cni.defaults import default_network_name

    from_file: dict[str, NetworkConfigList] = {}
    if req.file:
        try:
            from ..netstore.networks import load_networks_file  # type: ignore[import-not-found]
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


def _static_ips(req: RunRequest, nets: list[NetworkConfigList], v6: bool = False) -> dict[str, str]:
    """Network name -> static IP, from --ip (the first network) and per-network IPs (v6: --ip6's)."""
    from ..network.options import parse_ip, parse_ip6

    parse = parse_ip6 if v6 else parse_ip
    flag, single, per_net = ("--ip6", req.ip6, req.network_ips6) if v6 else ("--ip", req.ip, req.network_ips)
    names = [n.name for n in nets]
    ips: dict[str, str] = {}
    for name, raw in per_net.items():
        if name not in names:
            raise ArgumentError(
                f"static IP {raw} is for network {name!r}, which this container does not join "
                f"({', '.join(names)}): add --network {name} or drop the IP"
            )
        ips[name] = parse(raw)
    if single:
        ip = parse(single)
        if ips.get(names[0], ip) != ip:
            raise ArgumentError(f"{flag} {ip} and {ips[names[0]]} both name the address on {names[0]}: keep one")
        ips[names[0]] = ip
    return ips


def _aliases(req: RunRequest, nets: list[NetworkConfigList]) -> dict[str, list[str]]:
    """DNS names: the container name and --network-alias on every network, compose's per network."""
    from ..network.options import parse_hostname

    names = [req.spec.name] if req.spec.name else []  # Docker's name rules (cnirun.dns skips one with '_')
    names += [parse_hostname(a, "--network-alias") for a in req.aliases]
    out = {"": list(dict.fromkeys(names))} if names else {}
    for net, extra in req.network_aliases.items():
        if net not in [n.name for n in nets]:
            raise ArgumentError(f"aliases {', '.join(extra)} are for network {net!r}, which this container "
                                f"does not join: add --network {net}")
        out[net] = [parse_hostname(a, "alias") for a in extra]
    return out


def plan(req: RunRequest) -> Plan:
    """Resolve and validate everything before anything is made on the host."""
    from ..cni.invoke import find_plugin
    from ..network.network_options import options_for
    from ..network.options import ContainerNetworkSpec, parse_mac, parse_ports
    from ..cni.runtime import CNI

    if os.geteuid() != 0:
        raise ArgumentError("cnirun run needs root (CAP_NET_ADMIN) to run CNI plugins: run it with sudo")
    cni = CNI()
    nets, from_file = _load_networks(req, cni)
    for net in nets:
        for p in net.plugins:
            find_plugin(p.type, cni.plugin_dirs)
    if req.spec.hostname:
        from ..network.options import parse_hostname

        parse_hostname(req.spec.hostname)  # it goes into hosts files
    ports = parse_ports(",".join(req.publish)) if req.publish else []
    rates = [None, None]
    if req.ingress_rate or req.egress_rate:
        from ..network.rates import parse_rate

        rates = [parse_rate(r, f"--{k}") if r else None
                 for r, k in ((req.ingress_rate, "ingress-rate"), (req.egress_rate, "egress-rate"))]
    allow: list[Any] = [None, None]
    if req.ingress_allow or req.egress_allow:
        from ..network.policies import parse_allow

        allow = [parse_allow(v, f"--{k}") if v else None
                 for v, k in ((req.ingress_allow, "ingress-allow"), (req.egress_allow, "egress-allow"))]
    netspec = ContainerNetworkSpec(
        networks=[n.name for n in nets], ports=ports, ips=_static_ips(req, nets),
        mac=parse_mac(req.mac) if req.mac else "", ingress_rate=rates[0], egress_rate=rates[1],
        ips6=_static_ips(req, nets, v6=True), aliases=_aliases(req, nets),
        ingress_allow=allow[0], egress_allow=allow[1],
    )
    result = Plan(req=req, cni=cni, networks=nets, netspec=netspec, options=options_for(netspec, nets, cni),
                  file_networks=from_file)
    if ports:
        # Two runs publishing one port at the same moment: the second waits
        # here until the first has cached its mappings, then sees them.
        from ..network.portlock import reserve
        from ..state.runs import container_display

        result.port_lock = reserve(cni, ports, display=container_display)
    return result


def record_run(p: Plan, engine: str, **fields: Any) -> tuple[Any, Any]:
    """A new run's state dir and its metadata, written before anything exists (gc finds the run whatever
    happens next); `fields` are the RunMeta fields the mode sets beyond the plan's. Returns (state, meta)."""
    from ..state.runs import RunMeta, RunState
    from .caches import cni_env

    spec = p.req.spec
    st = RunState.create()
    meta = RunMeta(id=st.id, engine=engine, image=spec.image, name=spec.name, networks=[n.name for n in p.networks],
                   remove=spec.remove, cni_env=cni_env(p.cni), borrowed=spec.borrowed_volumes(), **fields)
    st.write_meta(meta)
    return st, meta
