"""SIGINT/TERM/HUP during a run: SignalGate and Interrupted.

One object decides what a signal means at each stage: during set-up it
aborts (Interrupted unwinds, and every `finally` tears down what was made);
once the workload runs it is forwarded to the container; during teardown it
is ignored. Kept apart from the engines so every mode shares one policy.
"""
from __future__ import annotations

# _signal, not signal: signal wraps the same functions in enums, and enum (with functools and
# collections) costs ~4.5 ms of every run's start before the engine is called.
import _signal as signal

TYPE_CHECKING = False  # start-up cost: see cnirun.core

if TYPE_CHECKING:
    from typing import Any

_FORWARDED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class Interrupted(Exception):
    def __init__(self, signum: int) -> None:
        super().__init__(f"interrupted by signal {signum}")
        self.signum = signum


class SignalGate:
    """SIGINT/TERM/HUP: abort set-up (raise Interrupted), later forward to the container."""

    def __init__(self) -> None:
        self.forward: Any = None  # callable(signum) once the workload runs
        self.received: list[int] = []
        self._old: dict[int, Any] = {}

    def install(self) -> None:
        for s in _FORWARDED:
            self._old[s] = signal.signal(s, self._on)

    def _on(self, signum: int, _frame: Any) -> None:
        self.received.append(signum)
        if self.forward is None:
            raise Interrupted(signum)
        # Never do I/O inside a handler: the main thread may hold the connection pool.
        import threading

        threading.Thread(target=self.forward, args=(signum,), daemon=True).start()

    def shield(self) -> None:
        """Teardown must not be cut short by a second Ctrl-C."""
        for s in _FORWARDED:
            signal.signal(s, signal.SIG_IGN)

    def restore(self) -> None:
        for s, h in self._old.items():
            signal.signal(s, h)
