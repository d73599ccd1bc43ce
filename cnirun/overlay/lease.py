"""flannel's lease value: who holds a subnet and how to reach it.

``{"PublicIP": "192.0.2.11", "BackendType": "vxlan", "BackendData":
{"VNI": 1, "VtepMAC": "0e:..."}}`` under /coreos.com/network/subnets/<key>,
attached to an etcd lease (TTL). Decoding is lenient with what flanneld adds
(PublicIPv6, BackendV6Data) and strict with what cnirun needs.
"""
from __future__ import annotations

import hashlib
import ipaddress
import json
from dataclasses import dataclass
from typing import Any

from .errors import OverlayError


@dataclass(frozen=True)
class LeaseAttrs:
    public_ip: ipaddress.IPv4Address
    vtep_mac: str
    vni: int
    backend_type: str = "vxlan"

    def to_dict(self) -> dict[str, Any]:
        return {
            "PublicIP": str(self.public_ip),
            "BackendType": self.backend_type,
            "BackendData": {"VNI": self.vni, "VtepMAC": self.vtep_mac},
        }

    def encode(self) -> bytes:
        # Compact, in flannel's field order: byte-equal values compare equal in transactions.
        return json.dumps(self.to_dict(), separators=(",", ":")).encode()


def normalize_mac(mac: str) -> str:
    parts = mac.strip().lower().replace("-", ":").split(":")
    if len(parts) != 6 or not all(len(p) == 2 and all(c in "0123456789abcdef" for c in p) for p in parts):
        raise OverlayError(f"not a MAC address: {mac!r}")
    return ":".join(parts)


def decode(value: bytes | str) -> LeaseAttrs:
    """A lease value; OverlayError when it is not flannel's format with vxlan data."""
    try:
        obj = json.loads(value)
    except (ValueError, UnicodeDecodeError):
        raise OverlayError("lease value is not JSON") from None
    if not isinstance(obj, dict):
        raise OverlayError("lease value is not a JSON object")
    try:
        public_ip = ipaddress.IPv4Address(obj.get("PublicIP"))
    except (ValueError, TypeError):
        raise OverlayError(f"lease PublicIP {obj.get('PublicIP')!r} is not an IPv4 address") from None
    btype = obj.get("BackendType") or ""
    data = obj.get("BackendData") or {}
    if not isinstance(data, dict):
        raise OverlayError("lease BackendData is not an object")
    vni = data.get("VNI", 0)
    if isinstance(vni, bool) or not isinstance(vni, int):
        raise OverlayError("lease BackendData.VNI is not a number")
    mac = data.get("VtepMAC")
    if btype == "vxlan":
        if not isinstance(mac, str):
            raise OverlayError("vxlan lease without BackendData.VtepMAC")
        mac = normalize_mac(mac)
    return LeaseAttrs(public_ip=public_ip, vtep_mac=mac if isinstance(mac, str) else "", vni=vni, backend_type=btype)


def vtep_mac_for(public_ip: ipaddress.IPv4Address, vni: int) -> str:
    """A stable, locally administered unicast MAC for this host's VXLAN device.

    Derived from the public address and VNI (not random, as flanneld's is) so
    that an agent restarted after its device was removed advertises the same
    VtepMAC: peers' neighbour and FDB entries stay valid.
    """
    digest = hashlib.sha256(f"cnirun-overlay {public_ip} {vni}".encode()).digest()
    first = (digest[0] & 0xFC) | 0x02  # locally administered, unicast
    return ":".join(f"{b:02x}" for b in (first, *digest[1:6]))
