"""Turning exceptions into the one-line errors users see."""
from __future__ import annotations

import sys

TYPE_CHECKING = False  # start-up cost: see cnirun.core
if TYPE_CHECKING:
    from types import TracebackType
    from typing import NoReturn

from ..core.errors import CNIError


def fail(message: str, code: int = 1) -> NoReturn:
    sys.stderr.write(f"cnirun: {message}\n")
    raise SystemExit(code)


class one_line_errors:  # noqa: N801 - used as `with one_line_errors():`, as the function it was
    """Any cnirun error becomes `cnirun: <message>` on stderr and `exit_code`.

    A class, not @contextlib.contextmanager: contextlib (with collections and
    functools) cost ~3 ms of start-up of every hand-parsed command (cni,
    update, port, network connect).
    """

    def __init__(self, exit_code: int = 1) -> None:
        self.exit_code = exit_code

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 tb: TracebackType | None) -> bool:
        if kind is not None and issubclass(kind, CNIError):
            fail(str(error), self.exit_code)
        if kind is not None and issubclass(kind, KeyboardInterrupt):
            fail("interrupted", 130)
        return False
