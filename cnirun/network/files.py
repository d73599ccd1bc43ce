"""A container's /etc/hosts and /etc/resolv.conf: what goes in them, and the one way they are written.

CNI gives a container addresses and maybe DNS settings, but no files. Three
kinds of file get them:
- a run's own files in its state dir (`cnirun run` sandbox and Podman modes,
  compose): made empty and bind-mounted before the container exists, filled
  once ADD has answered (write_container_files), rewritten when compose peers
  come and go (write_hosts) or another run leaves (forget_addresses);
- the engine's own generated files (hook mode): the engine wrote them for
  network `none`; the hook adds the addresses under the hostname
  (add_hosts_entries) and, after a restart, points resolv.conf at the
  container's resolver again (point_resolv_conf);
- a running container's resolv.conf, reached through /proc/<pid>/root
  (`network connect`/`disconnect`: follow_nameservers).

Every one is written by rewrite_in_place. The file is bind-mounted into the
container, so it is rewritten in place (same inode; a rename would leave the
container the old one): the whole new text in one write at offset 0, then
the rest of a longer old text cut. It is opened without following a symlink
in any part of the path the container chose or controls, must be a regular
file, is never created with other modes than 0644, and an engine's file must
also be root's own with one link (a hard link would be a file elsewhere).
"""
from __future__ import annotations

import os

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Callable, Iterable, Mapping

    from ..core.oci_state import OCIConfig
    from .attachment import Attachment
from ..core.paths import DEFAULT_DOCKER_ROOT, is_safe_name
from ..core.value import Record

MODE = 0o644  # what the engines give /etc/hosts and /etc/resolv.conf
MAX_BYTES = 1 << 20  # the most of an old text read to change it
HOSTS_MARK = "# cnirun"
HOST_RESOLV_CONF = "/etc/resolv.conf"
# systemd-resolved's stub listens on 127.0.0.53; its upstream servers are here.
RESOLVED_UPSTREAM = "/run/systemd/resolve/resolv.conf"
DOCKER_ROOT_ENV = "CNIRUN_DOCKER_ROOT"
STORAGE_ROOTS_ENV = "CNIRUN_STORAGE_ROOTS"
DEFAULT_STORAGE_ROOTS = ("/run/containers/storage", "/var/lib/containers/storage")
_DRIVER_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789_")
_HOSTS_HEADER = [
    ("127.0.0.1", ["localhost"]),
    ("::1", ["localhost", "ip6-localhost", "ip6-loopback"]),
    ("fe00::0", ["ip6-localnet"]),
    ("ff00::0", ["ip6-mcastprefix"]),
    ("ff02::1", ["ip6-allnodes"]),
    ("ff02::2", ["ip6-allrouters"]),
]


# -- the writer -----------------------------------------------------------------------
class Refused(OSError):
    """The file is not one cnirun writes; strerror says why ("is not a regular file", ...)."""


def _open(path: str, flags: int, beneath: str) -> int:
    """os.open(path) with O_NOFOLLOW; below `beneath` (trusted) no directory may be a symlink either."""
    flags |= os.O_NOFOLLOW | os.O_CLOEXEC
    if not beneath:
        return os.open(path, flags, MODE)
    rel = path[len(beneath):].strip("/").split("/") if path.startswith(beneath + "/") else []
    if not rel or any(c in ("", ".", "..") for c in rel):
        raise Refused(0, f"is not a path below {beneath}")
    fd = os.open(beneath, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        for part in rel[:-1]:  # ENOTDIR for a symlink: O_NOFOLLOW and O_DIRECTORY together
            nfd = os.open(part, os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=fd)
            os.close(fd)
            fd = nfd
        return os.open(rel[-1], flags, MODE, dir_fd=fd)
    finally:
        os.close(fd)


def rewrite_in_place(
    path: str | os.PathLike[str], change: Callable[[str], str] | str, *, create: bool = False, beneath: str = "",
    root_owned: bool = False,
) -> bool:
    """Write `change(old text)` (or the text `change`) into the file at `path`, in place; whether it changed.

    create: make a missing file (0644). beneath: a directory that is trusted
    while the rest of the path is not (no symlink below it is followed).
    root_owned: the file must be uid 0's with one link. Raises OSError, or
    Refused for a file that is not a regular one (or not root's own).
    """
    path = os.fspath(path)
    fd = _open(path, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK | (os.O_CREAT if create else 0), beneath)
    try:
        st = os.fstat(fd)
        if root_owned and ((st.st_mode & 0o170000) != 0o100000 or st.st_uid != 0 or st.st_nlink != 1):
            raise Refused(0, "is not a root-owned regular file with one link")
        if (st.st_mode & 0o170000) != 0o100000:
            raise Refused(0, "is not a regular file")
        if callable(change):
            if st.st_size > MAX_BYTES:
                raise Refused(0, f"is larger than {MAX_BYTES >> 20} MiB")
            text = os.pread(fd, MAX_BYTES, 0).decode("utf-8", "replace")
            updated = change(text)
            if updated == text:
                return False
        else:
            updated = change
        data = memoryview(updated.encode())
        offset = 0
        while offset < len(data):
            offset += os.pwrite(fd, data[offset:], offset)
        os.ftruncate(fd, len(data))
        return True
    finally:
        os.close(fd)


def touch(path: str | os.PathLike[str]) -> None:
    """Create an empty file to bind-mount now and fill before the container starts."""
    os.close(_open(os.fspath(path), os.O_WRONLY | os.O_CREAT, ""))


# -- /etc/hosts -----------------------------------------------------------------------
def render_hosts(entries: Iterable[tuple[str, list[str]]]) -> str:
    lines = [f"{ip}\t{' '.join(names)}" for ip, names in _HOSTS_HEADER]
    lines += [f"{ip}\t{' '.join(names)}" for ip, names in entries if ip and names]
    return "\n".join(lines) + "\n"


def write_hosts(path: str | os.PathLike[str], entries: Iterable[tuple[str, list[str]]]) -> None:
    """Rewrite a run's /etc/hosts: the standard localhost lines, then `entries` (ip, names)."""
    rewrite_in_place(path, render_hosts(entries), create=True)


def forget_addresses(paths: Iterable[str | os.PathLike[str]], addresses: set[str]) -> None:
    """Drop the lines naming any of `addresses` from these runs' hosts files (missing files are fine)."""
    def change(text: str) -> str:
        lines = text.splitlines()
        kept = [ln for ln in lines if not (ln.split() and ln.split()[0] in addresses)]
        return text if len(kept) == len(lines) else "\n".join(kept) + "\n"

    for path in paths:
        try:
            rewrite_in_place(path, change)
        except OSError:
            continue


# -- /etc/resolv.conf ------------------------------------------------------------------
class DNSConfig(Record):
    nameservers: list[str]
    search: list[str]
    options: list[str]

    _fields = ('nameservers', 'search', 'options')
    _defaults = {'nameservers': list, 'search': list, 'options': list}


def parse_resolv_conf(text: str) -> DNSConfig:
    dns = DNSConfig()
    for line in text.splitlines():
        parts = line.split("#", 1)[0].split(";", 1)[0].split()
        if not parts:
            continue
        if parts[0] == "nameserver" and len(parts) > 1:
            dns.nameservers.append(parts[1])
        elif parts[0] in ("search", "domain"):
            dns.search = parts[1:]
        elif parts[0] == "options":
            dns.options.extend(parts[1:])
    return dns


def render_resolv_conf(dns: DNSConfig) -> str:
    lines = [f"nameserver {n}" for n in dns.nameservers]
    if dns.search:
        lines.append("search " + " ".join(dns.search))
    if dns.options:
        lines.append("options " + " ".join(dns.options))
    return "\n".join(lines) + "\n"


def write_resolv_conf(path: str | os.PathLike[str], dns: DNSConfig) -> None:
    rewrite_in_place(path, render_resolv_conf(dns), create=True)


def _is_loopback(ns: str) -> bool:
    import ipaddress

    try:
        return ipaddress.ip_address(ns.split("%", 1)[0]).is_loopback
    except ValueError:
        return False


def _read(path: str) -> str | None:
    try:
        with open(path, encoding="utf-8") as f:
            return f.read()
    except OSError:
        return None


def host_dns() -> DNSConfig:
    """The host's resolver settings minus loopback nameservers (unreachable from a container)."""
    dns = parse_resolv_conf(_read(HOST_RESOLV_CONF) or "")
    if any(_is_loopback(n) for n in dns.nameservers) and os.path.exists(RESOLVED_UPSTREAM):
        upstream = _read(RESOLVED_UPSTREAM)
        if upstream is not None:
            dns = parse_resolv_conf(upstream)
    dns.nameservers = [n for n in dns.nameservers if not _is_loopback(n)]
    return dns


def dns_from_results(results: Iterable[dict[str, Any]]) -> DNSConfig:
    """Merge the `dns` sections of CNI results (first network first)."""
    dns = DNSConfig()
    for r in results:
        d = r.get("dns") if isinstance(r, dict) else None
        if not isinstance(d, dict):
            continue
        for key, target in (("nameservers", dns.nameservers), ("search", dns.search), ("options", dns.options)):
            for v in d.get(key) or []:
                if isinstance(v, str) and v not in target:
                    target.append(v)
    return dns


def container_dns(
    results: Iterable[dict[str, Any]], servers: list[str], search: list[str], resolvers: list[str] | None = None
) -> DNSConfig:
    """--dns/--dns-search win; then the container's networks' resolvers (cnirun.dns); then the CNI
    results' DNS; then the host's. Search domains and options: the results', else the host's."""
    dns = dns_from_results(results)
    if resolvers:
        dns.nameservers = list(dict.fromkeys(resolvers))[:3]  # resolv.conf reads at most three
        if not dns.search and not dns.options:
            host = host_dns()
            dns.search, dns.options = host.search, host.options
    if not dns.nameservers:
        host = host_dns()
        dns.nameservers = host.nameservers
        dns.search = dns.search or host.search
        dns.options = dns.options or host.options
    if servers:
        dns.nameservers = list(servers)
    if search:
        dns.search = [] if search == ["."] else list(search)
    return dns


def swap_nameservers(text: str, ours: set[str], new: list[str]) -> str:
    """resolv.conf text with the nameserver lines naming `ours` (cnirun's resolvers) replaced by `new`.

    Where the first of ours was, so their order against the others stays. A
    text that names none of `ours` chose its DNS otherwise (--dns, a network
    without DNS) and comes back unchanged.
    """
    lines = text.splitlines()
    mine = [i for i, ln in enumerate(lines) if ln.split()[:1] == ["nameserver"] and ln.split()[1:2] and
            ln.split()[1] in ours]
    if not mine:
        return text
    out: list[str] = []
    for i, line in enumerate(lines):
        if i == mine[0]:
            out += [f"nameserver {n}" for n in new]
        if i not in mine:
            out.append(line)
    return "\n".join(out) + "\n"


def follow_nameservers(pid: int, ours: set[str], new: Callable[[], list[str]]) -> None:
    """In running process `pid`'s /etc/resolv.conf, cnirun's nameserver lines (`ours`) become `new()`.

    Reached through /proc/<pid>/root, so it lands in whatever file the engine
    bind-mounted there (in every mode); a symlink of the container's on the
    way is not followed (an absolute one would lead into the host's tree). A
    file naming none of `ours` (--dns, no network with DNS so far) is left
    alone, without calling `new`. new() == []: the host's nameservers, as a
    run on networks without DNS gets. Unreadable or refused: left alone.
    """
    def change(text: str) -> str:
        if swap_nameservers(text, ours, []) == text:
            return text
        return swap_nameservers(text, ours, new() or host_dns().nameservers)

    root = f"/proc/{pid}/root"
    try:
        rewrite_in_place(root + "/etc/resolv.conf", change, beneath=root)
    except OSError:
        pass


# -- a run's own files (sandbox, Podman, compose) --------------------------------------------
def host_file_binds(hosts: str | os.PathLike[str], resolv_conf: str | os.PathLike[str]) -> list[str]:
    """Create the (empty) files and return their bind mounts: the container is created before ADD."""
    touch(hosts)
    touch(resolv_conf)
    return [f"{hosts}:/etc/hosts", f"{resolv_conf}:/etc/resolv.conf"]


def write_container_files(
    hosts: str | os.PathLike[str], resolv_conf: str | os.PathLike[str], container_id: str, atts: list[Attachment],
    names: list[str], add_hosts: list[str], servers: list[str], search: list[str],
) -> None:
    """Fill hosts (the first network's addresses under `names`, then --add-host NAME:IP) and resolv.conf.

    resolv.conf: --dns/--dns-search, else the networks' own resolvers
    (cnirun.dns: the container's own one on several), else the results' and
    the host's.
    """
    entries: list[tuple[str, list[str]]] = []
    for att in atts[:1]:
        for addr in att.addresses():
            entries.append((addr.split("/", 1)[0], names))
    for h in add_hosts:
        name, sep, ip = h.replace("=", ":", 1).partition(":")
        if sep:
            entries.append((ip, [name]))
    write_hosts(hosts, entries)
    from ..dns.view import nameservers

    resolvers = nameservers(container_id, [a.network for a in atts])
    write_resolv_conf(resolv_conf, container_dns([a.result for a in atts], servers, search, resolvers))


def planned_resolvers(networks: list[Any]) -> list[str]:
    """The nameservers of a container on these networks, from the configs alone, before ADD (Docker hook
    mode: dockerd writes resolv.conf): the network's resolver, or on several with DNS the container's own."""
    from ..dns.netconf import planned_resolver
    from ..dns.view import VIEW_ADDRESS

    found = [a for a in (planned_resolver(n) for n in networks) if a]
    return [VIEW_ADDRESS] if len(found) > 1 else found


# -- the engine's own files (hook mode) ----------------------------------------------------
# The engine wrote them for network `none` before the addresses existed. The
# hook runs as root and the mounts in config.json are the container's choice
# (`-v FILE:/etc/hosts:ro`), so it writes only into the engine's own file:
# - Docker: <docker root>/containers/<id>/<name> (the shim passes Docker's root as
#   CNIRUN_DOCKER_ROOT in the hook's environment; default /var/lib/docker);
# - Podman/CRI-O (containers/storage): <root>/<driver>-containers/<id>/userdata/<name>
#   with <root> /run/containers/storage or /var/lib/containers/storage (more with
#   CNIRUN_STORAGE_ROOTS, ':'-separated);
# where <id> is the OCI container ID. Not a user mount, not a read-only mount,
# not a path with a symlink in it. runc has mounted the file when createRuntime
# runs, and the container's first instruction runs after it: no reader sees a
# partial file. The hosts lines are marked, so a restart replaces them.
def _roots(environ: Mapping[str, str]) -> tuple[str, list[str]]:
    docker = environ.get(DOCKER_ROOT_ENV) or DEFAULT_DOCKER_ROOT
    storage = list(DEFAULT_STORAGE_ROOTS) + [r for r in (environ.get(STORAGE_ROOTS_ENV) or "").split(":") if r]
    return os.path.realpath(docker), [os.path.realpath(r) for r in storage if os.path.isabs(r)]


def _engine_root(source: str, container_id: str, environ: Mapping[str, str] | None, name: str) -> str:
    """The engine root `source` is the file `name` of this container under ('' when it is not)."""
    env = os.environ if environ is None else environ
    if not source or not os.path.isabs(source) or not is_safe_name(container_id):
        return ""
    if os.path.realpath(source) != source:  # a symlink (or ..) anywhere on the way
        return ""
    docker, storage = _roots(env)
    if source == os.path.join(docker, "containers", container_id, name):
        return docker
    for root in storage:
        if not source.startswith(root + "/"):
            continue
        parts = source[len(root) + 1 :].split("/")
        if (
            len(parts) == 4
            and parts[0].endswith("-containers")
            and parts[0][: -len("-containers")]
            and all(c in _DRIVER_CHARS for c in parts[0][: -len("-containers")])
            and parts[1:] == [container_id, "userdata", name]
        ):
            return root
    return ""


def engine_file(source: str, container_id: str, environ: Mapping[str, str] | None = None, name: str = "hosts") -> bool:
    """Whether `source` is the engine's own generated file `name` (hosts, resolv.conf) of this container."""
    return bool(_engine_root(source, container_id, environ, name))


def _addresses(atts: list[Attachment]) -> list[str]:
    from .options import is_address

    out = []
    for att in atts:
        for a in att.addresses():
            ip = a.split("/", 1)[0]
            if is_address(ip) and ip not in out:
                out.append(ip)
    return out


def add_hosts_entries(
    config: OCIConfig, container_id: str, atts: list[Attachment], environ: Mapping[str, str] | None = None
) -> str:
    """Add the container's addresses under its hostname to the engine's hosts file.

    The hostname and every address are checked before use (RFC 1123 names,
    address characters only). Returns what went wrong ('' when done or
    nothing to do): a hosts file is a convenience, never a reason to fail the start.
    """
    from ..dns.hostname import is_hostname

    hostname, source = config.hostname, config.hosts_source
    if not hostname or not source:
        return ""
    if not is_hostname(hostname):
        return f"hosts file not updated: the hostname {hostname!r} is not a valid host name (RFC 1123)"
    addrs = _addresses(atts)
    if not addrs:
        return ""

    def change(text: str) -> str:
        kept = [ln for ln in text.splitlines() if not ln.endswith(HOSTS_MARK)]
        kept += [f"{ip}\t{hostname}\t{HOSTS_MARK}" for ip in addrs]
        return "\n".join(kept) + "\n"

    return _rewrite_engine_file("hosts", "hosts file", "/etc/hosts", source, config.hosts_options, container_id,
                                change, environ)


def point_resolv_conf(
    config: OCIConfig, container_id: str, ours: set[str], nameservers: list[str],
    environ: Mapping[str, str] | None = None,
) -> str:
    """Swap cnirun's nameserver lines in the engine's own resolv.conf for `nameservers` (swap_nameservers).

    For a restarted hook-mode container that `cnirun network connect` put on
    more networks than the engine knows of: the engine wrote resolv.conf
    again from the run's --dns. Returns what went wrong ('' when done).
    """
    if not config.resolv_source or not nameservers:
        return ""

    def change(text: str) -> str:
        return swap_nameservers(text, ours, nameservers)

    return _rewrite_engine_file("resolv.conf", "resolv.conf", "/etc/resolv.conf", config.resolv_source,
                                config.resolv_options, container_id, change, environ)


def _rewrite_engine_file(
    name: str, what: str, dest: str, source: str, options: list[str], container_id: str, change: Callable[[str], str],
    environ: Mapping[str, str] | None,
) -> str:
    """Rewrite the engine's own generated file `name` of the container in place, through the checks above."""
    root = _engine_root(source, container_id, environ, name)
    if not root:
        return f"{what} not updated: {dest} is mounted from {source!r}, not the engine's own file"
    if "ro" in options:
        return f"{what} not updated: {dest} is mounted read-only"
    try:
        rewrite_in_place(source, change, beneath=root, root_owned=True)
    except Refused as e:
        return f"{what} not updated: {source} {e.strerror}"
    except OSError as e:
        return f"{what} not updated: {source}: {e.strerror}"
    return ""


# -- what the container had: asked for again at its next start -------------------------
ADDRESSES_FILE = "cnirun-addresses.json"
MAX_ADDRESSES_BYTES = 64 << 10


def engine_dir(container_id: str, environ: Mapping[str, str] | None = None) -> str:
    """The engine's own directory of this container ('' when there is none, or it is not root's own).

    Docker's <docker root>/containers/<id>, Podman's (containers/storage)
    <root>/<driver>-containers/<id>/userdata: the engine writes them, the
    container has files from them bind-mounted (never the directory itself),
    and the engine removes them with the container. No symlink on the way,
    root-owned, not writable by anyone else.
    """
    env = os.environ if environ is None else environ
    if not is_safe_name(container_id):
        return ""
    docker, storage = _roots(env)
    candidates = [os.path.join(docker, "containers", container_id)]
    for root in storage:
        try:
            drivers = [n for n in os.listdir(root) if n.endswith("-containers") and n[: -len("-containers")] and
                       all(c in _DRIVER_CHARS for c in n[: -len("-containers")])]
        except OSError:
            continue
        candidates += [os.path.join(root, n, container_id, "userdata") for n in drivers]
    for d in candidates:
        try:
            st = os.lstat(d)
        except OSError:
            continue
        if (st.st_mode & 0o170000) == 0o040000 and st.st_uid == 0 and not st.st_mode & 0o022 and \
                os.path.realpath(d) == d:
            return d
    return ""


def remember_addresses(
    container_id: str, had: dict[str, dict[str, Any]], environ: Mapping[str, str] | None = None
) -> str:
    """Note in the engine's directory of the container what it had on each network (network -> {"ips", "mac"}).

    Merged into what is there (networks not in `had` keep their entry): the
    next start asks for the same again (saved_addresses). Nothing without an
    engine directory (a `cnirun run` ID, a container already removed).
    Returns what went wrong ('' when done or nothing to do).
    """
    d = engine_dir(container_id, environ) if had else ""
    if not d:
        return ""
    from ..core import jsonfast as json
    from ..core.fsutil import atomic_write

    merged = {**saved_addresses(container_id, environ, d), **had}
    try:
        # Not a bind-mounted file: replaced by rename, readable by root only.
        atomic_write(os.path.join(d, ADDRESSES_FILE), json.dumps({"networks": merged}).encode(), 0o600, fsync=False)
    except OSError as e:
        return f"addresses not recorded for the next start: {d}: {e.strerror}"
    return ""


def saved_addresses(
    container_id: str, environ: Mapping[str, str] | None = None, directory: str | None = None
) -> dict[str, dict[str, Any]]:
    """What remember_addresses noted for the container: network -> {"ips": [...], "mac": "..."}, checked."""
    from ..core.errors import ArgumentError
    from .options import is_address, parse_mac

    d = engine_dir(container_id, environ) if directory is None else directory
    if not d:
        return {}
    from ..core import jsonfast as json

    try:
        fd = os.open(os.path.join(d, ADDRESSES_FILE), os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
    except OSError:
        return {}
    try:
        st = os.fstat(fd)
        if (st.st_mode & 0o170000) != 0o100000 or st.st_uid != 0:
            return {}
        obj = json.loads(os.read(fd, MAX_ADDRESSES_BYTES))
    except (OSError, ValueError):
        return {}
    finally:
        os.close(fd)
    nets = obj.get("networks") if isinstance(obj, dict) else None
    out: dict[str, dict[str, Any]] = {}
    for name, entry in (nets.items() if isinstance(nets, dict) else []):
        if not isinstance(name, str) or not isinstance(entry, dict):
            continue
        ips = [ip for ip in entry.get("ips") or [] if is_address(ip)][:2]
        try:
            mac = parse_mac(entry["mac"]) if isinstance(entry.get("mac"), str) and entry["mac"] else ""
        except ArgumentError:
            mac = ""
        out[name] = {"ips": ips, "mac": mac}
    return out
