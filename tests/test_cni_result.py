"""Tests for cnirun.cni.result: parsing, libcni's conversions, and JSON shapes.

Fixtures are written for these tests in the shape of the examples in the CNI
spec (1.1.0 and the 0.x spec texts) and of libcni's pkg/types tests.
"""
from __future__ import annotations

import copy
import json

import pytest

from cnirun.core.errors import CNIError, VersionError
from cnirun.cni.result import DNS, Interface, IPConfig, Result, Route, convert
from cnirun.core.version import SUPPORTED_VERSIONS

DNS_FULL = {
    "nameservers": ["10.1.0.1", "2001:db8::53"],
    "domain": "example.internal",
    "search": ["svc.example.internal", "example.internal"],
    "options": ["ndots:2", "edns0"],
}

R110 = {
    "cniVersion": "1.1.0",
    "interfaces": [
        {"name": "cni0", "mac": "00:11:22:33:44:55"},
        {"name": "veth3243", "mac": "55:44:33:22:11:11"},
        {
            "name": "eth0",
            "mac": "99:88:77:66:55:44",
            "mtu": 1450,
            "sandbox": "/var/run/netns/blue",
            "socketPath": "/run/vhost/eth0.sock",
            "pciID": "0000:00:1f.6",
        },
    ],
    "ips": [
        {"address": "10.1.0.5/16", "gateway": "10.1.0.1", "interface": 2},
        {"address": "2001:db8:1::5/64", "gateway": "2001:db8:1::1", "interface": 2},
        {"address": "10.2.0.7/24", "interface": 0},
    ],
    "routes": [
        {"dst": "0.0.0.0/0", "mtu": 1400, "advmss": 1360, "priority": 10, "table": 0, "scope": 0},
        {"dst": "192.168.0.0/16", "gw": "10.1.0.254"},
        {"dst": "::/0", "gw": "2001:db8:1::1"},
    ],
    "dns": DNS_FULL,
}

R100 = {
    "cniVersion": "1.0.0",
    "interfaces": [{"name": "eth0", "mac": "99:88:77:66:55:44", "sandbox": "/var/run/netns/blue"}],
    "ips": [
        {"address": "10.1.0.5/16", "gateway": "10.1.0.1", "interface": 0},
        {"address": "2001:db8:1::5/64", "interface": 0},
    ],
    "routes": [{"dst": "0.0.0.0/0"}, {"dst": "2001:db8:2::/48", "gw": "2001:db8:1::fe"}],
    "dns": {"nameservers": ["10.1.0.1"]},
}


def _r04(version: str) -> dict:
    return {
        "cniVersion": version,
        "interfaces": [
            {"name": "cni0", "mac": "00:11:22:33:44:55"},
            {"name": "eth0", "mac": "99:88:77:66:55:44", "sandbox": "/var/run/netns/blue"},
        ],
        "ips": [
            {"version": "4", "interface": 1, "address": "10.1.0.5/16", "gateway": "10.1.0.1"},
            {"version": "6", "interface": 1, "address": "2001:db8:1::5/64", "gateway": "2001:db8:1::1"},
        ],
        "routes": [{"dst": "0.0.0.0/0"}, {"dst": "::/0", "gw": "2001:db8:1::1"}],
        "dns": {"nameservers": ["10.1.0.1"], "domain": "example.internal"},
    }


def _r02(version: str) -> dict:
    return {
        "cniVersion": version,
        "ip4": {
            "ip": "10.1.0.5/16",
            "gateway": "10.1.0.1",
            "routes": [{"dst": "0.0.0.0/0"}, {"dst": "192.168.0.0/16", "gw": "10.1.0.254"}],
        },
        "ip6": {"ip": "2001:db8:1::5/64", "routes": [{"dst": "::/0", "gw": "2001:db8:1::1"}]},
        "dns": {"nameservers": ["10.1.0.1"]},
    }


FIXTURES = {
    "0.1.0": _r02("0.1.0"),
    "0.2.0": _r02("0.2.0"),
    "0.3.0": _r04("0.3.0"),
    "0.3.1": _r04("0.3.1"),
    "0.4.0": _r04("0.4.0"),
    "1.0.0": R100,
    "1.1.0": R110,
}

FAMILY = {v: ("02" if v < "0.3" else "04" if v < "1" else "1") for v in SUPPORTED_VERSIONS}


# --- parsing ------------------------------------------------------------------


@pytest.mark.parametrize("version", SUPPORTED_VERSIONS)
def test_parse_every_version_and_print_back_unchanged(version: str) -> None:
    data = FIXTURES[version]
    res = Result.from_dict(copy.deepcopy(data))
    assert res.cni_version == version
    assert res.to_dict() == data
    assert json.loads(res.to_json()) == data
    assert Result.from_json(json.dumps(data).encode()).to_dict() == data


def test_parse_1_1_0_model() -> None:
    res = Result.from_dict(R110)
    assert res.interfaces[2] == Interface(
        "eth0", "99:88:77:66:55:44", "/var/run/netns/blue", 1450, "/run/vhost/eth0.sock", "0000:00:1f.6"
    )
    assert res.ips[0] == IPConfig("10.1.0.5/16", "10.1.0.1", 2)
    assert res.ips[2] == IPConfig("10.2.0.7/24", "", 0)
    assert res.routes[0] == Route("0.0.0.0/0", "", 1400, 1360, 10, 0, 0)
    assert res.routes[1] == Route("192.168.0.0/16", "10.1.0.254")
    assert res.dns == DNS(DNS_FULL["nameservers"], "example.internal", DNS_FULL["search"], DNS_FULL["options"])
    assert res.ip_addresses() == ["10.1.0.5/16", "2001:db8:1::5/64", "10.2.0.7/24"]


def test_parse_0_2_0_flattens_ip4_then_ip6() -> None:
    res = Result.from_dict(FIXTURES["0.2.0"])
    assert res.interfaces == []
    assert res.ips == [IPConfig("10.1.0.5/16", "10.1.0.1"), IPConfig("2001:db8:1::5/64")]
    assert [r.dst for r in res.routes] == ["0.0.0.0/0", "192.168.0.0/16", "::/0"]


def test_parse_0_1_0_with_only_ip6() -> None:
    res = Result.from_dict({"cniVersion": "0.1.0", "ip6": {"ip": "fd00::2/64"}})
    assert res.ip_addresses() == ["fd00::2/64"]
    assert res.to_dict() == {"cniVersion": "0.1.0", "ip6": {"ip": "fd00::2/64"}, "dns": {}}


def test_ipam_result_without_version_takes_the_given_one() -> None:
    # SPEC.md's host-local example result carries no cniVersion.
    ipam = {"ips": [{"address": "10.1.0.5/16", "gateway": "10.1.0.1"}], "routes": [{"dst": "0.0.0.0/0"}],
            "dns": {"nameservers": ["10.1.0.1"]}}
    res = Result.from_dict(ipam, "1.1.0")
    assert res.to_dict() == {"cniVersion": "1.1.0", **ipam}
    assert Result.from_dict({**ipam, "cniVersion": ""}, "0.4.0").cni_version == "0.4.0"


def test_result_own_version_wins_over_the_given_one() -> None:
    assert Result.from_dict(FIXTURES["0.4.0"], "1.0.0").cni_version == "0.4.0"


def test_missing_version_everywhere_is_a_version_error() -> None:
    with pytest.raises(VersionError, match="cniVersion") as exc:
        Result.from_dict({"ips": []})
    assert exc.value.code == 1


def test_keys_match_case_insensitively_like_go() -> None:
    ips = [{"Version": "4", "Address": "10.0.0.2/8", "GateWay": "10.0.0.1"}]
    res = Result.from_dict({"CNIVersion": "0.4.0", "IPs": ips})
    assert res.cni_version == "0.4.0"
    assert res.ips == [IPConfig("10.0.0.2/8", "10.0.0.1")]


def test_unknown_keys_and_nulls_are_dropped() -> None:
    data = {"cniVersion": "1.0.0", "extra": {"x": 1}, "ips": [{"address": "10.0.0.2/8", "gateway": None, "foo": 1}],
            "interfaces": None, "dns": None}
    assert Result.from_dict(data).to_dict() == {"cniVersion": "1.0.0", "ips": [{"address": "10.0.0.2/8"}]}


def test_0_4_0_interfaces_ignore_1_1_fields() -> None:
    data = _r04("0.4.0")
    data["interfaces"][1].update(mtu="not even checked", socketPath="/x", pciID="y")
    res = Result.from_dict(data)
    assert res.interfaces[1] == Interface("eth0", "99:88:77:66:55:44", "/var/run/netns/blue")


def test_0_x_ips_version_may_be_omitted() -> None:
    res = Result.from_dict({"cniVersion": "0.3.1", "ips": [{"address": "fd00::5/64"}]})
    assert res.to_dict()["ips"] == [{"version": "6", "address": "fd00::5/64"}]


def test_1_x_ignores_a_stray_ips_version() -> None:
    res = Result.from_dict({"cniVersion": "1.0.0", "ips": [{"version": "6", "address": "10.0.0.2/8"}]})
    assert res.to_dict() == {"cniVersion": "1.0.0", "ips": [{"address": "10.0.0.2/8"}]}


# --- conversions --------------------------------------------------------------


def _expected_ips(src: str, dst: str) -> list[str]:
    ips = Result.from_dict(FIXTURES[src]).ip_addresses()
    if FAMILY[dst] == "02" and FAMILY[src] != "02":
        v4 = [a for a in ips if ":" not in a][:1]
        v6 = [a for a in ips if ":" in a][:1]
        return v4 + v6
    return ips


@pytest.mark.parametrize("dst", SUPPORTED_VERSIONS)
@pytest.mark.parametrize("src", SUPPORTED_VERSIONS)
def test_conversion_matrix(src: str, dst: str) -> None:
    res = Result.from_dict(FIXTURES[src])
    conv = res.convert(dst)
    out = conv.to_dict()
    assert out == res.to_dict(dst) == convert(copy.deepcopy(FIXTURES[src]), dst)
    assert out["cniVersion"] == dst == conv.cni_version
    assert conv.ip_addresses() == _expected_ips(src, dst)
    assert res.to_dict() == FIXTURES[src]  # the source is left alone
    keys = set(out)
    if FAMILY[dst] == "02":
        assert keys <= {"cniVersion", "ip4", "ip6", "dns"} and "dns" in keys
    else:
        assert keys <= {"cniVersion", "interfaces", "ips", "routes", "dns"}
        assert all(("version" in ip) == (FAMILY[dst] == "04") for ip in out.get("ips", []))
    # The DNS block always survives, whatever the path.
    assert out["dns"] == FIXTURES[src]["dns"]
    # Parsing what we printed gives the same thing back.
    assert Result.from_dict(out).to_dict() == out


@pytest.mark.parametrize("pair", [("0.1.0", "0.2.0"), ("0.2.0", "0.1.0"), ("1.0.0", "1.1.0"), ("1.1.0", "1.0.0"),
                                  ("0.3.0", "0.3.1"), ("0.3.1", "0.4.0"), ("0.4.0", "0.3.0")])
def test_same_family_changes_only_the_version(pair: tuple[str, str]) -> None:
    src, dst = pair
    data = copy.deepcopy(FIXTURES[src if src != "1.0.0" else "1.1.0"])
    data["cniVersion"] = src
    assert convert(data, dst) == {**data, "cniVersion": dst}


def test_0_1_and_0_2_keep_all_route_fields_between_them() -> None:
    route = {"dst": "0.0.0.0/0", "mtu": 1400, "table": 5}
    data = {"cniVersion": "0.1.0", "ip4": {"ip": "10.0.0.2/8", "routes": [route]}}
    assert convert(data, "0.2.0")["ip4"]["routes"] == [{"dst": "0.0.0.0/0", "mtu": 1400, "table": 5}]


def test_0_2_to_0_4_ip4_then_ip6_without_interface() -> None:
    data = _r02("0.2.0")
    data["ip4"]["routes"][0]["mtu"] = 1400  # libcni's shared Route type keeps it
    assert convert(data, "0.4.0") == {
        "cniVersion": "0.4.0",
        "ips": [
            {"version": "4", "address": "10.1.0.5/16", "gateway": "10.1.0.1"},
            {"version": "6", "address": "2001:db8:1::5/64"},
        ],
        "routes": [
            {"dst": "0.0.0.0/0", "mtu": 1400},
            {"dst": "192.168.0.0/16", "gw": "10.1.0.254"},
            {"dst": "::/0", "gw": "2001:db8:1::1"},
        ],
        "dns": {"nameservers": ["10.1.0.1"]},
    }


def test_0_2_to_1_1() -> None:
    assert convert(_r02("0.1.0"), "1.1.0") == {
        "cniVersion": "1.1.0",
        "ips": [{"address": "10.1.0.5/16", "gateway": "10.1.0.1"}, {"address": "2001:db8:1::5/64"}],
        "routes": [{"dst": "0.0.0.0/0"}, {"dst": "192.168.0.0/16", "gw": "10.1.0.254"},
                   {"dst": "::/0", "gw": "2001:db8:1::1"}],
        "dns": {"nameservers": ["10.1.0.1"]},
    }


def test_0_4_to_1_0_drops_ips_version() -> None:
    out = convert(_r04("0.4.0"), "1.0.0")
    assert out["ips"] == [
        {"interface": 1, "address": "10.1.0.5/16", "gateway": "10.1.0.1"},
        {"interface": 1, "address": "2001:db8:1::5/64", "gateway": "2001:db8:1::1"},
    ]
    assert out["interfaces"] == _r04("0.4.0")["interfaces"]


def test_1_1_to_0_4_rederives_version_and_drops_interface_extras() -> None:
    assert convert(R110, "0.4.0") == {
        "cniVersion": "0.4.0",
        "interfaces": [
            {"name": "cni0", "mac": "00:11:22:33:44:55"},
            {"name": "veth3243", "mac": "55:44:33:22:11:11"},
            {"name": "eth0", "mac": "99:88:77:66:55:44", "sandbox": "/var/run/netns/blue"},
        ],
        "ips": [
            {"version": "4", "interface": 2, "address": "10.1.0.5/16", "gateway": "10.1.0.1"},
            {"version": "6", "interface": 2, "address": "2001:db8:1::5/64", "gateway": "2001:db8:1::1"},
            {"version": "4", "interface": 0, "address": "10.2.0.7/24"},
        ],
        # libcni copies routes whole into 0.3/0.4 (one shared Route type).
        "routes": R110["routes"],
        "dns": DNS_FULL,
    }


def test_1_1_to_0_2_first_ip_of_each_family_and_routes_split() -> None:
    assert convert(R110, "0.2.0") == {
        "cniVersion": "0.2.0",
        "ip4": {
            "ip": "10.1.0.5/16",
            "gateway": "10.1.0.1",
            "routes": [{"dst": "0.0.0.0/0"}, {"dst": "192.168.0.0/16", "gw": "10.1.0.254"}],
        },
        "ip6": {
            "ip": "2001:db8:1::5/64",
            "gateway": "2001:db8:1::1",
            "routes": [{"dst": "::/0", "gw": "2001:db8:1::1"}],
        },
        "dns": DNS_FULL,
    }


def test_to_0_2_drops_routes_of_a_family_without_ip() -> None:
    data = {"cniVersion": "1.0.0", "ips": [{"address": "10.0.0.2/8"}, {"address": "10.0.0.3/8"}],
            "routes": [{"dst": "::/0"}, {"dst": "10.9.0.0/16", "gw": "10.0.0.1"}]}
    assert convert(data, "0.1.0") == {
        "cniVersion": "0.1.0",
        "ip4": {"ip": "10.0.0.2/8", "routes": [{"dst": "10.9.0.0/16", "gw": "10.0.0.1"}]},
        "dns": {},
    }


def test_v6_only_result_to_0_2() -> None:
    data = {"cniVersion": "1.1.0", "ips": [{"address": "fd00:1::9/64", "gateway": "fd00:1::1"}],
            "routes": [{"dst": "::/0"}]}
    assert convert(data, "0.2.0") == {
        "cniVersion": "0.2.0",
        "ip6": {"ip": "fd00:1::9/64", "gateway": "fd00:1::1", "routes": [{"dst": "::/0"}]},
        "dns": {},
    }


@pytest.mark.parametrize("src", ["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"])
@pytest.mark.parametrize("dst", ["0.1.0", "0.2.0"])
def test_no_ip_cannot_go_to_0_2(src: str, dst: str) -> None:
    data = {"cniVersion": src, "interfaces": [{"name": "eth0"}], "dns": {"nameservers": ["10.0.0.1"]}}
    with pytest.raises(CNIError, match="cannot convert: no valid IP addresses") as exc:
        convert(data, dst)
    assert exc.value.code == 1


def test_0_2_without_ip_stays_convertible_within_0_x_family() -> None:
    # libcni's 0.1 <-> 0.2 converter is a plain copy: no IP check there.
    assert convert({"cniVersion": "0.2.0"}, "0.1.0") == {"cniVersion": "0.1.0", "dns": {}}
    assert convert({"cniVersion": "0.2.0"}, "1.0.0") == {"cniVersion": "1.0.0"}


def test_empty_target_version_means_0_1_0_like_libcni() -> None:
    assert Result.from_dict(R100).convert("").cni_version == "0.1.0"


@pytest.mark.parametrize(
    "path",
    [
        ["1.1.0", "1.0.0", "1.1.0"],
        ["0.4.0", "1.1.0", "0.4.0"],
        ["0.3.0", "0.4.0", "1.0.0", "0.3.1", "0.3.0"],
        ["0.2.0", "0.4.0", "0.2.0"],
        ["0.1.0", "1.1.0", "0.3.0", "0.2.0", "0.1.0"],
        ["1.0.0", "0.4.0", "1.0.0"],
    ],
)
def test_lossless_round_trips(path: list[str]) -> None:
    data = FIXTURES[path[0]]
    res = Result.from_dict(data)
    for v in path[1:]:
        res = Result.from_dict(res.to_dict(v))
    assert res.to_dict() == data


def test_lossy_round_trips_lose_what_libcni_loses() -> None:
    back = Result.from_dict(R110).convert("0.4.0").convert("1.1.0")
    assert back.interfaces[2] == Interface("eth0", "99:88:77:66:55:44", "/var/run/netns/blue")
    assert back.routes == Result.from_dict(R110).routes
    via02 = Result.from_dict(R110).convert("0.2.0").convert("1.1.0").to_dict()
    assert via02["ips"] == [{"address": "10.1.0.5/16", "gateway": "10.1.0.1"},
                            {"address": "2001:db8:1::5/64", "gateway": "2001:db8:1::1"}]
    assert via02["routes"][0] == {"dst": "0.0.0.0/0"}  # mtu, advmss... gone on the way through 0.2
    assert "interfaces" not in via02


# --- JSON shapes --------------------------------------------------------------


def test_dns_is_omitted_when_empty_in_1_x_but_printed_in_0_x() -> None:
    res = Result("1.1.0", ips=[IPConfig("10.0.0.2/8")])
    assert "dns" not in res.to_dict()
    assert "dns" not in res.to_dict("1.0.0")
    for v in ("0.4.0", "0.3.1", "0.3.0", "0.2.0", "0.1.0"):
        assert res.to_dict(v)["dns"] == {}
    assert '"dns": {}' in res.to_json("0.4.0")


def test_empty_values_are_omitted() -> None:
    res = Result("1.1.0", interfaces=[Interface("eth0")], ips=[IPConfig("10.0.0.2/8", interface=0)],
                 routes=[Route("0.0.0.0/0")], dns=DNS(domain="x"))
    assert res.to_dict() == {
        "cniVersion": "1.1.0",
        "dns": {"domain": "x"},
        "interfaces": [{"name": "eth0"}],
        "ips": [{"address": "10.0.0.2/8", "interface": 0}],
        "routes": [{"dst": "0.0.0.0/0"}],
    }
    assert Result("0.3.0").to_dict() == {"cniVersion": "0.3.0", "dns": {}}
    assert Result("1.0.0").to_dict() == {"cniVersion": "1.0.0"}


def test_interface_index_zero_and_route_table_zero_are_printed() -> None:
    out = Result.from_dict(R110).to_dict("0.3.1")
    assert out["ips"][2] == {"version": "4", "interface": 0, "address": "10.2.0.7/24"}
    assert out["routes"][0]["table"] == 0 and out["routes"][0]["scope"] == 0


def test_key_order_matches_libcni() -> None:
    # 0.x follow the Go struct order; 1.x go through a Go map, hence sorted.
    out04 = Result.from_dict(R110).to_dict("0.4.0")
    assert list(out04) == ["cniVersion", "interfaces", "ips", "routes", "dns"]
    assert list(out04["ips"][0]) == ["version", "interface", "address", "gateway"]
    assert list(out04["dns"]) == ["nameservers", "domain", "search", "options"]
    out02 = Result.from_dict(R110).to_dict("0.2.0")
    assert list(out02) == ["cniVersion", "ip4", "ip6", "dns"]
    assert list(out02["ip4"]) == ["ip", "gateway", "routes"]
    out11 = Result.from_dict(R110).to_dict()
    assert list(out11) == ["cniVersion", "dns", "interfaces", "ips", "routes"]
    assert list(out11["interfaces"][2]) == sorted(out11["interfaces"][2])
    assert list(out11["routes"][0]) == ["advmss", "dst", "mtu", "priority", "scope", "table"]


def test_to_json_is_indented_and_html_safe_like_go() -> None:
    res = Result("1.0.0", dns=DNS(domain="a<b>&c"))
    text = res.to_json()
    assert text.startswith('{\n    "cniVersion": "1.0.0",')
    assert '"a\\u003cb\\u003e\\u0026c"' in text
    assert json.loads(text)["dns"]["domain"] == "a<b>&c"


# --- addresses and IPv6 -------------------------------------------------------


def test_addresses_keep_host_bits_and_are_canonical() -> None:
    data = {"cniVersion": "1.0.0", "ips": [{"address": "2001:DB8:0:0:0::5/64", "gateway": "2001:0db8::1"},
                                           {"address": "10.1.0.5/024"}],
            "routes": [{"dst": "10.9.8.7/16", "gw": "10.1.0.1"}, {"dst": "FD00::/8"}]}
    res = Result.from_dict(data)
    assert res.ip_addresses() == ["2001:db8::5/64", "10.1.0.5/24"]
    out = res.to_dict()
    assert out["ips"][0]["gateway"] == "2001:db8::1"
    assert [r["dst"] for r in out["routes"]] == ["10.9.8.7/16", "fd00::/8"]


def test_built_model_is_checked_when_printed() -> None:
    with pytest.raises(CNIError, match=r"ips\[0\]\.address") as exc:
        Result("1.0.0", ips=[IPConfig("nonsense")]).to_dict()
    assert exc.value.code == 6


# --- malformed input ------------------------------------------------------------


def _with(base: dict, **changes: object) -> dict:
    out = copy.deepcopy(base)
    out.update(changes)
    return out


BAD = [
    (_with(R100, ips=[{"address": "10.1.0.5"}]), r"ips\[0\]\.address"),
    (_with(R100, ips=[{"address": "10.1.0.300/24"}]), r"ips\[0\]\.address"),
    (_with(R100, ips=[{"address": "10.1.0.5/33"}]), r"ips\[0\]\.address"),
    (_with(R100, ips=[{"address": "10.1.0.5/255.255.0.0"}]), r"ips\[0\]\.address"),
    (_with(R100, ips=[{"address": "fe80::1%eth0/64"}]), r"ips\[0\]\.address"),
    (_with(R100, ips=[{"address": 167837701}]), r"ips\[0\]\.address"),
    (_with(R100, ips=[{"gateway": "10.0.0.1"}]), r"ips\[0\]\.address: missing"),
    (_with(R100, ips=[{"address": "10.0.0.2/8", "gateway": "10.0.0"}]), r"ips\[0\]\.gateway"),
    (_with(R100, ips=[{"address": "10.0.0.2/8", "interface": "0"}]), r"ips\[0\]\.interface"),
    (_with(R100, ips={"address": "10.0.0.2/8"}), r"ips: expected an array"),
    (_with(R100, ips=["10.0.0.2/8"]), r"ips\[0\]: expected an object"),
    (_with(R110, interfaces=[{"name": "eth0", "mtu": 1500.5}]), r"interfaces\[0\]\.mtu"),
    (_with(R110, interfaces=[{"name": "eth0", "mtu": True}]), r"interfaces\[0\]\.mtu"),
    (_with(R110, interfaces=[{"name": 7}]), r"interfaces\[0\]\.name"),
    (_with(R110, routes=[{"gw": "10.0.0.1"}]), r"routes\[0\]\.dst: missing"),
    (_with(R110, routes=[{"dst": "default"}]), r"routes\[0\]\.dst"),
    (_with(R110, routes=[{"dst": "0.0.0.0/0", "gw": "::g"}]), r"routes\[0\]\.gw"),
    (_with(R110, routes=[{"dst": "0.0.0.0/0", "table": "main"}]), r"routes\[0\]\.table"),
    (_with(R110, dns={"nameservers": "10.0.0.1"}), r"dns\.nameservers"),
    (_with(R110, dns={"search": ["a", 1]}), r"dns\.search\[1\]"),
    (_with(R110, dns=[]), r"dns: expected an object"),
    (_with(_r04("0.4.0"), ips=[{"version": "4", "address": "fd00::1/64"}]), r"ips\[0\]\.version"),
    (_with(_r04("0.4.0"), ips=[{"version": 4, "address": "10.0.0.1/8"}]), r"ips\[0\]\.version"),
    (_with(_r02("0.2.0"), ip4={"ip": "fd00::1/64"}), r"ip4\.ip"),
    (_with(_r02("0.2.0"), ip6={"ip": "fd00::1/64", "routes": [{"dst": "0.0.0.0/0"}]}), r"ip6\.routes\[0\]\.dst"),
    (_with(_r02("0.2.0"), ip4={"gateway": "10.0.0.1"}), r"ip4\.ip: missing"),
    (_with(_r02("0.2.0"), ip4="10.0.0.1/8"), r"ip4: expected an object"),
    (_with(R100, cniVersion=1.0), r"cniVersion: expected a string"),
    (["not", "an", "object"], r"result: expected an object"),
]


@pytest.mark.parametrize("data,where", BAD)
def test_malformed_input_is_a_decoding_error_naming_the_field(data: object, where: str) -> None:
    with pytest.raises(CNIError, match=where) as exc:
        Result.from_dict(data)  # type: ignore[arg-type]
    assert exc.value.code == 6
    assert not isinstance(exc.value, VersionError)


@pytest.mark.parametrize("raw", ["{", '{"cniVersion": "1.0.0", "dns": {"domain": NaN}}', b"\xff\xfe{", ""])
def test_bad_json_is_a_decoding_error(raw: str | bytes) -> None:
    with pytest.raises(CNIError, match="not valid JSON") as exc:
        Result.from_json(raw)
    assert exc.value.code == 6


@pytest.mark.parametrize("ver", ["0.5.0", "2.0.0", "1.1", "latest"])
def test_unknown_result_version_is_a_version_error(ver: str) -> None:
    with pytest.raises(VersionError, match="cniVersion") as exc:
        Result.from_dict({"cniVersion": ver})
    assert exc.value.code == 1
    with pytest.raises(VersionError):
        Result.from_dict({}, ver)


@pytest.mark.parametrize("ver", ["0.5.0", "9.9.9", "x"])
def test_unknown_target_version_is_a_version_error(ver: str) -> None:
    with pytest.raises(VersionError, match="target version") as exc:
        convert(R100, ver)
    assert exc.value.code == 1
