"""What one network gave a container: its interface, addresses and MAC (from an ADD's result or the cache).
"""
from __future__ import annotations

from ..core.value import Value

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from ..cni.cache import CachedAttachment


class Attachment(Value):
    """One network attached to a container: which interface and what it got."""

    _fields = ("network", "ifname", "result")
    __match_args__ = _fields

    def __init__(self, network: str, ifname: str, result: dict[str, Any]) -> None:
        self.network = network
        self.ifname = ifname
        self.result = result

    def addresses(self) -> list[str]:
        ips = self.result.get("ips") or []
        out = [str(ip.get("address", "")) for ip in ips if isinstance(ip, dict)]
        for key in ("ip4", "ip6"):  # 0.1/0.2 results
            if isinstance(self.result.get(key), dict) and self.result[key].get("ip"):
                out.append(str(self.result[key]["ip"]))
        return [a for a in out if a]

    def mac(self) -> str:
        """The MAC of the container's interface (the result's interface named ifname inside a sandbox)."""
        for iface in self.result.get("interfaces") or []:
            if isinstance(iface, dict) and iface.get("name") == self.ifname and iface.get("sandbox"):
                return str(iface.get("mac") or "").lower()
        return ""

    def had(self) -> dict[str, Any]:
        """What keep_addresses asks for again at the container's next start: {"ips": [...], "mac": ...}."""
        return {"ips": [a.split("/", 1)[0] for a in self.addresses()], "mac": self.mac()}

    @classmethod
    def from_cache(cls, att: CachedAttachment) -> "Attachment":
        return cls(att.network_name, att.ifname, att.result or {})
