"""The detach: poststop and the Docker runtime's `delete` DEL what the container's start attached.

poststop never blocks the engine: it takes the container's lock
(<state dir>/locks/<id>.lock), forks, and returns; the child, which inherits
the lock, DELs and unpins, then logs. A createRuntime of the same container
(docker restart) waits on that lock, so it can never race the DEL of the
previous run. CNIRUN_HOOK_SYNC=1 keeps poststop in the foreground. Under
Docker the launcher's `delete` takes the lock itself and starts run_delete
in the background instead.

The poststop parent imports only os, sys, time, the lock and the log: the
runtime core is loaded by the child that DELs.
"""
from __future__ import annotations

import os
import sys
import time

from .log import finish
from ..core.lock import lock_container, unlock_container
from ..core.oci_state import HookError, OCIState
from ..core.paths import is_safe_name

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from ..cni.runtime import CNI

POSTSTOP_PLUGIN_TIMEOUT = 20.0
# poststop's engine timeout is 60 s (hooks/cnirun-detach.json); its parent
# only waits for the container lock, then forks.
POSTSTOP_LOCK_WAIT = 30.0


def detach_container(cni: CNI, container_id: str) -> list[str]:
    """DEL every cached attachment of the container, then drop the netns pin (lifecycle.detach)."""
    from ..network.lifecycle import detach

    return detach(cni, container_id)


def _safe_id(cid: str) -> bool:
    """libcni's container ID rule (core.paths.is_safe_name), at most 256 characters."""
    return is_safe_name(cid) and len(cid) <= 256


def _detach_stage(state: OCIState, record: dict[str, Any]) -> None:
    from ..cni.runtime import CNI

    problems = detach_container(CNI(timeout=POSTSTOP_PLUGIN_TIMEOUT), state.id)
    if problems:
        record["outcome"] = "incomplete"
        record["error"] = "; ".join(problems)


def poststop(state: OCIState, record: dict[str, Any], started: float) -> int:
    """poststop: take the container lock, fork, and let the child DEL; the engine goes on at once.

    The engine waits for a hook's stdout/stderr to close, so the child
    points them at /dev/null. CNIRUN_HOOK_SYNC=1 keeps everything in the
    foreground (debugging).
    """
    if not _safe_id(state.id):
        raise HookError(f"invalid container ID {state.id!r} in the OCI state")
    fd = lock_container(state.id, wait=POSTSTOP_LOCK_WAIT)
    if os.environ.get("CNIRUN_HOOK_SYNC") == "1":
        try:
            _detach_stage(state, record)
        finally:
            unlock_container(fd, state.id, remove=True)
            finish(record, started)
        return 0
    sys.stdout.flush()
    sys.stderr.flush()
    if os.fork() != 0:
        return 0  # the child holds the lock now (flock belongs to the shared open file)
    code = 0
    try:
        os.setsid()
        # The bundle directory we were started in goes away with the container:
        # plugins started from a vanished cwd can fail (a pyenv python3 shim does).
        os.chdir("/")
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
        finish(record, started)
    except BaseException:
        code = 1
    finally:
        os._exit(code)


def run_delete(container_id: str, lock_fd: int) -> int:
    """The Docker runtime's `delete` (cnirun.oci.shim.delete_main): DEL what the container's start attached.

    The launcher takes the container's lock on `lock_fd` (flock(1)), starts
    this process in the background with it, and execs `runc delete` at once:
    the DEL, which poststop ran before, is off the engine's path. The lock is
    taken again here (a no-op when the launcher got it; a wait when its
    flock timed out) and checked to be on the lock file that is there now
    (the holder before may have removed it). Logged as stage "delete".
    """
    import fcntl

    from ..core.paths import container_lock

    started = time.monotonic()
    record: dict[str, Any] = {"stage": "delete", "container": container_id, "networks": [], "outcome": "ok",
                              "background": True}
    if not _safe_id(container_id):
        return 2
    os.setsid()
    os.chdir("/")  # the bundle goes away with the container
    fd = -1
    try:
        try:
            fcntl.flock(lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # the launcher's own lock: no wait
            current = os.stat(container_lock(container_id))
            if (current.st_dev, current.st_ino) != (os.fstat(lock_fd).st_dev, os.fstat(lock_fd).st_ino):
                raise FileNotFoundError  # a lock nobody else will see: take the one that is there
            fd = lock_fd
        except OSError:
            try:
                os.close(lock_fd)
            except OSError:
                pass
            fd = lock_container(container_id, wait=POSTSTOP_LOCK_WAIT)  # waits, replaceable, bounded
        _detach_stage(OCIState(container_id), record)
    except Exception as e:  # noqa: BLE001 - nobody is listening: the log is the report (gc finishes it)
        record.update(outcome="incomplete", error=str(e))
    if fd >= 0:
        unlock_container(fd, container_id, remove=True)
    finish(record, started)
    return 0 if record["outcome"] == "ok" else 1
