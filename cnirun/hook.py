"""The OCI hook: attach a container's CNI networks at createRuntime, detach at poststop.

Run by the OCI runtime (runc, crun) with the container's state JSON on stdin
and the stage as its only argument; installed through Podman/CRI-O hooks.d or
added to config.json by the Docker runtime shim (cnirun.shim).

- What to attach comes from the state's annotations (cnirun.networks, .ports,
  .ip, .mac), parsed only by options.ContainerNetworkSpec.from_labels, which
  validates every value. The CNI container ID is the OCI container ID, never
  a label, so a container cannot name another container's attachments.
- createRuntime/prestart: the container's netns (/proc/<pid>/ns/net) is first
  bind-mounted at <state dir>/netns/<id> and that path is what ADD gets and
  the cache records. poststop runs after the process died, when
  /proc/<pid>/ns/net is gone; with the pin the DEL still enters the netns, so
  every plugin cleans up fully (a DEL with an empty netns leaves the bridge
  plugin's NAT rules behind). `cnirun gc` uses the same pin after a crash.
- Before ADD, everything cached for the container is DELeted: a restart goes
  through create again and host-local would refuse a duplicate allocation.
- poststop never blocks the engine: it takes the container's lock
  (<state dir>/locks/<id>.lock), forks, and returns; the child, which
  inherits the lock, DELs and unpins, then logs. A createRuntime of the same
  container (docker restart) waits on that lock, so it can never race the
  DEL of the previous run. CNIRUN_HOOK_SYNC=1 keeps poststop in the foreground.
- Failures: one `cnirun: ...` line on stderr (the engine shows it), exit 1,
  nothing left allocated; the poststop that may still follow finds nothing to
  undo and succeeds.
- One log line per run in CNIRUN_HOOK_LOG (default /var/log/cnirun/hooks.log).

This module is on the path of every container start: it imports only os,
sys, time and cnirun.jsonfast at the top and the runtime core inside
functions. Nothing on the hook path imports the docker SDK, typer, yaml,
pyroute2, nor the slow parts of the standard library (dataclasses, typing,
pathlib, the json package, re, enum, subprocess): test_hook_unit checks it.
The process is started with `python -I -S` (no site, no editable-install
finder; hook_argv puts the package on sys.path) and leaves with os._exit
(run_process). The netns pin is made with mount(2) through ctypes, plugins
are started with posix_spawn (cnirun.invoke).
"""
from __future__ import annotations

import os
import sys
import time

# The json package (it imports re and enum), typing, dataclasses and
# subprocess cost ~20 ms of imports together: nothing on the hook path
# imports them, and the poststop parent, which only forks, imports nothing
# but jsonfast (the same C codec json uses).
from . import jsonfast as json

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Mapping

    from .attach import Attachment
    from .options import ContainerNetworkSpec
    from .runtime import CNI

ATTACH_STAGES = ("createRuntime", "prestart")
DETACH_STAGES = ("poststop",)
DEFAULT_STATE_DIR = "/run/cnirun"
DEFAULT_LOG = "/var/log/cnirun/hooks.log"
LOG_ROTATE_BYTES = 4 << 20
# Plugins run iptables from /usr/sbin; an engine gives hooks no PATH of its own.
HOOK_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# Variables `cnirun install` records into hooks so hook runs see the same
# networks, plugins and cache as the shell that installed them.
RECORDED_ENV = (
    "NETCONFPATH",
    "CNI_PATH",
    "CNI_CACHE_DIR",
    "CNIRUN_STATE_DIR",
    "CNIRUN_HOOK_LOG",
    "CNIRUN_LOCK_FILE",
    "CNIRUN_PLUGIN_TIMEOUT",
    "CNIRUN_DEFAULT_NETWORK",
)
POSTSTOP_PLUGIN_TIMEOUT = 20.0
CONTAINER_LOCK_WAIT = 60.0


class HookError(Exception):
    """Bad hook input (stage, state JSON); shown as one line."""


class OCIState:
    """The parts of the OCI runtime state the hook uses."""

    def __init__(
        self, id: str, pid: int = 0, bundle: str = "", status: str = "", annotations: dict[str, str] | None = None
    ) -> None:
        self.id = id
        self.pid = pid
        self.bundle = bundle
        self.status = status
        self.annotations = annotations or {}


def parse_state(data: bytes) -> OCIState:
    """Parse the state JSON a runtime writes to a hook's stdin."""
    try:
        obj = json.loads(data or b"")
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise HookError("the OCI state on stdin is not JSON: run cnirun hook from an OCI runtime") from None
    if not isinstance(obj, dict) or not isinstance(obj.get("id"), str) or not obj["id"]:
        raise HookError("the OCI state on stdin has no container id: run cnirun hook from an OCI runtime")
    pid = obj.get("pid") or 0
    if not isinstance(pid, int) or pid < 0:
        raise HookError(f"the OCI state on stdin has an invalid pid {pid!r}")
    ann = obj.get("annotations")
    ann = {} if ann is None else ann
    if not isinstance(ann, dict):
        raise HookError("the OCI state on stdin has invalid annotations: expected an object")
    return OCIState(
        id=obj["id"],
        pid=pid,
        bundle=str(obj.get("bundle") or ""),
        status=str(obj.get("status") or ""),
        annotations={str(k): str(v) for k, v in ann.items()},
    )


# -- the pinned network namespace ------------------------------------------------
def state_dir(environ: Mapping[str, str] | None = None) -> str:
    env = os.environ if environ is None else environ
    return env.get("CNIRUN_STATE_DIR") or DEFAULT_STATE_DIR


def pin_path(container_id: str, environ: Mapping[str, str] | None = None) -> str:
    """Where the container's netns is bind-mounted while it exists."""
    return os.path.join(state_dir(environ), "netns", container_id)


MS_BIND = 0x1000  # <sys/mount.h>
MNT_DETACH = 0x2


def _libc_call(name: str, *args: object) -> str:
    """mount(2)/umount2(2) through ctypes; '' on success, else "name: errno text".

    Importing ctypes costs ~2 ms; exec'ing mount(8) cost ~5 ms per call.
    """
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)  # the process's own libc: dlopen(NULL)
    libc.mount.argtypes = (ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_void_p)
    libc.umount2.argtypes = (ctypes.c_char_p, ctypes.c_int)
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


def pin_netns(pid: int, container_id: str) -> str:
    """Bind-mount /proc/<pid>/ns/net at pin_path(container_id); returns the path."""
    from .errors import NetnsError

    src = f"/proc/{pid}/ns/net"
    if not os.path.exists(src):
        raise NetnsError(f"{src} does not exist: the container's process is gone")
    dst = pin_path(container_id)
    os.makedirs(os.path.dirname(dst), mode=0o755, exist_ok=True)
    if is_pinned(dst):
        unpin_netns(container_id)
    fd = os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o444)
    os.close(fd)
    err = _mount_bind(src, dst)
    if err:
        _unlink(dst)
        raise NetnsError(f"cannot pin the container's netns at {dst}: {err}")
    return dst


def unpin_netns(container_id: str, environ: Mapping[str, str] | None = None) -> str:
    """Unmount and remove the pin; '' when done or nothing was there, else why not."""
    path = pin_path(container_id, environ)
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
    except FileNotFoundError:
        pass
    except OSError:
        pass  # a busy pin: gc retries later


def pinned_containers(environ: Mapping[str, str] | None = None) -> list[str]:
    """Container IDs that have a netns pin (live or left-over) under the state dir.

    `cnirun gc` uses this: a pin whose container no longer exists belongs to a
    run whose poststop never came (engine killed, runtime crashed).
    """
    d = os.path.join(state_dir(environ), "netns")
    try:
        return sorted(n for n in os.listdir(d) if not n.startswith("."))
    except OSError:
        return []


# -- attach / detach ----------------------------------------------------------
def spec_from_state(state: OCIState) -> ContainerNetworkSpec | None:
    from .options import ContainerNetworkSpec

    return ContainerNetworkSpec.from_labels(state.annotations)


def attach_container(cni: CNI, state: OCIState, spec: ContainerNetworkSpec) -> list[Attachment]:
    """DEL anything left from an earlier start, pin the netns, ADD every network.

    On failure nothing stays allocated and the pin is removed.
    """
    from .attach import attach, options_for
    from .runtime import validate_container_id

    validate_container_id(state.id)
    if state.pid <= 0:
        raise HookError("the OCI state has no pid: attach in createRuntime or prestart, not in poststop")
    # Resolve and validate everything before touching the host.
    nets = [cni.network(n) for n in spec.networks]
    opts = options_for(spec, nets)
    leftovers = detach_container(cni, state.id)
    if leftovers:
        raise HookError("cannot undo the previous attachment: " + "; ".join(leftovers))
    path = pin_netns(state.pid, state.id)
    try:
        return attach(cni, nets, state.id, path, opts)
    except BaseException:
        unpin_netns(state.id)
        raise


HOSTS_MARK = "# cnirun"


def add_hosts_entries(bundle: str, atts: list[Attachment]) -> str:
    """Put the container's CNI addresses and hostname into its /etc/hosts.

    The engine wrote the file for network `none` (localhost only) before the
    addresses existed; it is a bind mount whose source the bundle's
    config.json names. Lines are marked, so a restart replaces them instead
    of piling up. Returns what went wrong ('' when done or nothing to do):
    a hosts file is a convenience, never a reason to fail the start.
    """
    try:
        with open(os.path.join(bundle, "config.json"), "rb") as f:
            spec = json.loads(f.read())
        hostname = str(spec.get("hostname") or "")
        source = next(
            (m.get("source", "") for m in spec.get("mounts") or [] if m.get("destination") == "/etc/hosts"), ""
        )
        if not hostname or not source or not os.path.isfile(source):
            return ""
        addrs = [a.split("/", 1)[0] for att in atts for a in att.addresses()]
        with open(source, encoding="utf-8") as f:
            kept = [ln for ln in f.read().splitlines() if not ln.endswith(HOSTS_MARK)]
        kept += [f"{ip}\t{hostname}\t{HOSTS_MARK}" for ip in addrs]
        # In place (same inode): the container sees the file through a bind mount.
        # Not hostfiles.write_hosts: it renders a whole file, and its imports
        # (pathlib, ipaddress) would be paid by every container start.
        with open(source, "w", encoding="utf-8") as f:
            f.write("\n".join(kept) + "\n")
    except (OSError, ValueError, AttributeError, TypeError) as e:
        return f"hosts file not updated: {e}"
    return ""


def detach_container(cni: CNI, container_id: str) -> list[str]:
    """DEL every cached attachment of the container, then drop the netns pin.

    Idempotent; returns what could not be undone (empty when all went well).
    Also what `cnirun gc` calls for a hook-made attachment whose container is gone.
    """
    from .attach import detach

    problems = [str(e) for e in detach(cni, container_id)]
    if not problems:  # a failed DEL keeps the pin so a retry can still enter the netns
        err = unpin_netns(container_id)
        if err:
            problems.append(err)
    return problems


# -- logging --------------------------------------------------------------------
def log_path(environ: Mapping[str, str] | None = None) -> str:
    env = os.environ if environ is None else environ
    return env.get("CNIRUN_HOOK_LOG") or DEFAULT_LOG


def write_log(record: dict[str, Any], path: str | None = None) -> None:
    """Append one JSON line; logging must never make a hook fail."""
    target = path or log_path()
    try:
        os.makedirs(os.path.dirname(target), mode=0o755, exist_ok=True)
        try:
            if os.path.getsize(target) > LOG_ROTATE_BYTES:
                os.replace(target, target + ".1")
        except OSError:
            pass
        fd = os.open(target, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o640)
        try:
            os.write(fd, (json.dumps(record, separators=(",", ":")) + "\n").encode())
        finally:
            os.close(fd)
    except OSError:
        pass


# -- per-container lock ----------------------------------------------------------------
def _safe_id(cid: str) -> bool:
    """libcni's container ID rule, without importing re (the poststop parent stays lean)."""
    ok = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
    return bool(cid) and cid[0] in ok and all(c in ok or c in "_.-" for c in cid) and len(cid) <= 256


def lock_path(container_id: str, environ: Mapping[str, str] | None = None) -> str:
    return os.path.join(state_dir(environ), "locks", container_id + ".lock")


def lock_container(container_id: str, wait: float = CONTAINER_LOCK_WAIT, blocking: bool = True) -> int | None:
    """flock the container's lock file; returns the fd holding it (None: busy and not blocking).

    Serialises a container's createRuntime with the background DEL of its
    previous poststop (a `docker restart` runs both back to back). The
    poststop parent takes it and its forked child inherits it, so the lock is
    held without a gap until the DEL is done.
    """
    import fcntl

    path = lock_path(container_id)
    os.makedirs(os.path.dirname(path), mode=0o755, exist_ok=True)
    deadline = time.monotonic() + wait
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            if not blocking:
                return None
            if time.monotonic() >= deadline:
                from .errors import LockError  # imported late: the poststop parent stays lean

                raise LockError(f"container {container_id[:12]} is still being torn down after {wait:g} s: retry")
            time.sleep(0.01)
            continue
        try:
            same = os.fstat(fd).st_ino == os.stat(path).st_ino
        except FileNotFoundError:
            same = False
        if same:
            return fd
        os.close(fd)  # the holder removed the file after we opened it: take the new one


def unlock_container(fd: int, container_id: str, remove: bool = False) -> None:
    if remove:
        _unlink(lock_path(container_id))
    os.close(fd)


def reclaim(cni: CNI, container_id: str) -> list[str] | None:
    """For `cnirun gc`: detach a container whose poststop never ran.

    None when the container is busy (a start or a teardown holds its lock:
    leave it to them); else what could not be undone.
    """
    fd = lock_container(container_id, blocking=False)
    if fd is None:
        return None
    try:
        problems = detach_container(cni, container_id)
    finally:
        unlock_container(fd, container_id, remove=True)
    return problems


# -- entry point ----------------------------------------------------------------
def _attach_stage(stage: str, state: OCIState, record: dict[str, Any]) -> int:
    from .runtime import CNI, validate_container_id

    validate_container_id(state.id)
    spec = spec_from_state(state)
    if spec is None:
        record["outcome"] = "skipped"  # no cnirun.networks annotation: not ours
        return 0
    record["networks"] = spec.networks
    fd = lock_container(state.id)
    ok = False
    try:
        atts = attach_container(CNI(), state, spec)
        ok = True
    finally:
        unlock_container(fd, state.id, remove=not ok)
    record["interfaces"] = {a.ifname: a.addresses() for a in atts}
    if state.bundle:
        problem = add_hosts_entries(state.bundle, atts)
        if problem:
            record["hosts"] = problem
    return 0


def _detach_stage(state: OCIState, record: dict[str, Any]) -> None:
    from .runtime import CNI

    problems = detach_container(CNI(timeout=POSTSTOP_PLUGIN_TIMEOUT), state.id)
    if problems:
        record["outcome"] = "incomplete"
        record["error"] = "; ".join(problems)


def _finish(record: dict[str, Any], started: float) -> None:
    record["duration_ms"] = round((time.monotonic() - started) * 1000, 1)
    write_log({"time": time.strftime("%Y-%m-%dT%H:%M:%S%z"), **record})


def _detach_in_background(state: OCIState, record: dict[str, Any], started: float) -> int:
    """poststop: take the container lock, fork, and let the child DEL; the engine goes on at once.

    The engine waits for a hook's stdout/stderr to close, so the child
    points them at /dev/null. CNIRUN_HOOK_SYNC=1 keeps everything in the
    foreground (debugging).
    """
    fd = lock_container(state.id)
    if os.environ.get("CNIRUN_HOOK_SYNC") == "1":
        try:
            _detach_stage(state, record)
        finally:
            unlock_container(fd, state.id, remove=True)
            _finish(record, started)
        return 0
    sys.stdout.flush()
    sys.stderr.flush()
    if os.fork() != 0:
        return 0  # the child holds the lock now (flock belongs to the shared open file)
    code = 0
    try:
        os.setsid()
        null = os.open(os.devnull, os.O_RDWR)
        for target in (0, 1, 2):
            os.dup2(null, target)
        record["background"] = True
        try:
            _detach_stage(state, record)
        except Exception as e:  # noqa: BLE001 - nobody is listening: the log is the report
            record["outcome"] = "incomplete"
            record["error"] = str(e)
        unlock_container(fd, state.id, remove=True)
        _finish(record, started)
    except BaseException:
        code = 1
    finally:
        os._exit(code)


def run_hook(stage: str, state_data: bytes, started: float | None = None) -> tuple[int, dict[str, Any] | None]:
    """Run one stage; returns (exit code, log record or None when a background child logs it)."""
    from .errors import CNIError

    started = time.monotonic() if started is None else started
    record: dict[str, Any] = {"stage": stage, "container": "", "networks": [], "outcome": "ok"}
    try:
        if stage not in ATTACH_STAGES + DETACH_STAGES:
            raise HookError(
                f"unknown hook stage {stage!r}: use createRuntime or prestart (attach) or poststop (detach)"
            )
        state = parse_state(state_data)
        record["container"] = state.id
        if stage in DETACH_STAGES:
            if not _safe_id(state.id):
                raise HookError(f"invalid container ID {state.id!r} in the OCI state")
            return _detach_in_background(state, record, started), None
        return _attach_stage(stage, state, record), record
    except (CNIError, HookError) as e:
        record["outcome"] = "failed"
        record["error"] = str(e)
        return 1, record


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not os.environ.get("PATH"):
        os.environ["PATH"] = HOOK_PATH
    started = time.monotonic()
    stage = args[0] if args else ""
    if len(args) != 1 or stage in ("-h", "--help"):
        sys.stderr.write("usage: cnirun-hook STAGE  (createRuntime|prestart|poststop; OCI state JSON on stdin)\n")
        return 2
    try:
        data = sys.stdin.buffer.read()
    except OSError:
        data = b""
    try:
        code, record = run_hook(stage, data, started)
    except KeyboardInterrupt:
        code, record = 130, {"stage": stage, "outcome": "interrupted"}
    if record is None:
        return code
    _finish(record, started)
    if record.get("error"):
        prefix = "cnirun: " if code else "cnirun: warning: "
        sys.stderr.write(f"{prefix}{record['error']}\n")
    return code


def run_process() -> None:
    """The hook process's entry point (hook_argv): main(), then exit at once.

    Tearing the interpreter down (module dicts, GC) costs ~2 ms per hook run,
    on every container start; a hook process has nothing to finalise but
    stdio (the log is written with os.write), so it is flushed and the
    process leaves with os._exit. An unexpected exception still propagates
    (traceback, normal exit).
    """
    code = main()
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    finally:
        os._exit(code)


# -- how engines call the hook ----------------------------------------------------------
def package_parent() -> str:
    """The directory holding the cnirun package (what a -I -S python must put on sys.path)."""
    return os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def hook_argv(stage: str, python: str | None = None) -> list[str]:
    """The full argv (argv[0] included) that runs this hook with a lean interpreter.

    -I -S skip site-packages and the editable-install finder (a few ms per
    start); the package directory is put on sys.path explicitly instead.
    run_process() skips the interpreter's teardown.
    """
    exe = python or sys.executable
    boot = (
        f"import sys; sys.path.insert(0, {package_parent()!r}); "
        "from cnirun.hook import run_process; run_process()"
    )
    return [exe, "-I", "-S", "-c", boot, stage]


def hook_env(environ: Mapping[str, str] | None = None) -> list[str]:
    """The hook's whole environment: a PATH that finds iptables plus the recorded CNI settings."""
    env = os.environ if environ is None else environ
    path = env.get("PATH") or HOOK_PATH
    parts = path.split(":")
    for needed in ("/usr/sbin", "/sbin", "/usr/bin", "/bin"):
        if needed not in parts:
            parts.append(needed)
    out = ["PATH=" + ":".join(p for p in parts if p)]
    for key in RECORDED_ENV:
        if env.get(key):
            out.append(f"{key}={env[key]}")
    return out


if __name__ == "__main__":
    sys.exit(main())
