"""What compose tells its user while it works, and the failure that ends a command.

Every line goes to stderr through say(); on a terminal `up` draws a progress
line (cli.output.Progress, handed in by the CLI) that say() clears first, so
lines never mix with it.
"""
from __future__ import annotations

import sys
from typing import Any

from ..core.errors import CNIError


class ComposeFailed(CNIError):
    """compose could not do what it was asked (the message says why)."""


# The progress line drawn now (set by progress_shown), None off a terminal or outside `up`.
_progress: Any = None


def say(msg: str) -> None:
    if _progress is not None:
        _progress.clear()
    sys.stderr.write(msg + "\n")
    sys.stderr.flush()


def warn_unset(name: str) -> None:
    """Compose's warning for a variable used without a default and set nowhere."""
    say(f'WARN[0000] The "{name}" variable is not set. Defaulting to a blank string.')


def show_progress(progress: Any) -> None:
    """Draw `progress` (step(item), clear()) until hide_progress; None draws nothing."""
    global _progress
    _progress = progress


def step(item: str) -> None:
    """The progress line moves on to item (nothing off a terminal)."""
    if _progress is not None:
        _progress.step(item)


def hide_progress() -> None:
    global _progress
    if _progress is not None:
        _progress.clear()
    _progress = None
