"""The hook's /etc/hosts update: the container's CNI addresses under its hostname.

The engine wrote the container's hosts file for network `none` (localhost
only) before the addresses existed. The hook runs as root and the mounts in
config.json are the container's choice (`-v FILE:/etc/hosts:ro`), so it
writes only into the engine's own generated file:
- Docker: <docker root>/containers/<id>/hosts (the shim passes Docker's root
  as CNIRUN_DOCKER_ROOT in the hook's environment; default /var/lib/docker);
- Podman/CRI-O (containers/storage): <root>/<driver>-containers/<id>/userdata/hosts
  with <root> /run/containers/storage or /var/lib/containers/storage (more
  with CNIRUN_STORAGE_ROOTS, ':'-separated);
where <id> is the OCI container ID. Nothing else is ever opened for writing:
not a user mount, not a read-only mount, not a path with a symlink in it (the
realpath must be the path itself and the last component is opened with
O_NOFOLLOW), not a file that is not a root-owned regular file with one link.

The file is already bind-mounted into the container when createRuntime runs
(runc mounts before it calls the hook), so replacing it by rename would leave
the container with the old inode: the new content is written through the
descriptor opened above, in one write, before the container's first
instruction runs (createRuntime precedes start), so no reader can see a
partial file. Lines are marked, so a restart replaces them.

The hostname and every address are checked before use (RFC 1123 names,
address characters only). On the hook path: os and cnirun's lean modules.
"""
from __future__ import annotations

import os

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Callable, Mapping

    from .lifecycle import Attachment
    from ..core.oci_state import OCIConfig

HOSTS_MARK = "# cnirun"
DOCKER_ROOT_ENV = "CNIRUN_DOCKER_ROOT"
STORAGE_ROOTS_ENV = "CNIRUN_STORAGE_ROOTS"
DEFAULT_DOCKER_ROOT = "/var/lib/docker"
DEFAULT_STORAGE_ROOTS = ("/run/containers/storage", "/var/lib/containers/storage")
MAX_HOSTS_BYTES = 1 << 20
_ADDR_CHARS = frozenset("0123456789abcdefABCDEF:.")
_DRIVER_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789_")


def _roots(environ: Mapping[str, str]) -> tuple[str, list[str]]:
    docker = environ.get(DOCKER_ROOT_ENV) or DEFAULT_DOCKER_ROOT
    storage = list(DEFAULT_STORAGE_ROOTS) + [r for r in (environ.get(STORAGE_ROOTS_ENV) or "").split(":") if r]
    return os.path.realpath(docker), [os.path.realpath(r) for r in storage if os.path.isabs(r)]


def engine_file(source: str, container_id: str, environ: Mapping[str, str] | None = None, name: str = "hosts") -> bool:
    """Whether `source` is the engine's own generated file `name` (hosts, resolv.conf) of this container."""
    env = os.environ if environ is None else environ
    if not source or not os.path.isabs(source) or not container_id or "/" in container_id:
        return False
    if os.path.realpath(source) != source:  # a symlink (or ..) anywhere on the way
        return False
    docker, storage = _roots(env)
    if source == os.path.join(docker, "containers", container_id, name):
        return True
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
            return True
    return False


def _addresses(atts: list[Attachment]) -> list[str]:
    out = []
    for att in atts:
        for a in att.addresses():
            ip = a.split("/", 1)[0]
            if ip and all(c in _ADDR_CHARS for c in ip) and ip not in out:
                out.append(ip)
    return out


def add_hosts_entries(
    config: OCIConfig, container_id: str, atts: list[Attachment], environ: Mapping[str, str] | None = None
) -> str:
    """Add the container's addresses under its hostname to the engine's hosts file.

    Returns what went wrong ('' when done or nothing to do): a hosts file is
    a convenience, never a reason to fail the start.
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


def _rewrite_engine_file(
    name: str, what: str, dest: str, source: str, options: list[str], container_id: str, change: Callable[[str], str],
    environ: Mapping[str, str] | None,
) -> str:
    """Rewrite the engine's own generated file `name` of the container in place, through the checks above."""
    if not engine_file(source, container_id, environ, name):
        return f"{what} not updated: {dest} is mounted from {source!r}, not the engine's own file"
    if "ro" in options:
        return f"{what} not updated: {dest} is mounted read-only"
    try:
        fd = os.open(source, os.O_RDWR | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NOCTTY | os.O_NONBLOCK)
    except OSError as e:
        return f"{what} not updated: {source}: {e.strerror}"
    try:
        st = os.fstat(fd)
        if (st.st_mode & 0o170000) != 0o100000 or st.st_uid != 0 or st.st_nlink != 1:
            return f"{what} not updated: {source} is not a root-owned regular file with one link"
        if st.st_size > MAX_HOSTS_BYTES:
            return f"{what} not updated: {source} is larger than {MAX_HOSTS_BYTES >> 20} MiB"
        text = os.pread(fd, MAX_HOSTS_BYTES, 0).decode("utf-8", "replace")
        updated = change(text)
        if updated == text:
            return ""
        data = updated.encode()
        # One write at offset 0, then cut what is left of a longer old text.
        view = memoryview(data)
        offset = 0
        while offset < len(data):
            offset += os.pwrite(fd, view[offset:], offset)
        os.ftruncate(fd, len(data))
    except OSError as e:
        return f"{what} not updated: {source}: {e.strerror}"
    finally:
        os.close(fd)
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
    if not container_id or "/" in container_id or container_id.startswith("."):
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
