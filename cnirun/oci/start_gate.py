"""The gate `runc start` waits on while the Docker shim's worker attaches the container.

In Docker hook mode the shim makes the container's netns itself, hands it to
runc by path, and lets a forked worker run the ADDs while runc creates the
container (cnirun.oci.shim, attach.run_for_shim). The container's first
instruction must not run before its network is up, so the runtime's `runc
start` waits here: <state dir>/starting/<container id>, created and
flock'ed (exclusively) by the shim before it forks, the lock inherited by
the worker and released when it exits. The worker writes the outcome into
the file: `ok`, or the one-line error the start fails with. The runtime's
launcher (a sh script, docker_runtime.launcher_text) waits for the lock with
flock(1), reads the outcome and removes the file; an empty file after the
lock came free means the worker was killed: the start fails, and the
runtime's `delete` (or `cnirun gc`) DELs what it left.

Who removes a gate: the launcher's `start`, else its `delete` (a container
that never started), else `cnirun gc` (a gate nobody holds, of a container
that is gone). Never a DEL: by then the next create may have made a new one.
On the shim's path: os and fcntl only.
"""
from __future__ import annotations

import fcntl
import os

from ..core.paths import gates_dir

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Mapping

OK = "ok"
# The launcher's flock timeout: longer than the worker's whole budget
# (attach.ATTACH_BUDGET + CLEANUP_GRACE), which ends it one way or the other.
WAIT_SECONDS = 150


def gate_path(container_id: str, environ: Mapping[str, str] | None = None) -> str:
    return os.path.join(gates_dir(environ), container_id)


def open_gate(container_id: str, environ: Mapping[str, str] | None = None) -> int:
    """Create the container's gate, empty and locked; the fd holding the lock (close-on-exec)."""
    path = gate_path(container_id, environ)
    os.makedirs(os.path.dirname(path), mode=0o755, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
    try:
        # Only one create of a container runs at a time (runc refuses a second): nobody else
        # writes this gate; a launcher's `start` only reads it, shared, after the worker is done.
        fcntl.flock(fd, fcntl.LOCK_EX)
        os.ftruncate(fd, 0)
    except OSError:
        os.close(fd)
        raise
    return fd


def settle(fd: int, error: str = "") -> None:
    """Write the outcome (error '' = ok) into the gate; the lock goes with the holder's exit."""
    text = (error.replace("\n", " ").strip() or "the attach failed") if error else OK
    os.ftruncate(fd, 0)
    os.pwrite(fd, (text + "\n").encode(), 0)


def outcome(container_id: str, environ: Mapping[str, str] | None = None) -> str | None:
    """What the gate says once nobody holds it: 'ok', an error, '' (the worker died); None: no gate."""
    try:
        fd = os.open(gate_path(container_id, environ), os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH)
        return os.read(fd, 4096).decode(errors="replace").strip()
    finally:
        os.close(fd)


def remove_gate(container_id: str, environ: Mapping[str, str] | None = None) -> None:
    try:
        os.unlink(gate_path(container_id, environ))
    except OSError:
        pass  # none, or gone already


def gates(environ: Mapping[str, str] | None = None) -> list[str]:
    """Container IDs that have a gate (`cnirun gc` removes those of containers that are gone)."""
    try:
        return sorted(n for n in os.listdir(gates_dir(environ)) if not n.startswith("."))
    except OSError:
        return []
