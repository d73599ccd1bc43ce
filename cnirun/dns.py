"""Names by DNS on cnirun networks: the names store and one dnsmasq resolver per network.

Every network with a gateway on the host (the bridge plugin's isGateway) gets
a resolver listening on that gateway address, port 53, that answers only for
the containers attached to that network (so scoping per network is free) and
forwards other names to the host's resolvers (`domain-needed`: single-label
names never leave the host). A conflist with `"cnirun": {"dns": false}` opts
out (`network create --no-dns`, compose `x-cni: {dns: false}`).

State, under <state>/dns/ (CNIRUN_STATE_DIR):

    <net>.lock                    flock serialising changes of one network (goes with its resolver)
    <net>/cnirun-dnsmasq.conf     the resolver's config: written BEFORE dnsmasq
                                  starts, so it is the record gc goes by
    <net>/dnsmasq.pid             written by dnsmasq
    <net>/hosts/<container id>    that container's A/AAAA lines (all its addresses
                                  on this network, under all its names), read by
                                  dnsmasq through --hostsdir (inotify: a new, changed
                                  or deleted file is live at once, no reload)

Why dnsmasq (measured on this machine, README "Names (DNS)"): a hostsdir
change is answered within ~0.1 ms and queries never fail during updates;
aardvark-dns 1.4.0 reloads on SIGHUP, answered new names only after ~200 ms
here and dropped 30 of 450 queries during reloads (aardvark-dns #389).

Lifecycle (lifecycle.py calls this): register() after each ADD (the resolver
is started on demand), unregister() after each DEL (the resolver is stopped
when the network has no containers left). dnsmasq daemonises, so resolvers
outlive cnirun; collect() (`cnirun gc`) drops names of containers that have
no cached attachment and stops resolvers without names or without a record.
Resolvers are found by their command line (`--conf-file=<that conf>`), never
by a name alone.

On the OCI hook path: os and _socket only at import time (no subprocess:
dnsmasq is started with posix_spawn).
"""
from __future__ import annotations

import os

from .errors import CNIError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Callable, Iterable, Iterator

    from .config import NetworkConfigList

DNSMASQ = "/usr/sbin/dnsmasq"
NSENTER = "/usr/bin/nsenter"
CONF_NAME = "cnirun-dnsmasq.conf"
PID_NAME = "dnsmasq.pid"
HOSTS_DIR = "hosts"
CACHE_MARK = "# cnirun cache "
STOP_WAIT = 2.0
MAX_NAMES = 64  # per container and network: every name is a line dnsmasq keeps


class DNSError(CNIError):
    """The network's resolver could not be started or its names not written."""


def dns_root(environ: dict[str, str] | None = None) -> str:
    from .paths import state_dir

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
    from .lock import flock

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
    names: list[str] = []
    try:
        with open(path, encoding="utf-8") as f:
            for line in f:
                if line.startswith("#"):
                    continue
                for n in line.split()[1:]:
                    if n not in names:
                        names.append(n)
    except OSError:
        pass
    return names


def _clean_names(names: Iterable[str]) -> list[str]:
    from .options import is_hostname

    out: list[str] = []
    for n in names:
        n = (n or "").strip().rstrip(".")
        # Docker names may hold '_' (not a host name character, but dnsmasq serves it).
        if n and is_hostname(n.replace("_", "-")) and n.lower() not in (o.lower() for o in out):
            out.append(n)
    return out[:MAX_NAMES]


def _write_hosts(network: str, container_id: str, addresses: list[str], names: list[str], cache_dir: str) -> None:
    """Write the container's lines in a temporary file next to hosts/, then rename: dnsmasq reads whole files."""
    d = _net_dir(network)
    os.makedirs(os.path.join(d, HOSTS_DIR), mode=0o755, exist_ok=True)
    text = CACHE_MARK + cache_dir + "\n" + "".join(f"{a}\t{' '.join(names)}\n" for a in addresses)
    tmp = os.path.join(d, ".tmp-" + container_id)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
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
        clean = _clean_names(_read_names(path) if names is None else names)
        _write_hosts(net.name, container_id, addrs, clean, cache_dir)
        _ensure_resolver(net.name, gws, _bridge(net))
    finally:
        os.close(fd)
    return gws


def add_names(container_id: str, names: list[str]) -> None:
    """Add names to every network the container is registered on (a name known only after create)."""
    for network in _networks():
        path = _hosts_file(network, container_id)
        if not os.path.exists(path):
            continue
        fd = _lock(network)
        try:
            old = _read_names(path)
            new = _clean_names(old + list(names))
            if new == old or not os.path.exists(path):
                continue
            cache_dir, addrs = _read_record(path)
            _write_hosts(network, container_id, addrs, new, cache_dir)
        finally:
            os.close(fd)


def _read_record(path: str) -> tuple[str, list[str]]:
    cache_dir, addrs = "", []
    try:
        with open(path, encoding="utf-8") as f:
            for line in f:
                if line.startswith(CACHE_MARK):
                    cache_dir = line[len(CACHE_MARK):].strip()
                elif line.split() and not line.startswith("#"):
                    addrs.append(line.split()[0])
    except OSError:
        pass
    return cache_dir, addrs


def unregister(network: str, container_id: str) -> None:
    """Drop the container's names from `network`; stop the resolver when nobody is left on it."""
    if not os.path.isdir(_net_dir(network)):
        return
    fd = _lock(network)
    try:
        try:
            os.unlink(_hosts_file(network, container_id))
        except FileNotFoundError:
            pass
        if not _members(network):
            _stop_resolver(network)
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


def _conf_text(network: str, listen: list[str], bridge: str) -> str:
    d = _net_dir(network)
    lines = [
        f"# cnirun: the resolver of network {network}; cnirun starts and stops it (cnirun.dns)",
        BRIDGE_MARK + bridge,  # the guard's rules name it (cnirun.dns_guard): the record to remove them by
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
    """How a resolver is recognised: its config file's path, as one argument of its command line."""
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
    """Processes whose command line has `marker` as one argument."""
    return [pid for pid, args in _cmdlines() if marker in args]


def _resolver_pid(network: str) -> int:
    """The running resolver's pid (0 for none), checked by its command line."""
    try:
        with open(os.path.join(_net_dir(network), PID_NAME), encoding="ascii") as f:
            pid = int(f.read().strip() or 0)
    except (OSError, ValueError):
        pid = 0
    if pid > 0:
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                if _cmdline_marker(conf_path(network)) in f.read().split(b"\0"):
                    return pid
        except OSError:
            pass
    pids = _pids_with(_cmdline_marker(conf_path(network)))
    return pids[0] if pids else 0


def _record(network: str) -> tuple[str, list[str]]:
    """(bridge, listen addresses) of the network's resolver record ('', [] for none)."""
    bridge = _conf_values(conf_path(network), BRIDGE_MARK)
    return (bridge[0] if bridge else ""), resolvers(network)


def _guard(network: str, bridge: str, listen: list[str]) -> None:
    """Only the network's own containers (and the host) may ask its resolver (cnirun.dns_guard)."""
    from . import dns_guard

    if not bridge:
        return
    err = dns_guard.install(network, bridge, listen, dns_guard.state_tag(dns_root()))
    if err:
        raise DNSError(f"cannot keep the DNS resolver of network {network} to that network ({err}); "
                       "create the network with --no-dns to go without DNS")


def _unguard(network: str) -> None:
    from . import dns_guard

    bridge, listen = _record(network)
    if bridge and listen:
        dns_guard.remove(network, bridge, listen, dns_guard.state_tag(dns_root()))


def repair_guards(networks: set[str] | None = None, dry_run: bool = False) -> list[tuple[str, str]]:
    """`cnirun network reload`: put back the guard rules (cnirun.dns_guard) a flush removed, for the
    resolvers of this state dir (of `networks`, default all). (network, '' or the error) per repair."""
    from . import dns_guard

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


def _ensure_resolver(network: str, listen: list[str], bridge: str) -> None:
    """Start the network's dnsmasq unless it runs with these addresses. Caller holds the network's lock."""
    wanted = _conf_text(network, listen, bridge)
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
    fd = os.open(conf, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
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
    err = os.open(err_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    null = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
    try:
        from .invoke import _inherited_fds

        actions = [(os.POSIX_SPAWN_DUP2, null, 0), (os.POSIX_SPAWN_DUP2, err, 1), (os.POSIX_SPAWN_DUP2, err, 2)]
        actions += [(os.POSIX_SPAWN_CLOSE, fd) for fd in _inherited_fds((err, null))]
        argv = [DNSMASQ, "--conf-file=" + conf]
        if netns:
            argv = [NSENTER, "--net=" + netns, "--", *argv]
        try:
            pid = os.posix_spawn(argv[0], argv, {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}, file_actions=actions,
                                 setsid=True)
        except OSError as e:
            raise DNSError(f"cannot start the DNS resolver {what} ({argv[0]}): {e.strerror}: "
                           "install dnsmasq-base, or create the network with --no-dns") from None
        _, status = os.waitpid(pid, 0)
    finally:
        os.close(err)
        os.close(null)
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


def _kill(conf: str) -> None:
    """SIGTERM the dnsmasq of `conf` (found by its command line) and wait until it is gone."""
    import time

    pids = set(_pids_with(_cmdline_marker(conf)))
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
    from .netns import identity

    wanted = _view_text(container_id, mine, upstream, netns, identity(netns))
    conf = _view_conf(container_id)
    try:
        with open(conf, encoding="utf-8") as f:
            current = f.read()
    except OSError:
        current = ""
    if current != wanted or not _pids_with(_cmdline_marker(conf)):
        if current:
            _kill(conf)
        for _ in range(3):  # another container's stop_view may remove an empty _views/ in between
            try:
                os.makedirs(_view_dir(container_id), mode=0o755, exist_ok=True)
                break
            except FileNotFoundError:
                continue
        _write_conf(conf, wanted)  # the record first
        _spawn(conf, f"of container {container_id[:12]}", netns)
    return [VIEW_ADDRESS]


def stop_view(container_id: str) -> None:
    """Stop the container's own resolver, if it has one (before its netns is torn down: it holds the netns)."""
    d = _view_dir(container_id)
    if not os.path.isdir(d):
        return
    import shutil  # not before: every teardown comes here, and shutil costs the hook path re and enum
    if os.path.exists(_view_conf(container_id)):
        _kill(_view_conf(container_id))
    shutil.rmtree(d, ignore_errors=True)  # also a dir cut short before its record was written
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


def _collect_views() -> list[str]:
    """gc: stop the resolvers of containers now on fewer than two networks with names (gone ones included);
    start again one that died while its container still runs in the netns it was made for."""
    from .netns import identity

    done: list[str] = []
    try:
        cids = [c for c in os.listdir(os.path.join(dns_root(), VIEWS)) if c[:1].isalnum()]
    except OSError:
        return done
    for cid in cids:
        conf = _view_conf(cid)
        running = bool(_pids_with(_cmdline_marker(conf)))
        if sum(_registered(n, cid) for n in _view_networks(cid)) >= 2:
            where = (_conf_values(conf, NETNS_MARK) or [""])[0].split(" ", 1)
            if not running and len(where) == 2 and where[0] and identity(where[1]) == where[0]:
                try:
                    _spawn(conf, f"of container {cid[:12]}", where[1])
                    done.append(f"restarted the DNS resolver of container {cid[:12]}")
                except DNSError as e:
                    done.append(str(e))
            continue
        if running:
            done.append(f"stopped the DNS resolver of gone container {cid[:12]}")
        stop_view(cid)
    return done


# -- gc ------------------------------------------------------------------------------------
def collect(alive: Callable[[str, str, str], bool] | None = None) -> list[str]:
    """`cnirun gc`: drop names of gone containers, stop resolvers nobody needs, kill unrecorded ones.

    alive(network, container_id, cache_dir): whether the container still has
    an attachment to the network (default: a cache file in `cache_dir`).
    Returns what was done, one line each.
    """
    from . import cache as cnicache

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
                cache_dir, _ = _read_record(_hosts_file(network, cid))
                if not check(network, cid, cache_dir):
                    try:
                        os.unlink(_hosts_file(network, cid))
                    except FileNotFoundError:
                        pass
                    done.append(f"dropped the names of gone container {cid[:12]} on network {network}")
            if not _members(network):
                if _pids_with(_cmdline_marker(conf_path(network))):
                    done.append(f"stopped the DNS resolver of network {network} (no containers left)")
                _stop_resolver(network)
            elif not _resolver_pid(network):
                bridge, gws = _record(network)
                if gws and all(_is_local(g) for g in gws):
                    _unguard(network)
                    _guard(network, bridge, gws)
                    _spawn(conf_path(network), f"of network {network}")
                    done.append(f"restarted the DNS resolver of network {network}")
        finally:
            os.close(fd)
    done += _collect_views()
    from . import dns_guard

    # Rules whose record is gone (a stop cut short between the two).
    done += dns_guard.collect({n for n in _networks() if os.path.exists(conf_path(n))},
                              dns_guard.state_tag(dns_root()))
    # dnsmasq processes of this state dir whose network dir is gone (a stop cut short).
    prefix = ("--conf-file=" + dns_root() + os.sep).encode()
    for pid in _resolver_processes(prefix):
        conf = pid[1][len(b"--conf-file="):].decode(errors="replace")
        if not os.path.exists(conf):
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
