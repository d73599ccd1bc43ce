"""The run's own failures and their exit status.

Every runner module reports a failure the same way (RunFailed, caught once
in runner.run); the codes follow `docker run`: 125 when cnirun itself
failed, 126/127 when the command cannot be run (carried by `code`).
"""
from __future__ import annotations

EXIT_CNIRUN = 125


class RunFailed(Exception):
    """A failure with its exit code and message (already one line)."""

    def __init__(self, message: str, code: int = EXIT_CNIRUN) -> None:
        super().__init__(message)
        self.code = code
