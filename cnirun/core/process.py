"""Processes: how a short-lived cnirun process ends, which process a recorded pid still names, and
the name a process of cnirun's shows (ps, top, the kernel's accounting).

Tearing the interpreter down (module dicts, GC) costs 2-4 ms of every
process, 8-12 ms of a `cnirun run` (the engine client's modules); the hook,
`run` and the hand-parsed commands timed against the plugins (`cnirun cni`,
`update`, `port`, `network connect/disconnect`) have nothing to finalise but
stdio when they return: no threads left but daemon ones, no atexit
handlers, every file written with os.write or closed by `with`, background
work in processes of its own.
"""
from __future__ import annotations

import os
import sys


def exit_now(code: int) -> None:
    """Flush stdout and stderr, then leave with `code` (os._exit: no finalisation)."""
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    finally:
        os._exit(code)


def process_start(pid: int) -> str:
    """The start time of process `pid` (clock ticks after boot, /proc/<pid>/stat field 22); '' if gone or a zombie.

    A pid alone may name another process by now: a recorded pid is the
    recorded process only while its start time is the recorded one.
    """
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
        fields = data[data.rindex(b")") + 2:].split()  # after the command name, which may hold spaces
        if fields[0] in (b"Z", b"X"):
            return ""
        return fields[19].decode()
    except (OSError, ValueError, IndexError):
        return ""


def set_name(name: str) -> None:
    """This process's name as ps and the kernel's accounting show it (comm, at most 15 bytes): the
    runtime's processes all run `python -c`, and bench/_cpu.py tells them apart by it."""
    try:
        with open("/proc/self/comm", "w") as f:
            f.write(name[:15])
    except OSError:
        pass
