"""Running plugin executables: discovery along CNI_PATH, exec, error decoding.

Mirrors libcni's pkg/invoke: the plugin gets the caller's environment plus the
six CNI_* variables (always set, possibly empty), the config on stdin, and
answers on stdout. Errors come back as CNI error objects or as raw output.
"""
from __future__ import annotations

import errno
import os
import sys
import time

# The _signal C module is what `signal` wraps (signal adds enums, i.e. imports
# enum and re); subprocess would add ~8 ms (locale, re, threading, selectors...).
# Plugins are started with os.posix_spawn and read with poll instead: this is
# on the OCI hook path, i.e. every container start.
from _signal import SIGKILL, SIGPIPE, SIGXFSZ

from ..core import jsonfast as json
from ..core import trace
from ..core.fsutil import DEFAULT_PATH
from ..core.paths import PACKAGE_DIR
from ..core.errors import INTERNAL, CNIError, PluginError, PluginNotFound, PluginTimeout
from ..core.value import Value

TYPE_CHECKING = False  # start-up cost: see cnirun.core
if TYPE_CHECKING:
    from typing import Any, Mapping

DEFAULT_CNI_PATH = ("/opt/cni/bin", "/usr/lib/cni", "/usr/libexec/cni")
DEFAULT_TIMEOUT = 60.0
_TEXT_BUSY_RETRIES = 6


# cnirun's own plugins (flannel, sysctl), runnable where they are: searched
# after everything CNI_PATH names, so a type found there wins, and no install
# step is needed for cnirun itself (`cnirun install plugins` is for others).
OWN_PLUGIN_DIR = os.path.join(PACKAGE_DIR, "plugins", "bin")


def plugin_dirs(cni_path: str | list[str] | None = None) -> list[str]:
    """CNI_PATH as a list: explicit value, else env CNI_PATH, else the defaults; then cnirun's own.

    An explicit list is taken as it is (the API caller said exactly where).
    """
    if isinstance(cni_path, list):
        return cni_path
    value = cni_path if cni_path is not None else os.environ.get("CNI_PATH", "")
    dirs = [d for d in value.split(":") if d] or list(DEFAULT_CNI_PATH)
    return dirs if OWN_PLUGIN_DIR in dirs else [*dirs, OWN_PLUGIN_DIR]


def default_timeout() -> float:
    raw = os.environ.get("CNIRUN_PLUGIN_TIMEOUT", "")
    if not raw:
        return DEFAULT_TIMEOUT
    try:
        value = float(raw)
    except ValueError:
        raise CNIError(f"CNIRUN_PLUGIN_TIMEOUT={raw!r} is not a number of seconds", code=4) from None
    if value <= 0:
        raise CNIError(f"CNIRUN_PLUGIN_TIMEOUT={raw!r} must be a positive number of seconds", code=4)
    return value


def find_plugin(plugin_type: str, dirs: list[str]) -> str:
    """The first regular file named `plugin_type` along `dirs` (libcni's FindInPath)."""
    if not plugin_type or "/" in plugin_type or "\\" in plugin_type or plugin_type in (".", ".."):
        raise PluginNotFound(
            f"invalid plugin type {plugin_type!r}: a type must be a plain file name in CNI_PATH",
            code=INTERNAL,
        )
    for d in dirs:
        candidate = os.path.join(d, plugin_type)
        if os.path.isfile(candidate):
            return candidate
    raise PluginNotFound(
        f'failed to find plugin "{plugin_type}" in path {dirs}: '
        "install it (Debian: containernetworking-plugins) or set CNI_PATH"
    )


class Invocation(Value):
    """Everything one plugin call needs besides the binary."""

    _fields = ("command", "container_id", "netns", "ifname", "args", "path")
    __match_args__ = _fields

    def __init__(
        self,
        command: str,  # ADD, DEL, CHECK, GC, STATUS, VERSION
        container_id: str = "",
        netns: str = "",
        ifname: str = "",
        args: str = "",  # CNI_ARGS, "K=V;K2=V2"
        path: str = "",  # CNI_PATH handed to the plugin (for its delegates)
    ) -> None:
        self.command = command
        self.container_id = container_id
        self.netns = netns
        self.ifname = ifname
        self.args = args
        self.path = path

    def environ(self, base: Mapping[str, str] | None) -> dict[str, str]:
        env = dict(os.environ if base is None else base)
        if not env.get("PATH"):  # plugins call iptables, ip, ...: a hook may run with no PATH at all
            env["PATH"] = DEFAULT_PATH
        env.update(
            CNI_COMMAND=self.command,
            CNI_CONTAINERID=self.container_id,
            CNI_NETNS=self.netns,
            CNI_IFNAME=self.ifname,
            CNI_ARGS=self.args,
            CNI_PATH=self.path,
        )
        return env


def _high_pipe() -> tuple[int, int]:
    """os.pipe() (close-on-exec) with both ends above 2, so dup2 onto 0-2 never clobbers one."""
    import fcntl

    fds = []
    for fd in os.pipe():
        if fd < 3:
            high = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 3)
            os.close(fd)
            fd = high
        fds.append(fd)
    return fds[0], fds[1]


def _inherited_fds(keep: tuple[int, ...]) -> list[int]:
    """Our inheritable descriptors above 2: subprocess's close_fds=True closes them in the child."""
    out = []
    try:
        names = os.listdir("/proc/self/fd")
    except OSError:
        return out
    for name in names:
        fd = int(name)
        if fd > 2 and fd not in keep:
            try:
                if os.get_inheritable(fd):
                    out.append(fd)
            except OSError:
                pass  # the descriptor listdir itself used
    return out


class _Child:
    """A plugin process: its pid (also its process group: own session) and our ends of its pipes."""

    def __init__(self, argv: list[str], env: dict[str, str]) -> None:
        self.pid = 0
        self.returncode: int | None = None
        fds: list[int] = []
        try:
            in_r, self.stdin = _high_pipe()
            fds += [in_r, self.stdin]
            self.stdout, out_w = _high_pipe()
            fds += [self.stdout, out_w]
            self.stderr, err_w = _high_pipe()
            fds += [self.stderr, err_w]
            actions = [(os.POSIX_SPAWN_DUP2, in_r, 0), (os.POSIX_SPAWN_DUP2, out_w, 1), (os.POSIX_SPAWN_DUP2, err_w, 2)]
            actions += [(os.POSIX_SPAWN_CLOSE, fd) for fd in _inherited_fds(tuple(fds))]
            self.pid = os.posix_spawn(
                argv[0],
                argv,
                env,
                file_actions=actions,
                # Own session and process group, so a timeout kills the plugin's children too.
                setsid=True,
                # Python ignores SIGPIPE (and SIGXFSZ); the plugin gets the defaults,
                # as subprocess's restore_signals gives them.
                setsigdef=(SIGPIPE, SIGXFSZ),
            )
        except BaseException:
            for fd in fds:
                os.close(fd)
            raise
        for fd in (in_r, out_w, err_w):
            os.close(fd)

    def close(self) -> None:
        for name in ("stdin", "stdout", "stderr"):
            fd = getattr(self, name)
            if fd >= 0:
                os.close(fd)
                setattr(self, name, -1)

    def communicate(self, data: bytes, timeout: float, until: bytes = b"") -> tuple[bytes, bytes] | None:
        """Feed stdin, read stdout and stderr to EOF, reap; None when `timeout` ran out first.

        `until`: once stdout holds it, the program has done what it was run
        for: its answer is taken then (returncode 0) and a thread reaps it
        whenever it exits (see run_program)."""
        import select

        deadline = time.monotonic() + timeout
        poller = select.poll()
        chunks: dict[int, list[bytes]] = {self.stdout: [], self.stderr: []}
        for fd in chunks:
            poller.register(fd, select.POLLIN | select.POLLPRI)
        view = memoryview(data)
        if view:
            os.set_blocking(self.stdin, False)
            poller.register(self.stdin, select.POLLOUT)
        else:
            os.close(self.stdin)
            self.stdin = -1
        open_fds = set(chunks) | ({self.stdin} if view else set())
        while open_fds:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            for fd, _event in poller.poll(left * 1000):
                if fd == self.stdin:
                    try:
                        view = view[os.write(fd, view[:65536]):]
                    except BlockingIOError:
                        continue
                    except BrokenPipeError:
                        view = view[:0]  # the plugin stopped reading: as subprocess, not an error
                    if not view:
                        poller.unregister(fd)
                        open_fds.discard(fd)
                        os.close(fd)
                        self.stdin = -1
                    continue
                chunk = os.read(fd, 65536)
                if chunk:
                    chunks[fd].append(chunk)
                    if until and fd == self.stdout and until in b"".join(chunks[fd][-2:]):
                        self._reap_later()
                        return b"".join(chunks[self.stdout]), b"".join(chunks[self.stderr])
                else:
                    poller.unregister(fd)
                    open_fds.discard(fd)
        if not self._wait(deadline):
            return None
        return b"".join(chunks[self.stdout]), b"".join(chunks[self.stderr])

    def _reap_later(self) -> None:
        import _thread  # threading's import costs ~4 ms (functools, collections)

        self.returncode = 0
        _thread.start_new_thread(_reap, (self.pid,))

    def _wait(self, deadline: float) -> bool:
        """Reap the plugin by `deadline` (it may close its output before it exits)."""
        delay = 0.0005
        pidfd = -1
        try:
            while True:
                pid, status = os.waitpid(self.pid, os.WNOHANG)
                if pid:
                    self.returncode = os.waitstatus_to_exitcode(status)
                    return True
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                if pidfd < 0:
                    try:
                        pidfd = os.pidfd_open(self.pid)  # readable once the plugin has exited
                    except (AttributeError, OSError):
                        pidfd = -2  # old kernel: poll by sleeping
                if pidfd >= 0:
                    import select

                    select.select([pidfd], [], [], left)
                else:
                    time.sleep(min(delay, left))
                    delay = min(delay * 2, 0.05)
        finally:
            if pidfd >= 0:
                os.close(pidfd)

    def kill_and_reap(self) -> None:
        """SIGKILL the plugin's whole process group and reap the plugin."""
        for kill in (os.killpg, os.kill):
            try:
                kill(self.pid, SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        if self.returncode is None:
            try:
                os.waitpid(self.pid, 0)
            except ChildProcessError:
                pass


def _reap(pid: int) -> None:
    try:
        os.waitpid(pid, 0)
    except ChildProcessError:
        pass


def _spawn(argv: list[str], env: dict[str, str]) -> _Child:
    # "text file busy" happens when a plugin binary was just written (e.g. a
    # package upgrade in flight); libcni retries, and so do we.
    for attempt in range(_TEXT_BUSY_RETRIES + 1):
        try:
            return _Child(argv, env)
        except OSError as e:
            if e.errno == errno.ETXTBSY and attempt < _TEXT_BUSY_RETRIES:
                time.sleep(1)
                continue
            raise
    raise AssertionError("unreachable")


def exec_plugin(
    plugin_path: str,
    inv: Invocation,
    stdin: bytes,
    *,
    plugin_type: str = "",
    network: str = "",
    timeout: float | None = None,
    environ: Mapping[str, str] | None = None,
) -> bytes:
    """Run one plugin; return its stdout, or raise PluginError describing the failure."""
    ptype = plugin_type or os.path.basename(plugin_path)
    limit = default_timeout() if timeout is None else timeout
    if trace.ON:
        with trace.span(f"plugin {inv.command}", f"{ptype} ({network})"):
            return _exec(plugin_path, inv, stdin, ptype, network, limit, environ)
    return _exec(plugin_path, inv, stdin, ptype, network, limit, environ)


def _exec(
    plugin_path: str, inv: Invocation, stdin: bytes, ptype: str, network: str, limit: float,
    environ: Mapping[str, str] | None,
) -> bytes:
    try:
        proc = _spawn([plugin_path], inv.environ(environ))
    except OSError as e:
        raise PluginError(ptype, network, inv.command, f"cannot execute {plugin_path}: {e.strerror}", code=INTERNAL) from None
    answer = _communicate(proc, stdin, limit)
    if answer is None:
        raise PluginTimeout(
            ptype,
            network,
            inv.command,
            f"plugin hung: no answer within {limit:g} s, killed (raise CNIRUN_PLUGIN_TIMEOUT if it is just slow)",
            code=11,
        )
    out, err = answer
    if proc.returncode == 0:
        if err:
            # libcni passes a successful plugin's stderr through: it's the only log a plugin has.
            sys.stderr.write(err.decode(errors="replace"))
        return out
    raise decode_failure(ptype, network, inv.command, out, err, proc.returncode)


def _communicate(proc: Any, stdin: bytes, timeout: float, until: bytes = b"") -> tuple[bytes, bytes] | None:
    """(stdout, stderr); None when it timed out (then it is killed and reaped). Interrupted: killed too."""
    try:
        answer = proc.communicate(stdin, timeout=timeout, until=until)
    except BaseException:
        proc.kill_and_reap()
        raise
    finally:
        proc.close()
    if answer is None:
        proc.kill_and_reap()
    return answer


def run_program(argv: list[str], timeout: float = 30.0, stdin: bytes = b"",
                until: bytes = b"") -> tuple[int, bytes, bytes]:
    """Run a helper program (iptables, tc -batch -...) without subprocess: (exit code, stdout, stderr).

    An executable that cannot be started gives 127; one that hangs is killed (-9).
    `until`: stdout holding it means success (0) before the program has exited
    (nft's "# new generation" line: its commit is in effect, while its exit
    can wait 10-20 ms longer on the kernel freeing what the commit removed).
    """
    env = dict(os.environ, PATH=os.environ.get("PATH") or DEFAULT_PATH)
    if "/" not in argv[0]:  # posix_spawn takes a path: look a bare name up in PATH, as subprocess does
        found = (os.path.join(d, argv[0]) for d in env["PATH"].split(":") if d)
        argv = [next((p for p in found if os.access(p, os.X_OK)), argv[0]), *argv[1:]]
    try:
        proc = _spawn(argv, env)
    except OSError as e:
        return 127, b"", (e.strerror or "").encode()
    answer = _communicate(proc, stdin, timeout, until)
    if answer is None:
        return -9, b"", b"timed out"
    return proc.returncode or 0, answer[0], answer[1]


def kill_orphaned_adds(container_id: str, ifname: str) -> int:
    """SIGKILL the process groups of plugins still running an ADD for this attachment.

    A runtime killed during ADD (SIGKILL, an engine's hook timeout) leaves
    its plugin running in its own session: it would go on allocating after
    the DEL that cleans up the killed ADD. Plugins are found by what every
    plugin has, their CNI_* environment, so nothing needs to be recorded
    between spawning one and knowing its pid. Only called under the host
    lock for an attachment whose intent record says ADD never finished, so
    no live runtime owns these processes. Returns how many were killed.
    """
    want = {
        b"CNI_COMMAND=ADD",
        b"CNI_CONTAINERID=" + container_id.encode(),
        b"CNI_IFNAME=" + ifname.encode(),
    }
    killed = 0
    try:
        pids = [int(n) for n in os.listdir("/proc") if n.isdigit()]
    except OSError:
        return 0
    me = os.getpid()
    for pid in pids:
        if pid == me:
            continue
        try:
            with open(f"/proc/{pid}/environ", "rb") as f:
                env = set(f.read().split(b"\0"))
        except OSError:
            continue  # gone, or a kernel thread
        if want <= env:
            for kill in (os.killpg, os.kill):  # plugins lead their own session/group
                try:
                    kill(pid, SIGKILL)
                except (ProcessLookupError, PermissionError):
                    pass
            killed += 1
    return killed


def decode_failure(ptype: str, network: str, command: str, out: bytes, err: bytes, rc: int) -> PluginError:
    """Turn a failed plugin's output into an error, as libcni's invoke does."""
    text = out.strip()
    if text:
        try:
            obj = json.loads(text)
        except (json.JSONDecodeError, UnicodeDecodeError):
            obj = None
        if isinstance(obj, dict) and ("code" in obj or "msg" in obj):
            code = obj.get("code")
            return PluginError(
                ptype,
                network,
                command,
                str(obj.get("msg", "")) or "plugin failed with no message",
                code=code if isinstance(code, int) else INTERNAL,
                details=str(obj.get("details", "") or ""),
            )
        return PluginError(ptype, network, command, f"netplugin failed: {text.decode(errors='replace')!r}")
    stderr = err.strip().decode(errors="replace")
    if stderr:
        return PluginError(ptype, network, command, f"netplugin failed: {stderr!r}")
    how = f"killed by signal {-rc}" if rc < 0 else f"exit status {rc}"
    return PluginError(ptype, network, command, f"netplugin failed with no error message ({how})")


class PluginInfo(Value):
    """A plugin's VERSION answer."""

    _fields = ("cni_version", "supported_versions")
    __match_args__ = _fields

    def __init__(self, cni_version: str, supported_versions: list[str]) -> None:
        self.cni_version = cni_version
        self.supported_versions = supported_versions


def probe_version(
    plugin_path: str,
    *,
    plugin_type: str = "",
    timeout: float | None = None,
    environ: Mapping[str, str] | None = None,
) -> PluginInfo:
    """Ask a plugin which spec versions it speaks (libcni's GetVersionInfo)."""
    ptype = plugin_type or os.path.basename(plugin_path)
    inv = Invocation(command="VERSION")
    try:
        out = exec_plugin(plugin_path, inv, b'{"cniVersion":"1.1.0"}', plugin_type=ptype, timeout=timeout, environ=environ)
    except PluginError as e:
        # A plugin written before VERSION existed answers this way: it speaks 0.1.0 only.
        if "unknown CNI_COMMAND: VERSION" in e.msg:
            return PluginInfo("0.1.0", ["0.1.0"])
        raise
    try:
        obj: Any = json.loads(out)
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise PluginError(ptype, "", "VERSION", f"invalid VERSION answer: {out[:200]!r}", code=6) from None
    if not isinstance(obj, dict):
        raise PluginError(ptype, "", "VERSION", "invalid VERSION answer: not an object", code=6)
    supported = obj.get("supportedVersions")
    if supported is None:
        # Pre-0.3 plugins answered with just a version.
        v = str(obj.get("cniVersion", "0.1.0"))
        return PluginInfo(v, ["0.1.0", "0.2.0"] if v == "0.2.0" else [v])
    if not isinstance(supported, list):
        raise PluginError(ptype, "", "VERSION", "invalid VERSION answer: supportedVersions is not a list", code=6)
    return PluginInfo(str(obj.get("cniVersion", "")), [str(v) for v in supported])
