"""Serialising "is this host port free?" with the ADD that takes it.

The check reads published ports from the CNI cache; the ADD writes them
there. Without a lock, two runs publishing the same port at the same moment
both pass the check and portmap installs two DNAT rules for one port. Runs
that publish ports hold this lock from the check until their ADD finished
(or failed and was undone); runs without -p never touch it.

One lock file per CNI cache directory (the cache is what is checked), kept
in that directory: it lives and goes with the cache it guards.
"""
from __future__ import annotations

import os
TYPE_CHECKING = False  # typing costs ~7 ms of start-up on `cnirun run`: annotations only
if TYPE_CHECKING:
    from typing import Any

from .errors import ArgumentError, CacheError, LockError
from .lock import host_lock

WAIT_SECONDS = 120.0
LOCK_NAME = "cnirun-ports.lock"


def lock_path(cni: Any) -> str:
    return os.path.join(cni.cache_dir, LOCK_NAME)


class PortLock:
    """Held from the free-port check until ADD has cached the mappings."""

    def __init__(self, lock: host_lock) -> None:
        self._lock: host_lock | None = lock

    @classmethod
    def acquire(cls, cni: Any, wait: float = WAIT_SECONDS) -> "PortLock":
        path = lock_path(cni)
        try:
            os.makedirs(cni.cache_dir, mode=0o700, exist_ok=True)
        except OSError as e:
            raise CacheError(
                f"cache directory {cni.cache_dir} is not usable ({e.strerror}): "
                "set CNI_CACHE_DIR to a writable directory"
            ) from None
        if not os.access(cni.cache_dir, os.W_OK | os.X_OK):
            raise CacheError(f"cache directory {cni.cache_dir} is not writable: set CNI_CACHE_DIR to a writable one")
        lock = host_lock(path, wait)
        try:
            lock.__enter__()
        except LockError:
            raise ArgumentError(
                f"another cnirun run held the port lock {path} for {wait:.0f} s: retry, or find it with "
                f"`fuser {path}`"
            ) from None
        return cls(lock)

    def release(self) -> None:
        if self._lock is not None:
            self._lock.__exit__(None, None, None)
            self._lock = None
