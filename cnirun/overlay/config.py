"""The overlay network's configuration (flannel's /coreos.com/network/config) and subnet arithmetic.

The JSON is flannel's: ``{"Network": "10.5.0.0/16", "SubnetLen": 24,
"SubnetMin": ..., "SubnetMax": ..., "Backend": {"Type": "vxlan", "VNI": 1,
"Port": 8472}}``. Defaults are flannel's: SubnetLen 24 (or Network's length
+ 2 for a network smaller than a /22... see :func:`default_subnet_len`),
SubnetMin the second subnet (the first one's network address would be the
overlay's own network address), SubnetMax the last subnet, VNI 1, port 8472
(the kernel's VXLAN default, which flannel uses when Port is 0).
"""
from __future__ import annotations

import ipaddress
import json
from dataclasses import dataclass
from typing import Any, Iterator

from .errors import OverlayError

DEFAULT_VNI = 1
DEFAULT_PORT = 8472
MAX_VNI = (1 << 24) - 1
#: The largest subnet length that still leaves a gateway and a container.
MAX_SUBNET_LEN = 30
BACKEND_TYPES = ("vxlan",)


def default_subnet_len(network_len: int) -> int:
    """flannel's rule: /24 per host, unless the network is smaller than a /22 (then two bits more)."""
    return 24 if network_len <= 22 else network_len + 2


def subnet_key(subnet: ipaddress.IPv4Network) -> str:
    """flannel's key for a lease: 10.5.34.0/24 -> "10.5.34.0-24"."""
    return f"{subnet.network_address}-{subnet.prefixlen}"


def parse_subnet_key(key: str) -> ipaddress.IPv4Network | None:
    """The subnet of a lease key (the last path component), None when it is not one."""
    name = key.rsplit("/", 1)[-1]
    addr, sep, plen = name.partition("-")
    if not sep or not plen.isdigit():
        return None
    try:
        return ipaddress.IPv4Network(f"{addr}/{plen}")
    except ValueError:
        return None


def _int(obj: dict[str, Any], key: str, default: int, lo: int, hi: int, where: str) -> int:
    value = obj.get(key, default)
    if value is None or value == 0:
        value = default
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise OverlayError(f"{where}{key} must be a whole number from {lo} to {hi}, got {json.dumps(value)}")
    return value


@dataclass(frozen=True)
class NetworkConfig:
    """A validated overlay network config."""

    network: ipaddress.IPv4Network
    subnet_len: int
    subnet_min: ipaddress.IPv4Address
    subnet_max: ipaddress.IPv4Address
    vni: int = DEFAULT_VNI
    port: int = DEFAULT_PORT
    backend_type: str = "vxlan"
    #: SubnetMin/SubnetMax as written (kept when the config is written back).
    explicit_min: bool = False
    explicit_max: bool = False

    @property
    def subnet_size(self) -> int:
        return 1 << (32 - self.subnet_len)

    @property
    def device_name(self) -> str:
        """flannel's VXLAN device name: flannel.<VNI>."""
        return f"flannel.{self.vni}"

    def capacity(self) -> int:
        """How many host subnets the config can lease."""
        return (int(self.subnet_max) - int(self.subnet_min)) // self.subnet_size + 1

    def subnets(self) -> Iterator[ipaddress.IPv4Network]:
        """Every leasable subnet, SubnetMin to SubnetMax."""
        for start in range(int(self.subnet_min), int(self.subnet_max) + 1, self.subnet_size):
            yield ipaddress.IPv4Network((start, self.subnet_len))

    def contains(self, subnet: ipaddress.IPv4Network) -> bool:
        """True when `subnet` is one this config could lease."""
        return (
            subnet.prefixlen == self.subnet_len
            and int(self.subnet_min) <= int(subnet.network_address) <= int(self.subnet_max)
        )

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"Network": str(self.network), "SubnetLen": self.subnet_len}
        if self.explicit_min:
            out["SubnetMin"] = str(self.subnet_min)
        if self.explicit_max:
            out["SubnetMax"] = str(self.subnet_max)
        out["Backend"] = {"Type": self.backend_type, "VNI": self.vni, "Port": self.port}
        return out

    def to_json(self) -> str:
        return json.dumps(self.to_dict())

    def same_as(self, other: NetworkConfig) -> bool:
        """Equal as networks (defaults spelled out or not)."""
        return (self.network, self.subnet_len, self.subnet_min, self.subnet_max, self.vni, self.port,
                self.backend_type) == (other.network, other.subnet_len, other.subnet_min, other.subnet_max,
                                       other.vni, other.port, other.backend_type)


def _address(obj: dict[str, Any], key: str) -> ipaddress.IPv4Address | None:
    value = obj.get(key)
    if value in (None, ""):
        return None
    try:
        return ipaddress.IPv4Address(value)
    except (ValueError, TypeError):
        raise OverlayError(f"{key} must be an IPv4 address, got {json.dumps(value)}") from None


def from_dict(obj: Any) -> NetworkConfig:
    """Validate a config object (flannel's JSON); OverlayError says what is wrong."""
    if not isinstance(obj, dict):
        raise OverlayError("the overlay network config must be a JSON object")
    raw = obj.get("Network")
    if not isinstance(raw, str) or not raw:
        if obj.get("IPv6Network") or obj.get("EnableIPv6"):
            raise OverlayError("IPv6 overlay networks are not supported: give an IPv4 Network")
        raise OverlayError('the config needs "Network": an IPv4 CIDR such as "10.5.0.0/16"')
    try:
        network = ipaddress.IPv4Network(raw, strict=False)
    except ValueError:
        raise OverlayError(f"Network {raw!r} is not an IPv4 CIDR such as 10.5.0.0/16") from None
    sl = obj.get("SubnetLen")
    subnet_len = default_subnet_len(network.prefixlen) if sl in (None, 0) else sl
    if isinstance(subnet_len, bool) or not isinstance(subnet_len, int):
        raise OverlayError(f"SubnetLen must be a whole number, got {json.dumps(sl)}")
    if subnet_len > MAX_SUBNET_LEN:
        raise OverlayError(f"SubnetLen {subnet_len} leaves no room for containers: use at most {MAX_SUBNET_LEN}")
    if subnet_len <= network.prefixlen:
        raise OverlayError(
            f"Network {network} cannot hold /{subnet_len} subnets: SubnetLen must be longer than the Network's /{network.prefixlen}"
        )
    size = 1 << (32 - subnet_len)
    lo_default = ipaddress.IPv4Address(int(network.network_address) + size)
    hi_default = ipaddress.IPv4Address(int(network.broadcast_address) + 1 - size)
    smin = _address(obj, "SubnetMin")
    smax = _address(obj, "SubnetMax")
    for name, value in (("SubnetMin", smin), ("SubnetMax", smax)):
        if value is not None and (value not in network or int(value) % size):
            raise OverlayError(f"{name} {value} must be the start of a /{subnet_len} subnet inside {network}")
    backend = obj.get("Backend") or {}
    if not isinstance(backend, dict):
        raise OverlayError('"Backend" must be an object such as {"Type": "vxlan"}')
    btype = backend.get("Type") or "vxlan"
    if btype not in BACKEND_TYPES:
        raise OverlayError(f"backend {btype!r} is not supported: cnirun implements the vxlan backend only")
    for unsupported in ("DirectRouting", "GBP", "Learning", "MTU"):
        if backend.get(unsupported):
            raise OverlayError(f"the vxlan backend option {unsupported} is not supported by cnirun: remove it")
    cfg = NetworkConfig(
        network=network,
        subnet_len=subnet_len,
        subnet_min=smin or lo_default,
        subnet_max=smax or hi_default,
        vni=_int(backend, "VNI", DEFAULT_VNI, 1, MAX_VNI, "Backend."),
        port=_int(backend, "Port", DEFAULT_PORT, 1, 65535, "Backend."),
        backend_type=btype,
        explicit_min=smin is not None,
        explicit_max=smax is not None,
    )
    if int(cfg.subnet_min) > int(cfg.subnet_max):
        raise OverlayError(
            f"Network {network} holds no /{subnet_len} subnet for hosts (the first one is reserved):"
            " use a larger Network or a longer SubnetLen"
        )
    return cfg


def from_json(text: str | bytes) -> NetworkConfig:
    try:
        obj = json.loads(text)
    except (ValueError, UnicodeDecodeError) as e:
        raise OverlayError(f"the overlay network config is not JSON: {e}") from None
    return from_dict(obj)


def build(network: str, subnet_len: int | None = None, vni: int | None = None, port: int | None = None) -> NetworkConfig:
    """The config `cnirun overlay init` writes, validated."""
    obj: dict[str, Any] = {"Network": network, "Backend": {"Type": "vxlan", "VNI": vni or DEFAULT_VNI,
                                                             "Port": port or DEFAULT_PORT}}
    if subnet_len is not None:
        obj["SubnetLen"] = subnet_len
    return from_dict(obj)


def gateway(subnet: ipaddress.IPv4Network) -> ipaddress.IPv4Interface:
    """The host's address in its subnet (the bridge's, FLANNEL_SUBNET): the first one."""
    return ipaddress.IPv4Interface((int(subnet.network_address) + 1, subnet.prefixlen))
