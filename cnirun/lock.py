"""flock-based locks: the one helper every lock of cnirun goes through, and the host-wide CNI lock.

`flock()` is how cnirun takes any lock (the host-wide CNI lock, a
container's lifecycle lock, a run's state-dir lock, the watcher's, the port
lock): a killed holder releases an flock with its last descriptor, so no
lock of cnirun can go stale.

Host-wide locking around plugin execution:

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

DEFAULT_WAIT = 120.0
CONTAINER_LOCK_WAIT = 60.0


def lock_file() -> str:
    from .paths import cni_lock

    return cni_lock()


def flock(
    path: str,
    *,
    wait: float | None = None,
    blocking: bool = True,
    replaceable: bool = False,
    what: str = "",
) -> int | None:
    """Open `path` (creating it and its directory) and take an exclusive flock; returns the fd.

    blocking=False: None at once when someone holds it. `wait`: give up after
    that many seconds with LockError naming `what` (None: wait for ever).
    replaceable: the holder may unlink the file when done (a container's
    lock): if the file was replaced after we opened it, lock the new one, so
    two processes can never both hold "the" lock through different inodes.
    The fd is close-on-exec; closing it releases the lock.
    """
    try:
        os.makedirs(os.path.dirname(path), mode=0o755, exist_ok=True)
    except OSError as e:
        raise LockError(f"cannot create the directory of lock file {path}: {e.strerror}: run as root") from None
    deadline = None if wait is None else time.monotonic() + wait
    delay = 0.002
    while True:
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError as e:
            raise LockError(f"cannot open lock file {path}: {e.strerror}: run as root") from None
        try:
            if deadline is None and blocking:
                fcntl.flock(fd, fcntl.LOCK_EX)
            else:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            if not blocking:
                return None
            if deadline is not None and time.monotonic() >= deadline:
                raise LockError(
                    f"{what or 'another cnirun process'} has held {path} for more than {wait:g} s: try again later"
                ) from None
            time.sleep(delay)
            delay = min(delay * 2, 0.05)
            continue
        except BaseException:
            os.close(fd)
            raise
        if not replaceable:
            return fd
        try:
            same = os.fstat(fd).st_ino == os.stat(path).st_ino
        except FileNotFoundError:
            same = False
        if same:
            return fd
        os.close(fd)  # the holder removed the file after we opened it: take the new one


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
        self._fd = flock(self.path or lock_file(), wait=self.wait, what="another CNI operation")  # type: ignore[assignment]

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        fd, self._fd = self._fd, -1
        if fd >= 0:
            os.close(fd)


def is_held(path: str) -> bool:
    """Whether some live process holds the flock on `path` (a missing file: nobody)."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


def lock_container(container_id: str, wait: float = CONTAINER_LOCK_WAIT, blocking: bool = True) -> int | None:
    """Take a container's lifecycle lock; the fd holding it (None: busy and not blocking).

    Serialises a container's steps: a hook's createRuntime with the
    background DEL of its previous poststop (a `docker restart` runs both
    back to back), and gc's reclaim with both. The poststop parent takes it
    and its forked child inherits it, so it is held without a gap until the
    DEL is done. LockError after `wait` seconds. (Here, not in lifecycle: the
    poststop parent takes it and must not import the runtime core.)
    """
    from .paths import container_lock

    return flock(
        container_lock(container_id), wait=wait, blocking=blocking, replaceable=True,
        what=f"the teardown of container {container_id[:12]}",
    )


def unlock_container(fd: int, container_id: str, remove: bool = False) -> None:
    """Release a container's lock; remove=True also deletes its file (the container is gone)."""
    if remove:
        from .paths import container_lock

        try:
            os.unlink(container_lock(container_id))
        except OSError:
            pass
    os.close(fd)
