"""The attach's time budget: it stops, undoes what it did, and exits before the engine kills the hook.

The engine kills a createRuntime hook after HOOK_TIMEOUT s (hooks.d
template, the Docker shim). The attach gives up after ATTACH_BUDGET s
(waits for locks included), then undoes what it did with plugins limited to
CLEANUP_PLUGIN_TIMEOUT s each; if that too is not over CLEANUP_GRACE s
later, the hook exits and leaves the rest to `cnirun gc`. 90 + 20 < 120.
"""
from __future__ import annotations

import os
import time

from .log import finish
from ..core.oci_state import HookError
from .argv import HOOK_TIMEOUT

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Mapping

    from ..cni.runtime import CNI

ATTACH_BUDGET = 90.0
CLEANUP_GRACE = 20.0
CLEANUP_PLUGIN_TIMEOUT = 2.0


class HookTimeout(HookError):
    """The attach did not finish within the hook's budget (ATTACH_BUDGET)."""


def attach_budget(environ: Mapping[str, str] | None = None) -> float:
    """Seconds the attach may take (CNIRUN_HOOK_BUDGET, never above ATTACH_BUDGET)."""
    env = os.environ if environ is None else environ
    try:
        budget = float(env.get("CNIRUN_HOOK_BUDGET") or ATTACH_BUDGET)
    except ValueError:
        budget = ATTACH_BUDGET
    return min(max(budget, 0.1), ATTACH_BUDGET)


class Deadline:
    """SIGALRM after the budget: the attach stops where it waits and undoes what it did.

    The first alarm raises HookTimeout where the hook is (a lock wait, a
    plugin: invoke kills the plugin on any exception) and shortens every
    later plugin call (the cleanup DELs) to CLEANUP_PLUGIN_TIMEOUT; a second
    one, CLEANUP_GRACE s later, ends the process before the engine's
    HOOK_TIMEOUT: what is left is in the cache for `cnirun gc`. _signal, not
    signal: the signal module imports enum (hook path).
    """

    def __init__(self, cni: CNI, seconds: float, record: dict[str, Any], total: float | None = None) -> None:
        self.cni = cni
        self.seconds = seconds  # what is left of `total` when armed
        self.total = seconds if total is None else total
        self.record = record
        self.fired = False
        self._old: Any = None

    def arm(self) -> None:
        import _signal

        self._old = _signal.signal(_signal.SIGALRM, self._fire)
        _signal.setitimer(_signal.ITIMER_REAL, max(self.seconds, 0.01))

    def disarm(self) -> None:
        import _signal

        _signal.setitimer(_signal.ITIMER_REAL, 0)
        if self._old is not None:
            _signal.signal(_signal.SIGALRM, self._old)
            self._old = None

    def _fire(self, signum: int, frame: Any) -> None:
        import _signal

        if not self.fired:
            self.fired = True
            self.cni.timeout = CLEANUP_PLUGIN_TIMEOUT
            _signal.setitimer(_signal.ITIMER_REAL, CLEANUP_GRACE)
            raise HookTimeout(
                f"attaching took longer than {self.total:g} s (the engine stops hooks after {HOOK_TIMEOUT} s): "
                "a plugin or another CNI operation is slow; retry, or look at cnirun's hook log"
            )
        msg = "cleanup after the timeout did not finish either: `cnirun gc` reclaims what is left"
        self.record.update(outcome="failed", error=msg)
        try:
            os.write(2, f"cnirun: {msg}\n".encode())
            finish(self.record, time.monotonic() - (self.seconds + CLEANUP_GRACE))
        finally:
            os._exit(1)
