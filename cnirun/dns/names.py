"""A container's names on its networks: what the attachment lifecycle calls after each ADD and DEL.

register() after each ADD publishes the container's addresses under its
names in the network's names store (cnirun.dns.store) and starts the
network's resolver on demand (cnirun.dns.resolver) and the keeper
(cnirun.dns.keeper); unregister() drops them when the container is
detached, before its DELs (a removed container stops resolving at once),
and stops the resolver when the network has no containers left;
add_names() adds a name known only after create (the engine's). gc is
cnirun.dns.gc, a container's own resolver on several networks
cnirun.dns.view.
"""
from __future__ import annotations

import os

from ..cni.config import bridge_of
from .netconf import enabled, outside_names, result_addresses, result_gateways
from .store import clean_names, hosts_file, lock, members, net_dir, networks, outside_recorded, read_entry, \
    rewrite_claims, write_hosts

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from ..cni.config import NetworkConfigList


def register(
    net: NetworkConfigList, container_id: str, result: dict[str, Any], names: list[str] | None, cache_dir: str
) -> list[str]:
    """Publish the container's addresses on `net` under `names`, starting the resolver if needed.

    names None: keep the names already registered (a re-attach with new
    addresses). Returns the resolver's addresses ([] when the network has no
    DNS: opted out, or no gateway on this host). Raises DNSError when the
    resolver cannot start.
    """
    if not enabled(net):
        return []
    gws = result_gateways(result)
    addrs = result_addresses(result)
    if not gws or not addrs:
        return []
    # The resolver and its keeper only for a network with DNS: the hook path of one without loads neither.
    from .keeper import ensure_keeper
    from .resolver import ensure_resolver

    path = hosts_file(net.name, container_id)
    fd = lock(net.name)
    try:
        _, _, own, aliases, _ = read_entry(path)
        if names is not None:
            clean = clean_names(names)
            own, aliases = clean[:1], clean[1:]
        outside = outside_names(net)
        write_hosts(net.name, container_id, addrs, own, aliases, cache_dir, outside)
        ensure_resolver(net.name, gws, bridge_of(net), outside)
        rewrite_claims(net.name, container_id, own)
    finally:
        os.close(fd)
    ensure_keeper()
    return gws


def add_names(container_id: str, names: list[str]) -> None:
    """Add names to every network the container is registered on (a name known only after create)."""
    for network in networks():
        path = hosts_file(network, container_id)
        if not os.path.exists(path):
            continue
        fd = lock(network)
        try:
            cache_dir, addrs, own, aliases, _ = read_entry(path)
            # The engine's name is the container's own: what it was registered under before are aliases.
            new = clean_names(names)
            rest = [n for n in clean_names(own + aliases) if n.lower() not in {x.lower() for x in new}]
            if (new, rest) == (own, aliases) or not os.path.exists(path):
                continue
            write_hosts(network, container_id, addrs, new, rest, cache_dir, outside_recorded(network))
            rewrite_claims(network, container_id, new + own)
        finally:
            os.close(fd)


def unregister(network: str, container_id: str) -> None:
    """Drop the container's names from `network`; stop the resolver when nobody is left on it."""
    if not os.path.isdir(net_dir(network)):
        return
    fd = lock(network)
    try:
        own = read_entry(hosts_file(network, container_id))[2]
        try:
            os.unlink(hosts_file(network, container_id))
        except FileNotFoundError:
            pass
        if not members(network):
            from .resolver import stop_resolver

            stop_resolver(network)
        else:
            rewrite_claims(network, container_id, own)  # its name, freed, may be another's alias
    finally:
        os.close(fd)
