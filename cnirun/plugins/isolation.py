"""isolation: a chained CNI plugin that keeps the containers of one bridge network from talking to each other.

The bridge plugin forwards between all its ports; the kernel's bridge port
flag `isolated` (Linux 4.18+) stops forwarding between two isolated ports,
while an isolated port still reaches every non-isolated one: the bridge
itself (the gateway, hence the outside world through NAT and published
ports through DNAT) and the uplinks. Docker calls this enable_icc=false.
Configuration::

    {"type": "isolation"}

* ADD (chained after bridge: it needs the prevResult) finds the host end of
  the container's veth in the prevResult (an interface without a sandbox
  that is a bridge port) and sets its flag through sysfs
  (/sys/class/net/VETH/brport/isolated), then passes the prevResult
  through. No bridge port in the prevResult: error 7 (the plugin only makes
  sense after bridge).
* DEL clears the flag when the port is still there (best effort: the
  bridge plugin deletes the veth anyway); repeated DELs succeed.
* CHECK fails (code 100) when the flag is not set.

Started on every container ADD: the standard library's os and json and
cnirun's skel only; no subprocess, no netlink library.
"""
from __future__ import annotations

import os
import sys

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

from ..core.errors import INVALID_NETWORK_CONFIG, IO_FAILURE, CNIError
from ..cni.skel import CmdArgs, plugin_main

ABOUT = "CNI isolation plugin (cnirun): bridge port isolation between the containers of a network"
ERR_NOT_ISOLATED = 100
SYS = "/sys/class/net"


def bridge_ports(prev: dict[str, Any] | None) -> list[str]:
    """Host-side interfaces of the prevResult that are ports of a bridge."""
    out = []
    for itf in (prev or {}).get("interfaces") or []:
        name = itf.get("name") if isinstance(itf, dict) else None
        if not isinstance(name, str) or not name or itf.get("sandbox") or "/" in name or name in (".", ".."):
            continue
        if os.path.isdir(os.path.join(SYS, name, "brport")):
            out.append(name)
    return out


def _flag(port: str) -> str:
    return os.path.join(SYS, port, "brport", "isolated")


def _set(port: str, on: bool) -> None:
    with open(_flag(port), "w") as f:
        f.write("1" if on else "0")


def _get(port: str) -> bool:
    with open(_flag(port)) as f:
        return f.read().strip() == "1"


def cmd_add(args: CmdArgs) -> dict:
    prev = args.prev_result()
    if prev is None:
        raise CNIError("isolation must be called as a chained plugin: no prevResult", code=INVALID_NETWORK_CONFIG)
    ports = bridge_ports(prev)
    if not ports:
        raise CNIError("isolation: the prevResult names no bridge port (the plugin must follow the bridge "
                       "plugin in the chain)", code=INVALID_NETWORK_CONFIG)
    for port in ports:
        try:
            _set(port, True)
        except OSError as e:
            raise CNIError(f"isolation: cannot set {_flag(port)}: {e.strerror} (the kernel needs bridge port "
                           "isolation, Linux 4.18 or later)", code=IO_FAILURE) from None
    return prev


def cmd_del(args: CmdArgs) -> None:
    for port in bridge_ports(args.prev_result()):
        try:
            _set(port, False)
        except OSError:
            pass  # the veth is going away with the container
    return None


def cmd_check(args: CmdArgs) -> None:
    prev = args.prev_result()
    if prev is None:
        raise CNIError("isolation CHECK: required prevResult missing", code=INVALID_NETWORK_CONFIG)
    for port in bridge_ports(prev):
        try:
            ok = _get(port)
        except OSError:
            ok = False
        if not ok:
            raise CNIError(f"isolation: bridge port {port} is not isolated", code=ERR_NOT_ISOLATED)
    return None


def main(environ: Any = None, stdin: Any = None, stdout: Any = None, stderr: Any = None) -> int:
    return plugin_main(cmd_add, cmd_check, cmd_del, about=ABOUT, environ=environ, stdin=stdin, stdout=stdout,
                       stderr=stderr)


if __name__ == "__main__":
    sys.exit(main())
