"""How a short-lived cnirun process ends: at once, without the interpreter's teardown.

Tearing the interpreter down (module dicts, GC) costs 2-4 ms of every
process; the hook and the hand-parsed commands timed against the plugins
(`cnirun cni`, `update`, `port`, `network connect/disconnect`) have nothing
to finalise but stdio: no threads, no atexit handlers, every file written
with os.write or closed by `with`. Only os at import time (hook path).
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
