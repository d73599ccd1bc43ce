"""Names by DNS on cnirun networks: the names store and one dnsmasq resolver per network.

Every network with a gateway on the host (the bridge plugin's isGateway) gets
a resolver listening on that gateway address, port 53, that answers only for
the containers attached to that network (so scoping per network is free) and
forwards other names to the host's resolvers (`domain-needed`: single-label
names never leave the host). A conflist with `"cnirun": {"dns": false}` opts
out (`network create --no-dns`, compose `x-cni: {dns: false}`).

State, under <state>/dns/ (CNIRUN_STATE_DIR), directories 0700 and files
0600 (dnsmasq runs as root and reads them as root):

    <net>.lock                    flock serialising changes of one network (goes with its resolver)
    <net>/cnirun-dnsmasq.conf     the resolver's config: written BEFORE dnsmasq
                                  starts, so it is the record gc goes by
    <net>/dnsmasq.pid             written by dnsmasq
    <net>/cnirun.pid              "PID STARTTIME", written by cnirun once dnsmasq serves
    <net>/hosts/<container id>    that container's A/AAAA lines (all its addresses
                                  on this network, under all its names), read by
                                  dnsmasq through --hostsdir (inotify: a new, changed
                                  or deleted file is live at once, no reload)
    .keeper.lock, .keeper.log     the resolvers' keeper (its pid in the lock file)

Why dnsmasq (measured on this machine, README "Names (DNS)"): a hostsdir
change is answered within ~0.1 ms and queries never fail during updates;
aardvark-dns 1.4.0 reloads on SIGHUP, answered new names only after ~200 ms
here and dropped 30 of 450 queries during reloads (aardvark-dns #389).

Lifecycle (lifecycle.py calls this): register() after each ADD (the resolver
is started on demand), unregister() after each DEL (the resolver is stopped
when the network has no containers left). dnsmasq daemonises, so resolvers
outlive cnirun; collect() (`cnirun gc`) drops names of containers that have
no cached attachment and stops resolvers without names or without a record.
A resolver is the pid its own root-only dir records, checked against what no
container can forge (the host's dnsmasq binary, uid 0, its netns, its
config on its command line: see _ours), never a command line alone. One
keeper process per state dir starts a resolver that died again at once
(`python -m cnirun.run.watch resolvers`: see keep()).

On the OCI hook path: os and _socket only at import time (no subprocess:
dnsmasq is started with posix_spawn).
"""
from __future__ import annotations

import os

from ..core.errors import CNIError
from ..core.process import process_start

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Callable, Iterable, Iterator

    from ..cni.config import NetworkConfigList

DNSMASQ = "/usr/sbin/dnsmasq"
NSENTER = "/usr/bin/nsenter"
CONF_NAME = "cnirun-dnsmasq.conf"
PID_NAME = "dnsmasq.pid"
HOSTS_DIR = "hosts"
CACHE_MARK = "# cnirun cache "
ADDR_MARK = "# addresses "  # also when no name is answered
NAME_MARK = "# name "  # the container's own names: the first it is registered under, or its engine's
ALIAS_MARK = "# aliases "  # the rest: answered unless another container's own name there
STOP_WAIT = 2.0
MAX_NAMES = 64  # per container and network: every name is a line dnsmasq keeps


class DNSError(CNIError):
    """The network's resolver could not be started or its names not written."""


def dns_root(environ: dict[str, str] | None = None) -> str:
    from ..core.paths import state_dir

    return os.path.join(state_dir(environ), "dns")


def _net_dir(network: str) -> str:
    return os.path.join(dns_root(), network)


def conf_path(network: str) -> str:
    return os.path.join(_net_dir(network), CONF_NAME)


# -- which networks, which addresses ---------------------------------------------------
def enabled(net: NetworkConfigList) -> bool:
    """Whether the network wants DNS: not opted out with `"cnirun": {"dns": false}`."""
    meta = net.raw.get("cnirun") if isinstance(net.raw, dict) else None
    return not (isinstance(meta, dict) and meta.get("dns") is False)


def outside_names(net: NetworkConfigList) -> bool:
    """Whether the network's resolver may answer names with a dot (`www.example.com`): only with
    `"cnirun": {"dnsOutsideNames": true}` (x-cni `dns_outside_names: true`). Without it a dotted name, as
    alias, hostname or container name, is not answered there: it would shadow the real domain for every
    container on the network (queries for it never leave the host)."""
    meta = net.raw.get("cnirun") if isinstance(net.raw, dict) else None
    return isinstance(meta, dict) and meta.get("dnsOutsideNames") is True


def _is_local(ip: str) -> bool:
    """Whether `ip` is an address of this host (bind succeeds only for a local address)."""
    import _socket

    fam = _socket.AF_INET6 if ":" in ip else _socket.AF_INET
    s = _socket.socket(fam, _socket.SOCK_DGRAM)
    try:
        s.bind((ip, 0))
        return True
    except OSError:
        return False
    finally:
        s.close()


def _strip(addr: str) -> str:
    return addr.split("/", 1)[0]


def result_addresses(result: dict[str, Any]) -> list[str]:
    """The container's addresses in a CNI result (both families), without prefix."""
    out: list[str] = []
    for ip in result.get("ips") or []:
        if isinstance(ip, dict) and isinstance(ip.get("address"), str):
            a = _strip(ip["address"])
            if a and a not in out:
                out.append(a)
    return out


def result_gateways(result: dict[str, Any]) -> list[str]:
    """The result's gateways that are addresses of this host (a bridge with isGateway), IPv4 first."""
    gws: list[str] = []
    for ip in result.get("ips") or []:
        gw = ip.get("gateway") if isinstance(ip, dict) else None
        if isinstance(gw, str) and gw and gw not in gws and _is_local(gw):
            gws.append(gw)
    return sorted(gws, key=lambda g: ":" in g)


def planned_resolver(net: NetworkConfigList) -> str:
    """The IPv4 resolver address a container of `net` will use, from the config alone ('' for none).

    For Docker hook mode, where dockerd writes resolv.conf before the hook
    ADDs: the bridge's gateway (ipam `gateway`, else the subnet's first
    address, as host-local does).
    """
    import ipaddress

    if not enabled(net):
        return ""
    for p in net.plugins:
        raw = p.raw
        if raw.get("type") != "bridge" or not (raw.get("isGateway") or raw.get("isDefaultGateway")):
            continue
        ipam = raw.get("ipam") if isinstance(raw.get("ipam"), dict) else {}
        ranges = [r for rs in ipam.get("ranges") or [] if isinstance(rs, list) for r in rs if isinstance(r, dict)]
        if ipam.get("subnet"):
            ranges.append({"subnet": ipam["subnet"], "gateway": ipam.get("gateway", "")})
        for r in ranges:
            try:
                subnet = ipaddress.ip_network(str(r.get("subnet")), strict=False)
            except ValueError:
                continue
            if subnet.version == 4:
                return str(r.get("gateway") or subnet.network_address + 1)
    return ""


# -- the store ------------------------------------------------------------------------
def _bridge(net: NetworkConfigList) -> str:
    """The network's bridge (the bridge plugin's default: cni0): where its containers' queries come in."""
    for p in net.plugins:
        if p.raw.get("type") == "bridge":
            return str(p.raw.get("bridge") or "cni0")
    return ""


def _lock(network: str) -> int:
    from ..core.lock import flock

    # replaceable: the lock file goes with the network's resolver (_stop_resolver), so a waiter
    # that opened the old file locks the new one instead.
    fd = flock(_lock_path(network), wait=30.0, replaceable=True, what=f"DNS of network {network}")
    assert fd is not None
    return fd


def _lock_path(network: str) -> str:
    return os.path.join(dns_root(), network + ".lock")


def _hosts_file(network: str, container_id: str) -> str:
    return os.path.join(_net_dir(network), HOSTS_DIR, container_id)


def _read_names(path: str) -> list[str]:
    """The names the resolver answers for the container (its address lines)."""
    return _read_entry(path)[4]


def _read_entry(path: str) -> tuple[str, list[str], list[str], list[str], list[str]]:
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


def _clean_names(names: Iterable[str]) -> list[str]:
    from .hostname import is_hostname

    out: list[str] = []
    for n in names:
        n = (n or "").strip().rstrip(".")
        # Docker names may hold '_' (not a host name character, but dnsmasq serves it).
        if n and is_hostname(n.replace("_", "-")) and n.lower() not in (o.lower() for o in out):
            out.append(n)
    return out[:MAX_NAMES]


def _write_hosts(network: str, container_id: str, addresses: list[str], own: list[str], aliases: list[str],
                 cache_dir: str, outside: bool) -> None:
    """Write the container's lines in a temporary file next to hosts/, then rename: dnsmasq reads whole files.

    Answered: its own names, and each alias that is no other container's own name on the network (aliases
    may be shared, as Docker's; a container's own name is never taken over), dotted ones only with
    `outside`. The declared names are kept in comment lines, so a name freed later is answered again."""
    d = _net_dir(network)
    _private_dirs(d, os.path.join(d, HOSTS_DIR))
    taken = {n.lower() for m in _members(network) if m != container_id
             for n in _read_entry(_hosts_file(network, m))[2]}
    names = [n for n in own if outside or "." not in n]
    names += [n for n in aliases if (outside or "." not in n) and n.lower() not in taken]
    text = "".join(f"{mark}{value}\n" for mark, value in (
        (CACHE_MARK, cache_dir), (ADDR_MARK, " ".join(addresses)), (NAME_MARK, " ".join(own)),
        (ALIAS_MARK, " ".join(aliases))))
    text += "".join(f"{a}\t{' '.join(names)}\n" for a in addresses if names)
    tmp = os.path.join(d, ".tmp-" + container_id)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    try:
        os.write(fd, text.encode())
    finally:
        os.close(fd)
    os.rename(tmp, _hosts_file(network, container_id))


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
    path = _hosts_file(net.name, container_id)
    fd = _lock(net.name)
    try:
        _, _, own, aliases, _ = _read_entry(path)
        if names is not None:
            clean = _clean_names(names)
            own, aliases = clean[:1], clean[1:]
        outside = outside_names(net)
        _write_hosts(net.name, container_id, addrs, own, aliases, cache_dir, outside)
        _ensure_resolver(net.name, gws, _bridge(net), outside)
        _rewrite_claims(net.name, container_id, own)
    finally:
        os.close(fd)
    ensure_keeper()
    return gws


def add_names(container_id: str, names: list[str]) -> None:
    """Add names to every network the container is registered on (a name known only after create)."""
    for network in _networks():
        path = _hosts_file(network, container_id)
        if not os.path.exists(path):
            continue
        fd = _lock(network)
        try:
            cache_dir, addrs, own, aliases, _ = _read_entry(path)
            # The engine's name is the container's own: what it was registered under before are aliases.
            new = _clean_names(names)
            rest = [n for n in _clean_names(own + aliases) if n.lower() not in {x.lower() for x in new}]
            if (new, rest) == (own, aliases) or not os.path.exists(path):
                continue
            _write_hosts(network, container_id, addrs, new, rest, cache_dir, _outside_recorded(network))
            _rewrite_claims(network, container_id, new + own)
        finally:
            os.close(fd)


def _outside_recorded(network: str) -> bool:
    """The network's outside-names policy, as its resolver's record says (outside_names)."""
    return bool(_conf_values(conf_path(network), OUTSIDE_MARK))


def _rewrite_claims(network: str, container_id: str, names: list[str]) -> None:
    """Rewrite the other containers of `network` that have one of `names` as an alias: that name became
    (or stopped being) a container's own name. Caller holds the network's lock."""
    wanted = {n.lower() for n in names}
    outside = _outside_recorded(network)
    for m in _members(network):
        if m == container_id:
            continue
        cache_dir, addrs, own, aliases, _ = _read_entry(_hosts_file(network, m))
        if wanted & {a.lower() for a in aliases}:
            _write_hosts(network, m, addrs, own, aliases, cache_dir, outside)


def _private_dirs(*paths: str) -> None:
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


def unregister(network: str, container_id: str) -> None:
    """Drop the container's names from `network`; stop the resolver when nobody is left on it."""
    if not os.path.isdir(_net_dir(network)):
        return
    fd = _lock(network)
    try:
        own = _read_entry(_hosts_file(network, container_id))[2]
        try:
            os.unlink(_hosts_file(network, container_id))
        except FileNotFoundError:
            pass
        if not _members(network):
            _stop_resolver(network)
        else:
            _rewrite_claims(network, container_id, own)  # its name, freed, may be another's alias
    finally:
        os.close(fd)


def _networks() -> list[str]:
    try:
        # Network names start with a letter or digit (config.is_safe_name): "_views" and ".tmp" are not networks.
        return sorted(n for n in os.listdir(dns_root()) if not n.endswith(".lock") and n[:1].isalnum())
    except OSError:
        return []


def _members(network: str) -> list[str]:
    try:
        return [n for n in os.listdir(os.path.join(_net_dir(network), HOSTS_DIR)) if not n.startswith(".")]
    except OSError:
        return []


def _conf_values(conf: str, prefix: str) -> list[str]:
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


def resolvers(network: str) -> list[str]:
    """The addresses the network's resolver listens on ([] when it has none)."""
    return _conf_values(conf_path(network), "listen-address=")


def names(network: str) -> dict[str, list[str]]:
    """container id -> names registered on `network` (for tests and inspection)."""
    return {cid: _read_names(_hosts_file(network, cid)) for cid in _members(network)}


# -- the resolver process -------------------------------------------------------------
BRIDGE_MARK = "# bridge "
OUTSIDE_MARK = "# outside names "


def _conf_text(network: str, listen: list[str], bridge: str, outside: bool = False) -> str:
    d = _net_dir(network)
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


def _cmdline_marker(conf: str) -> bytes:
    """The argument a resolver of `conf` is started with (one of the checks of _ours, never enough alone)."""
    return ("--conf-file=" + conf).encode()


def _cmdlines() -> "Iterator[tuple[int, list[bytes]]]":
    """(pid, argv) of every process we can read."""
    try:
        entries = os.listdir("/proc")
    except OSError:
        return
    for e in entries:
        if not e.isdigit():
            continue
        try:
            with open(f"/proc/{e}/cmdline", "rb") as f:
                yield int(e), f.read().split(b"\0")
        except OSError:
            continue


def _pids_with(marker: bytes) -> list[int]:
    """Processes whose command line has `marker` as one argument (candidates only: see _ours)."""
    return [pid for pid, args in _cmdlines() if marker in args]


# -- which process is a resolver ------------------------------------------------------------
# A command line is anybody's to write: a process in a container (or of any
# user) may carry `--conf-file=<a resolver's config>` in its arguments. So a
# resolver is only ever the pid in a pid file of its own dir (root's, 0700:
# dnsmasq's pid-file, and cnirun's own record of pid and start time written
# once dnsmasq serves), and that process must be the host's dnsmasq binary
# (the same inode: a container's dnsmasq is another file, whatever its path),
# run by root, in the network namespace it was started in (the host's for a
# network's resolver, the recorded one for a container's own), with that
# config on its command line.
OWN_PID = "cnirun.pid"


def _host_netns() -> str:
    from ..core.fsutil import identity

    return identity("/proc/self/ns/net")


def _ours(pid: int, conf: str, netns_id: str | None) -> bool:
    """Whether `pid` is cnirun's dnsmasq of `conf` (see above); netns_id None: in any netns (an orphan)."""
    from ..core.fsutil import identity

    try:
        exe, binary = os.stat(f"/proc/{pid}/exe"), os.stat(DNSMASQ)
        if (exe.st_dev, exe.st_ino) != (binary.st_dev, binary.st_ino):
            return False
        with open(f"/proc/{pid}/status", "rb") as f:
            uids = next((line.split()[1:] for line in f if line.startswith(b"Uid:")), [])
        if uids != [b"0"] * 4:
            return False
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            if _cmdline_marker(conf) not in f.read().split(b"\0"):
                return False
    except OSError:
        return False
    if netns_id is not None and identity(f"/proc/{pid}/ns/net") != netns_id:
        return False
    return not _zombie(pid)


def _recorded_pids(conf: str) -> list[int]:
    """The pids the resolver's dir records: cnirun's record if its start time still matches, dnsmasq's."""
    d = os.path.dirname(conf)
    out: list[int] = []
    try:
        with open(os.path.join(d, OWN_PID), encoding="ascii") as f:
            pid_s, start = (f.read().split() + ["", ""])[:2]
        if pid_s.isdigit() and start and process_start(int(pid_s)) == start:
            out.append(int(pid_s))
    except OSError:
        pass
    try:
        with open(os.path.join(d, PID_NAME), encoding="ascii") as f:
            pid_s = f.read().strip()
        if pid_s.isdigit() and int(pid_s) > 0 and int(pid_s) not in out:
            out.append(int(pid_s))
    except OSError:
        pass
    return out


def _expected_netns(conf: str) -> str:
    """The netns a resolver of `conf` runs in: a container's own, as its record says; else the host's."""
    where = _conf_values(conf, NETNS_MARK)
    return where[0].split(" ", 1)[0] if where else _host_netns()


def _running(conf: str) -> int:
    """The pid of cnirun's running dnsmasq of `conf` (0 for none)."""
    ns = _expected_netns(conf)
    return next((pid for pid in _recorded_pids(conf) if _ours(pid, conf, ns)), 0)


def _resolver_pid(network: str) -> int:
    """The network's running resolver (0 for none)."""
    return _running(conf_path(network))


def _record_pid(conf: str) -> None:
    """cnirun's own record of the dnsmasq that just started (pid and start time), once it serves."""
    d = os.path.dirname(conf)
    try:
        with open(os.path.join(d, PID_NAME), encoding="ascii") as f:
            pid = int(f.read().strip() or 0)
    except (OSError, ValueError):
        return
    start = process_start(pid)
    if pid <= 0 or not start:
        return
    tmp = os.path.join(d, "." + OWN_PID)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    try:
        os.write(fd, f"{pid} {start}\n".encode())
    finally:
        os.close(fd)
    os.rename(tmp, os.path.join(d, OWN_PID))


def _record(network: str) -> tuple[str, list[str]]:
    """(bridge, listen addresses) of the network's resolver record ('', [] for none)."""
    bridge = _conf_values(conf_path(network), BRIDGE_MARK)
    return (bridge[0] if bridge else ""), resolvers(network)


def _guard(network: str, bridge: str, listen: list[str]) -> None:
    """Only the network's own containers (and the host) may ask its resolver (cnirun.dns.guard)."""
    from . import guard as dns_guard

    if not bridge:
        return
    err = dns_guard.install(network, bridge, listen, dns_guard.state_tag(dns_root()))
    if err:
        raise DNSError(f"cannot keep the DNS resolver of network {network} to that network ({err}); "
                       "create the network with --no-dns to go without DNS")


def _unguard(network: str) -> None:
    from . import guard as dns_guard

    bridge, listen = _record(network)
    if bridge and listen:
        dns_guard.remove(network, bridge, listen, dns_guard.state_tag(dns_root()))


def repair_guards(networks: set[str] | None = None, dry_run: bool = False) -> list[tuple[str, str]]:
    """`cnirun network reload`: put back the guard rules (cnirun.dns.guard) a flush removed, for the
    resolvers of this state dir (of `networks`, default all). (network, '' or the error) per repair."""
    from . import guard as dns_guard

    state = dns_guard.state_tag(dns_root())
    out: list[tuple[str, str]] = []
    for network in _networks():
        if networks and network not in networks:
            continue
        bridge, listen = _record(network)
        if not bridge or not listen or not dns_guard.missing(network, bridge, listen, state):
            continue
        if not dry_run:
            dns_guard.remove(network, bridge, listen, state)  # those still there: install puts in all
        out.append((network, "" if dry_run else dns_guard.install(network, bridge, listen, state)))
    return out


def _revive(network: str) -> bool:
    """Start the network's resolver again if it died while its record says it should run (its gateway
    still on this host); whether it was started. Caller holds the network's lock; raises DNSError."""
    if not _members(network) or _resolver_pid(network):
        return False
    bridge, gws = _record(network)
    if not gws or not all(_is_local(g) for g in gws):
        return False
    _unguard(network)  # those a flush left: _guard puts all in
    _guard(network, bridge, gws)
    _spawn(conf_path(network), f"of network {network}")
    return True


def revive(networks: set[str] | None = None, dry_run: bool = False) -> list[tuple[str, str]]:
    """`cnirun network reload`: start again the resolvers (of `networks`, default all) that died while their
    network has containers. (network, '' or the error) per resolver found dead."""
    out: list[tuple[str, str]] = []
    for network in _networks():
        if (networks and network not in networks) or not _members(network) or _resolver_pid(network):
            continue
        if dry_run:
            out.append((network, ""))
            continue
        fd = _lock(network)
        try:
            if _revive(network):
                out.append((network, ""))
        except DNSError as e:
            out.append((network, str(e)))
        finally:
            os.close(fd)
    if not dry_run and any(os.path.exists(conf_path(n)) for n in _networks()):
        ensure_keeper()
    return out


def _ensure_resolver(network: str, listen: list[str], bridge: str, outside: bool = False) -> None:
    """Start the network's dnsmasq unless it runs with these addresses. Caller holds the network's lock."""
    wanted = _conf_text(network, listen, bridge, outside)
    try:
        with open(conf_path(network), encoding="utf-8") as f:
            current = f.read()
    except OSError:
        current = ""
    if current == wanted and _resolver_pid(network):
        return
    if current:
        _kill(conf_path(network))
        _unguard(network)  # whatever its record says may be in place (a start cut short): never twice
    # The record first: from here on gc finds the resolver and its rules by this file.
    _write_conf(conf_path(network), wanted)
    _guard(network, bridge, listen)
    _spawn(conf_path(network), f"of network {network}")


def _write_conf(conf: str, text: str) -> None:
    fd = os.open(conf, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    try:
        os.write(fd, text.encode())
    finally:
        os.close(fd)


def _spawn(conf: str, what: str, netns: str = "") -> None:
    """Run dnsmasq on `conf`; it forks into the background and its first process exits 0 once it serves.

    netns: start it inside that network namespace (a container's own
    resolver), through nsenter, which execs dnsmasq: the command line that
    identifies it stays dnsmasq's.
    """
    err_path = os.path.join(os.path.dirname(conf), "start.err")
    argv = [DNSMASQ, "--conf-file=" + conf]
    if netns:
        argv = [NSENTER, "--net=" + netns, "--", *argv]
    try:
        pid = _detached(argv, {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}, err_path, os.O_TRUNC)
    except OSError as e:
        raise DNSError(f"cannot start the DNS resolver {what} ({argv[0]}): {e.strerror}: "
                       "install dnsmasq-base, or create the network with --no-dns") from None
    _, status = os.waitpid(pid, 0)
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        try:
            with open(err_path, encoding="utf-8", errors="replace") as f:
                why = " ".join(f.read().split())[:300]
        except OSError:
            why = ""
        _kill(conf)
        raise DNSError(f"the DNS resolver {what} did not start (dnsmasq exit {code}: {why}); "
                       "is something else listening on its address's port 53?")
    _record_pid(conf)


def _detached(argv: list[str], env: dict[str, str], out_path: str, mode: int) -> int:
    """posix_spawn `argv` in a session of its own, stdin /dev/null, stdout and stderr to `out_path` (0600,
    opened with O_TRUNC or O_APPEND), no other descriptor of ours; its pid."""
    out = os.open(out_path, os.O_WRONLY | os.O_CREAT | mode | os.O_CLOEXEC, 0o600)
    null = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
    try:
        from ..cni.invoke import _inherited_fds

        actions = [(os.POSIX_SPAWN_DUP2, null, 0), (os.POSIX_SPAWN_DUP2, out, 1), (os.POSIX_SPAWN_DUP2, out, 2)]
        actions += [(os.POSIX_SPAWN_CLOSE, fd) for fd in _inherited_fds((out, null))]
        return os.posix_spawn(argv[0], argv, env, file_actions=actions, setsid=True)
    finally:
        os.close(out)
        os.close(null)


def _kill(conf: str) -> None:
    """SIGTERM cnirun's dnsmasq of `conf` and wait until it is gone: the one its pid files name, and any
    other that passes the same checks (its pid file lost); never a process that only names `conf`."""
    import time

    ns = _expected_netns(conf)
    pids = {p for p in _recorded_pids(conf) if _ours(p, conf, ns)}
    pids |= {p for p in _pids_with(_cmdline_marker(conf)) if _ours(p, conf, None)}
    for pid in pids:
        try:
            os.kill(pid, 15)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + STOP_WAIT
    while pids and time.monotonic() < deadline:
        pids = {p for p in pids if os.path.exists(f"/proc/{p}") and not _zombie(p)}
        if pids:
            time.sleep(0.002)
    for pid in pids:  # did not go on SIGTERM
        try:
            os.kill(pid, 9)
        except ProcessLookupError:
            pass


def _zombie(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[1].split()[0] == b"Z"
    except (OSError, IndexError):
        return True


def _stop_resolver(network: str) -> None:
    """Stop the resolver and remove the network's DNS dir. Caller holds the network's lock."""
    import shutil

    _kill(conf_path(network))
    _unguard(network)
    shutil.rmtree(_net_dir(network), ignore_errors=True)
    try:
        os.unlink(_lock_path(network))  # still held by the caller: see _lock
    except FileNotFoundError:
        pass


# -- a container's own resolver, for a container on several networks --------------------
# A network's resolver answers for that network only, and a client asks its
# first nameserver and takes its "no such name" as final: a container on
# networks A and B that lists both resolvers never finds a peer that is only
# on B. So such a container gets a resolver of its own, as Docker's embedded
# DNS does: a dnsmasq inside the container's netns on 127.0.0.11, which only
# that container can reach (scoping for free), reading the hosts dirs of all
# its networks (live through inotify, like the networks' own) and forwarding
# qualified names to its first network's resolver. It lives in the netns, so
# it keeps the netns alive: it is stopped before every teardown (detach) and
# by gc once the container is registered on fewer than two networks.
#
#     _views/<container id>/cnirun-dnsmasq.conf   written BEFORE dnsmasq starts (the record gc goes by)
#     _views/<container id>/dnsmasq.pid
VIEW_ADDRESS = "127.0.0.11"
VIEWS = "_views"  # not a network name: those start with a letter or digit
NETNS_MARK = "# netns "


def _view_dir(container_id: str) -> str:
    return os.path.join(dns_root(), VIEWS, container_id)


def _view_conf(container_id: str) -> str:
    return os.path.join(_view_dir(container_id), CONF_NAME)


def _view_text(container_id: str, networks: list[str], upstream: str, netns: str, netns_id: str) -> str:
    d = _view_dir(container_id)
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
        *[f"hostsdir={os.path.join(_net_dir(n), HOSTS_DIR)}" for n in networks],
        *([f"server={upstream}"] if upstream else []),
        "domain-needed",
        f"pid-file={os.path.join(d, PID_NAME)}",
        "user=root",
        "group=root",
        f"log-facility={os.path.join(d, 'dnsmasq.log')}",
        "local-ttl=0",
    ]
    return "\n".join(lines) + "\n"


def _registered(network: str, container_id: str) -> bool:
    return os.path.exists(_hosts_file(network, container_id))


def sync_view(container_id: str, networks: list[str], netns: str) -> list[str]:
    """Start, restart or stop the container's own resolver for the networks it is on now; its nameservers.

    networks: the container's networks in interface order. On two or more
    networks with DNS: its resolver runs in `netns` (started, or restarted
    when the networks or the netns changed) and the answer is [127.0.0.11].
    Otherwise no resolver of its own, and the answer is the one network's
    resolver address ([] without DNS). Call with the container's lifecycle
    lock held (or while nothing else can change it: its first attach).
    """
    mine = [n for n in networks if _registered(n, container_id)]
    if len(mine) < 2:
        stop_view(container_id)
        found = resolvers(mine[0]) if mine else []
        return found[:1]
    upstream = next((a for a in resolvers(mine[0]) if ":" not in a), "")
    from ..core.fsutil import identity

    wanted = _view_text(container_id, mine, upstream, netns, identity(netns))
    conf = _view_conf(container_id)
    try:
        with open(conf, encoding="utf-8") as f:
            current = f.read()
    except OSError:
        current = ""
    if current != wanted or not _running(conf):
        for _ in range(3):  # another container's stop_view may remove an empty _views/ in between
            try:
                _private_dirs(os.path.dirname(_view_dir(container_id)), _view_dir(container_id))
                break
            except FileNotFoundError:
                continue
        fd = _view_lock(container_id)
        try:
            if current:
                _kill(conf)
            _write_conf(conf, wanted)  # the record first
            _spawn(conf, f"of container {container_id[:12]}", netns)
        finally:
            if fd is not None:
                os.close(fd)
    return [VIEW_ADDRESS]


def _view_lock(container_id: str, blocking: bool = True) -> int | None:
    """flock the container's resolver dir (None: gone, or busy and not blocking): a start, stop or restart
    of its resolver holds it, so the keeper never starts one beside them (or after a stop)."""
    import fcntl

    try:
        fd = os.open(_view_dir(container_id), os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
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
    d = _view_dir(container_id)
    if not os.path.isdir(d):
        return
    import shutil  # not before: every teardown comes here, and shutil costs the hook path re and enum
    fd = _view_lock(container_id)
    try:
        if os.path.exists(_view_conf(container_id)):
            _kill(_view_conf(container_id))
        shutil.rmtree(d, ignore_errors=True)  # also a dir cut short before its record was written
    finally:
        if fd is not None:
            os.close(fd)
    try:
        os.rmdir(os.path.dirname(d))  # _views/ itself once no container has a resolver of its own
    except OSError:
        pass


def has_view(container_id: str) -> bool:
    return os.path.exists(_view_conf(container_id))


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
    return [os.path.basename(os.path.dirname(d)) for d in _conf_values(_view_conf(container_id), "hostsdir=")]


def _view_cids() -> list[str]:
    try:
        return [c for c in os.listdir(os.path.join(dns_root(), VIEWS)) if c[:1].isalnum()]
    except OSError:
        return []


def _view_wanted(cid: str) -> bool:
    return sum(_registered(n, cid) for n in _view_networks(cid)) >= 2


def _revive_view(cid: str, blocking: bool = True) -> bool:
    """Start the container's own resolver again if it died while the container is on two networks with DNS
    and still in the netns it was made for; whether it was started. Raises DNSError."""
    from ..core.fsutil import identity

    fd = _view_lock(cid, blocking)
    if fd is None:
        return False  # gone, or being started or stopped
    try:
        conf = _view_conf(cid)
        where = (_conf_values(conf, NETNS_MARK) or [""])[0].split(" ", 1)
        if _running(conf) or not _view_wanted(cid) or len(where) != 2 or not where[0] \
                or identity(where[1]) != where[0]:
            return False
        _spawn(conf, f"of container {cid[:12]}", where[1])
        return True
    finally:
        os.close(fd)


def _collect_views() -> list[str]:
    """gc: stop the resolvers of containers now on fewer than two networks with names (gone ones included);
    start again one that died while its container still runs in the netns it was made for."""
    done: list[str] = []
    for cid in _view_cids():
        if _view_wanted(cid):
            try:
                if _revive_view(cid):
                    done.append(f"restarted the DNS resolver of container {cid[:12]}")
            except DNSError as e:
                done.append(str(e))
            continue
        if _running(_view_conf(cid)):
            done.append(f"stopped the DNS resolver of gone container {cid[:12]}")
        stop_view(cid)
    return done


# -- the keeper: a resolver that dies is started again at once --------------------------------
# dnsmasq daemonises: nobody waits on it. One keeper per state dir (`python -m
# cnirun.run.watch resolvers`: one process whatever the number of networks and
# containers) holds <dns>/.keeper.lock (its pid inside) and watches every
# resolver of the state dir through a pidfd; one that dies while its record
# says it should run is started again (under its network's lock, or its
# container's: never beside a stop) within milliseconds. New resolvers are
# watched within KEEP_RESCAN. It exits once no resolver is left; register(),
# gc and `network reload` start it whenever none runs, so a killed keeper
# comes back with the next container, gc or reload. A resolver that keeps
# dying is started again at most every KEEP_BACKOFF_MAX seconds.
KEEPER_LOCK = ".keeper.lock"
KEEPER_LOG = ".keeper.log"
KEEP_RESCAN = 1.0
KEEP_IDLE = 2.0
KEEP_BACKOFF_MAX = 60.0
KEEPER_LOG_MAX = 1 << 20
_keepers: list[int] = []  # keepers this process started, reaped at the next ensure_keeper


def _keeper_lock() -> str:
    return os.path.join(dns_root(), KEEPER_LOCK)


def ensure_keeper() -> None:
    """Start the keeper unless one runs (of two started in a race, the second exits at once)."""
    import sys

    from ..core.lock import flock
    from ..core.paths import state_dir

    for pid in list(_keepers):
        try:
            if os.waitpid(pid, os.WNOHANG)[0]:
                _keepers.remove(pid)
        except ChildProcessError:
            _keepers.remove(pid)
    fd = flock(_keeper_lock(), blocking=False)
    if fd is None:
        return
    os.close(fd)
    # This package first on its path: the hook runs with -I -S and finds cnirun by an explicit sys.path.
    from ..core.paths import PACKAGE_PARENT as package_parent

    env = {"PATH": os.environ.get("PATH") or "/usr/sbin:/usr/bin:/sbin:/bin", "CNIRUN_STATE_DIR": state_dir(),
           "PYTHONPATH": os.pathsep.join([package_parent, *filter(None, [os.environ.get("PYTHONPATH")])])}
    log = os.path.join(dns_root(), KEEPER_LOG)
    try:
        if os.path.getsize(log) > KEEPER_LOG_MAX:
            os.truncate(log, 0)
    except OSError:
        pass
    try:
        _keepers.append(_detached([sys.executable, "-m", "cnirun.run.watch", "resolvers"], env, log, os.O_APPEND))
    except OSError:
        pass  # the resolvers run all the same; the next register, gc or reload tries again


def _kept() -> list[str]:
    """The configs of every resolver of the state dir that should run."""
    confs = [conf_path(n) for n in _networks() if os.path.exists(conf_path(n)) and _members(n)]
    return confs + [_view_conf(c) for c in _view_cids() if os.path.exists(_view_conf(c)) and _view_wanted(c)]


def _keep_one(conf: str) -> str:
    """Start the resolver of `conf` again if it is dead and should run; what was done ('' for nothing)."""
    owner = os.path.basename(os.path.dirname(conf))
    if os.path.basename(os.path.dirname(os.path.dirname(conf))) == VIEWS:
        # Busy: being started or stopped (the next scan looks again).
        return f"restarted the DNS resolver of container {owner[:12]}" if _revive_view(owner, False) else ""
    if not os.path.isdir(_net_dir(owner)):
        return ""
    fd = _lock(owner)
    try:
        if not os.path.isdir(_net_dir(owner)):  # stopped meanwhile: its lock file goes with it
            os.unlink(_lock_path(owner))
            return ""
        return f"restarted the DNS resolver of network {owner}" if _revive(owner) else ""
    finally:
        os.close(fd)


def keep() -> int:
    """The keeper's loop (see above); 0 once no resolver is left."""
    import select
    import sys
    import time

    from ..core.lock import flock

    def log(msg: str) -> None:
        sys.stderr.write(f"{time.strftime('%Y-%m-%dT%H:%M:%S')} cnirun-dns-keeper[{os.getpid()}]: {msg}\n")
        sys.stderr.flush()

    def hold() -> int | None:
        fd = flock(_keeper_lock(), blocking=False)
        if fd is not None:
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        return fd

    os.chdir("/")
    lock = hold()
    if lock is None:
        return 0
    log(f"keeping the DNS resolvers of {dns_root()}")
    last: dict[str, tuple[float, float]] = {}  # conf -> (last restart, delay before the next one)
    idle_since = time.monotonic()

    def restart(conf: str) -> None:
        now = time.monotonic()
        before, delay = last.get(conf, (-KEEP_BACKOFF_MAX, 0.0))
        if now < before + delay:
            return  # dying again and again: wait (the next scans retry)
        try:
            done = _keep_one(conf)
        except Exception as e:  # noqa: BLE001 - logged; the next scan tries again
            done = f"cannot restart the DNS resolver of {conf}: {e}"
        if done:
            log(done)
            last[conf] = (now, min(max(2 * delay, 1.0), KEEP_BACKOFF_MAX) if now - before < 10.0 else 0.0)

    while True:
        confs = _kept()
        now = time.monotonic()
        if confs:
            idle_since = now
        elif now - idle_since >= KEEP_IDLE:
            os.close(lock)  # then look once more: a starter that found the lock held relies on this look
            if not _kept() or (lock := hold()) is None:
                log("no resolver left, exiting")
                return 0
            continue
        watched: dict[int, str] = {}
        for conf in confs:
            pid = _running(conf)
            try:
                watched[os.pidfd_open(pid)] = conf
                continue
            except (OSError, ValueError):  # pid 0, or gone since
                pass
            restart(conf)
        poller = select.poll()
        for pfd in watched:
            poller.register(pfd, select.POLLIN)
        try:
            fired = [watched[pfd] for pfd, _ in poller.poll(KEEP_RESCAN * 1000)]
        finally:
            for pfd in watched:
                os.close(pfd)
        for conf in fired:
            restart(conf)


# -- gc ------------------------------------------------------------------------------------
def collect(alive: Callable[[str, str, str], bool] | None = None) -> list[str]:
    """`cnirun gc`: drop names of gone containers, stop resolvers nobody needs, kill unrecorded ones.

    alive(network, container_id, cache_dir): whether the container still has
    an attachment to the network (default: a cache file in `cache_dir`).
    Returns what was done, one line each.
    """
    from ..cni import cache as cnicache

    def cached(network: str, cid: str, cache_dir: str) -> bool:
        if not cache_dir:
            return False
        return any(a.network_name == network for a in cnicache.list_attachments(cache_dir, container_id=cid))

    check = alive or cached
    done: list[str] = []
    for network in _networks():
        fd = _lock(network)
        try:
            for cid in _members(network):
                cache_dir, _, own, _, _ = _read_entry(_hosts_file(network, cid))
                if not check(network, cid, cache_dir):
                    try:
                        os.unlink(_hosts_file(network, cid))
                    except FileNotFoundError:
                        pass
                    _rewrite_claims(network, cid, own)
                    done.append(f"dropped the names of gone container {cid[:12]} on network {network}")
            if not _members(network):
                if _resolver_pid(network):
                    done.append(f"stopped the DNS resolver of network {network} (no containers left)")
                _stop_resolver(network)
            elif _revive(network):
                done.append(f"restarted the DNS resolver of network {network}")
        finally:
            os.close(fd)
    done += _collect_views()
    from . import guard as dns_guard

    # Rules whose record is gone (a stop cut short between the two).
    done += dns_guard.collect({n for n in _networks() if os.path.exists(conf_path(n))},
                              dns_guard.state_tag(dns_root()))
    if _kept():
        ensure_keeper()
    # dnsmasq processes of this state dir whose network dir is gone (a stop cut short).
    prefix = ("--conf-file=" + dns_root() + os.sep).encode()
    for pid in _resolver_processes(prefix):
        conf = pid[1][len(b"--conf-file="):].decode(errors="replace")
        if not os.path.exists(conf) and _ours(pid[0], conf, None):
            try:
                os.kill(pid[0], 9)
                done.append(f"stopped an orphaned DNS resolver (pid {pid[0]})")
            except ProcessLookupError:
                pass
    return done


def _resolver_processes(prefix: bytes) -> list[tuple[int, bytes]]:
    """(pid, its --conf-file= argument) of every dnsmasq whose config path starts with `prefix`."""
    suffix = b"/" + CONF_NAME.encode()
    return [(pid, a) for pid, args in _cmdlines() for a in args if a.startswith(prefix) and a.endswith(suffix)]
