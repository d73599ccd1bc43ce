"""The project's running containers as their peers see them: addresses per network, and the
hosts files that name every peer on a shared network without DNS, rewritten in place whenever
services come or go."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .labels import network_names
from .project import Project, Service


@dataclass
class Member:
    """A running service container as its peers see it."""

    service: Service
    container: str
    state: Any  # cnirun.state.runs.RunState
    addresses: dict[str, list[str]] = field(default_factory=dict)  # network name -> IPs



def states_by_name() -> dict[str, Any]:
    from ..state.runs import list_states

    out: dict[str, Any] = {}
    for st in list_states():
        meta = st.read_meta()
        if meta is not None and meta.name:
            out[meta.name] = (st, meta)
    return out


def members(project: Project) -> list[Member]:
    """The project's services whose run is up, with their addresses per network."""
    from ..cni import cache as cnicache
    from ..network.attachment import Attachment
    from ..run.caches import cni_for

    states = states_by_name()
    out: list[Member] = []
    for svc in project.services:
        for cname in project.container_names(svc):
            if cname not in states:
                continue
            st, meta = states[cname]
            if meta.phase != "running":
                continue
            m = Member(svc, cname, st)
            for att in cnicache.list_attachments(cni_for(meta).cache_dir):
                if att.container_id == st.id:
                    addrs = Attachment(att.network_name, att.ifname, att.result or {}).addresses()
                    m.addresses[att.network_name] = [a.split("/", 1)[0] for a in addrs]
            out.append(m)
    return out


def hosts_entries(project: Project, me: Member, peers: list[Member]) -> list[tuple[str, list[str]]]:
    """Own addresses, then every peer on each network we share that has no DNS (service name, aliases,
    container): on a network with a resolver (cnirun.dns) the peers are found by DNS, not in this file."""
    from ..dns.resolver import resolvers

    names = network_names(project)
    entries: list[tuple[str, list[str]]] = []
    own = [me.service.hostname or me.service.name, me.container]
    for net in me.service.networks:
        for ip in me.addresses.get(names[net.key], []):
            entries.append((ip, list(dict.fromkeys(own + [me.service.name]))))
            own = [me.service.name]  # the hostname resolves to the first address only
    for peer in peers:
        if peer is me:
            continue
        mine = {names[n.key] for n in me.service.networks}
        for net in peer.service.networks:
            netname = names[net.key]
            if netname not in mine or resolvers(netname):
                continue
            pnames = [peer.service.name, *net.aliases, peer.container]
            if peer.service.hostname and peer.service.hostname not in pnames:
                pnames.append(peer.service.hostname)
            for ip in peer.addresses.get(netname, []):
                entries.append((ip, list(dict.fromkeys(pnames))))
    for h in me.service.extra_hosts:
        name, sep, ip = h.replace("=", ":", 1).partition(":")
        if sep:
            entries.append((ip, [name]))
    return entries


def refresh_hosts(project: Project) -> None:
    """Rewrite every running service's /etc/hosts in place (it is a bind mount)."""
    from ..network.files import write_hosts

    current = members(project)
    for m in current:
        if m.state.hosts.exists():
            write_hosts(m.state.hosts, hosts_entries(project, m, current))
