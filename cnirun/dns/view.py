"""A container's own resolver, for a container on several networks with DNS.

A network's resolver answers for that network only, and a client asks its
first nameserver and takes its "no such name" as final: a container on
networks A and B that lists both resolvers never finds a peer that is only
on B. So such a container gets a resolver of its own, as Docker's embedded
DNS does: a dnsmasq inside the container's netns on 127.0.0.11, which only
that container can reach (scoping for free), reading the hosts dirs of all
its networks (live through inotify, like the networks' own) and forwarding
qualified names to its first network's resolver. It lives in the netns, so
it keeps the netns alive: it is stopped before every teardown (detach) and
by gc once the container is registered on fewer than two networks.

    _views/<container id>/cnirun-dnsmasq.conf   written BEFORE dnsmasq starts (the record gc goes by)
    _views/<container id>/dnsmasq.pid
"""
from __future__ import annotations

import os

from .dnsmasq import NETNS_MARK, DNSError, kill, running, spawn, write_conf
from .resolver import resolvers
from .store import CONF_NAME, HOSTS_DIR, PID_NAME, conf_values, dns_root, net_dir, private_dirs, registered

VIEW_ADDRESS = "127.0.0.11"
VIEWS = "_views"  # not a network name: those start with a letter or digit


def view_dir(container_id: str) -> str:
    return os.path.join(dns_root(), VIEWS, container_id)


def view_conf(container_id: str) -> str:
    return os.path.join(view_dir(container_id), CONF_NAME)


def _view_text(container_id: str, networks: list[str], upstream: str, netns: str, netns_id: str) -> str:
    """The resolver's config. Its text is what a running resolver is compared with (a different text
    restarts it): a resolver started by an earlier cnirun is kept as long as this text is unchanged."""
    d = view_dir(container_id)
    lines = [
        f"# cnirun: the resolver of container {container_id}, on networks {' '.join(networks)} (cnirun.dns)",
        # Which netns it serves (a restarted container has a new one), and where gc starts it again
        # if it died: the path, and what the path named then (a path may name another netns later).
        f"{NETNS_MARK}{netns_id} {netns}",
        "port=53",
        f"listen-address={VIEW_ADDRESS}",
        "bind-interfaces",
        "no-hosts",
        "no-resolv",
        *[f"hostsdir={os.path.join(net_dir(n), HOSTS_DIR)}" for n in networks],
        *([f"server={upstream}"] if upstream else []),
        "domain-needed",
        f"pid-file={os.path.join(d, PID_NAME)}",
        "user=root",
        "group=root",
        f"log-facility={os.path.join(d, 'dnsmasq.log')}",
        "local-ttl=0",
    ]
    return "\n".join(lines) + "\n"


def sync_view(container_id: str, networks: list[str], netns: str) -> list[str]:
    """Start, restart or stop the container's own resolver for the networks it is on now; its nameservers.

    networks: the container's networks in interface order. On two or more
    networks with DNS: its resolver runs in `netns` (started, or restarted
    when the networks or the netns changed) and the answer is [127.0.0.11].
    Otherwise no resolver of its own, and the answer is the one network's
    resolver address ([] without DNS). Call with the container's lifecycle
    lock held (or while nothing else can change it: its first attach).
    """
    mine = [n for n in networks if registered(n, container_id)]
    if len(mine) < 2:
        stop_view(container_id)
        found = resolvers(mine[0]) if mine else []
        return found[:1]
    upstream = next((a for a in resolvers(mine[0]) if ":" not in a), "")
    from ..core.fsutil import identity

    wanted = _view_text(container_id, mine, upstream, netns, identity(netns))
    conf = view_conf(container_id)
    try:
        with open(conf, encoding="utf-8") as f:
            current = f.read()
    except OSError:
        current = ""
    if current != wanted or not running(conf):
        for _ in range(3):  # another container's stop_view may remove an empty _views/ in between
            try:
                private_dirs(os.path.dirname(view_dir(container_id)), view_dir(container_id))
                break
            except FileNotFoundError:
                continue
        fd = _view_lock(container_id)
        try:
            if current:
                kill(conf)
            write_conf(conf, wanted)  # the record first
            spawn(conf, f"of container {container_id[:12]}", netns)
        finally:
            if fd is not None:
                os.close(fd)
    return [VIEW_ADDRESS]


def _view_lock(container_id: str, blocking: bool = True) -> int | None:
    """flock the container's resolver dir (None: gone, or busy and not blocking): a start, stop or restart
    of its resolver holds it, so the keeper never starts one beside them (or after a stop)."""
    import fcntl

    try:
        fd = os.open(view_dir(container_id), os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
    except OSError:
        os.close(fd)
        return None
    return fd


def stop_view(container_id: str) -> None:
    """Stop the container's own resolver, if it has one (before its netns is torn down: it holds the netns)."""
    d = view_dir(container_id)
    if not os.path.isdir(d):
        return
    import shutil  # not before: every teardown comes here, and shutil costs the hook path re and enum
    fd = _view_lock(container_id)
    try:
        if os.path.exists(view_conf(container_id)):
            kill(view_conf(container_id))
        shutil.rmtree(d, ignore_errors=True)  # also a dir cut short before its record was written
    finally:
        if fd is not None:
            os.close(fd)
    try:
        os.rmdir(os.path.dirname(d))  # _views/ itself once no container has a resolver of its own
    except OSError:
        pass


def has_view(container_id: str) -> bool:
    return os.path.exists(view_conf(container_id))


def nameservers(container_id: str, networks: list[str]) -> list[str]:
    """What the container's resolv.conf should list: its own resolver, else each network's (in order)."""
    if has_view(container_id):
        return [VIEW_ADDRESS]
    out: list[str] = []
    for n in networks:
        found = resolvers(n)
        if found and found[0] not in out:
            out.append(found[0])
    return out


def _view_networks(container_id: str) -> list[str]:
    return [os.path.basename(os.path.dirname(d)) for d in conf_values(view_conf(container_id), "hostsdir=")]


def view_cids() -> list[str]:
    """The containers with a resolver dir of their own."""
    try:
        return [c for c in os.listdir(os.path.join(dns_root(), VIEWS)) if c[:1].isalnum()]
    except OSError:
        return []


def view_wanted(cid: str) -> bool:
    """Whether the container's own resolver should run: it is still on two networks of its record."""
    return sum(registered(n, cid) for n in _view_networks(cid)) >= 2


def revive_view(cid: str, blocking: bool = True) -> bool:
    """Start the container's own resolver again if it died while the container is on two networks with DNS
    and still in the netns it was made for; whether it was started. Raises DNSError."""
    from ..core.fsutil import identity

    fd = _view_lock(cid, blocking)
    if fd is None:
        return False  # gone, or being started or stopped
    try:
        conf = view_conf(cid)
        where = (conf_values(conf, NETNS_MARK) or [""])[0].split(" ", 1)
        if running(conf) or not view_wanted(cid) or len(where) != 2 or not where[0] \
                or identity(where[1]) != where[0]:
            return False
        spawn(conf, f"of container {cid[:12]}", where[1])
        return True
    finally:
        os.close(fd)


def collect_views() -> list[str]:
    """gc: stop the resolvers of containers now on fewer than two networks with names (gone ones included);
    start again one that died while its container still runs in the netns it was made for."""
    done: list[str] = []
    for cid in view_cids():
        if view_wanted(cid):
            try:
                if revive_view(cid):
                    done.append(f"restarted the DNS resolver of container {cid[:12]}")
            except DNSError as e:
                done.append(str(e))
            continue
        if running(view_conf(cid)):
            done.append(f"stopped the DNS resolver of gone container {cid[:12]}")
        stop_view(cid)
    return done
