"""The names store: under <state>/dns/ (CNIRUN_STATE_DIR), a hosts file per container and network.

Directories 0700 and files 0600 (dnsmasq runs as root and reads them as root):

    <net>.lock                    flock serialising changes of one network (goes with its resolver)
    <net>/cnirun-dnsmasq.conf     the network's resolver's config (cnirun.dns.resolver): written
                                  BEFORE dnsmasq starts, so it is the record gc goes by
    <net>/dnsmasq.pid             written by dnsmasq
    <net>/cnirun.pid              "PID STARTTIME", written by cnirun once dnsmasq serves
    <net>/hosts/<container id>    that container's A/AAAA lines (all its addresses
                                  on this network, under all its names), read by
                                  dnsmasq through --hostsdir (inotify: a new, changed
                                  or deleted file is live at once, no reload)
    _views/<container id>/        a container's own resolver (cnirun.dns.view)
    .keeper.lock, .keeper.log     the resolvers' keeper (cnirun.dns.keeper; its pid and generation in the lock file)

A hosts file keeps what the container declared in comment lines (its cache
dir, its addresses, its own names, its aliases) and answers, on its address
lines, its own names and each alias that is no other container's own name on
the network (dotted names only where the network allows them).
"""
from __future__ import annotations

import os

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Iterable

CONF_NAME = "cnirun-dnsmasq.conf"
PID_NAME = "dnsmasq.pid"
HOSTS_DIR = "hosts"
CACHE_MARK = "# cnirun cache "
ADDR_MARK = "# addresses "  # also when no name is answered
NAME_MARK = "# name "  # the container's own names: the first it is registered under, or its engine's
ALIAS_MARK = "# aliases "  # the rest: answered unless another container's own name there
OUTSIDE_MARK = "# outside names "  # a line of the network resolver's record: the network's policy
MAX_NAMES = 64  # per container and network: every name is a line dnsmasq keeps


def dns_root(environ: dict[str, str] | None = None) -> str:
    from ..core.paths import state_dir

    return os.path.join(state_dir(environ), "dns")


def net_dir(network: str) -> str:
    return os.path.join(dns_root(), network)


def conf_path(network: str) -> str:
    """The network resolver's config: its record."""
    return os.path.join(net_dir(network), CONF_NAME)


def lock(network: str) -> int:
    """flock the network's names and resolver (waits up to 30 s); the descriptor to close."""
    from ..core.lock import flock

    # replaceable: the lock file goes with the network's resolver (resolver.stop_resolver), so a waiter
    # that opened the old file locks the new one instead.
    fd = flock(lock_path(network), wait=30.0, replaceable=True, what=f"DNS of network {network}")
    assert fd is not None
    return fd


def lock_path(network: str) -> str:
    return os.path.join(dns_root(), network + ".lock")


def hosts_file(network: str, container_id: str) -> str:
    return os.path.join(net_dir(network), HOSTS_DIR, container_id)


def registered(network: str, container_id: str) -> bool:
    return os.path.exists(hosts_file(network, container_id))


def private_dirs(*paths: str) -> None:
    """Make the names store's root and `paths` (parents first) root's only (0700), as its files are (0600):
    who runs where under which names is nobody else's business. dnsmasq runs as root (user=root in its
    config) and reads them as such."""
    root = dns_root()
    for d in (root, *paths):
        try:
            os.mkdir(d, 0o700)
        except FileExistsError:
            pass
    os.chmod(root, 0o700)  # also a store made with wider modes: tightened on the next start


def networks() -> list[str]:
    """The networks with a dir in the store (a resolver's record, or names)."""
    try:
        # Network names start with a letter or digit (config.is_safe_name): "_views" and ".tmp" are not networks.
        return sorted(n for n in os.listdir(dns_root()) if not n.endswith(".lock") and n[:1].isalnum())
    except OSError:
        return []


def members(network: str) -> list[str]:
    """The containers with a hosts file on `network`."""
    try:
        return [n for n in os.listdir(os.path.join(net_dir(network), HOSTS_DIR)) if not n.startswith(".")]
    except OSError:
        return []


def conf_values(conf: str, prefix: str) -> list[str]:
    """The rest of every line of a resolver's config that starts with `prefix` (the record, read back)."""
    out: list[str] = []
    try:
        with open(conf, encoding="utf-8") as f:
            for line in f:
                if line.startswith(prefix):
                    out.append(line[len(prefix):].strip())
    except OSError:
        pass
    return out


def outside_recorded(network: str) -> bool:
    """The network's outside-names policy, as its resolver's record says (netconf.outside_names)."""
    return bool(conf_values(conf_path(network), OUTSIDE_MARK))


def read_entry(path: str) -> tuple[str, list[str], list[str], list[str], list[str]]:
    """(cache dir, addresses, own names, aliases, names answered) of a container's hosts file."""
    cache_dir, addrs, served = "", [], []
    own: list[str] | None = None
    aliases: list[str] = []
    recorded: list[str] | None = None
    try:
        with open(path, encoding="utf-8") as f:
            for line in f:
                if line.startswith(CACHE_MARK):
                    cache_dir = line[len(CACHE_MARK):].strip()
                elif line.startswith(ADDR_MARK):
                    recorded = line[len(ADDR_MARK):].split()
                elif line.startswith(NAME_MARK):
                    own = line[len(NAME_MARK):].split()
                elif line.startswith(ALIAS_MARK):
                    aliases = line[len(ALIAS_MARK):].split()
                elif line.split() and not line.startswith("#"):
                    words = line.split()
                    addrs.append(words[0])
                    served += [n for n in words[1:] if n not in served]
    except OSError:
        pass
    if own is None:  # a file without the marks: its first name is its own
        own, aliases = served[:1], served[1:]
    return cache_dir, addrs if recorded is None else recorded, own, aliases, served


def names(network: str) -> dict[str, list[str]]:
    """container id -> names answered on `network` (for tests and inspection)."""
    return {cid: read_entry(hosts_file(network, cid))[4] for cid in members(network)}


def clean_names(given: Iterable[str]) -> list[str]:
    """The names that may be answered, in order, once each (case-insensitively), at most MAX_NAMES."""
    from .hostname import is_hostname

    out: list[str] = []
    for n in given:
        n = (n or "").strip().rstrip(".")
        # Docker names may hold '_' (not a host name character, but dnsmasq serves it).
        if n and is_hostname(n.replace("_", "-")) and n.lower() not in (o.lower() for o in out):
            out.append(n)
    return out[:MAX_NAMES]


def write_hosts(network: str, container_id: str, addresses: list[str], own: list[str], aliases: list[str],
                cache_dir: str, outside: bool) -> None:
    """Write the container's lines in a temporary file next to hosts/, then rename: dnsmasq reads whole files.

    Answered: its own names, and each alias that is no other container's own name on the network (aliases
    may be shared, as Docker's; a container's own name is never taken over), dotted ones only with
    `outside`. The declared names are kept in comment lines, so a name freed later is answered again."""
    d = net_dir(network)
    private_dirs(d, os.path.join(d, HOSTS_DIR))
    taken = {n.lower() for m in members(network) if m != container_id
             for n in read_entry(hosts_file(network, m))[2]}
    answered = [n for n in own if outside or "." not in n]
    answered += [n for n in aliases if (outside or "." not in n) and n.lower() not in taken]
    text = "".join(f"{mark}{value}\n" for mark, value in (
        (CACHE_MARK, cache_dir), (ADDR_MARK, " ".join(addresses)), (NAME_MARK, " ".join(own)),
        (ALIAS_MARK, " ".join(aliases))))
    text += "".join(f"{a}\t{' '.join(answered)}\n" for a in addresses if answered)
    tmp = os.path.join(d, ".tmp-" + container_id)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    try:
        os.write(fd, text.encode())
    finally:
        os.close(fd)
    os.rename(tmp, hosts_file(network, container_id))


def rewrite_claims(network: str, container_id: str, claimed: list[str]) -> None:
    """Rewrite the other containers of `network` that have one of `claimed` as an alias: that name became
    (or stopped being) a container's own name. Caller holds the network's lock."""
    wanted = {n.lower() for n in claimed}
    outside = outside_recorded(network)
    for m in members(network):
        if m == container_id:
            continue
        cache_dir, addrs, own, aliases, _ = read_entry(hosts_file(network, m))
        if wanted & {a.lower() for a in aliases}:
            write_hosts(network, m, addrs, own, aliases, cache_dir, outside)
