"""The networks cnirun ships: the default network used when none is named.

They live as ordinary netconf files in the repository's `netconf/` directory
(installed under <prefix>/share/cnirun/netconf), so users can read and copy
them. A network of the same name in NETCONFPATH takes precedence.
"""
from __future__ import annotations

import os
import sys
from functools import lru_cache

from .config import NetworkConfigList, load_file

TYPE_CHECKING = False  # pathlib is imported only when the shipped directory is looked up
if TYPE_CHECKING:
    from pathlib import Path

DEFAULT_NETWORK = "cnirun"


def default_network_name() -> str:
    return os.environ.get("CNIRUN_DEFAULT_NETWORK") or DEFAULT_NETWORK


def shipped_netconf_dir() -> Path | None:
    """netconf/ beside the package (source tree, editable install) or under sys.prefix."""
    from pathlib import Path

    candidates = [
        Path(__file__).resolve().parent.parent / "netconf",
        Path(sys.prefix) / "share" / "cnirun" / "netconf",
    ]
    for c in candidates:
        if (c / f"{DEFAULT_NETWORK}.conflist").is_file():
            return c
    return None


@lru_cache(maxsize=1)
def builtin_networks() -> tuple[NetworkConfigList, ...]:
    """The shipped top-level conflists (examples/ are not loaded implicitly)."""
    d = shipped_netconf_dir()
    if d is None:
        return ()
    return tuple(load_file(f) for f in sorted(d.glob("*.conflist")))
