"""A network's resolver: one dnsmasq per network, on the network's gateway, port 53.

It answers only for the containers attached to that network (so scoping per
network is free: it reads the network's hosts dir of the names store) and
forwards other names to the host's resolvers (`domain-needed`: single-label
names never leave the host). Started on demand by the network's first
container, record first (its config, then the guard's rules, then dnsmasq),
stopped when the network empties; only the network's containers and the
host may ask it (cnirun.dns.guard).

Why dnsmasq (measured on this machine, docs "Names (DNS)"): a hostsdir
change is answered within ~0.1 ms and queries never fail during updates;
aardvark-dns 1.4.0 reloads on SIGHUP, answered new names only after ~200 ms
here and dropped 30 of 450 queries during reloads (aardvark-dns #389).
"""
from __future__ import annotations

import os

from .dnsmasq import DNSError, kill, running, spawn, write_conf
from .netconf import is_local
from .store import HOSTS_DIR, OUTSIDE_MARK, PID_NAME, conf_path, conf_values, dns_root, lock_path, members, \
    net_dir, networks

BRIDGE_MARK = "# bridge "


def conf_text(network: str, listen: list[str], bridge: str, outside: bool = False) -> str:
    """The resolver's config. Its text is what a running resolver is compared with (a different text
    restarts it): a resolver started by an earlier cnirun is kept as long as this text is unchanged."""
    d = net_dir(network)
    lines = [
        f"# cnirun: the resolver of network {network}; cnirun starts and stops it (cnirun.dns)",
        BRIDGE_MARK + bridge,  # the guard's rules name it (cnirun.dns.guard): the record to remove them by
        *([OUTSIDE_MARK + "yes"] if outside else []),  # the network's policy, for add_names and its peers
        "port=53",
        *[f"listen-address={a}" for a in listen],
        # Binds to the listen addresses only, and picks them up if the bridge
        # loses and regains them; never the wildcard (Podman's aardvark and
        # other networks' resolvers share the host).
        "bind-dynamic",
        "no-hosts",  # the host's /etc/hosts is not the containers' business
        f"hostsdir={os.path.join(d, HOSTS_DIR)}",
        "domain-needed",  # single-label names (container names) are never forwarded
        f"pid-file={os.path.join(d, PID_NAME)}",
        # Root like Podman's dnsname and aardvark-dns: the hosts files live in
        # cnirun's root-only state dir, which dnsmasq re-reads on every change.
        "user=root",
        "group=root",
        f"log-facility={os.path.join(d, 'dnsmasq.log')}",
        "local-ttl=0",  # a removed container's name must not linger in clients' caches
    ]
    return "\n".join(lines) + "\n"


def resolvers(network: str) -> list[str]:
    """The addresses the network's resolver listens on ([] when it has none)."""
    return conf_values(conf_path(network), "listen-address=")


def resolver_pid(network: str) -> int:
    """The network's running resolver (0 for none)."""
    return running(conf_path(network))


def _record(network: str) -> tuple[str, list[str]]:
    """(bridge, listen addresses) of the network's resolver record ('', [] for none)."""
    bridge = conf_values(conf_path(network), BRIDGE_MARK)
    return (bridge[0] if bridge else ""), resolvers(network)


def _guard(network: str, bridge: str, listen: list[str]) -> None:
    """Only the network's own containers (and the host) may ask its resolver (cnirun.dns.guard)."""
    from . import guard

    if not bridge:
        return
    err = guard.install(network, bridge, listen, guard.state_tag(dns_root()))
    if err:
        raise DNSError(f"cannot keep the DNS resolver of network {network} to that network ({err}); "
                       "create the network with --no-dns to go without DNS")


def _unguard(network: str) -> None:
    from . import guard

    bridge, listen = _record(network)
    if bridge and listen:
        guard.remove(network, bridge, listen, guard.state_tag(dns_root()))


def repair_guards(only: set[str] | None = None, dry_run: bool = False) -> list[tuple[str, str]]:
    """`cnirun network reload`: put back the guard rules (cnirun.dns.guard) a flush removed, for the
    resolvers of this state dir (of `only`, default all). (network, '' or the error) per repair."""
    from . import guard

    state = guard.state_tag(dns_root())
    out: list[tuple[str, str]] = []
    for network in networks():
        if only and network not in only:
            continue
        bridge, listen = _record(network)
        if not bridge or not listen or not guard.missing(network, bridge, listen, state):
            continue
        if not dry_run:
            guard.remove(network, bridge, listen, state)  # those still there: install puts in all
        out.append((network, "" if dry_run else guard.install(network, bridge, listen, state)))
    return out


def revive_network(network: str) -> bool:
    """Start the network's resolver again if it died while its record says it should run (its gateway
    still on this host); whether it was started. Caller holds the network's lock; raises DNSError."""
    if not members(network) or resolver_pid(network):
        return False
    bridge, gws = _record(network)
    if not gws or not all(is_local(g) for g in gws):
        return False
    _unguard(network)  # those a flush left: _guard puts all in
    _guard(network, bridge, gws)
    spawn(conf_path(network), f"of network {network}")
    return True


def ensure_resolver(network: str, listen: list[str], bridge: str, outside: bool = False) -> None:
    """Start the network's dnsmasq unless it runs with these addresses. Caller holds the network's lock."""
    wanted = conf_text(network, listen, bridge, outside)
    try:
        with open(conf_path(network), encoding="utf-8") as f:
            current = f.read()
    except OSError:
        current = ""
    if current == wanted and resolver_pid(network):
        return
    if current:
        kill(conf_path(network))
        _unguard(network)  # whatever its record says may be in place (a start cut short): never twice
    # The record first: from here on gc finds the resolver and its rules by this file.
    write_conf(conf_path(network), wanted)
    _guard(network, bridge, listen)
    spawn(conf_path(network), f"of network {network}")


def stop_resolver(network: str) -> None:
    """Stop the resolver and remove the network's DNS dir. Caller holds the network's lock."""
    import shutil

    kill(conf_path(network))
    _unguard(network)
    shutil.rmtree(net_dir(network), ignore_errors=True)
    try:
        os.unlink(lock_path(network))  # still held by the caller: see store.lock
    except FileNotFoundError:
        pass
