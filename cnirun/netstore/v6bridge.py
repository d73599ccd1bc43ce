"""The bridge of a dual-stack network, made with the network so that its IPv6 gateway works at once.

The bridge plugin creates a missing bridge during the first ADD and puts the
gateway addresses on it. An IPv6 address on a bridge without carrier stays
tentative until the first veth gives it one; Duplicate Address Detection then
holds it for 1-2 s, during which the first container's IPv6 traffic through
the gateway is dropped and a host port published on the gateway address
cannot be checked (binding a tentative address fails). The plugin has the
same problem inside the container and answers it by turning DAD off on the
container's interface (with hairpin mode); cnirun does the same for the
bridge: `network create` and compose make the bridge with accept_dad=0, and
the plugin adopts an existing bridge as it is. `network rm` deletes it, as it
deletes every bridge cnirun chose. After a reboot the plugin makes the bridge
again, with DAD: the delay is back for the first container only.
"""
from __future__ import annotations

import subprocess
from typing import Any

from ..cni.config import DEFAULT_BRIDGE, ipam_ranges
from .hostnet import link_exists


def wants_bridge(conf: dict[str, Any]) -> tuple[str, int]:
    """(bridge, mtu) of a conflist whose bridge plugin is a gateway with an IPv6 range; ('', 0) otherwise."""
    for p in conf.get("plugins") or []:
        if not isinstance(p, dict) or p.get("type") != "bridge" or not p.get("isGateway"):
            continue
        if any(":" in str(r.get("subnet", "")) for r in ipam_ranges(p)):
            return str(p.get("bridge") or DEFAULT_BRIDGE), int(p.get("mtu") or 0)
    return "", 0


def prepare(bridge: str, mtu: int = 0) -> bool:
    """Create `bridge` (when missing) with IPv6 DAD off; False when it could not be done.

    Best effort: without it the network works the same, only the first
    container waits for DAD. A bridge that exists already (another tool's,
    a running network's) is left as it is.
    """
    if link_exists(bridge):
        return False
    cmd = ["ip", "link", "add", "name", bridge, "type", "bridge"] + (["mtu", str(mtu)] if mtu else [])
    try:
        if subprocess.run(cmd, capture_output=True, timeout=10).returncode != 0:
            return False
        with open(f"/proc/sys/net/ipv6/conf/{bridge}/accept_dad", "w") as f:
            f.write("0")
    except (OSError, subprocess.TimeoutExpired):
        return False
    return True
