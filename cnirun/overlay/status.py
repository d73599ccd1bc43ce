"""What a running agent tells `cnirun overlay status`: a small JSON file beside subnet.env.

/run/flannel/subnet.env -> /run/flannel/subnet.cnirun.json, so simulated
hosts with their own --subnet-file have their own. The agent rewrites it
(atomically) when its lease, its peers or etcd's reachability change.
"""
from __future__ import annotations

import json
import os
from typing import Any

from ..core.fsutil import atomic_write


def state_path(subnet_file: str) -> str:
    base, _ = os.path.splitext(os.path.abspath(subnet_file))
    return base + ".cnirun.json"


def write(subnet_file: str, state: dict[str, Any]) -> None:
    path = state_path(subnet_file)
    os.makedirs(os.path.dirname(path), mode=0o755, exist_ok=True)
    atomic_write(path, (json.dumps(state, indent=1, sort_keys=True) + "\n").encode(), 0o644, fsync=False)


def read(subnet_file: str) -> dict[str, Any] | None:
    try:
        with open(state_path(subnet_file)) as f:
            data = json.load(f)
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def remove(subnet_file: str) -> None:
    try:
        os.unlink(state_path(subnet_file))
    except FileNotFoundError:
        pass


def pid_alive(pid: Any) -> bool:
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
