"""The hook's log: one JSON line per hook run (stage, container, networks, outcome, duration).

CNIRUN_HOOK_LOG (paths.hook_log), rotated once at 4 MiB. Writing it never
makes a hook fail.
"""
from __future__ import annotations

import os
import time

from ..core import jsonfast as json

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Mapping

LOG_ROTATE_BYTES = 4 << 20


def log_path(environ: Mapping[str, str] | None = None) -> str:
    from ..core.paths import hook_log

    return hook_log(environ)


def write_log(record: dict[str, Any], path: str | None = None) -> None:
    """Append one JSON line; logging must never make a hook fail."""
    target = path or log_path()
    try:
        os.makedirs(os.path.dirname(target), mode=0o755, exist_ok=True)
        try:
            if os.path.getsize(target) > LOG_ROTATE_BYTES:
                os.replace(target, target + ".1")
        except OSError:
            pass
        fd = os.open(target, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o640)
        try:
            os.write(fd, (json.dumps(record, separators=(",", ":")) + "\n").encode())
        finally:
            os.close(fd)
    except OSError:
        pass


def finish(record: dict[str, Any], started: float) -> None:
    """Log a hook run's record with its time and its duration since `started` (time.monotonic)."""
    record["duration_ms"] = round((time.monotonic() - started) * 1000, 1)
    write_log({"time": time.strftime("%Y-%m-%dT%H:%M:%S%z"), **record})
