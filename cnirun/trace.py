"""Where the time goes: `CNIRUN_TRACE=1` or `--debug` prints each phase with its duration on stderr.

One line per phase, as it ends:

    cnirun trace [pid]  +41.2 ms  plugin ADD       9.8 ms  bridge (t197a)

`+` is the time since the process started (the kernel's start time of this
process, so interpreter start-up and imports count), then the phase and how
long it took. Phases: start-up, argv parse, config load, lock wait, each
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


def _since_start() -> float:
    """Seconds since this process started (field 22 of /proc/self/stat, in clock ticks since boot)."""
    try:
        with open("/proc/self/stat", "rb") as f:
            stat = f.read()
        ticks = int(stat[stat.rindex(b")") + 2:].split()[19])
        return time.clock_gettime(time.CLOCK_BOOTTIME) - ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return 0.0


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
