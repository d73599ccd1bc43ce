"""Firewall policies: who may talk to a container, as people write it, and the `firewallPolicy` capability.

`--ingress-allow PEER[:PORTS]` / `--egress-allow` (repeatable) go through
parse_allow; capability() turns the two lists into the capability value the
`cnirun-policy` plugin (cnirun.plugins.policy) receives as runtimeConfig,
and validate() is the one check of such a value (the plugin's included).

PEER is one of:
  NAME          a container, compose service or network alias on the attachment's network
                (an unknown name is allowed: it matches nothing until it appears)
  net:NETWORK   every container registered on NETWORK
  CIDR          10.0.0.0/8, 10.1.2.3, fd00::/64; with ports an IPv6 one goes in brackets: [fd00::/64]:80
  host          the host (the network's gateway addresses)
PORTS: PORT[-PORT][/PROTO] items separated by commas, PROTO tcp (the default), udp or sctp:
`80`, `80/tcp`, `8000-8100/udp`, `80,443,53/udp`. No PORTS: every port and protocol.
`none`, alone, removes the direction's policy; `nobody`, alone, allows no peer
(every connection that way refused, replies to the container's own excepted).
In a label (cnirun.ingress-allow, cnirun.egress-allow) the values are separated
by whitespace (PORTS holds commas): `db:5432 10.0.0.0/8:443`.

The capability value (CONVENTIONS.md style, camelCase)::

    {"ingress": [RULE, ...], "egress": [RULE, ...]}
    RULE: {"peer": PEER, "ports": [{"protocol": "tcp", "port": 80, "endPort": 90}, ...]}
    PEER: {"name": "db"} | {"network": "backend"} | {"cidr": "10.0.0.0/8"} | {"host": true}

A direction that is present (even as an empty list) is deny-by-default: only
its rules' peers may open connections that way; replies always pass. An
absent direction is unrestricted. "ports" absent or empty: every port.
"""
from __future__ import annotations

from ..core.errors import ArgumentError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Iterable

CAPABILITY = "firewallPolicy"
DIRECTIONS = ("ingress", "egress")
NONE = "none"
NOBODY = "nobody"
HOST = "host"
NET_PREFIX = "net:"
PROTOCOLS = ("tcp", "udp", "sctp")
MAX_VALUE = 512  # characters of one PEER[:PORTS]
MAX_RULES = 64  # per direction
MAX_PORTS = 16  # items of one PORTS
MAX_NAME = 253
_EXAMPLE = "e.g. db, db:5432, net:backend, 10.0.0.0/8:443, [fd00::/64]:80, host:53/udp"


def _bad(what: str, value: str, why: str) -> ArgumentError:
    shown = value if len(value) <= 80 else value[:77] + "..."
    return ArgumentError(f"invalid {what} {shown!r}: {why}")


# -- ports -----------------------------------------------------------------------------
def _port(text: str, what: str, value: str) -> int:
    if not text.isdigit() or not text.isascii() or len(text) > 5 or not 1 <= int(text) <= 65535:
        raise _bad(what, value, f"{text!r} is not a port: write a number from 1 to 65535, e.g. 80 or 8000-8100/udp")
    return int(text)


def parse_ports(text: str, what: str = "ports", value: str = "") -> list[dict[str, Any]]:
    """'80,8000-8100/udp' -> [{"protocol": "tcp", "port": 80}, {"protocol": "udp", "port": 8000, "endPort": 8100}]."""
    value = value or text
    items = text.split(",")
    if len(items) > MAX_PORTS:
        raise _bad(what, value, f"more than {MAX_PORTS} ports: give a range (8000-8100) or another rule")
    out: list[dict[str, Any]] = []
    for item in items:
        spec, slash, proto = item.strip().partition("/")
        proto = proto.strip().lower() if slash else "tcp"
        if proto not in PROTOCOLS:
            raise _bad(what, value, f"unknown protocol {proto!r}: write tcp, udp or sctp, e.g. 53/udp")
        low, dash, high = spec.strip().partition("-")
        first = _port(low.strip(), what, value)
        last = _port(high.strip(), what, value) if dash else first
        if last < first:
            raise _bad(what, value, f"the range {spec.strip()} ends before it starts: write {last}-{first}")
        port: dict[str, Any] = {"protocol": proto, "port": first}
        if last != first:
            port["endPort"] = last
        if port not in out:
            out.append(port)
    return out


def format_ports(ports: Iterable[dict[str, Any]]) -> str:
    """The PORTS text of canonical ports (tcp is written as the default it is)."""
    out = []
    for p in ports:
        text = str(p["port"]) + (f"-{p['endPort']}" if "endPort" in p else "")
        out.append(text if p["protocol"] == "tcp" else f"{text}/{p['protocol']}")
    return ",".join(out)


# -- peers -----------------------------------------------------------------------------
def _looks_like_address(text: str) -> bool:
    """Written as an address (digits, dots, a prefix) or IPv6 (a colon): checked as one, never taken as a name."""
    return ":" in text or (bool(text) and text[0].isdigit() and all(c.isdigit() or c in "./" for c in text))


def _cidr(text: str, what: str, value: str) -> str:
    from ..core import cidr

    try:
        net = cidr.parse(text)
    except ValueError:
        raise _bad(what, value, f"{text!r} is not an address or CIDR: write e.g. 10.0.0.0/8, 10.1.2.3 "
                                "or fd00::/64") from None
    if net.value != net.network:
        raise _bad(what, value, f"{text} has bits set beyond its prefix: write {net.network_str()}")
    return net.network_str()


def parse_peer(text: str, what: str = "peer", value: str = "") -> dict[str, Any]:
    value = value or text
    if text.lower() == HOST:
        return {"host": True}
    if text.lower().startswith(NET_PREFIX):
        from ..core.paths import is_safe_name

        name = text[len(NET_PREFIX):]
        if not is_safe_name(name) or len(name) > MAX_NAME:
            raise _bad(what, value, f"{name!r} is not a network name: write net:NETWORK, e.g. net:backend")
        return {"network": name}
    if _looks_like_address(text):
        return {"cidr": _cidr(text, what, value)}
    from ..dns.hostname import is_hostname

    # Docker names may hold '_' (dnsmasq serves it), as the names store allows.
    if not is_hostname(text.replace("_", "-")):
        raise _bad(what, value, f"{text!r} is not a container, service or alias name: {_EXAMPLE}")
    return {"name": text}


def format_peer(peer: dict[str, Any]) -> str:
    if peer.get("host"):
        return HOST
    if "network" in peer:
        return NET_PREFIX + peer["network"]
    return peer.get("cidr") or peer["name"]


# -- one rule: PEER[:PORTS] ---------------------------------------------------------------
def _split(text: str, what: str) -> tuple[str, str | None]:
    """(PEER, PORTS or None) of a value; an IPv6 peer with ports is bracketed, a bare one has no ports."""
    if text.startswith("["):
        inner, close, rest = text[1:].partition("]")
        if not close or (rest and not rest.startswith(":")):
            raise _bad(what, text, "a bracketed IPv6 peer is written [ADDRESS]:PORTS, e.g. [fd00::/64]:80")
        return inner, rest[1:] if rest else None
    if text.lower().startswith(NET_PREFIX):
        name, sep, ports = text[len(NET_PREFIX):].partition(":")
        return text[:len(NET_PREFIX)] + name, ports if sep else None
    if text.count(":") > 1:
        return text, None  # a bare IPv6 address or CIDR
    peer, sep, ports = text.partition(":")
    return peer, ports if sep else None


def parse_rule(value: Any, what: str = "--ingress-allow") -> dict[str, Any]:
    """'db:5432' -> {"peer": {"name": "db"}, "ports": [{"protocol": "tcp", "port": 5432}]}; ArgumentError else."""
    if not isinstance(value, str) or not value.strip():
        raise ArgumentError(f"invalid {what} {value!r}: expected PEER[:PORTS], {_EXAMPLE}")
    if len(value) > MAX_VALUE or not value.isprintable():
        raise _bad(what, value, f"expected PEER[:PORTS] of at most {MAX_VALUE} printable characters")
    text = value.strip()
    peer_text, ports_text = _split(text, what)
    if not peer_text.strip():
        raise _bad(what, value, f"no peer before the ports: {_EXAMPLE}")
    rule: dict[str, Any] = {"peer": parse_peer(peer_text.strip(), what, value)}
    if ports_text is not None:
        if not ports_text.strip():
            raise _bad(what, value, "nothing after ':': give ports (80, 80/tcp, 8000-8100/udp) or leave ':' out")
        rule["ports"] = parse_ports(ports_text, what, value)
    return rule


def format_rule(rule: dict[str, Any]) -> str:
    """A canonical rule as people write it (parse_rule gives it back)."""
    peer = format_peer(rule["peer"])
    if not rule.get("ports"):
        return peer
    if ":" in peer and "network" not in rule["peer"]:
        peer = f"[{peer}]"
    return f"{peer}:{format_ports(rule['ports'])}"


def parse_allow(values: Iterable[str], what: str = "--ingress-allow") -> list[dict[str, Any]] | None:
    """The values of one repeatable flag -> its rules; None for `none` (the direction's policy
    removed), [] for `nobody` (no peer allowed)."""
    values = list(values)
    for word, means in ((NONE, "removes the policy"), (NOBODY, "allows no peer")):
        if any(isinstance(v, str) and v.strip().lower() == word for v in values):
            if len(values) > 1:
                raise ArgumentError(f"invalid {what}: '{word}' {means} and stands alone, not beside peers")
            return None if word == NONE else []
    if len(values) > MAX_RULES:
        raise ArgumentError(f"invalid {what}: more than {MAX_RULES} peers: use a CIDR or net:NETWORK")
    rules: list[dict[str, Any]] = []
    for v in values:
        rule = parse_rule(v, what)
        if rule not in rules:
            rules.append(rule)
    return rules


def format_allow(rules: list[dict[str, Any]] | None) -> str:
    """One direction's rules as a label value or a line (parse_allow_label gives them back)."""
    if rules is None:
        return NONE
    return " ".join(format_rule(r) for r in rules) if rules else NOBODY


def parse_allow_label(text: str, what: str) -> list[dict[str, Any]] | None:
    """A label's value: whitespace-separated PEER[:PORTS] (or none, nobody) -> parse_allow."""
    if not isinstance(text, str) or len(text) > MAX_VALUE * MAX_RULES:
        raise ArgumentError(f"invalid {what}: expected whitespace-separated PEER[:PORTS], {_EXAMPLE}")
    values = text.split()
    if not values:
        raise ArgumentError(f"invalid {what}: empty: give PEER[:PORTS] values, nobody or none ({_EXAMPLE})")
    return parse_allow(values, what)


# -- the capability ------------------------------------------------------------------------
def capability(ingress: list[dict[str, Any]] | None, egress: list[dict[str, Any]] | None) -> dict[str, Any] | None:
    """The `firewallPolicy` value of the two directions' rules (None: unrestricted); None when both are."""
    out = {d: rules for d, rules in (("ingress", ingress), ("egress", egress)) if rules is not None}
    return out or None


def _canonical_port(p: Any) -> dict[str, Any]:
    if not isinstance(p, dict) or set(p) - {"protocol", "port", "endPort"}:
        raise ValueError("a port is {\"protocol\": \"tcp\", \"port\": 80[, \"endPort\": 90]}")
    proto, first, last = p.get("protocol", "tcp"), p.get("port"), p.get("endPort", p.get("port"))
    ok = proto in PROTOCOLS and all(type(n) is int and 1 <= n <= 65535 for n in (first, last))
    if not ok or last < first:
        raise ValueError(f"bad port {_short(p)}: protocol tcp, udp or sctp, ports 1-65535, endPort >= port")
    return {"protocol": proto, "port": first, **({"endPort": last} if last != first else {})}


def _canonical_peer(peer: Any) -> dict[str, Any]:
    if not isinstance(peer, dict) or len(peer) != 1:
        raise ValueError("a peer is one of {\"name\": ...}, {\"network\": ...}, {\"cidr\": ...}, {\"host\": true}")
    (kind, val), = peer.items()
    if kind == "host" and val is True:
        return {"host": True}
    if kind == "name" and isinstance(val, str) and val.lower() == HOST:
        return {"name": val}  # a container named host: only the capability can name it
    if kind in ("name", "network", "cidr") and isinstance(val, str) and 0 < len(val) <= MAX_NAME:
        text = {"network": NET_PREFIX + val, "cidr": val}.get(kind, val)
        try:
            got = parse_peer(text, "peer")
        except ArgumentError as e:
            raise ValueError(str(e)) from None
        if kind in got:
            return got
    raise ValueError(f"bad peer {_short(peer)}")


def _short(obj: Any) -> str:
    from ..core.jsonfast import dumps

    try:
        text = dumps(obj)
    except (TypeError, ValueError):
        text = type(obj).__name__
    return text if len(text) <= 60 else text[:57] + "..."


def validate(value: Any) -> dict[str, Any]:
    """The canonical form of a `firewallPolicy` value; ArgumentError (one line) when it is not one."""
    try:
        if not isinstance(value, dict) or set(value) - set(DIRECTIONS):
            raise ValueError('expected {"ingress": [RULE...], "egress": [RULE...]}')
        out: dict[str, Any] = {}
        for direction in DIRECTIONS:
            if direction not in value or value[direction] is None:
                continue
            rules = value[direction]
            if not isinstance(rules, list) or len(rules) > MAX_RULES:
                raise ValueError(f"{direction}: expected a list of at most {MAX_RULES} rules")
            out[direction] = []
            for rule in rules:
                if not isinstance(rule, dict) or set(rule) - {"peer", "ports"} or "peer" not in rule:
                    raise ValueError(f"{direction}: a rule is {{\"peer\": PEER, \"ports\": [...]}}, not {_short(rule)}")
                ports = rule.get("ports") or []
                if not isinstance(ports, list) or len(ports) > MAX_PORTS:
                    raise ValueError(f"{direction}: ports must be a list of at most {MAX_PORTS}")
                canon: dict[str, Any] = {"peer": _canonical_peer(rule["peer"])}
                if ports:
                    canon["ports"] = [_canonical_port(p) for p in ports]
                out[direction].append(canon)
        return out
    except ValueError as e:
        raise ArgumentError(f"invalid {CAPABILITY} capability: {e}") from None


def describe(value: Any) -> str:
    """'ingress from db:5432, host; egress unrestricted' for people."""
    try:
        policy = validate(value)
    except ArgumentError:
        return "no valid policy"

    def one(direction: str, word: str) -> str:
        if direction not in policy:
            return f"{direction} unrestricted"
        rules = policy[direction]
        return f"{direction} {word} " + (", ".join(format_rule(r) for r in rules) if rules else "nobody")

    return f"{one('ingress', 'from')}; {one('egress', 'to')}"
