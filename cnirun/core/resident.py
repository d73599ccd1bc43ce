"""Resident processes: the ones cnirun leaves running (the -d watcher, the resolvers' keeper).

They are started as `python -P -m cnirun...`, this install's directory first
on PYTHONPATH (spawn_argv, spawn_env): never the caller's working directory,
so a `cnirun/` folder where a user runs `cnirun run -d` is not imported as
root in place of the install; the editable install and a source tree on
PYTHONPATH keep working.

One of each runs per state dir: the holder of an flock. Its holder writes
"PID GENERATION" into the lock file (hold). A resident of another generation
(one an earlier cnirun started, whose modules an upgrade may have moved from
under it) is stopped by the next start of one (stop_outdated), which then
takes its place: the pid comes from the lock file (or, for residents that
wrote none there, the pid file they wrote) and counts only while /proc/locks
says that process holds the lock, never by a command line.

Only os at import time.
"""
from __future__ import annotations

import os

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Mapping

STOP_WAIT = 2.0  # seconds for SIGTERM, then as long for SIGKILL


def spawn_argv(module: str, *args: str) -> list[str]:
    """The argv that runs `module` with this interpreter, the script's directory (the caller's cwd) off sys.path."""
    import sys

    return [sys.executable, "-P", "-m", module, *args]


def spawn_env(env: Mapping[str, str]) -> dict[str, str]:
    """`env` with this package's parent directory first on PYTHONPATH, then the absolute entries already
    there (a relative one would name a directory of the caller's)."""
    from .paths import PACKAGE_PARENT

    kept = [p for p in (env.get("PYTHONPATH") or "").split(os.pathsep) if os.path.isabs(p) and p != PACKAGE_PARENT]
    return {**env, "PYTHONPATH": os.pathsep.join([PACKAGE_PARENT, *kept])}


def hold(path: str, generation: str) -> int | None:
    """Take the lock at `path` and write our pid and `generation` in it; the fd (None: someone holds it)."""
    from .lock import flock

    fd = flock(path, blocking=False)
    if fd is not None:
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()} {generation}\n".encode(), 0)
    return fd


def outdated_holder(path: str, generation: str, pid_file: str = "") -> int:
    """The pid of a resident of another generation that holds the lock at `path` (0 for none).

    The lock file (or, when it names no pid, `pid_file`) says who holds it
    and of which generation; /proc/locks confirms that this pid holds an
    flock on that file. A holder that took the lock and has not written it
    yet names nobody: the pid written is not the one /proc/locks shows.
    """
    try:
        with open(path, encoding="ascii") as f:
            words = f.read().split()
        if words[1:] == [generation]:
            return 0
        if not words and pid_file:
            with open(pid_file, encoding="ascii") as f:
                words = f.read().split()[:1]
        if not words or not words[0].isdigit():
            return 0
        st = os.stat(path)
        with open("/proc/locks", encoding="ascii") as f:
            locks = [line.split() for line in f]
    except (OSError, ValueError):
        return 0
    where = f"{os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}:{st.st_ino}"
    held = any(w[1:2] == ["FLOCK"] and w[4:6] == [words[0], where] for w in locks)
    return int(words[0]) if held else 0


def stop_outdated(path: str, generation: str, pid_file: str = "") -> bool:
    """Stop the resident of another generation holding the lock at `path`, if one does: SIGTERM, then
    SIGKILL, to its process group (a resident leads its session; the watcher's worker shares the lock);
    whether the lock is free now."""
    import time

    from .lock import flock

    pid = outdated_holder(path, generation, pid_file)
    if not pid:
        return False
    for sig in (15, 9):
        try:
            os.killpg(pid, sig)
        except ProcessLookupError:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + STOP_WAIT
        while time.monotonic() < deadline:
            fd = flock(path, blocking=False)
            if fd is not None:
                os.close(fd)
                return True
            time.sleep(0.01)
    return False
