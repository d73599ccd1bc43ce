"""cnirun.network.policies: the PEER[:PORTS] grammar of --ingress-allow/--egress-allow and the firewallPolicy
capability value it becomes; cnirun.network.policy_rules' set elements. Engine-free."""
from __future__ import annotations

import ipaddress
import json
import random

import pytest

from cnirun.core.errors import ArgumentError
from cnirun.network.policies import (
    MAX_PORTS, MAX_RULES, capability, describe, format_rule, parse_allow, parse_rule, validate,
)
from cnirun.network.policy_rules import any_elements, svc_elements


@pytest.mark.parametrize("text, peer, ports", [
    ("db", {"name": "db"}, None),
    ("web_1:8000-8100/udp", {"name": "web_1"}, [{"protocol": "udp", "port": 8000, "endPort": 8100}]),
    ("queue.svc:5672", {"name": "queue.svc"}, [{"protocol": "tcp", "port": 5672}]),
    ("net:backend", {"network": "backend"}, None),
    ("net:backend:80,443/udp", {"network": "backend"},
     [{"protocol": "tcp", "port": 80}, {"protocol": "udp", "port": 443}]),
    ("10.0.0.0/8:443", {"cidr": "10.0.0.0/8"}, [{"protocol": "tcp", "port": 443}]),
    ("10.1.2.3", {"cidr": "10.1.2.3/32"}, None),
    ("fd00::1", {"cidr": "fd00::1/128"}, None),
    ("[fd00::/64]:80/sctp", {"cidr": "fd00::/64"}, [{"protocol": "sctp", "port": 80}]),
    ("host", {"host": True}, None),
    ("HOST:53/UDP,53", {"host": True}, [{"protocol": "udp", "port": 53}, {"protocol": "tcp", "port": 53}]),
    (" db:80,80/tcp ", {"name": "db"}, [{"protocol": "tcp", "port": 80}]),
])
def test_rules_parse_to_the_capability_and_back(text: str, peer: dict, ports: list | None) -> None:
    """Each form of PEER[:PORTS] gives its canonical rule, which format_rule writes back to the same rule."""
    rule = parse_rule(text)
    assert rule == ({"peer": peer} if ports is None else {"peer": peer, "ports": ports})
    assert parse_rule(format_rule(rule)) == rule
    assert validate({"ingress": [rule]}) == {"ingress": [rule]}


@pytest.mark.parametrize("text, hint", [
    ("10.1.2.300", "not an address or CIDR"),
    ("10.0.0.0/33", "write e.g. 10.0.0.0/8"),
    ("10.1.2.3/8", "write 10.0.0.0/8"),
    ("fd00::1/64:80", "not an address or CIDR"),
    ("[fd00::1", "[ADDRESS]:PORTS"),
    ("db:0", "from 1 to 65535"),
    ("db:65536", "from 1 to 65535"),
    ("db:90-80", "write 80-90"),
    ("db:80/icmp", "write tcp, udp or sctp"),
    ("db:", "give ports"),
    (":80", "no peer"),
    ("db:http", "is not a port"),
    ("net:", "net:NETWORK"),
    ("net:.x", "net:NETWORK"),
    ("bad name", "not a container, service or alias name"),
    ("-db", "not a container"),
    ("db:" + ",".join(str(p) for p in range(1, MAX_PORTS + 2)), "give a range"),
    ("x" * 600, "at most 512"),
    ("db\n:80", "printable"),
])
def test_malformed_values_are_one_line_naming_the_value_and_the_fix(text: str, hint: str) -> None:
    """A malformed CIDR, port, range or protocol: one line naming the value and what to write instead."""
    with pytest.raises(ArgumentError) as e:
        parse_rule(text, "--egress-allow")
    msg = str(e.value)
    assert "\n" not in msg and msg.startswith("invalid --egress-allow ") and hint in msg, msg


def test_unknown_names_are_allowed_and_none_removes_the_policy() -> None:
    """A name nobody has yet is a rule (it may start later); `none` alone removes a direction's policy."""
    assert parse_allow(["not-started-yet:80"]) == [{"peer": {"name": "not-started-yet"},
                                                   "ports": [{"protocol": "tcp", "port": 80}]}]
    assert parse_allow(["none"]) is None and parse_allow([" NONE "]) is None
    with pytest.raises(ArgumentError, match="stands alone"):
        parse_allow(["none", "db"])
    with pytest.raises(ArgumentError, match=f"more than {MAX_RULES}"):
        parse_allow([f"10.0.{i}.0/24" for i in range(MAX_RULES + 1)])
    assert parse_allow(["db", "db"]) == [{"peer": {"name": "db"}}]
    value = capability(parse_allow(["db:5432", "host"]), None)
    assert value == {"ingress": [{"peer": {"name": "db"}, "ports": [{"protocol": "tcp", "port": 5432}]},
                                 {"peer": {"host": True}}]}
    assert capability(None, None) is None and capability(None, [])["egress"] == []
    assert describe(value) == "ingress from db:5432, host; egress unrestricted"
    assert describe({"egress": []}) == "ingress unrestricted; egress to nobody"


@pytest.mark.parametrize("value", [
    "garbage", [], {"ingress": "db"}, {"sideways": []}, {"ingress": [{"peer": "db"}]},
    {"ingress": [{"peer": {"name": "db", "cidr": "10.0.0.0/8"}}]}, {"ingress": [{"peer": {"cidr": "10.0.0.0/33"}}]},
    {"ingress": [{"peer": {"cidr": "db"}}]}, {"ingress": [{"peer": {"host": 1}}]},
    {"egress": [{"peer": {"host": True}, "ports": [{"protocol": "tcp", "port": 0}]}]},
    {"egress": [{"peer": {"host": True}, "ports": [{"protocol": "tcp", "port": True}]}]},
    {"egress": [{"peer": {"host": True}, "ports": [{"protocol": "tcp", "port": 9, "endPort": 8}]}]},
    {"egress": [{"peer": {"host": True}, "ports": [{"protocol": "gre", "port": 9}]}]},
    {"egress": [{"peer": {"host": True}, "extra": 1}]},
    {"egress": [{"peer": {"network": "../x"}}]}, {"egress": [{"peer": {"name": "a b"}}]},
])
def test_a_value_that_is_no_policy_is_refused_in_one_line(value: object) -> None:
    """validate (the plugin's check of runtimeConfig) refuses every malformed value with one line."""
    with pytest.raises(ArgumentError) as e:
        validate(value)
    assert "\n" not in str(e.value) and str(e.value).startswith("invalid firewallPolicy capability: ")


_TOKENS = ["db", "net:", "host", "none", ":", "::", "/", "-", ",", "[", "]", "10.", "0", "1", "65535", "65536",
           "/tcp", "/udp", "/icmp", "fd00", ".", " ", "\t", "\x00", "é", "_", "80", "8000-8100", "/8", "/33", "x" * 70]


def _garbage(rng: random.Random) -> str:
    if rng.random() < 0.3:
        return rng.randbytes(rng.randrange(0, 40)).decode("utf-8", "surrogateescape")
    return "".join(rng.choice(_TOKENS) for _ in range(rng.randrange(0, 12)))


_KEYS = ["ingress", "egress", "peer", "ports", "name", "network", "cidr", "host", "protocol", "port", "endPort"]


def _json_garbage(rng: random.Random, depth: int = 0) -> object:
    kind = rng.randrange(3 if depth < 3 else 1)
    if kind == 1:
        return {k: _json_garbage(rng, depth + 1) for k in rng.sample(_KEYS, rng.randrange(0, 4))}
    if kind == 2:
        return [_json_garbage(rng, depth + 1) for _ in range(rng.randrange(0, 4))]
    return rng.choice([None, True, 0, -1, 65536, 80, "tcp", "db", "10.0.0.0/8", "host", "", [], {}])


def test_fuzz_never_a_traceback_always_one_line() -> None:
    """Random bytes and structured garbage: parse_rule and validate return a rule or raise one line; what they
    accept round-trips through format_rule and validate."""
    rng = random.Random(2025)
    accepted = 0
    for _ in range(20000):
        text = _garbage(rng)
        try:
            rule = parse_rule(text, "--ingress-allow")
        except ArgumentError as e:
            assert "\n" not in str(e) and str(e).startswith("invalid --ingress-allow"), repr(str(e))
            continue
        accepted += 1
        assert parse_rule(format_rule(rule)) == rule and validate({"egress": [rule]}) == {"egress": [rule]}
    assert accepted > 100
    for _ in range(20000):
        value = _json_garbage(rng)
        try:
            canon = validate(value)
        except ArgumentError as e:
            assert "\n" not in str(e), repr(str(e))
            continue
        assert validate(json.loads(json.dumps(canon))) == canon


def test_svc_elements_are_disjoint_and_cover_exactly_the_rules() -> None:
    """Overlapping peers and port ranges (the kernel refuses overlapping elements of a concatenation set) become
    disjoint elements that allow exactly what the rules allow."""
    entries = [("10.0.0.0/8", "tcp", 80, 80), ("10.1.2.3/32", "tcp", 80, 90), ("10.1.2.3/32", "tcp", 85, 85),
               ("10.1.2.3/32", "udp", 53, 53), ("10.0.0.0/8", "tcp", 80, 80), ("fd00::/64", "tcp", 1, 65535),
               ("fd00::5/128", "tcp", 443, 443)]
    v4, v6 = svc_elements(entries)

    def parts(e: str) -> tuple[ipaddress._BaseNetwork, str, int, int]:
        net, proto, ports = e.split(" . ")
        lo, _, hi = ports.partition("-")
        return ipaddress.ip_network(net), proto, int(lo), int(hi or lo)

    elems = [parts(e) for e in v4 + v6]
    for i, (n1, p1, lo1, hi1) in enumerate(elems):
        for n2, p2, lo2, hi2 in elems[i + 1:]:
            assert not (p1 == p2 and n1.version == n2.version and n1.overlaps(n2) and lo1 <= hi2 and lo2 <= hi1)
    probes = [("10.1.2.3", "tcp", 80), ("10.1.2.3", "tcp", 90), ("10.1.2.3", "tcp", 91), ("10.9.9.9", "tcp", 85),
              ("10.9.9.9", "tcp", 80), ("10.1.2.3", "udp", 53), ("10.1.2.3", "udp", 80), ("11.0.0.1", "tcp", 80),
              ("fd00::9", "tcp", 22), ("fd01::1", "tcp", 443)]
    for addr, proto, port in probes:
        want = any(ipaddress.ip_address(addr) in ipaddress.ip_network(c) and p == proto and lo <= port <= hi
                   for c, p, lo, hi in entries)
        got = any(ipaddress.ip_address(addr) in n and p == proto and lo <= port <= hi for n, p, lo, hi in elems)
        assert got == want, (addr, proto, port)
    assert any_elements(["10.0.0.0/8", "10.1.0.0/16", "fd00::1/128"]) == (["10.0.0.0/8"], ["fd00::1/128"])
