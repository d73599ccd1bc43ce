"""What a host must give a user who is not root before their containers can have CNI networks.

Rootless Podman's containers reach a user's networks through a network
namespace owned by the user's user namespace, linked to the outside by
slirp4netns (docs/rootless.md). That needs, per user: subordinate uid and gid
ranges (newuidmap/newgidmap map them, as Podman does), /dev/net/tun usable
(slirp4netns's tap device), unprivileged user namespaces enabled, a runtime
dir (XDG_RUNTIME_DIR) and the programs themselves. `problems` names each one
that is missing, with its fix, in one line each; nothing here changes the
host (opening /dev/net/tun without TUNSETIFF creates no device).
"""
from __future__ import annotations

import os
import sys

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Mapping

TUN = "/dev/net/tun"
SUBUID, SUBGID = "/etc/subuid", "/etc/subgid"
PROGRAMS = (("slirp4netns", "slirp4netns"), ("newuidmap", "uidmap"), ("newgidmap", "uidmap"), ("podman", "podman"))
# The range Podman asks for (a container image's ids up to 65535 must map).
RANGE = 65536


def subordinate_range(path: str, name: str, uid: int) -> int:
    """How many subordinate ids `path` (/etc/subuid or /etc/subgid) gives the user, by name or by uid."""
    total = 0
    try:
        with open(path, "rb") as f:
            text = f.read(1 << 20).decode("utf-8", "replace")
    except OSError:
        return 0
    for line in text.splitlines():
        parts = line.strip().split(":")
        if len(parts) != 3 or parts[0] not in (name, str(uid)):
            continue
        try:
            start, count = int(parts[1]), int(parts[2])
        except ValueError:
            continue
        if start >= 0 and count > 0:
            total += count
    return total


def _sysctl(path: str) -> int | None:
    try:
        with open(path, "rb") as f:
            return int(f.read(64).strip() or b"0")
    except (OSError, ValueError):
        return None


def _which(program: str, environ: Mapping[str, str]) -> bool:
    import shutil

    return any(shutil.which(program, path=p) for p in (environ.get("PATH") or "", "/usr/bin:/usr/sbin:/bin:/sbin"))


def problems(environ: Mapping[str, str] | None = None, *, tun: str = TUN, subuid: str = SUBUID, subgid: str = SUBGID,
             proc_sys: str = "/proc/sys") -> list[str]:
    """Each prerequisite this host lacks for the calling user, as one line naming the fix ([] : none)."""
    import pwd

    from ..core.errors import CNIError
    from ..core.paths import user_runtime_dir

    env = os.environ if environ is None else environ
    uid = os.geteuid()
    try:
        name = pwd.getpwuid(uid).pw_name
    except KeyError:
        name = str(uid)
    out: list[str] = []
    try:
        user_runtime_dir(env)
    except CNIError as e:
        out.append(str(e))
    for path, flag in ((subuid, "--add-subuids"), (subgid, "--add-subgids")):
        if subordinate_range(path, name, uid) < RANGE:
            out.append(f"{path} gives {name} fewer than {RANGE} subordinate ids (fix, as root: "
                       f"usermod {flag} 100000-165535 {name}, with a range no other user has)")
    try:
        os.close(os.open(tun, os.O_RDWR | os.O_CLOEXEC))
    except OSError as e:
        try:
            mode = f"mode {os.stat(tun).st_mode & 0o777:04o}"
        except OSError:
            mode = "missing"
        out.append(f"cannot open {tun} ({mode}: {e.strerror}): slirp4netns needs it (fix, as root: "
                   f"chmod 0666 {tun}, as Debian ships it)")
    if _sysctl(f"{proc_sys}/user/max_user_namespaces") == 0:
        out.append("user namespaces are disabled (user.max_user_namespaces is 0; fix, as root: "
                   "sysctl -w user.max_user_namespaces=15000)")
    if _sysctl(f"{proc_sys}/kernel/unprivileged_userns_clone") == 0:
        out.append("unprivileged user namespaces are disabled (fix, as root: "
                   "sysctl -w kernel.unprivileged_userns_clone=1)")
    missing = [(prog, pkg) for prog, pkg in PROGRAMS if not _which(prog, env)]
    if missing:
        pkgs = " ".join(dict.fromkeys(pkg for _, pkg in missing))
        out.append(f"{', '.join(p for p, _ in missing)} not found (fix, as root: apt-get install {pkgs})")
    return out


# -- the user's rootless network namespace ------------------------------------------------
# Under the user's state dir ($XDG_RUNTIME_DIR/cnirun):
RECORD = "rootless.json"  # {"pause", "userns", "slirp", "slirp_start"}: written before each step it names
PIN = "rootless-netns"  # the netns, bind-mounted here in the pause process's mount namespace only
SOCKET = "slirp4netns.sock"  # slirp4netns's API (port forwards)
LOG = "slirp4netns.log"
LOCK = "rootless.lock"  # held while the rootless netns is made or taken down
USE = "rootless.use"  # held shared by every command that runs in it (_hold_use)
SLIRP_READY_WAIT = 10.0


class Rootless:
    """A user's rootless netns: inside Podman's pause process's user and mount namespaces, linked to the
    outside by slirp4netns. Every user's bridges, plugins, rules and resolvers run in it."""

    def __init__(self, state: str, pause: int) -> None:
        self.state, self.pause = state, pause
        self.pin = os.path.join(state, PIN)
        self.use_fd = -1  # the shared lock on USE this process holds (_hold_use), -1: none

    def unhold(self) -> None:
        """Stop holding it in use (gc, before it may take it down)."""
        if self.use_fd >= 0:
            os.close(self.use_fd)
            self.use_fd = -1

    def enter(self) -> list[str]:
        """The argv prefix that runs a command inside: the pause process's user and mount namespaces
        (where the pin is a netns), then the rootless netns itself."""
        try:
            cwd = os.getcwd()
        except OSError:
            cwd = "/"
        # --wd: nsenter into a mount namespace would start the command in / (a compose project, relative
        # paths of a run: the user's working directory matters).
        return [*_into_pause(self.pause), "nsenter", f"--net={self.pin}", f"--wd={cwd}", "--"]

    def inside_env(self, environ: Mapping[str, str] | None = None) -> dict[str, str]:
        """The environment of a cnirun inside: root of the user namespace, with the user's paths."""
        from ..core.paths import INSIDE_ENV, netconf_path

        env = dict(os.environ if environ is None else environ)
        s = self.state
        env.update({
            INSIDE_ENV: str(os.geteuid()), "CNIRUN_STATE_DIR": s, "CNIRUN_LOCK_FILE": os.path.join(s, "cni.lock"),
            "CNI_CACHE_DIR": os.path.join(s, "cni"), "CNIRUN_HOOK_LOG": os.path.join(s, "hooks.log"),
            "NETCONFPATH": netconf_path(env), "CNIRUN_IPAM_DATA_DIR": env.get("CNIRUN_IPAM_DATA_DIR") or os.path.join(s, "ipam"),
            "XTABLES_LOCKFILE": os.path.join(s, "xtables.lock"), "CNIRUN_SLIRP_SOCKET": os.path.join(s, SOCKET),
            # What `podman unshare` sets: podman inside knows it already is in its user namespace.
            "_CONTAINERS_USERNS_CONFIGURED": "done", "_CONTAINERS_ROOTLESS_UID": str(os.geteuid()),
        })
        return env


def _into_pause(pause: int) -> list[str]:
    return ["nsenter", "-t", str(pause), "-U", "-m", "--preserve-credentials"]


def _pause_pid(environ: Mapping[str, str]) -> int:
    """Podman's pause process for this user (it holds their user and mount namespaces), 0 if none runs."""
    from ..core.process import process_start

    base = environ.get("XDG_RUNTIME_DIR") or ""
    try:
        fd = os.open(os.path.join(base, "libpod", "tmp", "pause.pid"), os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        try:
            pid = int(os.read(fd, 32).strip())
        finally:
            os.close(fd)
        with open(f"/proc/{pid}/comm", "rb") as f:
            comm = f.read(32).strip()
        # Podman's pause process (catatonit -P, or podman's own), the user's, alive (not a zombie).
        if (pid > 1 and comm in (b"catatonit", b"podman", b"pause") and os.stat(f"/proc/{pid}").st_uid == os.geteuid()
                and process_start(pid)):
            return pid
    except (OSError, ValueError):
        pass
    return 0


def _run(argv: list[str], what: str, env: Mapping[str, str] | None = None) -> str:
    import subprocess

    from ..core.errors import ConfigError

    try:
        p = subprocess.run(argv, capture_output=True, text=True, timeout=60, env=env, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise ConfigError(f"{what}: {e}") from None
    if p.returncode != 0:
        last = (p.stderr.strip().splitlines() or [f"exit {p.returncode}"])[-1][:300]
        raise ConfigError(f"{what}: {last}")
    return p.stdout


_RECORD_TYPES = {"pause": int, "slirp": int, "userns": str, "slirp_start": str, "netns": str, "isolated": bool}


def _read_record(state: str) -> dict[str, Any]:
    """The record, with only the fields of the right types ({} when there is none, or it is not one):
    a regular file, read without blocking or following a link."""
    import stat

    from ..core import jsonfast as json

    try:
        fd = os.open(os.path.join(state, RECORD), os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return {}
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return {}
        data = os.read(fd, 4096)
    except OSError:
        return {}
    finally:
        os.close(fd)
    try:
        obj = json.loads(data) if data.count(b"{") + data.count(b"[") <= 1 else None
    except ValueError:
        return {}
    if not isinstance(obj, dict):
        return {}
    return {k: v for k, v in obj.items() if k in _RECORD_TYPES and type(v) is _RECORD_TYPES[k]
            and (not isinstance(v, int) or isinstance(v, bool) or 0 < v < 1 << 22)}


def _write_record(state: str, rec: dict[str, Any]) -> None:
    from ..core import jsonfast as json
    from ..core.fsutil import atomic_write

    atomic_write(os.path.join(state, RECORD), json.dumps(rec).encode(), 0o600, fsync=False)


def _slirps(state: str) -> list[int]:
    """This user's slirp4netns processes serving `state`'s socket (recorded or not: one a killed ensure
    started before it could record it is found too)."""
    mark = b"\0--api-socket\0" + os.path.join(state, SOCKET).encode() + b"\0"
    out: list[int] = []
    uid = os.geteuid()
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            if os.stat(f"/proc/{name}").st_uid != uid:
                continue
            with open(f"/proc/{name}/cmdline", "rb") as f:
                cmd = f.read(8192)
        except OSError:
            continue
        if mark in b"\0" + cmd and cmd.split(b"\0", 1)[0].endswith(b"slirp4netns"):
            out.append(int(name))
    return out


def _kill_slirps(state: str) -> None:
    import signal
    import time

    pids = _slirps(state)
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass
    deadline = time.monotonic() + 5
    while pids and time.monotonic() < deadline:
        pids = [p for p in pids if os.path.exists(f"/proc/{p}") and _alive(p)]
        time.sleep(0.01)


def _alive(pid: int) -> bool:
    from ..core.process import process_start

    return bool(process_start(pid))


def ensure(environ: Mapping[str, str] | None = None) -> Rootless:
    """The user's rootless netns, made (or made again, when Podman's user namespace changed or its
    slirp4netns is gone) under the user's lock; ConfigError, in one line, when this host cannot."""
    from ..core.errors import ConfigError
    from ..core.fsutil import identity
    from ..core.lock import host_lock
    from ..core.paths import state_dir
    from ..core.process import process_start

    env = os.environ if environ is None else environ
    found = problems(env)
    if found:
        more = f" (and {len(found) - 1} more: cnirun version lists them)" if len(found) > 1 else ""
        raise ConfigError(f"rootless networking: {found[0]}{more}")
    state = state_dir(env)
    os.makedirs(state, mode=0o700, exist_ok=True)
    with host_lock(os.path.join(state, LOCK), wait=60):
        pause = _pause_pid(env)
        if not pause:
            _run(["podman", "unshare", "true"], "podman unshare (to start Podman's pause process)")
            pause = _pause_pid(env)
            if not pause:
                raise ConfigError("podman started no pause process (no pause.pid under XDG_RUNTIME_DIR/libpod/tmp): "
                                  "check `podman info` as this user")
        ns = Rootless(state, pause)
        userns = identity(f"/proc/{pause}/ns/user")
        rec = _read_record(state)
        same = rec.get("pause") == pause and rec.get("userns") == userns and os.path.exists(ns.pin)
        if same and rec.get("slirp") and process_start(rec["slirp"]) == rec.get("slirp_start"):
            if not rec.get("isolated"):
                _isolate(ns, state, rec, env)
            ns.use_fd = _hold_use(state)
            return ns
        if same and rec.get("netns") and _netns_of_pin(ns) == rec["netns"]:
            # slirp4netns is gone, its netns is not: the containers in it keep their links and addresses,
            # and get their way out and their published ports back.
            _kill_slirps(state)
            pid = _start_slirp(ns)
            rec.update(slirp=pid, slirp_start=process_start(pid))
            _write_record(state, rec)
            from ..core.paths import cache_dir

            forward_ports(cache_dir(env), {SLIRP_SOCKET_ENV: os.path.join(state, SOCKET)})
            if not rec.get("isolated"):
                _isolate(ns, state, rec, env)
            ns.use_fd = _hold_use(state)
            return ns
        _teardown(state, rec)
        _write_record(state, {"pause": pause, "userns": userns, "slirp": 0, "slirp_start": ""})
        fd = os.open(ns.pin, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o444)
        os.close(fd)
        netns = _run([*_into_pause(pause), "unshare", f"--net={ns.pin}", "sh", "-c",
                      "echo 1 > /proc/sys/net/ipv4/ip_forward && ip link set lo up && stat -L -c %d:%i /proc/self/ns/net"],
                     "making the rootless netns").strip()
        _write_record(state, {"pause": pause, "userns": userns, "slirp": 0, "slirp_start": "", "netns": netns})
        pid = _start_slirp(ns)
        rec = {"pause": pause, "userns": userns, "slirp": pid, "slirp_start": process_start(pid), "netns": netns,
               "isolated": False}
        _write_record(state, rec)
        _isolate(ns, state, rec, env)
        ns.use_fd = _hold_use(state)
        return ns


def _isolate(ns: Rootless, state: str, rec: dict[str, Any], env: Mapping[str, str]) -> None:
    """The user's networks isolated from each other in the rootless netns, as root's are on the host;
    recorded once done (a kill before that: the next command does it again)."""
    _run([*ns.enter(), sys.executable, "-c", "from cnirun.netstore.store import isolate_all; "
          "from cnirun.cni.runtime import CNI; isolate_all(CNI())"], "isolating the networks in the rootless netns",
         env=ns.inside_env(env))
    rec["isolated"] = True
    _write_record(state, rec)


def _netns_of_pin(ns: Rootless) -> str:
    """Which netns the pin is, seen in the pause process's mount namespace (device:inode), '' if none."""
    import subprocess

    try:
        p = subprocess.run([*_into_pause(ns.pause), "stat", "-L", "-c", "%d:%i", ns.pin], capture_output=True,
                           text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return p.stdout.strip() if p.returncode == 0 else ""


def _hold_use(state: str) -> int:
    """Hold the rootless netns in use (a shared lock on USE) for as long as this process and what it
    execs run: `release` (gc) takes it down only when it can lock USE exclusively. Taken under LOCK, so
    there is no moment between `ensure` and the command inside when gc could take it away."""
    import fcntl

    fd = os.open(os.path.join(state, USE), os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
    fcntl.flock(fd, fcntl.LOCK_SH)
    os.set_inheritable(fd, True)  # kept across the exec into the user's namespaces
    return fd


def alive(environ: Mapping[str, str] | None = None) -> Rootless | None:
    """The user's rootless netns when it is there and usable as recorded (no lock, nothing made)."""
    from ..core.errors import CNIError
    from ..core.fsutil import identity
    from ..core.paths import state_dir
    from ..core.process import process_start

    env = os.environ if environ is None else environ
    try:
        state = state_dir(env)
    except CNIError:
        return None
    rec = _read_record(state)
    pause = _pause_pid(env)
    def usable() -> bool:
        return bool(pause and rec.get("pause") == pause and rec.get("userns") == identity(f"/proc/{pause}/ns/user")
                    and bool(rec.get("slirp")) and process_start(rec["slirp"]) == rec.get("slirp_start")
                    and os.path.exists(os.path.join(state, PIN)))

    if not usable():
        return None
    fd = _hold_use(state)
    rec = _read_record(state)  # still the same one, now that gc cannot take it down
    if not usable():
        os.close(fd)
        return None
    ns = Rootless(state, pause)
    ns.use_fd = fd
    return ns


def _start_slirp(ns: Rootless) -> int:
    """slirp4netns on the rootless netns (as Podman 4 runs it), detached; its pid once it is ready."""
    import select

    from ..core.errors import ConfigError

    sock = os.path.join(ns.state, SOCKET)
    try:
        os.unlink(sock)
    except FileNotFoundError:
        pass
    r, w = os.pipe()
    log = os.open(os.path.join(ns.state, LOG), os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    null = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
    argv = [*_into_pause(ns.pause), "slirp4netns", "--configure", "--mtu=65520", "--disable-host-loopback",
            "--enable-sandbox", "--enable-seccomp", "--api-socket", sock, "--ready-fd=3", "--netns-type=path",
            ns.pin, "tap0"]
    try:
        pid = os.posix_spawnp("nsenter", argv, dict(os.environ), setsid=True, file_actions=[
            (os.POSIX_SPAWN_DUP2, null, 0), (os.POSIX_SPAWN_DUP2, log, 1), (os.POSIX_SPAWN_DUP2, log, 2),
            (os.POSIX_SPAWN_DUP2, w, 3)])
    finally:
        for fd in (w, log, null):
            os.close(fd)
    try:
        ready, _, _ = select.select([r], [], [], SLIRP_READY_WAIT)
        ok = bool(ready) and os.read(r, 1) == b"1"
    finally:
        os.close(r)
    if not ok:
        try:
            with open(os.path.join(ns.state, LOG), "rb") as f:
                last = (f.read(8192).decode(errors="replace").strip().splitlines() or ["no output"])[-1][:300]
        except OSError:
            last = "no output"
        _kill_slirps(ns.state)
        try:
            os.waitpid(pid, 0)
        except ChildProcessError:
            pass
        raise ConfigError(f"slirp4netns did not start on the rootless netns: {last}")
    return pid


def _residents(netns: str) -> list[int]:
    """This user's cnirun processes and resolvers inside the rootless netns `netns` (device:inode): the
    `-d` watcher and the name resolvers a run started there. They serve that netns only."""
    from ..core.fsutil import identity

    out: list[int] = []
    uid = os.geteuid()
    for name in os.listdir("/proc"):
        if not name.isdigit() or int(name) == os.getpid():
            continue
        try:
            if os.stat(f"/proc/{name}").st_uid != uid or identity(f"/proc/{name}/ns/net") != netns:
                continue
            with open(f"/proc/{name}/cmdline", "rb") as f:
                cmd = f.read(4096)
        except OSError:
            continue
        if b"cnirun" in cmd or cmd.split(b"\0", 1)[0].endswith(b"dnsmasq"):
            out.append(int(name))
    return out


def _teardown(state: str, rec: dict[str, Any]) -> None:
    """The residents inside and slirp4netns killed, the pin unmounted (in the pause process's mount
    namespace, when it still lives) and removed, the record and socket gone. Call under the user's lock."""
    import signal

    netns = str(rec.get("netns") or "")
    for pid in _residents(netns) if netns else []:
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass
    _kill_slirps(state)
    pin = os.path.join(state, PIN)
    pause = rec.get("pause") or 0
    if pause and _alive(pause) and os.path.exists(pin):
        import subprocess

        subprocess.run([*_into_pause(pause), "umount", "-l", pin], capture_output=True, timeout=30)
    for name in (PIN, SOCKET, RECORD):
        try:
            os.unlink(os.path.join(state, name))
        except OSError:
            pass


def release(environ: Mapping[str, str] | None = None) -> str:
    """Tear the user's rootless netns down when nothing of theirs uses it any more (no run, no cached
    attachment, no command in it); '' when it is gone (or was never there), else why it stays."""
    from ..core.lock import host_lock
    from ..core.paths import cache_dir, runs_dir, state_dir

    env = os.environ if environ is None else environ
    state = state_dir(env)
    if not os.path.isdir(state):
        return ""
    import fcntl

    with host_lock(os.path.join(state, LOCK), wait=60):
        rec = _read_record(state)
        if not rec and not _slirps(state) and not os.path.exists(os.path.join(state, PIN)):
            return ""
        fd = os.open(os.path.join(state, USE), os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            return "a command runs in it"  # its run state may not be written yet
        try:
            return _release_locked(state, rec, env)
        finally:
            os.close(fd)


def _release_locked(state: str, rec: dict[str, Any], env: Mapping[str, str]) -> str:
    from ..core.paths import cache_dir, runs_dir

    for d in (runs_dir(env), os.path.join(cache_dir(env), "results")):
        try:
            if any(not n.startswith(".") for n in os.listdir(d)):
                return "runs use it"
        except OSError:
            pass
    _teardown(state, rec)
    return ""


# -- published ports: slirp4netns's host forwards ------------------------------------------
SLIRP_GUEST = "10.0.2.100"  # the rootless netns's tap0 (slirp4netns --configure)
SLIRP_SOCKET_ENV = "CNIRUN_SLIRP_SOCKET"  # set by Rootless.inside_env


def _slirp_call(sock: str, request: dict[str, Any]) -> dict[str, Any]:
    """One slirp4netns API request; its answer (an "error" key when it refused)."""
    import socket

    from ..core import jsonfast as json
    from ..core.errors import CNIError

    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(10)
    try:
        s.connect(sock)
        s.sendall(json.dumps(request).encode())
        s.shutdown(socket.SHUT_WR)
        data = b""
        while len(data) < 1 << 20:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    except OSError as e:
        raise CNIError(f"slirp4netns API {sock}: {e.strerror or e}") from None
    finally:
        s.close()
    try:
        obj = json.loads(data)
    except ValueError:
        raise CNIError(f"slirp4netns API {sock}: not JSON: {data[:80]!r}") from None
    return obj if isinstance(obj, dict) else {"error": {"desc": "not an object"}}


def forward_ports(cache_dir: str, environ: Mapping[str, str] | None = None) -> None:
    """Make slirp4netns forward, from the host, exactly the ports published by the cached attachments
    (each to the same port of the rootless netns, where portmap takes it to its container); a no-op
    outside a user's namespaces. Idempotent: after a kill, the next ADD, DEL or gc puts it right.
    CNIError when a forward cannot be made (a port below 1024, or taken on the host)."""
    from ..cni import cache as cnicache
    from ..core.errors import CNIError

    env = os.environ if environ is None else environ
    sock = env.get(SLIRP_SOCKET_ENV)
    if not sock:
        return
    want: set[tuple[str, str, int]] = set()
    for att in cnicache.list_attachments(cache_dir):
        for m in (att.capability_args or {}).get("portMappings") or []:
            if not isinstance(m, dict) or not isinstance(m.get("hostPort"), int):
                continue
            host_ip = m.get("hostIP") or "0.0.0.0"
            if ":" in str(host_ip):
                raise CNIError(f"cannot publish [{host_ip}]:{m['hostPort']} from the host: slirp4netns forwards IPv4 "
                               "only (publish on an IPv4 address, or on all of them)")
            want.add((str(m.get("protocol") or "tcp").lower(), str(host_ip), int(m["hostPort"])))
    got = _slirp_call(sock, {"execute": "list_hostfwd"})
    have: dict[tuple[str, str, int], list[int]] = {}
    entries = got.get("entries") if "entries" in got else (got.get("return") or {}).get("entries")
    for e in entries if isinstance(entries, list) else []:
        if isinstance(e, dict) and isinstance(e.get("id"), int):
            key = (str(e.get("proto")), str(e.get("host_addr")), int(e.get("host_port") or 0))
            have.setdefault(key, []).append(e["id"])
    for key, ids in have.items():
        for fid in ids if key not in want else ids[1:]:
            _slirp_call(sock, {"execute": "remove_hostfwd", "arguments": {"id": fid}})
    for proto, addr, port in sorted(want - have.keys()):
        r = _slirp_call(sock, {"execute": "add_hostfwd", "arguments": {
            "proto": proto, "host_addr": addr, "host_port": port, "guest_addr": SLIRP_GUEST, "guest_port": port}})
        if "error" in r:
            desc = (r.get("error") or {}).get("desc") if isinstance(r.get("error"), dict) else r.get("error")
            why = "a port below 1024 needs root" if port < 1024 else "taken on the host?"
            raise CNIError(f"cannot publish {addr}:{port}/{proto} from the host: {desc} ({why})")
