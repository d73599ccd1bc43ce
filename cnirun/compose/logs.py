"""The containers' output as compose prints it: each line after `name  | ` (unless asked not to),
the engine's own filters (tail, timestamps, since/until) passed through."""
from __future__ import annotations

import os
import threading
import time
from typing import Any

from .durations import go_duration
from .messages import ComposeFailed


class LogOptions:
    """What `compose logs` was asked: follow, the last `tail` lines of each container (None: all),
    timestamps, the window from `since` to `until` (Unix times, None: no bound), and whether each line
    carries its container's name (compose's prefix)."""

    def __init__(self, follow: bool = True, tail: int | None = None, timestamps: bool = False,
                 since: float | None = None, until: float | None = None, prefix: bool = True) -> None:
        self.follow, self.tail, self.timestamps = follow, tail, timestamps
        self.since, self.until, self.prefix = since, until, prefix

    def engine_args(self) -> dict[str, Any]:
        return {"follow": self.follow, "tail": self.tail, "timestamps": self.timestamps, "since": self.since,
                "until": self.until}


def parse_tail(text: str) -> int | None:
    """--tail as compose takes it: a number of lines, or all (None)."""
    if text == "all":
        return None
    if not text.isdigit() or len(text) > 9:
        raise ComposeFailed(f"invalid --tail {text!r}: expected a number of lines or all")
    return int(text)


def log_time(text: str, now: float | None = None) -> float:
    """A --since/--until value as docker's CLI reads it, as a Unix time: a Go duration before now (10m,
    1h30m), a Unix time (1700000000, 1700000000.5), or an RFC 3339 date-time (2026-12-07T21:30:00Z, with
    a zone offset or a fraction; local time without a zone; a date alone is its midnight, local)."""
    from datetime import datetime

    value = text.strip()
    ago = go_duration(value)
    if ago is not None:
        return (time.time() if now is None else now) - ago
    if value.replace(".", "", 1).isdigit():
        return float(value)
    try:
        return datetime.fromisoformat(value).timestamp()
    except ValueError:
        raise ComposeFailed(f"invalid time {text!r}: expected an RFC 3339 date-time (2026-12-07T21:30:00Z), "
                            "a Unix time, or a duration before now (10m, 1h30m)") from None


class LogPrinter:
    """Writes containers' output to stdout, whole lines, each after its container's prefix."""

    def __init__(self, eng: Any, width: int, opts: LogOptions | None = None) -> None:
        self.eng = eng
        self.width = width
        self.opts = opts or LogOptions()
        self.lock = threading.Lock()
        self.threads: list[threading.Thread] = []

    def follow(self, name: str, cid: str) -> None:
        """Print name's output in a thread of its own (lines of several containers interleave)."""
        t = threading.Thread(target=self.print, args=(name, cid), daemon=True)
        t.start()
        self.threads.append(t)

    def print(self, name: str, cid: str) -> None:
        """Print name's output until the engine's stream ends (with follow: until the container does)."""
        prefix = f"{name.ljust(self.width)}  | ".encode() if self.opts.prefix else b""
        buf = b""
        for chunk in self.eng.logs(cid, **self.opts.engine_args()):
            buf += chunk
            *lines, buf = buf.split(b"\n")
            with self.lock:
                for line in lines:
                    os.write(1, prefix + line + b"\n")
        if buf:
            with self.lock:
                os.write(1, prefix + buf + b"\n")
