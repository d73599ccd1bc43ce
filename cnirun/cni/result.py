"""CNI results of every spec version: parsing, conversion and printing.

One model (shaped like a 1.1.0 result) holds a result of any version.
`Result.convert` applies exactly the information loss libcni's converters
apply, so a model tagged with version V only ever holds what libcni's Go
object for V could hold; printing then just lays it out in V's JSON shape.

Version families, as libcni groups its Go types:
  0.1.0 / 0.2.0           ip4 / ip6 objects, each with its own routes
  0.3.0 / 0.3.1 / 0.4.0   interfaces, ips[] with "version", routes, dns
  1.0.0 / 1.1.0           no ips[].version; interfaces add mtu, socketPath, pciID
"""
from __future__ import annotations

from ..core import version as _version
from ..core.jsonfast import go_map_order
from ..core.errors import DECODING_FAILURE, INCOMPATIBLE_VERSION, CNIError, VersionError
from ..core.value import Value

# ipaddress only for addresses that are not plain dotted-quad IPv4 (start-up cost: see cnirun.core).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from ipaddress import IPv4Address, IPv6Address
    from typing import Any

_V02 = ("0.1.0", "0.2.0")
_V04 = ("0.3.0", "0.3.1", "0.4.0")
_V1 = ("1.0.0", "1.1.0")

_INT_MIN, _INT_MAX = -(2**63), 2**63 - 1  # Go's int on 64-bit hosts


class Interface(Value):
    _fields = ("name", "mac", "sandbox", "mtu", "socket_path", "pci_id")
    __match_args__ = _fields

    def __init__(
        self, name: str, mac: str = "", sandbox: str = "", mtu: int = 0, socket_path: str = "", pci_id: str = ""
    ) -> None:
        self.name = name
        self.mac = mac
        self.sandbox = sandbox
        self.mtu = mtu
        self.socket_path = socket_path
        self.pci_id = pci_id


class IPConfig(Value):
    _fields = ("address", "gateway", "interface")
    __match_args__ = _fields

    def __init__(self, address: str, gateway: str = "", interface: int | None = None) -> None:
        self.address = address  # CIDR with host bits kept, e.g. "10.1.0.5/24"
        self.gateway = gateway
        self.interface = interface  # index into Result.interfaces


class Route(Value):
    _fields = ("dst", "gw", "mtu", "advmss", "priority", "table", "scope")
    __match_args__ = _fields

    def __init__(
        self,
        dst: str,
        gw: str = "",
        mtu: int = 0,
        advmss: int = 0,
        priority: int = 0,
        table: int | None = None,
        scope: int | None = None,
    ) -> None:
        self.dst = dst
        self.gw = gw
        self.mtu = mtu
        self.advmss = advmss
        self.priority = priority
        self.table = table
        self.scope = scope


class DNS(Value):
    _fields = ("nameservers", "domain", "search", "options")
    __match_args__ = _fields

    def __init__(
        self,
        nameservers: list[str] | None = None,
        domain: str = "",
        search: list[str] | None = None,
        options: list[str] | None = None,
    ) -> None:
        self.nameservers = [] if nameservers is None else nameservers
        self.domain = domain
        self.search = [] if search is None else search
        self.options = [] if options is None else options

    def is_empty(self) -> bool:
        return not (self.nameservers or self.domain or self.search or self.options)


# --- input checking -------------------------------------------------------


def _bad(where: str, problem: str) -> CNIError:
    return CNIError(f"invalid result: {where}: {problem}", code=DECODING_FAILURE)


def _type_name(value: Any) -> str:
    return {dict: "object", list: "array", str: "string", bool: "boolean", type(None): "null"}.get(
        type(value), "number" if isinstance(value, (int, float)) else type(value).__name__
    )


def _fields(obj: Any, names: tuple[str, ...], where: str) -> dict[str, Any]:
    """Pick struct fields out of a JSON object the way Go's encoding/json does.

    Go matches keys exactly or else case-insensitively ("CNIVersion" fills
    cniVersion), the last matching key wins, and null leaves a field unset.
    """
    if not isinstance(obj, dict):
        raise _bad(where or "result", f"expected an object, got {_type_name(obj)}")
    folded = {n.lower(): n for n in names}
    out: dict[str, Any] = {}
    for key, value in obj.items():
        name = key if key in names else folded.get(key.lower()) if isinstance(key, str) else None
        if name is None:
            continue  # unknown keys are dropped, as libcni does
        if value is None:
            out.pop(name, None)
        else:
            out[name] = value
    return out


def _str(f: dict[str, Any], name: str, where: str) -> str:
    value = f.get(name, "")
    if not isinstance(value, str):
        raise _bad(where + name, f"expected a string, got {_type_name(value)}")
    return value


def _int(f: dict[str, Any], name: str, where: str) -> int | None:
    value = f.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not _INT_MIN <= value <= _INT_MAX:
        raise _bad(where + name, f"expected an integer, got {value!r}")
    return value


def _list(f: dict[str, Any], name: str, where: str) -> list[Any]:
    value = f.get(name, [])
    if not isinstance(value, list):
        raise _bad(where + name, f"expected an array, got {_type_name(value)}")
    return value


def _str_list(f: dict[str, Any], name: str, where: str) -> list[str]:
    items = _list(f, name, where)
    for i, item in enumerate(items):
        if not isinstance(item, str):
            raise _bad(f"{where}{name}[{i}]", f"expected a string, got {_type_name(item)}")
    return list(items)


class _PlainIPv4:
    """A dotted-quad IPv4 address already in canonical form: what ipaddress.IPv4Address(text) would be.

    Has the attributes _cidr and _gateway use (str, version, max_prefixlen).
    """

    __slots__ = ("text",)
    version = 4
    max_prefixlen = 32

    def __init__(self, text: str) -> None:
        self.text = text

    def __str__(self) -> str:
        return self.text


def _plain_ipv4(value: str) -> bool:
    """Four ASCII-decimal octets 0-255 without leading zeros: ipaddress accepts exactly these unchanged."""
    parts = value.split(".")
    return len(parts) == 4 and all(
        0 < len(p) <= 3 and p.isascii() and p.isdigit() and (p == "0" or p[0] != "0") and int(p) <= 255
        for p in parts
    )


def _ip(value: Any, where: str) -> IPv4Address | IPv6Address | _PlainIPv4:
    # Go's net.ParseIP refuses zones ("fe80::1%eth0"); Python would accept them.
    if not isinstance(value, str):
        raise _bad(where, f"expected a string, got {_type_name(value)}")
    if _plain_ipv4(value):
        return _PlainIPv4(value)
    import ipaddress

    try:
        if "%" in value:
            raise ValueError
        return ipaddress.ip_address(value)
    except ValueError:
        raise _bad(where, f'"{value}" is not an IP address') from None


def _cidr(value: Any, where: str) -> tuple[str, int]:
    """Canonical "addr/len" (host bits kept, like libcni's types.ParseCIDR) and 4 or 6."""
    if not isinstance(value, str):
        raise _bad(where, f"expected a string, got {_type_name(value)}")
    addr, sep, plen = value.partition("/")
    # Go's ParseCIDR wants a decimal prefix length; Python would also take a netmask.
    if not sep or not (plen.isascii() and plen.isdigit()):
        raise _bad(where, f'"{value}" is not an address in CIDR notation such as "10.1.0.5/24"')
    ip = _ip(addr, where)
    if int(plen) > ip.max_prefixlen:
        raise _bad(where, f'"{value}": prefix length {int(plen)} is too long for IPv{ip.version}')
    return f"{ip}/{int(plen)}", ip.version


def _gateway(value: str, where: str) -> str:
    # An empty gateway is a nil net.IP in libcni: valid, and omitted on output.
    return str(_ip(value, where)) if value else ""


def _check_version(value: str, where: str) -> str:
    try:
        return _version.check_supported(value)
    except VersionError as exc:
        raise VersionError(f"{where}: {exc.msg}") from None


# --- parsing --------------------------------------------------------------


def _parse_route(obj: Any, where: str) -> Route:
    f = _fields(obj, ("dst", "gw", "mtu", "advmss", "priority", "table", "scope"), where)
    w = where + "."
    if "dst" not in f:
        raise _bad(w + "dst", "missing")
    return Route(
        dst=_cidr(f["dst"], w + "dst")[0],
        gw=_gateway(_str(f, "gw", w), w + "gw"),
        mtu=_int(f, "mtu", w) or 0,
        advmss=_int(f, "advmss", w) or 0,
        priority=_int(f, "priority", w) or 0,
        table=_int(f, "table", w),
        scope=_int(f, "scope", w),
    )


def _parse_routes(f: dict[str, Any], where: str, family: int | None = None) -> list[Route]:
    routes = []
    for i, obj in enumerate(_list(f, "routes", where)):
        route = _parse_route(obj, f"{where}routes[{i}]")
        if family is not None and _cidr(route.dst, "")[1] != family:
            # 0.1/0.2 keep routes per address family; a mismatch could not round-trip.
            raise _bad(f"{where}routes[{i}].dst", f'"{route.dst}" is not an IPv{family} route')
        routes.append(route)
    return routes


def _parse_dns(obj: Any) -> DNS:
    if obj is None:
        return DNS()
    f = _fields(obj, ("nameservers", "domain", "search", "options"), "dns")
    return DNS(
        nameservers=_str_list(f, "nameservers", "dns."),
        domain=_str(f, "domain", "dns."),
        search=_str_list(f, "search", "dns."),
        options=_str_list(f, "options", "dns."),
    )


def _parse_interfaces(f: dict[str, Any], rich: bool) -> list[Interface]:
    # 0.3/0.4 know only name, mac and sandbox; libcni ignores anything else there.
    names = ("name", "mac", "sandbox") + (("mtu", "socketPath", "pciID") if rich else ())
    out = []
    for i, obj in enumerate(_list(f, "interfaces", "")):
        w = f"interfaces[{i}]."
        g = _fields(obj, names, w[:-1])
        out.append(
            Interface(
                name=_str(g, "name", w),
                mac=_str(g, "mac", w),
                sandbox=_str(g, "sandbox", w),
                mtu=_int(g, "mtu", w) or 0,
                socket_path=_str(g, "socketPath", w),
                pci_id=_str(g, "pciID", w),
            )
        )
    return out


def _parse_ips(f: dict[str, Any], with_version: bool) -> list[IPConfig]:
    names = ("interface", "address", "gateway") + (("version",) if with_version else ())
    out = []
    for i, obj in enumerate(_list(f, "ips", "")):
        w = f"ips[{i}]."
        g = _fields(obj, names, w[:-1])
        if "address" not in g:
            raise _bad(w + "address", "missing")
        address, family = _cidr(g["address"], w + "address")
        declared = _str(g, "version", w)
        # We always re-derive the version from the address, so it must agree.
        if declared and declared != str(family):
            raise _bad(w + "version", f'"{declared}" does not match IPv{family} address "{address}"')
        out.append(IPConfig(address, _gateway(_str(g, "gateway", w), w + "gateway"), _int(g, "interface", w)))
    return out


def _parse_ip02(obj: Any, key: str, family: int) -> tuple[IPConfig, list[Route]]:
    f = _fields(obj, ("ip", "gateway", "routes"), key)
    w = key + "."
    if "ip" not in f:
        raise _bad(w + "ip", "missing")
    address, got = _cidr(f["ip"], w + "ip")
    if got != family:
        raise _bad(w + "ip", f'"{address}" is not an IPv{family} address')
    return IPConfig(address, _gateway(_str(f, "gateway", w), w + "gateway")), _parse_routes(f, w, family)


# --- conversion and output ------------------------------------------------


def _family_of(address: str, where: str) -> int:
    return _cidr(address, where)[1]


def _convert(res: Result, to_version: str) -> Result:
    """libcni's converter for res.cni_version -> to_version, applied to our model."""
    src = _check_version(res.cni_version, "cniVersion")
    # libcni's Convert treats an empty target version as 0.1.0.
    dst = _check_version(to_version or "0.1.0", "target version")
    out = _copy(res)
    out.cni_version = dst
    if dst in _V1:
        return out  # 1.x holds everything; 0.x -> 1.x loses nothing
    for iface in out.interfaces:  # 0.x interfaces have no mtu, socketPath, pciID
        iface.mtu, iface.socket_path, iface.pci_id = 0, "", ""
    if dst in _V04:
        return out  # routes keep all their fields: libcni shares one Route type
    # To 0.1/0.2: the first IP of each family, routes split by family.
    families = [_family_of(ip.address, f"ips[{i}].address") for i, ip in enumerate(out.ips)]
    ip4 = next((ip for ip, fam in zip(out.ips, families) if fam == 4), None)
    ip6 = next((ip for ip, fam in zip(out.ips, families) if fam == 6), None)
    crossing = src not in _V02  # 0.1 <-> 0.2 is a plain copy in libcni
    if crossing and ip4 is None and ip6 is None:
        # libcni gives this error no code; 1 says "not expressible at that version".
        raise CNIError("cannot convert: no valid IP addresses", code=INCOMPATIBLE_VERSION)
    out.interfaces = []
    out.ips = [IPConfig(ip.address, ip.gateway) for ip in (ip4, ip6) if ip is not None]
    routes: dict[int, list[Route]] = {4: [], 6: []}
    for i, route in enumerate(out.routes):
        # Only dst and gw survive libcni's 0.4 -> 0.2 step.
        kept = Route(route.dst, route.gw) if crossing else route
        routes[_family_of(route.dst, f"routes[{i}].dst")].append(kept)
    # A route whose family has no IP has nowhere to go in 0.1/0.2 and is dropped.
    out.routes = (routes[4] if ip4 else []) + (routes[6] if ip6 else [])
    return out


def _copy(res: Result) -> Result:
    """A deep copy (what copy.deepcopy made, without importing copy): every field is a str, int or None."""
    return Result(
        res.cni_version,
        [Interface(i.name, i.mac, i.sandbox, i.mtu, i.socket_path, i.pci_id) for i in res.interfaces],
        [IPConfig(ip.address, ip.gateway, ip.interface) for ip in res.ips],
        [Route(r.dst, r.gw, r.mtu, r.advmss, r.priority, r.table, r.scope) for r in res.routes],
        DNS(list(res.dns.nameservers), res.dns.domain, list(res.dns.search), list(res.dns.options)),
    )


def _route_dict(route: Route, where: str) -> dict[str, Any]:
    d: dict[str, Any] = {"dst": _cidr(route.dst, where + "dst")[0]}
    if route.gw:
        d["gw"] = _gateway(route.gw, where + "gw")
    for key in ("mtu", "advmss", "priority"):
        if getattr(route, key):
            d[key] = getattr(route, key)
    for key in ("table", "scope"):  # pointers in Go: printed whenever set, even 0
        if getattr(route, key) is not None:
            d[key] = getattr(route, key)
    return d


def _dns_dict(dns: DNS) -> dict[str, Any]:
    d: dict[str, Any] = {}
    if dns.nameservers:
        d["nameservers"] = list(dns.nameservers)
    if dns.domain:
        d["domain"] = dns.domain
    if dns.search:
        d["search"] = list(dns.search)
    if dns.options:
        d["options"] = list(dns.options)
    return d


def _to_dict(res: Result) -> dict[str, Any]:
    """Lay out a converted model in its version's JSON shape, in libcni's key order."""
    ver = res.cni_version
    out: dict[str, Any] = {"cniVersion": ver}
    if ver in _V02:
        for ip in res.ips:
            address, family = _cidr(ip.address, "ips[].address")
            block: dict[str, Any] = {"ip": address}
            if ip.gateway:
                block["gateway"] = _gateway(ip.gateway, f"ip{family}.gateway")
            routes = [
                _route_dict(r, f"ip{family}.routes[{i}].")
                for i, r in enumerate(x for x in res.routes if _family_of(x.dst, "routes[].dst") == family)
            ]
            if routes:
                block["routes"] = routes
            out[f"ip{family}"] = block
        out["dns"] = _dns_dict(res.dns)  # a Go struct: never omitted in 0.x
        return out
    v1 = ver in _V1
    if res.interfaces:
        ifaces = []
        for iface in res.interfaces:
            d: dict[str, Any] = {"name": iface.name}
            if iface.mac:
                d["mac"] = iface.mac
            if iface.mtu:
                d["mtu"] = iface.mtu
            if iface.sandbox:
                d["sandbox"] = iface.sandbox
            if iface.socket_path:
                d["socketPath"] = iface.socket_path
            if iface.pci_id:
                d["pciID"] = iface.pci_id
            ifaces.append(d)
        out["interfaces"] = ifaces
    if res.ips:
        ips = []
        for i, ip in enumerate(res.ips):
            address, family = _cidr(ip.address, f"ips[{i}].address")
            d = {} if v1 else {"version": str(family)}
            if ip.interface is not None:
                d["interface"] = ip.interface
            d["address"] = address
            if ip.gateway:
                d["gateway"] = _gateway(ip.gateway, f"ips[{i}].gateway")
            ips.append(d)
        out["ips"] = ips
    if res.routes:
        out["routes"] = [_route_dict(r, f"routes[{i}].") for i, r in enumerate(res.routes)]
    if not v1:
        out["dns"] = _dns_dict(res.dns)
        return out
    if not res.dns.is_empty():
        out["dns"] = _dns_dict(res.dns)
    # libcni's 1.x MarshalJSON round-trips through a Go map, so every key comes out sorted.
    return go_map_order(out)


class Result(Value):
    """A CNI result of any version; `cni_version` says which."""

    _fields = ("cni_version", "interfaces", "ips", "routes", "dns")
    __match_args__ = _fields

    def __init__(
        self,
        cni_version: str,
        interfaces: list[Interface] | None = None,
        ips: list[IPConfig] | None = None,
        routes: list[Route] | None = None,
        dns: DNS | None = None,
    ) -> None:
        self.cni_version = cni_version
        self.interfaces = [] if interfaces is None else interfaces
        self.ips = [] if ips is None else ips
        self.routes = [] if routes is None else routes
        self.dns = DNS() if dns is None else dns

    @classmethod
    def from_dict(cls, data: dict, version: str | None = None) -> Result:
        """Parse a result object.

        The result's own cniVersion wins; `version` (e.g. the config's) is used
        when the result has none, as libcni's exec does. Neither: VersionError.
        """
        f = _fields(data, ("cniVersion", "interfaces", "ips", "routes", "dns", "ip4", "ip6"), "")
        ver = _str(f, "cniVersion", "") or version
        if not ver:
            raise VersionError("invalid result: cniVersion: missing, and no version was given")
        ver = _check_version(ver, "result cniVersion")
        res = cls(ver, dns=_parse_dns(f.get("dns")))
        if ver in _V02:
            for key, family in (("ip4", 4), ("ip6", 6)):
                if key in f:
                    ip, routes = _parse_ip02(f[key], key, family)
                    res.ips.append(ip)
                    res.routes.extend(routes)  # ip4's routes, then ip6's, as libcni flattens them
            return res
        res.interfaces = _parse_interfaces(f, rich=ver in _V1)
        res.ips = _parse_ips(f, with_version=ver in _V04)
        res.routes = _parse_routes(f, "")
        return res

    @classmethod
    def from_json(cls, raw: bytes | str, version: str | None = None) -> Result:
        import json

        try:
            data = json.loads(raw, parse_constant=_reject_constant)
        except ValueError as exc:  # includes JSONDecodeError and UnicodeDecodeError
            raise CNIError(f"invalid result: not valid JSON: {exc}", code=DECODING_FAILURE) from None
        return cls.from_dict(data, version)

    def convert(self, version: str) -> Result:
        """A new Result at `version`, losing exactly what libcni's conversion loses."""
        return _convert(self, version)

    def to_dict(self, version: str | None = None) -> dict:
        """The JSON object libcni prints for this result at `version` (default: its own)."""
        return _to_dict(_convert(self, self.cni_version if version is None else version))

    def to_json(self, version: str | None = None) -> str:
        """Like libcni's Print: 4-space indent, Go's HTML-safe escaping."""
        from ..core.jsonfast import dumps_indented  # json.dumps(indent=4, ensure_ascii=False) without importing json

        text = dumps_indented(self.to_dict(version), 4)
        # These characters can only occur inside JSON strings, so a plain replace is safe.
        for ch in "<>&\u2028\u2029":
            text = text.replace(ch, f"\\u{ord(ch):04x}")
        return text

    def ip_addresses(self) -> list[str]:
        return [_cidr(ip.address, f"ips[{i}].address")[0] for i, ip in enumerate(self.ips)]


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")  # Go rejects NaN and Infinity


def convert(data: dict, to_version: str) -> dict:
    """Convert a result object of any version to the JSON object of `to_version`."""
    return Result.from_dict(data).to_dict(to_version)
