"""Host-wide locking around plugin execution.

Plugins of different networks still share iptables chains (portmap's
CNI-HOSTPORT-DNAT, firewall's CNI-FORWARD): concurrent ADDs race on chain
creation ("Chain already exists"). Like Podman and nerdctl, cnirun serialises
every chain execution with one host-wide lock. GC takes the same lock, so it
never runs beside an ADD or DEL. The lock is an flock: a killed holder
releases it with its last file descriptor, so it cannot go stale.
"""
from __future__ import annotations

import fcntl
import os
import time

from .errors import LockError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from types import TracebackType

DEFAULT_LOCK_FILE = "/run/cnirun/cni.lock"
DEFAULT_WAIT = 120.0


def lock_file() -> str:
    return os.environ.get("CNIRUN_LOCK_FILE") or DEFAULT_LOCK_FILE


class host_lock:  # noqa: N801 - used as `with host_lock(...)`, like the generator it replaced
    """Hold the host-wide CNI lock; LockError (code 11) after `wait` seconds.

    A plain context manager rather than @contextmanager: contextlib is not
    imported on the hook path. The lock is taken on entering the block.
    """

    def __init__(self, path: str | None = None, wait: float = DEFAULT_WAIT) -> None:
        self.path = path
        self.wait = wait
        self._fd = -1

    def __enter__(self) -> None:
        target, wait = self.path or lock_file(), self.wait
        try:
            os.makedirs(os.path.dirname(target), mode=0o755, exist_ok=True)
            fd = os.open(target, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError as e:
            raise LockError(
                f"cannot open lock file {target}: {e.strerror}: run as root or set CNIRUN_LOCK_FILE"
            ) from None
        try:
            deadline = time.monotonic() + wait
            delay = 0.002
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() >= deadline:
                        raise LockError(
                            f"another CNI operation has held {target} for more than {wait:g} s; try again later"
                        ) from None
                    time.sleep(delay)
                    delay = min(delay * 2, 0.05)
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        fd, self._fd = self._fd, -1
        if fd >= 0:
            os.close(fd)
