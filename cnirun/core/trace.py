"""Where the time goes: `CNIRUN_TRACE=1` or `--debug` prints each phase with its duration on stderr.

One line per phase, as it ends:

    cnirun trace [pid]  +41.2 ms  plugin ADD       9.8 ms  bridge (t197a)

`+` is the time since the process started (interpreter start-up and imports
count), then the phase and how long it took. Phases: start-up, argv parse, config load, lock wait, each
plugin exec, cache write, engine calls.

Zero cost when off: this module imports only os, sys and time (all loaded
by every Python already), and callers test `trace.ON` before timing
anything. It is on the OCI hook path. The setting is passed on to the
processes cnirun starts (CNIRUN_TRACE in their environment), so a
`--debug` run's background teardown traces too.
"""
from __future__ import annotations

import os
import sys
import time

ON = os.environ.get("CNIRUN_TRACE", "") not in ("", "0")
now = time.monotonic  # callers time a phase with trace.now() without importing time


def enable() -> None:
    """Turn tracing on for this process and the ones it starts (`--debug`)."""
    global ON
    ON = True
    os.environ["CNIRUN_TRACE"] = "1"


_origin: list[float] = []  # [monotonic time of the process's start], set on first use


def _since_start() -> float:
    """Seconds since this process started.

    The kernel's start time (/proc/self/stat) is in clock ticks (10 ms), too
    coarse; /proc/self/schedstat has, in ns, the time this process ran and
    waited to run. Until the first trace line the process only ran (start-up
    and imports: nothing blocks), so that sum is the time since it started;
    later lines add the wall time since.
    """
    if not _origin:
        try:
            with open("/proc/self/schedstat", "rb") as f:
                ran, waited = f.read().split()[:2]
            _origin.append(time.monotonic() - (int(ran) + int(waited)) / 1e9)
        except (OSError, ValueError):
            _origin.append(time.monotonic())
    return time.monotonic() - _origin[0]


def event(phase: str, seconds: float, detail: str = "") -> None:
    """Print one finished phase (call only when ON)."""
    line = f"cnirun trace [{os.getpid()}] {_since_start() * 1000:+8.1f} ms  {phase:<16} {seconds * 1000:7.1f} ms"
    try:
        sys.stderr.write(line + ("  " + detail if detail else "") + "\n")
        sys.stderr.flush()
    except (OSError, ValueError):
        pass  # stderr closed (a detached teardown): tracing never fails the work


def startup() -> None:
    """The interpreter's start-up and imports up to now, as the first phase."""
    if ON:
        event("start-up", _since_start(), "interpreter, imports")


class span:  # noqa: N801 - used as `with trace.span(...)`
    """Time a block and print it as a phase (when ON; otherwise nearly free)."""

    __slots__ = ("phase", "detail", "t0")

    def __init__(self, phase: str, detail: str = "") -> None:
        self.phase = phase
        self.detail = detail
        self.t0 = 0.0

    def __enter__(self) -> "span":
        if ON:
            self.t0 = time.monotonic()
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if ON:
            event(self.phase, time.monotonic() - self.t0, self.detail + (" (failed)" if exc_type else ""))
