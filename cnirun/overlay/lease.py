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

from .config import MAX_VNI
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


#: The largest lease value read: flanneld's are about 150 bytes (300 with IPv6 data).
MAX_VALUE_BYTES = 4096
#: The most JSON objects and lists a lease value may hold: flannel's have two.
#: Counted before parsing, so a value nested to the parser's recursion limit
#: is refused without ever running the parser that deep.
MAX_CONTAINERS = 16


def normalize_mac(mac: str) -> str:
    parts = mac.strip().lower().replace("-", ":").split(":")
    if len(parts) != 6 or not all(len(p) == 2 and all(c in "0123456789abcdef" for c in p) for p in parts):
        raise OverlayError(f"not a MAC address: {mac[:40]!r}")
    return ":".join(parts)


def _short(value: Any) -> str:
    """A JSON value for a message: scalars shown (cut at 40 characters), containers by kind."""
    if isinstance(value, (dict, list)):
        return "an object" if isinstance(value, dict) else "a list"
    text = repr(value) if isinstance(value, str) else json.dumps(value)
    return text if len(text) <= 40 else text[:37] + "..."


def decode(value: bytes | str) -> LeaseAttrs:
    """A lease value; OverlayError when it is not flannel's format with vxlan data.

    The value is whatever an etcd writer put there: its size and its number
    of objects and lists are bounded before it is parsed, every
    field's type is checked, and nothing but OverlayError leaves.
    """
    if len(value) > MAX_VALUE_BYTES:
        raise OverlayError(f"lease value is longer than {MAX_VALUE_BYTES} bytes")
    opener = (b"[", b"{") if isinstance(value, bytes) else ("[", "{")
    if value.count(opener[0]) + value.count(opener[1]) > MAX_CONTAINERS:  # type: ignore[arg-type]
        raise OverlayError(f"lease value has more than {MAX_CONTAINERS} JSON objects and lists")
    try:
        obj = json.loads(value)
    except (ValueError, UnicodeDecodeError):
        raise OverlayError("lease value is not JSON") from None
    if not isinstance(obj, dict):
        raise OverlayError("lease value is not a JSON object")
    raw_ip = obj.get("PublicIP")
    if not isinstance(raw_ip, str):
        raise OverlayError(f"lease PublicIP {_short(raw_ip)} is not an IPv4 address")
    try:
        public_ip = ipaddress.IPv4Address(raw_ip)
    except ValueError:
        raise OverlayError(f"lease PublicIP {_short(raw_ip)} is not an IPv4 address") from None
    btype = obj.get("BackendType") or ""
    if not isinstance(btype, str):
        raise OverlayError(f"lease BackendType {_short(btype)} is not a string")
    data = obj.get("BackendData") or {}
    if not isinstance(data, dict):
        raise OverlayError("lease BackendData is not an object")
    vni = data.get("VNI", 0)
    if isinstance(vni, bool) or not isinstance(vni, int) or not 0 <= vni <= MAX_VNI:
        raise OverlayError(f"lease BackendData.VNI {_short(vni)} is not a VXLAN id")
    mac = data.get("VtepMAC")
    if btype == "vxlan":
        if not isinstance(mac, str):
            raise OverlayError("vxlan lease without BackendData.VtepMAC")
        mac = normalize_mac(mac)
    return LeaseAttrs(public_ip=public_ip, vtep_mac=mac if isinstance(mac, str) else "", vni=vni, backend_type=btype)


def unicast_problem(public_ip: ipaddress.IPv4Address, vtep_mac: str) -> str | None:
    """Why a peer's PublicIP or VtepMAC cannot be a VXLAN destination (None: they can)."""
    if public_ip.is_unspecified or public_ip in _THIS_NETWORK:
        return f"PublicIP {public_ip} is not a host address"
    if public_ip.is_loopback:
        return f"PublicIP {public_ip} is a loopback address"
    if public_ip.is_multicast:
        return f"PublicIP {public_ip} is a multicast address"
    if public_ip.is_reserved:  # 240.0.0.0/4 and the broadcast address
        return f"PublicIP {public_ip} is a reserved or broadcast address"
    first = int(vtep_mac.split(":")[0], 16) if vtep_mac else 1
    if first & 1:
        return f"VtepMAC {vtep_mac or '(none)'} is not a unicast MAC"
    if vtep_mac == "00:00:00:00:00:00":
        return "VtepMAC 00:00:00:00:00:00 is not a unicast MAC"
    return None


_THIS_NETWORK = ipaddress.IPv4Network("0.0.0.0/8")


def vtep_mac_for(public_ip: ipaddress.IPv4Address, vni: int) -> str:
    """A stable, locally administered unicast MAC for this host's VXLAN device.

    Derived from the public address and VNI (not random, as flanneld's is) so
    that an agent restarted after its device was removed advertises the same
    VtepMAC: peers' neighbour and FDB entries stay valid.
    """
    digest = hashlib.sha256(f"cnirun-overlay {public_ip} {vni}".encode()).digest()
    first = (digest[0] & 0xFC) | 0x02  # locally administered, unicast
    return ":".join(f"{b:02x}" for b in (first, *digest[1:6]))
