"""The data plane: flannel's VXLAN device and one route, neighbour and FDB entry per peer.

    flannel.<VNI>   vxlan id VNI, dstport Port, local <public IP>, dev <uplink>,
                    nolearning, address <own subnet's network address>/32
    per peer        route  <peer subnet> via <peer network address> dev flannel.<VNI> onlink
                    neigh  <peer network address> lladdr <peer VtepMAC> PERMANENT
                    fdb    <peer VtepMAC> dst <peer public IP> self permanent

Exactly flanneld's scheme (pkg/backend/vxlan): no L2/L3-miss handling, so
the kernel forwards on its own even while the agent is down. All through
pyroute2, imported here only (it costs 170-260 ms).
"""
from __future__ import annotations

import errno
import ipaddress
from dataclasses import dataclass
from typing import Any

from .errors import DataPlaneError, OverlayError

RTNH_F_ONLINK = 4
NUD_PERMANENT = 0x80
NTF_SELF = 0x02
AF_INET = 2
AF_BRIDGE = 7


@dataclass(frozen=True)
class Peer:
    """What one other host needs programmed here."""

    subnet: ipaddress.IPv4Network
    vtep_mac: str
    public_ip: ipaddress.IPv4Address

    @property
    def gateway(self) -> ipaddress.IPv4Address:
        # flanneld routes via the peer subnet's network address: the peer's VXLAN device holds it (/32).
        return self.subnet.network_address


@dataclass(frozen=True)
class Uplink:
    name: str
    index: int
    address: ipaddress.IPv4Address
    mtu: int


def _nested(msg: Any, *path: str) -> Any:
    for name in path:
        if msg is None:
            return None
        msg = msg.get_attr(name)
    return msg


def _why(e: BaseException) -> str:
    code = getattr(e, "code", None) or getattr(e, "errno", None)
    text = str(e)
    if isinstance(code, int) and code > 0:
        try:
            import os

            return os.strerror(code)
        except ValueError:
            pass
    return text


class DataPlane:
    """Netlink in this process's network namespace."""

    def __init__(self) -> None:
        from pyroute2 import IPRoute  # lazily: only the agent and status need it

        self.ipr = IPRoute()

    def close(self) -> None:
        self.ipr.close()

    def __enter__(self) -> DataPlane:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- links ---------------------------------------------------------------------
    def _link(self, name: str) -> Any | None:
        idx = self.ipr.link_lookup(ifname=name)
        return self.ipr.get_links(idx[0])[0] if idx else None

    def index_of(self, name: str) -> int | None:
        idx = self.ipr.link_lookup(ifname=name)
        return idx[0] if idx else None

    def uplink(self, iface: str | None = None, public_ip: str | None = None) -> Uplink:
        """The interface VXLAN packets leave by, and the address they come from."""
        addrs = [(a["index"], ipaddress.IPv4Address(a.get_attr("IFA_ADDRESS"))) for a in self.ipr.get_addr(family=AF_INET)]
        if iface:
            link = self._link(iface)
            if link is None:
                raise OverlayError(f"--iface {iface}: no such interface on this host")
            mine = [ip for idx, ip in addrs if idx == link["index"]]
            if public_ip:
                want = ipaddress.IPv4Address(public_ip)
                address = want
            elif mine:
                address = mine[0]
            else:
                raise OverlayError(f"--iface {iface} has no IPv4 address: give it one or pass --public-ip")
            return Uplink(iface, link["index"], address, link.get_attr("IFLA_MTU") or 1500)
        if not public_ip:
            raise OverlayError("say which interface carries the overlay: --iface IFACE or --public-ip IP")
        want = ipaddress.IPv4Address(public_ip)
        for idx, ip in addrs:
            if ip == want:
                link = self.ipr.get_links(idx)[0]
                return Uplink(link.get_attr("IFLA_IFNAME"), idx, want, link.get_attr("IFLA_MTU") or 1500)
        raise OverlayError(f"--public-ip {public_ip} is not an address of this host: pass --iface as well")

    def vni_holder(self, vni: int, exclude: str) -> str | None:
        """The name of another VXLAN device using `vni` here, if any."""
        for link in self.ipr.get_links():
            name = link.get_attr("IFLA_IFNAME")
            if name == exclude or _nested(link, "IFLA_LINKINFO", "IFLA_INFO_KIND") != "vxlan":
                continue
            if _nested(link, "IFLA_LINKINFO", "IFLA_INFO_DATA", "IFLA_VXLAN_ID") == vni:
                return name
        return None

    def device_mac(self, name: str) -> str | None:
        link = self._link(name)
        return link.get_attr("IFLA_ADDRESS") if link is not None else None

    def ensure_device(self, name: str, vni: int, port: int, uplink: Uplink, mac: str, mtu: int,
                      address: ipaddress.IPv4Address) -> tuple[int, bool]:
        """flannel.<VNI> as configured, reusing a matching one; (index, created)."""
        holder = self.vni_holder(vni, name)
        if holder:
            raise OverlayError(
                f"VXLAN id {vni} is already used by device {holder} on this host:"
                f" remove {holder} or give the overlay another VNI (cnirun overlay init --vni N --force)"
            )
        link = self._link(name)
        created = False
        if link is not None:
            kind = _nested(link, "IFLA_LINKINFO", "IFLA_INFO_KIND")
            if kind != "vxlan":
                raise OverlayError(f"{name} exists and is not a VXLAN device ({kind or 'unknown kind'}): remove it")
            data = _nested(link, "IFLA_LINKINFO", "IFLA_INFO_DATA")
            same = (
                data is not None
                and data.get_attr("IFLA_VXLAN_ID") == vni
                and data.get_attr("IFLA_VXLAN_PORT") == port
                and data.get_attr("IFLA_VXLAN_LOCAL") == str(uplink.address)
                and data.get_attr("IFLA_VXLAN_LINK") == uplink.index
            )
            if not same:  # left by another configuration: flanneld replaces it too
                self.ipr.link("del", index=link["index"])
                link = None
        try:
            if link is None:
                self.ipr.link(
                    "add", ifname=name, kind="vxlan", vxlan_id=vni, vxlan_port=port, vxlan_local=str(uplink.address),
                    vxlan_link=uplink.index, vxlan_learning=0, address=mac, mtu=mtu,
                )
                created = True
            index = self.ipr.link_lookup(ifname=name)[0]
            if not created:
                self.ipr.link("set", index=index, mtu=mtu)
                if self.device_mac(name) != mac:
                    self.ipr.link("set", index=index, address=mac)
            for a in self.ipr.get_addr(index=index, family=AF_INET):
                if a.get_attr("IFA_ADDRESS") != str(address) or a["prefixlen"] != 32:
                    self.ipr.addr("del", index=index, address=a.get_attr("IFA_ADDRESS"), prefixlen=a["prefixlen"])
            if not self.ipr.get_addr(index=index, family=AF_INET):
                self.ipr.addr("add", index=index, address=str(address), prefixlen=32)
            self.ipr.link("set", index=index, state="up")
        except Exception as e:  # noqa: BLE001 - netlink errors: undo, then one line
            if created:
                self.delete_device(name)
            if isinstance(e, OverlayError):
                raise
            raise DataPlaneError(f"cannot set up VXLAN device {name}: {_why(e)}") from None
        return index, created

    def delete_device(self, name: str) -> bool:
        idx = self.ipr.link_lookup(ifname=name)
        if not idx:
            return False
        try:
            self.ipr.link("del", index=idx[0])
        except Exception as e:  # noqa: BLE001
            if getattr(e, "code", None) != errno.ENODEV:
                raise DataPlaneError(f"cannot remove {name}: {_why(e)}") from None
        return True

    # -- peers ---------------------------------------------------------------------
    def set_peer(self, index: int, peer: Peer, old: Peer | None = None) -> None:
        """Program (or update) one peer: neighbour and FDB first, so the route never points nowhere."""
        try:
            if old is not None and old.vtep_mac != peer.vtep_mac:
                self._fdb_del(index, old)
            self.ipr.neigh("replace", dst=str(peer.gateway), lladdr=peer.vtep_mac, ifindex=index,
                           state=NUD_PERMANENT, family=AF_INET)
            self.ipr.fdb("replace", ifindex=index, lladdr=peer.vtep_mac, dst=str(peer.public_ip),
                         state=NUD_PERMANENT, flags=NTF_SELF)
            self.ipr.route("replace", dst=str(peer.subnet), gateway=str(peer.gateway), oif=index, flags=RTNH_F_ONLINK)
        except Exception as e:  # noqa: BLE001
            raise DataPlaneError(f"cannot program peer {peer.subnet} ({peer.public_ip}): {_why(e)}") from None

    def _fdb_del(self, index: int, peer: Peer) -> None:
        try:
            self.ipr.fdb("del", ifindex=index, lladdr=peer.vtep_mac, dst=str(peer.public_ip))
        except Exception:  # noqa: BLE001 - already gone
            pass

    def remove_peer(self, index: int, peer: Peer) -> None:
        """Route, neighbour and FDB entry of one peer; entries already gone are fine."""
        for call in (
            lambda: self.ipr.route("del", dst=str(peer.subnet), gateway=str(peer.gateway), oif=index),
            lambda: self.ipr.neigh("del", dst=str(peer.gateway), lladdr=peer.vtep_mac, ifindex=index, family=AF_INET),
            lambda: self._fdb_del(index, peer),
        ):
            try:
                call()
            except Exception:  # noqa: BLE001 - ESRCH/ENOENT: not there
                pass

    def programmed(self, index: int) -> dict[str, dict[str, Any]]:
        """What the kernel holds on the device, by peer subnet: route gateway, neighbour MAC, FDB destination."""
        out: dict[str, dict[str, Any]] = {}
        neigh = {n.get_attr("NDA_DST"): n.get_attr("NDA_LLADDR")
                 for n in self.ipr.get_neighbours(ifindex=index, family=AF_INET)}
        fdb = {}
        for n in self.ipr.fdb("dump", ifindex=index):
            if n.get("ifindex", n["ifindex"]) == index and n.get_attr("NDA_DST"):
                fdb[n.get_attr("NDA_LLADDR")] = n.get_attr("NDA_DST")
        for r in self.ipr.get_routes(family=AF_INET, oif=index):
            dst = r.get_attr("RTA_DST")
            gw = r.get_attr("RTA_GATEWAY")
            if not dst or not gw:
                continue
            mac = neigh.get(gw)
            out[f"{dst}/{r['dst_len']}"] = {"gateway": gw, "vtepMAC": mac, "publicIP": fdb.get(mac) if mac else None}
        return out
