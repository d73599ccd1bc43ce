"""Private network namespaces on the host, made with iproute2.

`ip netns add` bind-mounts a fresh namespace under /run/netns, which outlives
the processes inside it; that is what `cnirun exec` and the tests need.
Executing `ip` costs about a millisecond, far less than importing pyroute2.
"""
from __future__ import annotations

import os

from ..core.errors import NetnsError

NETNS_DIR = "/run/netns"


def path_of(name: str) -> str:
    return os.path.join(NETNS_DIR, name)


def _ip(*args: str) -> None:
    from ..cni.invoke import run_program  # posix_spawn: subprocess costs ~6 ms of imports before podman starts

    code, _, err = run_program(["ip", *args])
    if code == 127:
        raise NetnsError("the 'ip' command is missing: install iproute2")
    if code != 0:
        text = err.decode(errors="replace").strip()
        raise NetnsError(f"ip {' '.join(args)}: {text.splitlines()[-1] if text else f'exit {code}'}")


def create(name: str | None = None, prefix: str = "cnirun-") -> tuple[str, str]:
    """Create a named netns; returns (name, path). Needs root (CAP_SYS_ADMIN)."""
    ns = name or prefix + os.urandom(6).hex()  # not secrets: its hashlib and hmac cost ~5 ms of a podman run
    if os.geteuid() != 0:
        raise NetnsError("creating a network namespace needs root: run cnirun as root (sudo)")
    _ip("netns", "add", ns)
    _ip("-n", ns, "link", "set", "lo", "up")
    return ns, path_of(ns)


def attach(name: str, pid: int) -> str:
    """Name process `pid`'s netns again (`ip netns attach`): /run/netns/NAME; returns the path."""
    _ip("netns", "attach", name, str(pid))
    return path_of(name)


def remove(name: str) -> None:
    """Delete a named netns; a missing one is fine."""
    if not os.path.exists(path_of(name)):
        return
    _ip("netns", "delete", name)
