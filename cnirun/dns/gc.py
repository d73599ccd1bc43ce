"""`cnirun gc` of names by DNS: names of gone containers, resolvers nobody needs, unrecorded ones."""
from __future__ import annotations

import os

from .dnsmasq import candidates, ours
from .keeper import ensure_keeper, kept
from .resolver import resolver_pid, revive_network, stop_resolver
from .store import CONF_NAME, conf_path, dns_root, hosts_file, lock, members, networks, read_entry, \
    rewrite_claims
from .view import collect_views

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Callable


def collect(alive: Callable[[str, str, str], bool] | None = None) -> list[str]:
    """`cnirun gc`: drop names of gone containers, stop resolvers nobody needs, kill unrecorded ones.

    alive(network, container_id, cache_dir): whether the container still has
    an attachment to the network (default: a cache file in `cache_dir`).
    Returns what was done, one line each.
    """
    done: list[str] = []
    for network in networks():
        done += _collect_network(network, alive or _cached)
    done += collect_views()
    from . import guard

    # Rules whose record is gone (a stop cut short between the two).
    done += guard.collect({n for n in networks() if os.path.exists(conf_path(n))}, guard.state_tag(dns_root()))
    if kept():
        ensure_keeper()
    return done + _kill_orphans()


def _cached(network: str, cid: str, cache_dir: str) -> bool:
    """Whether `cache_dir` holds an attachment of the container to the network."""
    from ..cni import cache as cnicache

    if not cache_dir:
        return False
    return any(a.network_name == network for a in cnicache.list_attachments(cache_dir, container_id=cid))


def _collect_network(network: str, alive: Callable[[str, str, str], bool]) -> list[str]:
    """Drop the names of the network's gone containers; stop its resolver once it has none, else start
    it again if it died."""
    done: list[str] = []
    fd = lock(network)
    try:
        for cid in members(network):
            cache_dir, _, own, _, _ = read_entry(hosts_file(network, cid))
            if not alive(network, cid, cache_dir):
                try:
                    os.unlink(hosts_file(network, cid))
                except FileNotFoundError:
                    pass
                rewrite_claims(network, cid, own)
                done.append(f"dropped the names of gone container {cid[:12]} on network {network}")
        if not members(network):
            if resolver_pid(network):
                done.append(f"stopped the DNS resolver of network {network} (no containers left)")
            stop_resolver(network)
        elif revive_network(network):
            done.append(f"restarted the DNS resolver of network {network}")
    finally:
        os.close(fd)
    return done


def _kill_orphans() -> list[str]:
    """Kill the dnsmasq processes of this state dir whose network dir is gone (a stop cut short)."""
    done: list[str] = []
    prefix = ("--conf-file=" + dns_root() + os.sep).encode()
    for pid, arg in candidates(prefix, b"/" + CONF_NAME.encode()):
        conf = arg[len(b"--conf-file="):].decode(errors="replace")
        if not os.path.exists(conf) and ours(pid, conf, None):
            try:
                os.kill(pid, 9)
                done.append(f"stopped an orphaned DNS resolver (pid {pid})")
            except ProcessLookupError:
                pass
    return done
