"""A dnsmasq cnirun runs: started on its config (the record, written first), identified, stopped.

Both kinds of resolver are one: a network's (cnirun.dns.resolver, in the
host's netns) and a container's own (cnirun.dns.view, in the container's).
dnsmasq daemonises, so it outlives cnirun; nobody waits on it (the keeper,
cnirun.dns.keeper, watches it).

Which process is a resolver: a command line is anybody's to write: a process
in a container (or of any user) may carry `--conf-file=<a resolver's
config>` in its arguments. So a resolver is only ever the pid in a pid file
of its own dir (root's, 0700: dnsmasq's pid-file, and cnirun's own record of
pid and start time written once dnsmasq serves), and that process must be
the host's dnsmasq binary (the same inode: a container's dnsmasq is another
file, whatever its path), run by root, in the network namespace it was
started in (the host's for a network's resolver, the recorded one for a
container's own), with that config on its command line. Nothing names a
module of cnirun: a resolver started by any version of cnirun is recognised.

dnsmasq is started with posix_spawn, not subprocess (start-up cost: see cnirun.core).
"""
from __future__ import annotations

import os

from ..core.errors import CNIError
from ..core.process import process_start
from .store import PID_NAME, conf_values

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Iterator

DNSMASQ = "/usr/sbin/dnsmasq"
NSENTER = "/usr/bin/nsenter"
OWN_PID = "cnirun.pid"
NETNS_MARK = "# netns "  # a container's resolver's record: "<netns identity> <netns path>"
STOP_WAIT = 2.0


class DNSError(CNIError):
    """The network's resolver could not be started or its names not written."""


def cmdline_marker(conf: str) -> bytes:
    """The argument a resolver of `conf` is started with (one of the checks of ours, never enough alone)."""
    return ("--conf-file=" + conf).encode()


def _cmdlines() -> Iterator[tuple[int, list[bytes]]]:
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


def candidates(prefix: bytes, suffix: bytes) -> list[tuple[int, bytes]]:
    """(pid, argument) of every process with an argument that starts with `prefix` and ends with `suffix`
    (candidates only: see ours)."""
    return [(pid, a) for pid, args in _cmdlines() for a in args if a.startswith(prefix) and a.endswith(suffix)]


def _host_netns() -> str:
    from ..core.fsutil import identity

    return identity("/proc/self/ns/net")


def ours(pid: int, conf: str, netns_id: str | None) -> bool:
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
            if cmdline_marker(conf) not in f.read().split(b"\0"):
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
    where = conf_values(conf, NETNS_MARK)
    return where[0].split(" ", 1)[0] if where else _host_netns()


def running(conf: str) -> int:
    """The pid of cnirun's running dnsmasq of `conf` (0 for none)."""
    ns = _expected_netns(conf)
    return next((pid for pid in _recorded_pids(conf) if ours(pid, conf, ns)), 0)


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


def write_conf(conf: str, text: str) -> None:
    """Write the resolver's config: its record, before it starts."""
    fd = os.open(conf, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    try:
        os.write(fd, text.encode())
    finally:
        os.close(fd)


def spawn(conf: str, what: str, netns: str = "") -> None:
    """Run dnsmasq on `conf`; it forks into the background and its first process exits 0 once it serves.

    netns: start it inside that network namespace (a container's own
    resolver), through nsenter, which execs dnsmasq: the command line that
    identifies it stays dnsmasq's. Raises DNSError.
    """
    err_path = os.path.join(os.path.dirname(conf), "start.err")
    argv = [DNSMASQ, "--conf-file=" + conf]
    if netns:
        argv = [NSENTER, "--net=" + netns, "--", *argv]
    try:
        pid = detached(argv, {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}, err_path, os.O_TRUNC)
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
        kill(conf)
        raise DNSError(f"the DNS resolver {what} did not start (dnsmasq exit {code}: {why}); "
                       "is something else listening on its address's port 53?")
    _record_pid(conf)


def detached(argv: list[str], env: dict[str, str], out_path: str, mode: int) -> int:
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


def kill(conf: str) -> None:
    """SIGTERM cnirun's dnsmasq of `conf` and wait until it is gone: the one its pid files name, and any
    other that passes the same checks (its pid file lost); never a process that only names `conf`."""
    import time

    ns = _expected_netns(conf)
    marker = cmdline_marker(conf)
    pids = {p for p in _recorded_pids(conf) if ours(p, conf, ns)}
    pids |= {p for p, args in _cmdlines() if marker in args and ours(p, conf, None)}
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
