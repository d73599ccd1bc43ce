"""/run/flannel/subnet.env: what the agent tells the flannel CNI plugin.

    FLANNEL_NETWORK=10.5.0.0/16
    FLANNEL_SUBNET=10.5.34.1/24      this host's gateway address / subnet length
    FLANNEL_MTU=1450                 the uplink's MTU minus VXLAN's 50 bytes
    FLANNEL_IPMASQ=false             true when the agent masquerades (the plugin then does not)

Parsed like flannel's plugin: KEY=VALUE lines, unknown keys ignored. Written
atomically (a plugin never reads half a file). stdlib only: the flannel
plugin imports this on every container start.
"""
from __future__ import annotations

import ipaddress
import os

from ..core.errors import INVALID_NETWORK_CONFIG, IO_FAILURE, CNIError

DEFAULT_PATH = "/run/flannel/subnet.env"
REQUIRED = ("FLANNEL_NETWORK", "FLANNEL_SUBNET", "FLANNEL_MTU", "FLANNEL_IPMASQ")
VXLAN_OVERHEAD = 50


class SubnetEnv:
    """A parsed subnet.env."""

    __slots__ = ("network", "subnet", "mtu", "ipmasq")

    def __init__(self, network: ipaddress.IPv4Network, subnet: ipaddress.IPv4Interface, mtu: int, ipmasq: bool) -> None:
        self.network = network
        self.subnet = subnet  # the gateway address with the subnet's length
        self.mtu = mtu
        self.ipmasq = ipmasq

    def render(self) -> str:
        return (
            f"FLANNEL_NETWORK={self.network}\n"
            f"FLANNEL_SUBNET={self.subnet}\n"
            f"FLANNEL_MTU={self.mtu}\n"
            f"FLANNEL_IPMASQ={'true' if self.ipmasq else 'false'}\n"
        )

    def __eq__(self, other: object) -> bool:
        return isinstance(other, SubnetEnv) and self.render() == other.render()


def parse(text: str, where: str = "subnet.env") -> SubnetEnv:
    values: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.strip().partition("=")
        if sep:
            values[key.strip()] = value.strip()
    missing = [k for k in REQUIRED if not values.get(k)]
    if missing:
        raise CNIError(f"{where} is missing {', '.join(missing)}: is cnirun overlay agent (or flanneld) running?",
                       code=INVALID_NETWORK_CONFIG)
    try:
        network = ipaddress.IPv4Network(values["FLANNEL_NETWORK"], strict=False)
        subnet = ipaddress.IPv4Interface(values["FLANNEL_SUBNET"])
        mtu = int(values["FLANNEL_MTU"])
    except ValueError as e:
        raise CNIError(f"{where}: {e}", code=INVALID_NETWORK_CONFIG) from None
    return SubnetEnv(network, subnet, mtu, values["FLANNEL_IPMASQ"] == "true")


def read(path: str = DEFAULT_PATH) -> SubnetEnv:
    try:
        with open(path) as f:
            text = f.read()
    except FileNotFoundError:
        raise CNIError(f"{path} does not exist: start cnirun overlay agent (or flanneld) on this host first",
                       code=IO_FAILURE) from None
    except OSError as e:
        raise CNIError(f"cannot read {path}: {e.strerror}", code=IO_FAILURE) from None
    return parse(text, path)


def read_previous_subnet(path: str) -> ipaddress.IPv4Network | None:
    """The subnet an earlier agent wrote here (flanneld reuses it on restart); None if none/unreadable."""
    try:
        return read(path).subnet.network
    except CNIError:
        return None


def write(path: str, env: SubnetEnv) -> None:
    from ..core.fsutil import atomic_write

    os.makedirs(os.path.dirname(os.path.abspath(path)), mode=0o755, exist_ok=True)
    atomic_write(path, env.render().encode(), 0o644, fsync=False)
