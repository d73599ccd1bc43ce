"""Serialising "is this host port free?" with the ADD that takes it.

The check reads published ports from the CNI cache; the ADD writes them
there. Without a lock, two runs publishing the same port at the same moment
both pass the check and portmap installs two DNAT rules for one port. So the
check runs under one lock per CNI cache directory, and the ports it passes
are claimed there before the lock is let go: a claim file in
cnirun-ports.claims/, which the next check counts as published. The claim
stays until the ADD has cached the mappings (or failed and was undone):
PortLock.release() removes it. The lock itself is held only for the check
and the claim (milliseconds), never for an ADD: a start publishing one port
does not wait behind another's ADD of hundreds. A claim holds an flock on
its own file while its process lives; a claim whose flock can be taken is a
killed process's and is dropped by the next check (no pid to outlive).
Runs without -p never touch any of it.

Host-wide budget: all containers together publish at most
CNIRUN_MAX_PUBLISHED_PORTS mappings (default MAX_PUBLISHED, per cache
directory), each costing portmap a few iptables rules that every later
rule change walks; a publish over it is refused before anything is made.

The lock file and the claims live in the cache directory (the cache is what
is checked): they live and go with the cache they guard.

Every way to publish a port goes through `reserve`: `cnirun run -p` and
compose (runner/plan.py) and the OCI hook (cnirun.ports labels/annotations).
In Docker hook mode `cnirun run` leaves the check to the hook, which runs
inside `docker start` (holding the lock across the start would deadlock it).
"""
from __future__ import annotations

import os
TYPE_CHECKING = False  # start-up cost: see cnirun.core
if TYPE_CHECKING:
    from typing import Any, Callable

from ..core.errors import ArgumentError, CacheError, LockError
from ..core.lock import host_lock

WAIT_SECONDS = 120.0
LOCK_NAME = "cnirun-ports.lock"
CLAIMS_NAME = "cnirun-ports.claims"
MAX_PUBLISHED = 2048
BUDGET_ENV = "CNIRUN_MAX_PUBLISHED_PORTS"


def lock_path(cni: Any) -> str:
    return os.path.join(cni.cache_dir, LOCK_NAME)


class PortLock:
    """The port lock (acquire), and then the claim of the checked ports, held until ADD has cached the mappings."""

    def __init__(self, lock: host_lock) -> None:
        self._lock: host_lock | None = lock
        self._claim: tuple[int, str] | None = None  # (fd holding its flock, path)

    @classmethod
    def acquire(cls, cni: Any, wait: float = WAIT_SECONDS) -> "PortLock":
        path = lock_path(cni)
        try:
            os.makedirs(cni.cache_dir, mode=0o700, exist_ok=True)
        except OSError as e:
            raise CacheError(
                f"cache directory {cni.cache_dir} is not usable ({e.strerror}): "
                "set CNI_CACHE_DIR to a writable directory"
            ) from None
        if not os.access(cni.cache_dir, os.W_OK | os.X_OK):
            raise CacheError(f"cache directory {cni.cache_dir} is not writable: set CNI_CACHE_DIR to a writable one")
        lock = host_lock(path, wait)
        try:
            lock.__enter__()
        except LockError:
            raise ArgumentError(
                f"another cnirun run held the port lock {path} for {wait:.0f} s: retry, or find it with "
                f"`fuser {path}`"
            ) from None
        return cls(lock)

    def claim(self, cni: Any, ports: list[Any], owner: str) -> None:
        """Record `ports` as being published (by container `owner`, '' not known yet), then let the lock go."""
        import fcntl

        from ..core import jsonfast as json

        d = os.path.join(cni.cache_dir, CLAIMS_NAME)
        os.makedirs(d, mode=0o700, exist_ok=True)
        path = os.path.join(d, f"{os.getpid()}-{id(self):x}")
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            data = {"owner": owner, "pid": os.getpid(), "ports": [[p.host_port, p.protocol] for p in ports]}
            os.write(fd, json.dumps(data).encode())
        except BaseException:
            os.close(fd)
            os.unlink(path)
            raise
        self._claim = (fd, path)
        self._unlock()

    def _unlock(self) -> None:
        if self._lock is not None:
            self._lock.__exit__(None, None, None)
            self._lock = None

    def release(self) -> None:
        self._unlock()
        if self._claim is not None:
            fd, path = self._claim
            self._claim = None
            try:
                os.unlink(path)
            except OSError:
                pass
            os.close(fd)


def _short(container_id: str) -> str:
    return container_id[:12]


def published_ports(cni: Any, exclude: str = "") -> dict[tuple[int, str], str]:
    """(host port, protocol) -> CNI container ID, for every cached attachment but `exclude`'s."""
    from ..cni import cache as cnicache
    from ..cni.config import PORT_CAPABILITY

    taken: dict[tuple[int, str], str] = {}
    for att in cnicache.list_attachments(cni.cache_dir):
        if exclude and att.container_id == exclude:
            continue
        for m in att.capability_args.get(PORT_CAPABILITY) or []:
            if isinstance(m, dict):
                try:
                    taken[(int(m.get("hostPort", 0)), str(m.get("protocol", "tcp")))] = att.container_id
                except (TypeError, ValueError):
                    continue
    return taken


def claimed_ports(cni: Any, exclude: str = "") -> dict[tuple[int, str], str]:
    """(host port, protocol) -> "process PID" of every live claim but `exclude`'s; drops killed processes' claims.

    Call with the port lock held (a claim is made under it: none is half-made).
    """
    import fcntl

    from ..core import jsonfast as json

    d = os.path.join(cni.cache_dir, CLAIMS_NAME)
    try:
        names = os.listdir(d)
    except OSError:
        return {}
    out: dict[tuple[int, str], str] = {}
    for name in names:
        path = os.path.join(d, name)
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            continue
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:  # its process holds it: a live claim
                data = json.loads(os.read(fd, 1 << 20) or b"{}")
                if exclude and data.get("owner") == exclude:
                    continue
                for port, proto in data.get("ports") or []:
                    out[(int(port), str(proto))] = f"process {data.get('pid')}"
            else:
                os.unlink(path)  # its process is gone (killed before it released it)
        except (OSError, ValueError, TypeError, AttributeError):
            continue
        finally:
            os.close(fd)
    return out


def budget() -> int:
    """The host-wide number of published mappings (CNIRUN_MAX_PUBLISHED_PORTS, default MAX_PUBLISHED)."""
    raw = os.environ.get(BUDGET_ENV, "")
    if not raw:
        return MAX_PUBLISHED
    if not raw.isdigit() or int(raw) < 1:
        raise ArgumentError(f"{BUDGET_ENV}={raw!r} is not a positive number of published ports: e.g. {MAX_PUBLISHED}")
    return int(raw)


SCTP_ENDPOINTS = "/proc/net/sctp/eps"  # only there while the kernel's SCTP module is loaded


def _is_host_address(host_ip: str) -> bool:
    """Whether `host_ip` is an address of this host ('' and the wildcards are): the kernel's bind decides."""
    import _socket

    if not host_ip:
        return True
    s = _socket.socket(_socket.AF_INET6 if ":" in host_ip else _socket.AF_INET, _socket.SOCK_DGRAM)
    try:
        s.bind((host_ip, 0))
    except OSError as e:
        return e.errno != 99  # EADDRNOTAVAIL; another error is not this check's to report
    finally:
        s.close()
    return True


# Sockets that take new traffic to their port, as /proc/net/<proto> shows them: a TCP listener
# (state LISTEN), an unconnected UDP socket (state CLOSE). A client's connected socket or a TIME-WAIT
# also makes the kernel refuse a bind, but a DNAT takes nothing from them: conntrack keeps their flows.
_RECEIVING = {"tcp": "0A", "udp": "07"}


def _receiving_ports(protocol: str) -> set[int]:
    """The ports of this netns's sockets of `protocol` that take new traffic (IPv4 and IPv6)."""
    state = _RECEIVING[protocol]
    ports: set[int] = set()
    for table in (protocol, protocol + "6"):
        try:
            with open(f"/proc/net/{table}", encoding="ascii", errors="replace") as f:
                lines = f.read().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if len(fields) > 3 and fields[3] == state:
                try:
                    ports.add(int(fields[1].rpartition(":")[2], 16))
                except ValueError:
                    continue
    return ports


def _bind_refused(family: int, kind: int, host_ip: str, port: int) -> bool:
    """Whether the kernel refuses to bind (host_ip, port) because a socket has it."""
    import _socket

    try:
        s = _socket.socket(family, kind)
    except OSError:
        return False  # no such family here (IPv6 disabled): nothing can hold the port in it
    try:
        if kind == _socket.SOCK_STREAM:
            # As every TCP server binds: not refused beside the TIME-WAIT connections of a port that
            # just served (those of server sockets, which set it too).
            s.setsockopt(_socket.SOL_SOCKET, _socket.SO_REUSEADDR, 1)
        if family == _socket.AF_INET6:
            s.setsockopt(_socket.IPPROTO_IPV6, _socket.IPV6_V6ONLY, 1)
        s.bind((host_ip, port))
    except OSError as e:
        return e.errno == 98  # EADDRINUSE
    finally:
        s.close()
    return False


def _sctp_held(host_ip: str, port: int, path: str = SCTP_ENDPOINTS) -> bool:
    """Whether an SCTP endpoint on this host is bound to `port` on `host_ip` or on every address.

    Read from the kernel's endpoint table rather than probed with a socket: creating an SCTP socket would
    load the SCTP module. No table: no SCTP socket exists.
    """
    try:
        with open(path, encoding="ascii", errors="replace") as f:
            lines = f.read().splitlines()[1:]
    except OSError:
        return False
    wild = ("0.0.0.0", "::")
    for line in lines:
        # ENDPT SOCK STY SST HBKT LPORT UID INODE LADDRS...
        fields = line.split()
        if len(fields) < 6 or fields[5] != str(port):
            continue
        addrs = fields[8:]
        if not host_ip or host_ip in wild or not addrs or any(a in wild or a == host_ip for a in addrs):
            return True
    return False


def _held(host_ip: str, port: int, protocol: str) -> bool:
    """Whether a host socket holds the port where portmap's DNAT would take its traffic.

    TCP: a listener (bound with SO_REUSEADDR, as servers bind). UDP: an unconnected socket bound to the port
    on an overlapping address, found by binding without SO_REUSEADDR (a host socket that set it would let a
    second one with it beside it). SCTP: the kernel's endpoint table. No host IP publishes on every address,
    IPv4 and IPv6: a socket on any of them holds it. Clients' sockets (connected, TIME-WAIT) do not.
    """
    import _socket

    if protocol == "sctp":
        return _sctp_held(host_ip, port)
    kind = _socket.SOCK_STREAM if protocol == "tcp" else _socket.SOCK_DGRAM
    if host_ip:
        refused = _bind_refused(_socket.AF_INET6 if ":" in host_ip else _socket.AF_INET, kind, host_ip, port)
    else:
        refused = _bind_refused(_socket.AF_INET, kind, "0.0.0.0", port) or \
            _bind_refused(_socket.AF_INET6, kind, "::", port)
    # The kernel's verdict covers addresses (a wildcard socket, IPV6_V6ONLY); only a socket that takes
    # new traffic makes it "in use" (ports in the ephemeral range are often some client's local port).
    return refused and port in _receiving_ports(protocol)


def check_ports(
    cni: Any, ports: list[Any], exclude: str = "", display: Callable[[str], str] | None = None, hint: str = "pick another -p host port"
) -> None:
    """Refuse a host IP that is not this host's, a host port another container publishes (cache) or a host
    socket holds (_held).

    portmap itself would happily install a second DNAT rule for the same port.
    Call with the PortLock held, and keep it until ADD has cached the mappings.
    `exclude`: the container's own ID (a restart re-publishes its ports).
    """
    show = display or _short
    # Inside a user's rootless netns the host's addresses are not local: slirp4netns binds the host IP on
    # the host, and refuses one the host does not have (network.rootless.forward_ports).
    inside = bool(os.environ.get("CNIRUN_SLIRP_SOCKET"))
    for ip in sorted({p.host_ip for p in ports}):
        if not inside and not _is_host_address(ip):
            raise ArgumentError(
                f"host IP {ip} is not an address of this host: publish on one of its addresses (ip -br addr), "
                "or give no IP to publish on all of them"
            )
    everyone = published_ports(cni)
    taken = {k: v for k, v in everyone.items() if not exclude or v != exclude}
    claims = claimed_ports(cni, exclude)
    for p in ports:
        key = (p.host_port, p.protocol)
        owner = taken.get(key)
        if owner is not None:
            raise ArgumentError(
                f"host port {p.host_port}/{p.protocol} is already published by container {show(owner)}: {hint}"
            )
        if key in claims:
            raise ArgumentError(
                f"host port {p.host_port}/{p.protocol} is already published by a start still in progress "
                f"({claims[key]}): {hint}"
            )
        if _held(p.host_ip, p.host_port, p.protocol):
            raise ArgumentError(f"host port {p.host_port}/{p.protocol} is in use on this host: {hint}")
    # The container's own mappings count (a live `port add` keeps them); a restart's were DELed before.
    total = len({*everyone, *claims, *((p.host_port, p.protocol) for p in ports)})
    limit = budget()
    if total > limit:
        raise ArgumentError(
            f"publishing {len(ports)} more port(s) would make {total} published on this host, over the budget of "
            f"{limit} ({BUDGET_ENV}): remove some (cnirun port rm) or raise {BUDGET_ENV}"
        )


def reserve(
    cni: Any,
    ports: list[Any],
    exclude: str = "",
    wait: float = WAIT_SECONDS,
    display: Callable[[str], str] | None = None,
    hint: str = "pick another -p host port",
) -> PortLock | None:
    """Check `ports` under the port lock and claim them; the claim to release once ADD is done (None: no ports).

    The lock is let go once the ports are claimed: the ADD runs without it.
    """
    if not ports:
        return None
    lock = PortLock.acquire(cni, wait)
    try:
        check_ports(cni, ports, exclude, display, hint)
        lock.claim(cni, ports, exclude)
    except BaseException:
        lock.release()
        raise
    return lock
