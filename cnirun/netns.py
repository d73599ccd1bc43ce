"""Private network namespaces on the host, made with iproute2.

`ip netns add` bind-mounts a fresh namespace under /run/netns, which outlives
the processes inside it; that is what `cnirun exec` and the tests need.
Executing `ip` costs about a millisecond, far less than importing pyroute2.
"""
from __future__ import annotations

import os
import secrets
import subprocess

from .errors import NetnsError

NETNS_DIR = "/run/netns"


def path_of(name: str) -> str:
    return os.path.join(NETNS_DIR, name)


def _ip(*args: str) -> None:
    try:
        proc = subprocess.run(["ip", *args], capture_output=True, text=True)
    except FileNotFoundError:
        raise NetnsError("the 'ip' command is missing: install iproute2") from None
    if proc.returncode != 0:
        msg = proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else f"exit {proc.returncode}"
        raise NetnsError(f"ip {' '.join(args)}: {msg}")


def create(name: str | None = None, prefix: str = "cnirun-") -> tuple[str, str]:
    """Create a named netns; returns (name, path). Needs root (CAP_SYS_ADMIN)."""
    ns = name or prefix + secrets.token_hex(6)
    if os.geteuid() != 0:
        raise NetnsError("creating a network namespace needs root: run cnirun as root (sudo)")
    _ip("netns", "add", ns)
    _ip("-n", ns, "link", "set", "lo", "up")
    return ns, path_of(ns)


def remove(name: str) -> None:
    """Delete a named netns; a missing one is fine."""
    if not os.path.exists(path_of(name)):
        return
    _ip("netns", "delete", name)
