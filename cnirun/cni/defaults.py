"""The networks cnirun ships: the default network used when none is named.

They live as ordinary netconf files in the repository's `netconf/` directory
(installed under <prefix>/share/cnirun/netconf), so users can read and copy
them. A network of the same name in NETCONFPATH takes precedence.
"""
from __future__ import annotations

import os
import sys

from ..core.paths import PACKAGE_PARENT
from .config import NetworkConfigList, load_file

# os.path, not pathlib (with re, fnmatch and enum ~3 ms) nor functools.lru_cache
# (~1 ms): a run on the default network looks the shipped directory up.

DEFAULT_NETWORK = "cnirun"


def default_network_name() -> str:
    return os.environ.get("CNIRUN_DEFAULT_NETWORK") or DEFAULT_NETWORK


def shipped_netconf_dir() -> str | None:
    """netconf/ beside the package (source tree, editable install) or under sys.prefix."""
    candidates = [
        os.path.join(os.path.realpath(PACKAGE_PARENT), "netconf"),
        os.path.join(sys.prefix, "share", "cnirun", "netconf"),
    ]
    for c in candidates:
        if os.path.isfile(os.path.join(c, f"{DEFAULT_NETWORK}.conflist")):
            return c
    return None


_BUILTIN: dict[str, tuple[NetworkConfigList, ...]] = {}  # loaded once per process: shipped files do not change


def builtin_networks() -> tuple[NetworkConfigList, ...]:
    """The shipped top-level conflists (examples/ are not loaded implicitly)."""
    if "nets" not in _BUILTIN:
        d = shipped_netconf_dir()
        names = sorted(n for n in os.listdir(d) if n.endswith(".conflist")) if d is not None else []
        _BUILTIN["nets"] = tuple(load_file(os.path.join(d, n)) for n in names if d is not None)
    return _BUILTIN["nets"]
