"""The container's /etc/hosts and /etc/resolv.conf, for the modes where cnirun writes them.

Sandbox and Podman runs bind-mount two files from the run's state dir: the
binds are made (empty) before the container is created, and filled once ADD
has returned the addresses and DNS settings. (In hook mode dockerd writes
them; the hook cannot.) The file formats live in cnirun.network.hostfiles; this
module only decides what goes in them for a run.
"""
from __future__ import annotations

TYPE_CHECKING = False  # typing costs ~7 ms of start-up on `cnirun run`: annotations only

if TYPE_CHECKING:  # the hook path never makes a state dir: state (pathlib, secrets) is imported lazily
    from typing import Any

    from ..network.lifecycle import Attachment
    from .request import RunRequest
    from ..state.runs import RunState


def write_host_files(st: RunState, req: RunRequest, atts: list[Attachment], hostname: str) -> None:
    """Fill hosts (the first network's addresses under the hostname and name, plus --add-host) and resolv.conf."""
    from ..network.hostfiles import container_dns, write_hosts, write_resolv_conf

    entries: list[tuple[str, list[str]]] = []
    names = [hostname] + ([req.spec.name] if req.spec.name and req.spec.name != hostname else [])
    for att in atts[:1]:
        for addr in att.addresses():
            entries.append((addr.split("/", 1)[0], names))
    for h in req.spec.add_hosts:
        name, sep, ip = h.replace("=", ":", 1).partition(":")
        if sep:
            entries.append((ip, [name]))
    write_hosts(st.hosts, entries)
    # The networks' own DNS when they have it (cnirun.dns): the container's own resolver on several.
    from ..dns.view import nameservers

    resolvers = nameservers(st.id, [a.network for a in atts])
    write_resolv_conf(st.resolv_conf, container_dns([a.result for a in atts], req.dns, req.dns_search, resolvers))


def planned_resolvers(networks: list[Any]) -> list[str]:
    """The nameservers of a container on these networks, from the configs alone, before ADD (Docker hook
    mode: dockerd writes resolv.conf): the network's resolver, or on several with DNS the container's own."""
    from ..dns.netconf import planned_resolver
    from ..dns.view import VIEW_ADDRESS

    found = [a for a in (planned_resolver(n) for n in networks) if a]
    return [VIEW_ADDRESS] if len(found) > 1 else found


def publish_engine_name(engine: Any, container: str, run_id: str) -> None:
    """Add the name the engine generated for an unnamed container to its DNS names (cnirun.dns)."""
    from ..dns.names import add_names

    try:
        found = engine.lookup(container)
    except Exception:  # noqa: BLE001 - a name is a convenience: the run goes on without it
        return
    if found is not None and found.name:
        add_names(run_id, [found.name])


def host_file_binds(st: RunState) -> list[str]:
    """Create the (empty) files and return their bind mounts: the container is created before ADD."""
    from ..network.hostfiles import touch

    touch(st.hosts)
    touch(st.resolv_conf)
    return [f"{st.hosts}:/etc/hosts", f"{st.resolv_conf}:/etc/resolv.conf"]
