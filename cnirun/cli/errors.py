"""Turning exceptions into the one-line errors users see."""
from __future__ import annotations

import sys
from contextlib import contextmanager

TYPE_CHECKING = False  # typing: ~3 ms of `cnirun cni` start-up, for annotations only
if TYPE_CHECKING:
    from typing import Iterator, NoReturn

from ..errors import CNIError


def fail(message: str, code: int = 1) -> NoReturn:
    sys.stderr.write(f"cnirun: {message}\n")
    raise SystemExit(code)


@contextmanager
def one_line_errors(exit_code: int = 1) -> Iterator[None]:
    """Any cnirun error becomes `cnirun: <message>` on stderr and `exit_code`."""
    try:
        yield
    except CNIError as e:
        fail(str(e), exit_code)
    except KeyboardInterrupt:
        fail("interrupted", 130)
