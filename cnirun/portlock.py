"""Serialising "is this host port free?" with the ADD that takes it.

The check reads published ports from the CNI cache; the ADD writes them
there. Without a lock, two runs publishing the same port at the same moment
both pass the check and portmap installs two DNAT rules for one port. Runs
that publish ports hold this lock from the check until their ADD finished
(or failed and was undone); runs without -p never touch it.

One lock file per CNI cache directory (the cache is what is checked), kept
beside the host-wide plugin lock.
"""
from __future__ import annotations

import fcntl
import hashlib
import os
import time
from typing import Any

from .errors import ArgumentError

WAIT_SECONDS = 120.0


def lock_path(cni: Any) -> str:
    from .lock import lock_file

    base = os.path.dirname(cni.lock_file or lock_file())
    tag = hashlib.sha256(os.path.abspath(cni.cache_dir).encode()).hexdigest()[:16]
    return os.path.join(base, f"ports-{tag}.lock")


class PortLock:
    def __init__(self, fd: int) -> None:
        self._fd: int | None = fd

    @classmethod
    def acquire(cls, cni: Any, wait: float = WAIT_SECONDS) -> "PortLock":
        path = lock_path(cni)
        os.makedirs(os.path.dirname(path), mode=0o755, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        deadline = time.monotonic() + wait
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return cls(fd)
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    os.close(fd)
                    raise ArgumentError(
                        f"another cnirun run held the port lock {path} for {wait:.0f} s: retry, or find it with "
                        f"`fuser {path}`"
                    ) from None
                time.sleep(0.02)

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
