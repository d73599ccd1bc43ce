"""The one way a test waits for something to happen: poll a condition with a deadline.

A test waits on an event it can observe (a log line, a record, a file, a
process gone) with wait_for, never with a fixed sleep; a `time.sleep` left
in a test is the test itself (a lock held for a while, a window in which
nothing may happen) and says so in a comment.
"""
from __future__ import annotations

import time
from typing import Callable, TypeVar

T = TypeVar("T")


def wait_for(condition: Callable[[], T], timeout: float = 15.0, what: str = "", step: float = 0.05) -> T:
    """Call `condition` every `step` seconds until it returns a true value, and return that value.

    After `timeout` seconds: an AssertionError naming `what` when it is given,
    else the condition's last (false) value, for the caller to assert on.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() >= deadline:
            if what:
                raise AssertionError(f"timed out after {timeout} s waiting for {what}")
            return value
        time.sleep(step)
