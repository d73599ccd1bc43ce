"""Container network options: parsing and validation, and their label form.

The same values arrive from `cnirun run` flags (--net, -p, --ip, --mac) and,
for the OCI hook, from container labels/annotations (cnirun.networks,
cnirun.ports, cnirun.ip, cnirun.mac). A container's labels are untrusted
input to a root hook, so every value is checked strictly here, once.
"""
from __future__ import annotations

from .config import is_safe_name
from .errors import ArgumentError
from .value import FrozenValue, Value

# The OCI hook parses every container's labels with this module: no re,
# dataclasses or typing at import time, and ipaddress (~2 ms) only when a
# label holds an address.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

LABEL_NETWORKS = "cnirun.networks"
LABEL_PORTS = "cnirun.ports"
LABEL_IP = "cnirun.ip"
LABEL_MAC = "cnirun.mac"

_HEX = frozenset("0123456789abcdefABCDEF")
_PROTOCOLS = ("tcp", "udp", "sctp")
MAX_NETWORKS = 16


class PortMapping(FrozenValue):
    _fields = ("host_port", "container_port", "protocol", "host_ip")
    __match_args__ = _fields

    def __init__(self, host_port: int, container_port: int, protocol: str = "tcp", host_ip: str = "") -> None:
        set_ = object.__setattr__  # frozen: fields are set once, here
        set_(self, "host_port", host_port)
        set_(self, "container_port", container_port)
        set_(self, "protocol", protocol)
        set_(self, "host_ip", host_ip)

    def to_cni(self) -> dict[str, Any]:
        """The portMappings capability entry (CONVENTIONS.md)."""
        out: dict[str, Any] = {
            "hostPort": self.host_port,
            "containerPort": self.container_port,
            "protocol": self.protocol,
        }
        if self.host_ip:
            out["hostIP"] = self.host_ip
        return out

    def __str__(self) -> str:
        ip = f"[{self.host_ip}]:" if ":" in self.host_ip else (f"{self.host_ip}:" if self.host_ip else "")
        return f"{ip}{self.host_port}:{self.container_port}/{self.protocol}"


def parse_network_name(name: str) -> str:
    if not isinstance(name, str) or not is_safe_name(name) or len(name) > 128:
        raise ArgumentError(
            f"invalid network name {name!r}: use letters, digits, '_', '.', '-' and start with a letter or digit"
        )
    return name


def parse_networks(value: str) -> list[str]:
    """'a,b' -> ['a', 'b'] (order = eth0, eth1, ...); duplicates are refused."""
    names = [n.strip() for n in value.split(",") if n.strip()]
    if not names:
        raise ArgumentError("empty network list: name at least one network, e.g. cnirun.networks=cnirun")
    if len(names) > MAX_NETWORKS:
        raise ArgumentError(f"too many networks ({len(names)}): at most {MAX_NETWORKS}")
    for n in names:
        parse_network_name(n)
    if len(set(names)) != len(names):
        raise ArgumentError(f"network listed twice in {value!r}: each network attaches once")
    return names


def _port(text: str, spec: str) -> int:
    if not text.isdigit():
        raise ArgumentError(f"invalid port {text!r} in {spec!r}: expected a number from 1 to 65535")
    n = int(text)
    if not 1 <= n <= 65535:
        raise ArgumentError(f"invalid port {n} in {spec!r}: expected a number from 1 to 65535")
    return n


def _port_range(text: str, spec: str) -> list[int]:
    lo, sep, hi = text.partition("-")
    if not sep:
        return [_port(text, spec)]
    a, b = _port(lo, spec), _port(hi, spec)
    if b < a:
        raise ArgumentError(f"invalid port range {text!r} in {spec!r}: start above end")
    return list(range(a, b + 1))


def parse_publish(spec: str) -> list[PortMapping]:
    """docker-run's -p syntax: [IP:]HOSTPORT:CONTAINERPORT[/PROTO], ranges allowed.

    A host port is required: CNI's portmap needs one (there is no "random
    port" in the portMappings capability).
    """
    text, _, proto = spec.partition("/")
    proto = (proto or "tcp").lower()
    if proto not in _PROTOCOLS:
        raise ArgumentError(f"invalid protocol {proto!r} in -p {spec!r}: expected tcp, udp or sctp")
    host_ip = ""
    if text.startswith("["):  # [IPv6]:host:container
        end = text.find("]")
        if end < 0:
            raise ArgumentError(f"invalid -p {spec!r}: unclosed '[' around an IPv6 address")
        host_ip, text = text[1:end], text[end + 1 :].lstrip(":")
    parts = text.split(":")
    if len(parts) == 3:
        host_ip, parts = parts[0], parts[1:]
    if len(parts) != 2 or not parts[0]:
        raise ArgumentError(
            f"invalid -p {spec!r}: expected [IP:]HOSTPORT:CONTAINERPORT[/PROTO], e.g. 8080:80 or 127.0.0.1:8080:80/tcp"
        )
    if host_ip:
        import ipaddress

        try:
            host_ip = str(ipaddress.ip_address(host_ip))
        except ValueError:
            raise ArgumentError(f"invalid host IP {host_ip!r} in -p {spec!r}") from None
    hosts, conts = _port_range(parts[0], spec), _port_range(parts[1], spec)
    if len(hosts) != len(conts):
        raise ArgumentError(f"invalid -p {spec!r}: host and container port ranges differ in length")
    return [PortMapping(h, c, proto, host_ip) for h, c in zip(hosts, conts)]


def parse_ports(value: str) -> list[PortMapping]:
    """A comma-separated list of -p specs (the cnirun.ports label)."""
    out: list[PortMapping] = []
    for spec in (s.strip() for s in value.split(",")):
        if spec:
            out.extend(parse_publish(spec))
    seen: set[tuple[str, int, str]] = set()
    for m in out:
        key = (m.host_ip, m.host_port, m.protocol)
        if key in seen:
            raise ArgumentError(f"host port {m.host_port}/{m.protocol} published twice")
        seen.add(key)
    return out


def parse_ip(value: str) -> str:
    """A static address, IPv4 or IPv6, without prefix (host-local adds the subnet's)."""
    import ipaddress

    try:
        ip = ipaddress.ip_address(value.strip())
    except ValueError:
        raise ArgumentError(f"invalid IP address {value!r}: expected e.g. 10.77.0.10") from None
    if ip.is_loopback or ip.is_multicast or ip.is_unspecified:
        raise ArgumentError(f"invalid IP address {value!r}: not a unicast address a container can use")
    return str(ip)


def parse_mac(value: str) -> str:
    mac = value.strip().lower()
    if not _is_mac(mac):
        raise ArgumentError(f"invalid MAC address {value!r}: expected six hex pairs like 02:42:ac:11:00:02")
    if int(mac[:2], 16) & 1:
        raise ArgumentError(f"invalid MAC address {value!r}: a multicast address cannot be an interface's")
    return mac


def _is_mac(mac: str) -> bool:
    """Six ':'-separated pairs of hex digits (without re: the hook path)."""
    pairs = mac.split(":")
    return len(pairs) == 6 and all(len(p) == 2 and p[0] in _HEX and p[1] in _HEX for p in pairs)


def ip_in_network(ip: str, subnets: list[str]) -> bool:
    """Whether `ip` falls in one of the network's subnets (no subnets: can't tell, so yes)."""
    if not subnets:
        return True
    import ipaddress

    addr = ipaddress.ip_address(ip)
    for s in subnets:
        try:
            if addr in ipaddress.ip_network(s, strict=False):
                return True
        except ValueError:
            continue
    return False


class ContainerNetworkSpec(Value):
    """What to attach to one container: networks in order and their options."""

    _fields = ("networks", "ports", "ip", "mac")
    __match_args__ = _fields

    def __init__(self, networks: list[str], ports: list[PortMapping], ip: str = "", mac: str = "") -> None:
        self.networks = networks
        self.ports = ports
        self.ip = ip
        self.mac = mac

    def to_labels(self) -> dict[str, str]:
        labels = {LABEL_NETWORKS: ",".join(self.networks)}
        if self.ports:
            labels[LABEL_PORTS] = ",".join(str(p) for p in self.ports)
        if self.ip:
            labels[LABEL_IP] = self.ip
        if self.mac:
            labels[LABEL_MAC] = self.mac
        return labels

    @classmethod
    def from_labels(cls, labels: dict[str, str]) -> "ContainerNetworkSpec | None":
        """Parse and validate; None when the container asks for no CNI network."""
        raw = labels.get(LABEL_NETWORKS)
        if raw is None:
            return None
        return cls(
            networks=parse_networks(raw),
            ports=parse_ports(labels.get(LABEL_PORTS, "")),
            ip=parse_ip(labels[LABEL_IP]) if labels.get(LABEL_IP) else "",
            mac=parse_mac(labels[LABEL_MAC]) if labels.get(LABEL_MAC) else "",
        )
