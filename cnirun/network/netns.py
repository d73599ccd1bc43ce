"""Network namespaces: named ones under /run/netns, and a container's own, checked and pinned.

Named: `ip netns add` bind-mounts a fresh namespace under /run/netns, which
outlives the processes inside it; `cnirun exec`, Podman runs and the tests
use them. Executing `ip` costs about a millisecond, far less than importing
pyroute2.

A container's own (the hook, the Docker shim): the hook runs as root and
would run every plugin in whatever namespace /proc/<pid>/ns/net is. A
container started with --network host shares the host's (the failure
cleanup's DEL of eth0 then deleted the host's eth0); one started with
--network container:VICTIM shares VICTIM's. So before anything happens,
`check_own_netns` insists on the container's own new namespace: the OCI
config asks the runtime for a new one (a `network` entry without a path),
and the namespace the process is in is neither the host's (the runtime's
own, or init's) nor one pinned for another container, nor a named one.

The pin: createRuntime bind-mounts /proc/<pid>/ns/net at
<state dir>/netns/<id>; poststop and `cnirun gc` enter the namespace through
it after the process died, so every plugin's DEL cleans up fully. The Docker
shim makes the namespace itself, pinned there, before runc runs
(new_pinned_netns).
"""
from __future__ import annotations

import os

from ..core.errors import NetnsError
from ..core.fsutil import identity
from ..core.oci_state import HookError
from ..core.paths import NETNS_DIR, pins_dir

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Mapping

HOST_NETNS = ("/proc/self/ns/net", "/proc/1/ns/net")
MS_BIND = 0x1000  # <sys/mount.h>
MNT_DETACH = 0x2
CLONE_NEWNET = 0x40000000  # <sched.h>
SIOCGIFFLAGS, SIOCSIFFLAGS, IFF_UP = 0x8913, 0x8914, 0x1  # <linux/sockios.h>, <net/if.h>


# -- named namespaces (iproute2) ---------------------------------------------------------
def named_dir() -> str:
    """NETNS_DIR, or inside a user's namespaces the state dir's own (core.paths.named_netns_dir)."""
    from ..core.paths import named_netns_dir

    return named_netns_dir()


def path_of(name: str) -> str:
    return os.path.join(named_dir(), name)


def _ip(*args: str) -> None:
    from ..cni.invoke import run_program  # posix_spawn: subprocess costs ~6 ms of imports before podman starts

    code, _, err = run_program(["ip", *args])
    if code == 127:
        raise NetnsError("the 'ip' command is missing: install iproute2")
    if code != 0:
        text = err.decode(errors="replace").strip()
        raise NetnsError(f"ip {' '.join(args)}: {text.splitlines()[-1] if text else f'exit {code}'}")


def create(name: str | None = None, prefix: str = "cnirun-") -> tuple[str, str]:
    """Create a named netns; returns (name, path). Needs root (CAP_SYS_ADMIN)."""
    ns = name or prefix + os.urandom(6).hex()  # not secrets: its hashlib and hmac cost ~5 ms of a podman run
    if named_dir() != NETNS_DIR:  # inside a user's namespaces: iproute2 would write root's /run/netns
        return ns, _new_netns_at(path_of(ns))
    if os.geteuid() != 0:
        raise NetnsError("creating a network namespace needs root: run cnirun as root (sudo)")
    _ip("netns", "add", ns)
    _ip("-n", ns, "link", "set", "lo", "up")
    return ns, path_of(ns)


def attach(name: str, pid: int) -> str:
    """Name process `pid`'s netns again (`ip netns attach`): /run/netns/NAME; returns the path."""
    if named_dir() != NETNS_DIR:
        return _bind_netns_at(pid, path_of(name))
    _ip("netns", "attach", name, str(pid))
    return path_of(name)


def remove(name: str) -> None:
    """Delete a named netns; a missing one is fine."""
    if named_dir() != NETNS_DIR:
        err = _unpin_at(path_of(name))
        if err:
            raise NetnsError(err)
        return
    if not os.path.exists(path_of(name)):
        return
    _ip("netns", "delete", name)


# -- where a container's own namespace is pinned -------------------------------------------
def pin_path(container_id: str, environ: Mapping[str, str] | None = None) -> str:
    """Where the container's netns is bind-mounted while it exists."""
    return os.path.join(pins_dir(environ), container_id)


# -- is it the container's own namespace? ---------------------------------------------
def check_own_netns(pid: int, container_id: str, config_netns: str | None, environ: Mapping[str, str] | None = None) -> None:
    """Refuse (HookError) unless the container's process is in its own, new network namespace.

    `config_netns` is OCIConfig.netns: None (no network namespace: the
    host's), '' (a new one) or the path of a namespace the container joins.
    """
    if config_netns is None:
        raise HookError(
            "the container has no network namespace of its own (--network host): cnirun attaches only to "
            "a container's new namespace; start it with --network none"
        )
    if config_netns:
        raise HookError(
            f"the container joins the existing network namespace {config_netns} (--network host, "
            "container:NAME or ns:PATH): cnirun attaches only to a container's new namespace; "
            "start it with --network none"
        )
    mine = identity(f"/proc/{pid}/ns/net")
    if not mine:
        raise HookError(f"/proc/{pid}/ns/net does not exist: the container's process is gone")
    for host in HOST_NETNS:
        if identity(host) == mine:
            raise HookError(
                "the container's process is in the host's network namespace: cnirun attaches only to a "
                "container's new namespace; start it with --network none"
            )
    pins = pins_dir(environ)
    for directory, skip in ((pins, container_id), (named_dir(), "")):
        try:
            names = os.listdir(directory)
        except OSError:
            continue
        for name in names:
            if name == skip or name.startswith("."):
                continue
            path = os.path.join(directory, name)
            if identity(path) == mine and is_pinned(path):
                owner = f"container {name[:12]}" if directory == pins else f"the named namespace {path}"
                raise HookError(
                    f"the container's network namespace is already used by {owner}: cnirun attaches only to "
                    "a container's new namespace; start it with --network none"
                )


def interfaces(pid: int) -> list[str]:
    """The interface names in the network namespace of `pid` (/proc/<pid>/net/dev: no setns needed)."""
    try:
        with open(f"/proc/{pid}/net/dev", "rb") as f:
            lines = f.read().decode(errors="replace").splitlines()[2:]
    except OSError:
        return []
    return [ln.split(":", 1)[0].strip() for ln in lines if ":" in ln]


def check_free_ifnames(pid: int, ifnames: list[str]) -> None:
    """Refuse when an interface the ADD would create exists already.

    The failure cleanup of an ADD DELs the interface it asked for: it must
    never be one the ADD did not create.
    """
    present = set(interfaces(pid))
    taken = [n for n in ifnames if n in present]
    if taken:
        raise HookError(
            f"the container's network namespace already has {', '.join(taken)}: cnirun attaches only to a "
            "new namespace without those interfaces; start it with --network none"
        )


# -- the pin ------------------------------------------------------------------------
def _libc_call(name: str, *args: object) -> str:
    """mount(2)/umount2(2)/unshare(2) through ctypes; '' on success, else "name: errno text".

    Importing ctypes costs ~2 ms; exec'ing mount(8) cost ~5 ms per call.
    """
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)  # the process's own libc: dlopen(NULL)
    libc.mount.argtypes = (ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_void_p)
    libc.umount2.argtypes = (ctypes.c_char_p, ctypes.c_int)
    libc.unshare.argtypes = (ctypes.c_int,)
    if getattr(libc, name)(*args) == 0:
        return ""
    return f"{name}: {os.strerror(ctypes.get_errno())}"


def _mount_bind(src: str, dst: str) -> str:
    return _libc_call("mount", os.fsencode(src), os.fsencode(dst), None, MS_BIND, None)


def _umount(path: str, lazy: bool = False) -> str:
    return _libc_call("umount2", os.fsencode(path), MNT_DETACH if lazy else 0)


def is_pinned(path: str) -> bool:
    """Whether `path` is a live netns bind mount (and not the empty file under it)."""
    try:
        st = os.stat(path)
        parent = os.stat(os.path.dirname(path))
    except OSError:
        return False
    # A bind-mounted nsfs file sits on another device than its directory.
    return st.st_dev != parent.st_dev


def _mount_point(dst: str) -> str:
    """`dst` as an empty file to mount on (a pin still there is unpinned first)."""
    os.makedirs(os.path.dirname(dst), mode=0o755, exist_ok=True)
    if is_pinned(dst):
        _unpin_at(dst)
    fd = os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o444)
    os.close(fd)
    return dst


def pin_netns(pid: int, container_id: str) -> str:
    """Bind-mount /proc/<pid>/ns/net at pin_path(container_id); returns the path."""
    return _bind_netns_at(pid, pin_path(container_id))


def _bind_netns_at(pid: int, path: str) -> str:
    src = f"/proc/{pid}/ns/net"
    if not os.path.exists(src):
        raise NetnsError(f"{src} does not exist: the container's process is gone")
    dst = _mount_point(path)
    err = _mount_bind(src, dst)
    if err:
        _unlink(dst)
        raise NetnsError(f"cannot pin the container's netns at {dst}: {err}")
    return dst


def new_pinned_netns(container_id: str, environ: Mapping[str, str] | None = None) -> str:
    """Make a new network namespace, loopback up, pinned at pin_path(container_id); returns the path.

    The Docker shim's worker does this before runc creates the container,
    which then joins the namespace by path (cnirun.oci.shim): the ADDs run while
    runc works. A forked child unshares and bind-mounts its own namespace,
    so this process stays in the host's, where the plugins must start.
    runc brings loopback up only in a namespace it makes itself: the child
    does it here.
    """
    return _new_netns_at(pin_path(container_id, environ))


def _new_netns_at(path: str) -> str:
    """A new network namespace, loopback up, bind-mounted at `path` (see new_pinned_netns); returns the path."""
    dst = _mount_point(path)
    import ctypes  # noqa: F401 - imported before the fork: the child only calls into it

    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child reports through the pipe
        code = 1
        try:
            os.close(r)
            err = _libc_call("unshare", CLONE_NEWNET)
            if not err:
                err = _mount_bind(f"/proc/{os.getpid()}/task/{os.getpid()}/ns/net", dst)
            if not err:
                err = _loopback_up()
            os.write(w, err.encode())
            code = 0
        finally:
            os._exit(code)
    os.close(w)
    try:
        with os.fdopen(r, "rb") as f:
            err = f.read().decode(errors="replace")
    finally:
        os.waitpid(pid, 0)
    if not err and not is_pinned(dst):
        err = "the namespace was not pinned"
    if err:
        _unpin_at(dst)
        raise NetnsError(f"cannot make a network namespace at {dst}: {err}")
    return dst


def _loopback_up() -> str:
    """Set lo up in the calling process's netns (SIOCSIFFLAGS); '' on success."""
    import _socket

    try:
        s = _socket.socket(_socket.AF_INET, _socket.SOCK_DGRAM)
    except OSError as e:
        return f"socket: {e.strerror}"
    try:
        import fcntl

        req = b"lo".ljust(16, b"\0") + bytes(24)
        flags = int.from_bytes(fcntl.ioctl(s.fileno(), SIOCGIFFLAGS, req)[16:18], "little")
        fcntl.ioctl(s.fileno(), SIOCSIFFLAGS, b"lo".ljust(16, b"\0") + (flags | IFF_UP).to_bytes(2, "little") + bytes(22))
        return ""
    except OSError as e:
        return f"loopback up: {e.strerror}"
    finally:
        s.close()


def unpin_netns(container_id: str, environ: Mapping[str, str] | None = None) -> str:
    """Unmount and remove the pin; '' when done or nothing was there, else why not."""
    return _unpin_at(pin_path(container_id, environ))


def _unpin_at(path: str) -> str:
    err = ""
    if is_pinned(path):
        err = _umount(path)
        if err and is_pinned(path):
            err2 = _umount(path, lazy=True)  # lazily: a reader may still have it open
            err = "" if not err2 else f"cannot unmount {path}: {err2}"
        else:
            err = ""
    if not err:
        _unlink(path)
    return err


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass  # gone already, or a busy pin: gc retries later


def pinned_containers(environ: Mapping[str, str] | None = None) -> list[str]:
    """Container IDs that have a netns pin (live or left-over) under the state dir.

    `cnirun gc` uses this: a pin whose container no longer exists belongs to a
    run whose poststop never came (engine killed, runtime crashed).
    """
    d = pins_dir(environ)
    try:
        return sorted(n for n in os.listdir(d) if not n.startswith("."))
    except OSError:
        return []
