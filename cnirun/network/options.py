"""Container network options: parsing and validation, and their label form.

The same values arrive from `cnirun run` flags (--net, -p, --ip, --mac) and,
for the OCI hook, from container labels/annotations (cnirun.networks,
cnirun.ports, cnirun.ip (IP, or NET=IP,...), cnirun.mac). A container's labels are untrusted
input to a root hook, so every value is checked strictly here, once.
"""
from __future__ import annotations

from ..cni.config import is_safe_name
from ..core.errors import ArgumentError
from ..dns.hostname import MAX_HOSTNAME, is_hostname
from ..core.value import FrozenValue, Value

# The OCI hook parses every container's labels here: ipaddress only when a label holds an
# address (start-up cost: see cnirun.core).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

LABEL_NETWORKS = "cnirun.networks"
LABEL_PORTS = "cnirun.ports"
LABEL_IP = "cnirun.ip"
LABEL_MAC = "cnirun.mac"
LABEL_IP6 = "cnirun.ip6"  # IPv6 address(es) on dual-stack networks: IP6 or NET=IP6,...
LABEL_INGRESS_RATE = "cnirun.ingress-rate"
LABEL_INGRESS_ALLOW = "cnirun.ingress-allow"
LABEL_EGRESS_ALLOW = "cnirun.egress-allow"
LABEL_EGRESS_RATE = "cnirun.egress-rate"
LABEL_ALIASES = "cnirun.aliases"  # DNS names: NAME (every network) or NET=NAME, comma-separated
MAX_ALIASES = 32

_HEX = frozenset("0123456789abcdefABCDEF")
_PROTOCOLS = ("tcp", "udp", "sctp")
MAX_NETWORKS = 16
# Caps on what one container may publish. portmap adds iptables rules per
# mapping while the host-wide CNI lock is held: an unbounded range
# (40000-41999) kept every other container start waiting for a minute.
MAX_PORT_RANGE = 100  # ports in one HOST-HOST range
MAX_PORT_MAPPINGS = 200  # mappings of one container, all specs together
# Characters an address may contain once parsed (no IPv6 zone: '%' would carry
# anything, and the address reaches CNI_ARGS, cache files and plugin configs).
_IP_CHARS = frozenset("0123456789abcdefABCDEF:.")


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
    if b - a + 1 > MAX_PORT_RANGE:
        raise ArgumentError(
            f"port range {text!r} in {spec!r} has {b - a + 1} ports: at most {MAX_PORT_RANGE} per range"
        )
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
        host_ip = _plain_ip(host_ip, f"invalid host IP {host_ip!r} in -p {spec!r}")
        if ":" in host_ip:
            _forwardable_ip6(host_ip, spec)
    hosts, conts = _port_range(parts[0], spec), _port_range(parts[1], spec)
    if len(hosts) != len(conts):
        raise ArgumentError(f"invalid -p {spec!r}: host and container port ranges differ in length")
    return [PortMapping(h, c, proto, host_ip) for h, c in zip(hosts, conts)]


def _forwardable_ip6(host_ip: str, spec: str) -> None:
    """Refuse an IPv6 loopback host IP: portmap's DNAT of it never answers.

    The kernel drops a packet with source ::1 that arrives on any interface
    but lo (IPv6 has no route_localnet, which lets 127.0.0.1 reach a
    container), and portmap masquerades only IPv4 localhost traffic.
    """
    import ipaddress

    ip = ipaddress.IPv6Address(host_ip)
    if ip.ipv4_mapped is not None and not ip.ipv4_mapped.is_loopback:
        # portmap takes it for IPv4 (Go's To4) and writes it into an iptables rule as it is.
        raise ArgumentError(f"invalid -p {spec!r}: give the IPv4-mapped host IP as IPv4: {ip.ipv4_mapped}")
    if ip.is_loopback or ip.ipv4_mapped is not None:
        raise ArgumentError(
            f"invalid -p {spec!r}: the IPv6 loopback cannot be forwarded to a container (the kernel drops ::1 "
            "outside lo): publish on 127.0.0.1, on a host IPv6 address, or on all addresses"
        )


def parse_ports(value: str) -> list[PortMapping]:
    """A comma-separated list of -p specs (the cnirun.ports label)."""
    out: list[PortMapping] = []
    for spec in (s.strip() for s in value.split(",")):
        if spec:
            out.extend(parse_publish(spec))
    if len(out) > MAX_PORT_MAPPINGS:
        raise ArgumentError(f"{len(out)} published ports: at most {MAX_PORT_MAPPINGS} per container")
    seen: set[tuple[str, int, str]] = set()
    for m in out:
        key = (m.host_ip, m.host_port, m.protocol)
        if key in seen:
            raise ArgumentError(f"host port {m.host_port}/{m.protocol} published twice")
        seen.add(key)
    return out


def _plain_ip(value: str, error: str) -> str:
    """An IPv4/IPv6 address in canonical form; no zone ID ("fe80::1%eth0"), no prefix.

    ipaddress accepts a zone ID of any characters (';', '=', newlines): it
    would carry them into CNI_ARGS (IP=...) and plugin configs.
    """
    text = value.strip() if isinstance(value, str) else ""
    if not text or "%" in text or not all(c in _IP_CHARS for c in text):
        raise ArgumentError(error)
    octets = text.split(".")
    if len(octets) == 4 and all(o.isdigit() and len(o) <= 3 and str(int(o)) == o and int(o) < 256 for o in octets):
        return text  # plain dotted IPv4 is canonical already: no ipaddress import (~4 ms of `cnirun port add`)
    import ipaddress

    try:
        out = str(ipaddress.ip_address(text))
    except ValueError:
        raise ArgumentError(error) from None
    if not all(c in _IP_CHARS for c in out):
        raise ArgumentError(error)
    return out


def parse_ip(value: str) -> str:
    """A static address, IPv4 or IPv6, without prefix (host-local adds the subnet's)."""
    import ipaddress

    ip = ipaddress.ip_address(_plain_ip(value, f"invalid IP address {value!r}: expected e.g. 10.77.0.10"))
    if ip.is_loopback or ip.is_multicast or ip.is_unspecified:
        raise ArgumentError(f"invalid IP address {value!r}: not a unicast address a container can use")
    return str(ip)


def parse_ip6(value: str) -> str:
    """A static IPv6 address (--ip6, cnirun.ip6): as parse_ip, and IPv6 only."""
    error = f"invalid IPv6 address {value!r}: expected e.g. fd00:89::10 (use --ip for IPv4)"
    if ":" not in str(value):
        raise ArgumentError(error)
    _plain_ip(value, error)
    return parse_ip(value)


def parse_hostname(value: str, what: str = "hostname") -> str:
    """A host name or alias that goes into hosts files; refused unless RFC 1123."""
    if not is_hostname(value):
        raise ArgumentError(
            f"invalid {what} {value!r}: use letters, digits and '-' in dot-separated labels of at most 63 "
            f"characters (RFC 1123), {MAX_HOSTNAME} in all"
        )
    return value


def check_cni_arg(key: str, value: str) -> None:
    """A CNI_ARGS pair must not smuggle in other pairs: no ';', '=', newline or NUL in either part."""
    for part in (key, value):
        if not isinstance(part, str) or not part or any(c in part for c in ";=\n\r\0"):
            raise ArgumentError(f"invalid CNI_ARGS value {key}={value!r}: ';', '=', newlines and NUL are not allowed")


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


def _packed(ip: str) -> bytes:
    """The address's bytes (4 or 16); OSError when it is not one. _socket, not ipaddress: the hook path."""
    import _socket

    return _socket.inet_pton(_socket.AF_INET6 if ":" in ip else _socket.AF_INET, ip)


def is_address(ip: object) -> bool:
    """A plain IPv4/IPv6 address: no prefix, no zone ID (a record read back is checked with this)."""
    if not isinstance(ip, str) or not ip or not all(c in _IP_CHARS for c in ip):
        return False
    try:
        _packed(ip)
    except OSError:
        return False
    return True


def ip_in_network(ip: str, subnets: list[str]) -> bool:
    """Whether `ip` falls in one of the network's subnets (no subnets: can't tell, so yes)."""
    if not subnets:
        return True
    try:
        packed_ip = _packed(ip)
    except OSError:
        return False
    addr, size = int.from_bytes(packed_ip, "big"), len(packed_ip) * 8
    for s in subnets:
        base, _, plen = s.partition("/")
        try:
            packed = _packed(base)
            bits = int(plen) if plen else size
        except (OSError, ValueError):
            continue
        if len(packed) * 8 != size or not 0 <= bits <= size:
            continue
        if addr >> (size - bits) == int.from_bytes(packed, "big") >> (size - bits):
            return True
    return False


def parse_ips(value: str, networks: list[str], v6: bool = False) -> dict[str, str]:
    """The cnirun.ip label: `IP` (the first network's) or `NET=IP[,NET=IP...]`; network -> address.

    v6: the cnirun.ip6 label (same form, IPv6 addresses only).
    """
    parse = parse_ip6 if v6 else parse_ip
    out: dict[str, str] = {}
    for item in (i.strip() for i in value.split(",")):
        if not item:
            continue
        net, eq, addr = item.partition("=")
        if not eq or not is_safe_name(net):
            net, addr = (networks[0] if networks else ""), item  # a bare address: the first network's
        net = parse_network_name(net)
        if net in out:
            raise ArgumentError(f"two static IPs for network {net} in {value!r}: keep one")
        out[net] = parse(addr)
    return out


def parse_aliases(value: str, networks: list[str]) -> dict[str, list[str]]:
    """The cnirun.aliases label: `NAME` (every network) or `NET=NAME`, comma-separated; network ('' = all) -> names.

    Each name is an RFC 1123 host name; NET must be one of the container's
    networks (a label is untrusted input to the root hook: checked strictly).
    """
    out: dict[str, list[str]] = {}
    items = [i.strip() for i in value.split(",") if i.strip()]
    if len(items) > MAX_ALIASES:
        raise ArgumentError(f"too many aliases in {LABEL_ALIASES} ({len(items)}): at most {MAX_ALIASES}")
    for item in items:
        net, eq, name = item.rpartition("=")
        if eq:
            net = parse_network_name(net)
            if net not in networks:
                raise ArgumentError(
                    f"alias {name!r} is for network {net!r}, which the container does not join "
                    f"({', '.join(networks)}): fix {LABEL_ALIASES}"
                )
        if not is_hostname(name.replace("_", "-")):  # Docker's container names may hold '_'
            parse_hostname(name, "alias")
        names = out.setdefault(net, [])
        if name not in names:
            names.append(name)
    return out


class ContainerNetworkSpec(Value):
    """What to attach to one container: networks in order and their options.

    `ips`: network name -> static address (a bare `--ip`/`cnirun.ip=IP` is
    the first network's). `ingress_rate`/`egress_rate`: policy.Rate limits
    (the bandwidth capability). `ips6`: as `ips`, for IPv6 on dual-stack
    networks (`--ip6`, `cnirun.ip6`). `ingress_allow`/`egress_allow`: the
    firewall policy's rules (network.policies; None: that direction is
    unrestricted; []: no peer allowed). Run options are built from this by one
    function, lifecycle.options_for, whichever entry point made it.
    """

    _fields = ("networks", "ports", "ips", "mac", "ingress_rate", "egress_rate", "ips6", "aliases", "ingress_allow",
               "egress_allow")
    __match_args__ = _fields

    def __init__(
        self, networks: list[str], ports: list[PortMapping], ips: dict[str, str] | None = None, mac: str = "",
        ingress_rate: Any = None, egress_rate: Any = None, ips6: dict[str, str] | None = None,
        aliases: dict[str, list[str]] | None = None, ingress_allow: list[dict[str, Any]] | None = None,
        egress_allow: list[dict[str, Any]] | None = None,
    ) -> None:
        self.networks = networks
        self.ports = ports
        self.ips = {} if ips is None else ips
        self.mac = mac
        self.ingress_rate = ingress_rate
        self.egress_rate = egress_rate
        self.ips6 = {} if ips6 is None else ips6
        # DNS names (cnirun.dns): network -> names; the key "" holds those for every network
        # (the container name, --network-alias, compose's service and container names).
        self.aliases = {} if aliases is None else aliases
        self.ingress_allow = ingress_allow
        self.egress_allow = egress_allow

    def names_on(self, network: str) -> list[str]:
        """The container's DNS names on `network`: those for every network, then its own."""
        return list(dict.fromkeys([*self.aliases.get("", []), *self.aliases.get(network, [])]))

    @staticmethod
    def _ip_label(networks: list[str], ips: dict[str, str]) -> str:
        """`IP` when only the first network has one, else `NET=IP,...` in network order."""
        first = networks[0] if networks else ""
        if list(ips) == [first]:
            return ips[first]
        order = [n for n in networks if n in ips] + [n for n in ips if n not in networks]
        return ",".join(f"{n}={ips[n]}" for n in order)

    def to_labels(self) -> dict[str, str]:
        labels = {LABEL_NETWORKS: ",".join(self.networks)}
        if self.ports:
            labels[LABEL_PORTS] = ",".join(str(p) for p in self.ports)
        if self.ips:
            labels[LABEL_IP] = self._ip_label(self.networks, self.ips)
        if self.ips6:
            labels[LABEL_IP6] = self._ip_label(self.networks, self.ips6)
        if self.mac:
            labels[LABEL_MAC] = self.mac
        if self.ingress_rate is not None:
            labels[LABEL_INGRESS_RATE] = str(self.ingress_rate)
        if self.egress_rate is not None:
            labels[LABEL_EGRESS_RATE] = str(self.egress_rate)
        if self.ingress_allow is not None or self.egress_allow is not None:
            from .policies import format_allow

            for key, rules in ((LABEL_INGRESS_ALLOW, self.ingress_allow), (LABEL_EGRESS_ALLOW, self.egress_allow)):
                if rules is not None:
                    labels[key] = format_allow(rules)
        if any(self.aliases.values()):
            labels[LABEL_ALIASES] = ",".join(
                f"{net}={a}" if net else a for net, names in self.aliases.items() for a in names
            )
        return labels

    @classmethod
    def from_labels(cls, labels: dict[str, str]) -> "ContainerNetworkSpec | None":
        """Parse and validate; None when the container asks for no CNI network."""
        raw = labels.get(LABEL_NETWORKS)
        if raw is None:
            return None
        networks = parse_networks(raw)
        rates = [labels.get(k) for k in (LABEL_INGRESS_RATE, LABEL_EGRESS_RATE)]
        if any(r is not None for r in rates):
            from .rates import parse_rate

            ingress, egress = (parse_rate(r, k) if r is not None else None
                               for r, k in zip(rates, (LABEL_INGRESS_RATE, LABEL_EGRESS_RATE)))
        else:
            ingress = egress = None
        allow = [labels.get(k) for k in (LABEL_INGRESS_ALLOW, LABEL_EGRESS_ALLOW)]
        if any(a is not None for a in allow):
            from .policies import parse_allow_label

            allow = [parse_allow_label(a, k) if a is not None else None
                     for a, k in zip(allow, (LABEL_INGRESS_ALLOW, LABEL_EGRESS_ALLOW))]
        return cls(
            networks=networks,
            ports=parse_ports(labels.get(LABEL_PORTS, "")),
            ips=parse_ips(labels[LABEL_IP], networks) if labels.get(LABEL_IP) else {},
            mac=parse_mac(labels[LABEL_MAC]) if labels.get(LABEL_MAC) else "",
            ips6=parse_ips(labels[LABEL_IP6], networks, v6=True) if labels.get(LABEL_IP6) else {},
            ingress_rate=ingress,
            egress_rate=egress,
            aliases=parse_aliases(labels[LABEL_ALIASES], networks) if labels.get(LABEL_ALIASES) else {},
            ingress_allow=allow[0],
            egress_allow=allow[1],
        )
