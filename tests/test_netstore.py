"""Compose `networks:` -> CNI conflists, and located errors (issue 5).

Unit tests: nothing touches the host's network; host routes are given to the
planner explicitly except in the test that proves real routes are consulted.
Address plan unique to this file: 10.151.0.0/16.
"""
from __future__ import annotations

import ipaddress
import json
import subprocess
from pathlib import Path

import pytest

from cnirun.netstore.hostnet import HostRoute
from cnirun.netstore.located import ComposeError, parse
from cnirun.netstore.network_spec import parse_networks_section
from cnirun.netstore.networks import Planner, auto_bridge_name, load_networks_file
from cnirun.cni.config import conflist_from_bytes

POOL = "10.151.0.0/16"


@pytest.fixture(autouse=True)
def private_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NETCONFPATH", str(tmp_path / "net.d"))
    monkeypatch.setenv("CNI_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("CNIRUN_SUBNET_POOL", POOL)
    monkeypatch.delenv("CNIRUN_IPAM_DATA_DIR", raising=False)


def convert(text: str, existing: list | None = None, routes: list | None = None) -> dict[str, dict]:
    doc = parse(text, "net.yaml")
    specs = parse_networks_section(doc, doc.data["networks"])
    planner = Planner(existing or [], routes=routes if routes is not None else [])
    return {s.name: planner.conflist(s) for s in specs}


def plugin(conf: dict, ptype: str) -> dict:
    return next(p for p in conf["plugins"] if p["type"] == ptype)


def error_of(text: str, **kw) -> str:
    with pytest.raises(ComposeError) as e:
        convert(text, **kw)
    return str(e.value)


# -- conversion of each key ----------------------------------------------------------

def test_bridge_default_chain() -> None:
    conf = convert("networks:\n  web: {}\n")["web"]
    assert [p["type"] for p in conf["plugins"]] == ["bridge", "portmap", "firewall", "tuning", "bandwidth",
                                                     "cnirun-policy"]
    br = plugin(conf, "bridge")
    assert br["isGateway"] is True and br["ipMasq"] is True and br["hairpinMode"] is True
    assert br["bridge"] == auto_bridge_name("web") and len(br["bridge"]) <= 15
    assert br["ipam"]["type"] == "host-local"
    assert br["ipam"]["ranges"] == [[{"subnet": "10.151.0.0/24"}]]
    assert br["ipam"]["routes"] == [{"dst": "0.0.0.0/0"}]
    assert plugin(conf, "portmap")["capabilities"] == {"portMappings": True}
    assert conf["cniVersion"] == "1.0.0" and conf["cnirun"]["bridge"] == br["bridge"]
    conflist_from_bytes(json.dumps(conf).encode())  # loadable by the runtime


def test_internal_has_no_gateway_nat_portmap_or_default_route() -> None:
    conf = convert("networks:\n  db:\n    internal: true\n")["db"]
    br = plugin(conf, "bridge")
    assert br["isGateway"] is False and br["ipMasq"] is False
    assert "routes" not in br["ipam"]
    assert "portmap" not in [p["type"] for p in conf["plugins"]]


def test_driver_opts_bridge() -> None:
    conf = convert("""networks:
  n:
    driver: bridge
    driver_opts:
      com.docker.network.bridge.name: t151br0
      com.docker.network.driver.mtu: "1400"
      com.docker.network.bridge.enable_ip_masquerade: "false"
      com.docker.network.bridge.enable_icc: "true"
""")["n"]
    br = plugin(conf, "bridge")
    assert br["bridge"] == "t151br0" and br["mtu"] == 1400 and br["ipMasq"] is False and br["isGateway"] is True
    assert "isolation" not in [p["type"] for p in conf["plugins"]]


def test_enable_icc_false_and_isolate_in_the_chain() -> None:
    """enable_icc=false: cnirun's isolation plugin after the firewall; x-cni isolate: the firewall's ingressPolicy."""
    conf = convert("networks:\n  n:\n    driver_opts:\n      com.docker.network.bridge.enable_icc: 'false'\n"
                   "    x-cni: {isolate: same-bridge}\n")["n"]
    assert [p["type"] for p in conf["plugins"]] == ["bridge", "portmap", "firewall", "isolation", "tuning",
                                                     "bandwidth", "cnirun-policy"]
    assert plugin(conf, "firewall") == {"type": "firewall", "ingressPolicy": "same-bridge"}
    assert conf["cnirun"]["isolated"] is True
    assert convert("networks:\n  n:\n    x-cni: {isolate: none}\n")["n"]["cnirun"]["isolated"] is False


def test_x_cni_dns_outside_names() -> None:
    """x-cni dns_outside_names: true lets the network's resolver answer dotted names (cnirun.dns.netconf.outside_names);
    off by default; a value that is not a boolean is one error naming the key."""
    from cnirun.cni.config import conflist_from_bytes
    from cnirun.dns.netconf import outside_names

    on = convert("networks:\n  n:\n    x-cni: {dns_outside_names: true}\n")["n"]
    off = convert("networks:\n  n: {}\n")["n"]
    assert on["cnirun"]["dnsOutsideNames"] is True and "dnsOutsideNames" not in off["cnirun"]
    assert outside_names(conflist_from_bytes(json.dumps(on).encode()))
    assert not outside_names(conflist_from_bytes(json.dumps(off).encode()))
    assert "dns_outside_names: expected true or false" in error_of(
        "networks:\n  n:\n    x-cni: {dns_outside_names: 'yes'}\n")


def test_ipam_config_subnet_gateway_range_aux() -> None:
    conf = convert("""networks:
  n:
    ipam:
      driver: default
      config:
        - subnet: 10.151.4.0/24
          gateway: 10.151.4.254
          ip_range: 10.151.4.0/25
          aux_addresses:
            router: 10.151.4.10
""")["n"]
    ranges = plugin(conf, "bridge")["ipam"]["ranges"]
    assert ranges == [[
        {"subnet": "10.151.4.0/24", "gateway": "10.151.4.254", "rangeStart": "10.151.4.1", "rangeEnd": "10.151.4.9"},
        {"subnet": "10.151.4.0/24", "gateway": "10.151.4.254", "rangeStart": "10.151.4.11", "rangeEnd": "10.151.4.127"},
    ]]


def test_ipv6() -> None:
    conf = convert("""networks:
  n:
    enable_ipv6: true
    ipam:
      config:
        - subnet: 10.151.5.0/24
        - subnet: fd00:151::/64
""")["n"]
    ipam = plugin(conf, "bridge")["ipam"]
    assert ipam["ranges"] == [[{"subnet": "10.151.5.0/24"}], [{"subnet": "fd00:151::/64"}]]
    assert ipam["routes"] == [{"dst": "0.0.0.0/0"}, {"dst": "::/0"}]


def test_macvlan_and_ipvlan() -> None:
    confs = convert("""networks:
  mv:
    driver: macvlan
    driver_opts: {parent: eth9, macvlan_mode: private, com.docker.network.driver.mtu: 1300}
    ipam: {config: [{subnet: 10.151.6.0/24, gateway: 10.151.6.1}]}
  iv:
    driver: ipvlan
    driver_opts: {parent: eth9, ipvlan_mode: l3}
""")
    mv = plugin(confs["mv"], "macvlan")
    assert mv["master"] == "eth9" and mv["mode"] == "private" and mv["mtu"] == 1300
    assert mv["ipam"]["ranges"] == [[{"subnet": "10.151.6.0/24", "gateway": "10.151.6.1"}]]
    iv = plugin(confs["iv"], "ipvlan")
    assert iv["master"] == "eth9" and iv["mode"] == "l3" and iv["ipam"]["type"] == "host-local"
    assert "cnirun" in confs["iv"] and "bridge" not in confs["iv"]["cnirun"]


def test_labels_name_and_external() -> None:
    confs = convert("""networks:
  a:
    name: custom-name
    labels: {team: blue}
  b:
    labels: [x=1, y]
""")
    assert confs["custom-name"]["cnirun"]["labels"] == {"team": "blue"}
    assert confs["b"]["cnirun"]["labels"] == {"x": "1", "y": ""}
    doc = parse("networks:\n  e: {external: true}\n  f: {external: {name: real}}\n", "f.yaml")
    specs = parse_networks_section(doc, doc.data["networks"], project="proj")
    assert [(s.name, s.external) for s in specs] == [("e", True), ("real", True)]
    doc = parse("networks:\n  g: {}\n", "f.yaml")
    assert parse_networks_section(doc, doc.data["networks"], project="proj")[0].name == "proj_g"


def test_x_cni_replace_and_append() -> None:
    confs = convert("""networks:
  raw:
    x-cni:
      cniVersion: 0.4.0
      plugins:
        - type: loopback
  more:
    x-cni:
      append:
        - {type: bandwidth, capabilities: {bandwidth: true}}
""")
    assert confs["raw"]["plugins"] == [{"type": "loopback"}] and confs["raw"]["cniVersion"] == "0.4.0"
    assert [p["type"] for p in confs["more"]["plugins"]][-1] == "bandwidth"


def test_two_networks_never_share_bridge_or_subnet() -> None:
    confs = convert("networks:\n  a: {}\n  b: {}\n  c: {}\n")
    bridges = {plugin(c, "bridge")["bridge"] for c in confs.values()}
    subnets = [ipaddress.ip_network(plugin(c, "bridge")["ipam"]["ranges"][0][0]["subnet"]) for c in confs.values()]
    assert len(bridges) == 3
    assert all(not x.overlaps(y) for i, x in enumerate(subnets) for y in subnets[i + 1:])


def test_auto_subnet_skips_existing_conflists_and_routes() -> None:
    existing = conflist_from_bytes(json.dumps(convert("networks:\n  old: {}\n")["old"]).encode())
    routes = [HostRoute(ipaddress.ip_network("10.151.1.0/24"), "eth7")]
    conf = convert("networks:\n  new: {}\n", existing=[existing], routes=routes)["new"]
    assert plugin(conf, "bridge")["ipam"]["ranges"][0][0]["subnet"] == "10.151.2.0/24"


def test_explicit_subnet_overlapping_network_or_route_is_refused() -> None:
    existing = conflist_from_bytes(json.dumps(convert(
        "networks:\n  old: {ipam: {config: [{subnet: 10.151.8.0/24}]}}\n")["old"]).encode(), "/x/old.conflist")
    msg = error_of("networks:\n  n:\n    ipam:\n      config:\n        - subnet: 10.151.8.128/25\n",
                   existing=[existing])
    assert msg.startswith("net.yaml:5: networks.n.ipam.config[0].subnet: subnet 10.151.8.128/25 overlaps")
    assert 'network "old"' in msg
    routes = [HostRoute(ipaddress.ip_network("10.151.9.0/24"), "eth7")]
    msg = error_of("networks:\n  n:\n    ipam: {config: [{subnet: 10.151.9.0/25}]}\n", routes=routes)
    assert "the host routes 10.151.9.0/24 via eth7" in msg
    # The network's own bridge (already running) is not a conflict.
    routes = [HostRoute(ipaddress.ip_network("10.151.9.0/24"), auto_bridge_name("n"))]
    convert("networks:\n  n:\n    ipam: {config: [{subnet: 10.151.9.0/24}]}\n", routes=routes)


def test_real_host_route_is_refused() -> None:
    out = json.loads(subprocess.run(["ip", "-j", "-4", "route"], capture_output=True, text=True).stdout or "[]")
    dsts = [r["dst"] for r in out if r.get("dst") not in (None, "default") and "/" in r["dst"]]
    if not dsts:
        pytest.skip("no IPv4 host route with a prefix on this machine")
    doc = parse(f"networks:\n  n:\n    ipam: {{config: [{{subnet: {dsts[0]}}}]}}\n", "r.yaml")
    spec = parse_networks_section(doc, doc.data["networks"])[0]
    with pytest.raises(ComposeError, match="the host routes"):
        Planner([]).conflist(spec)


def test_load_networks_file(tmp_path: Path) -> None:
    f = tmp_path / "nets.yaml"
    f.write_text("networks:\n  one: {}\n  two: {internal: true}\n  ext: {external: true}\n")
    nets = load_networks_file(f)
    assert [n.name for n in nets] == ["one", "two"]
    assert nets[0].types == ["bridge", "portmap", "firewall", "tuning", "bandwidth", "cnirun-policy"]
    assert not Path(tmp_path / "net.d").exists()  # nothing installed


# -- located errors ------------------------------------------------------------------

@pytest.mark.parametrize("text, expected", [
    ("networks:\n  a: {driver: [x]}\n", "net.yaml:2: networks.a.driver: expected a driver name, got a list"),
    ("networks:\n  a:\n    driver: overlay\n", "net.yaml:3: networks.a.driver: driver 'overlay' is not supported"),
    ("networks:\n  a:\n    internal: maybe\n", "net.yaml:3: networks.a.internal: expected true or false"),
    ("networks:\n  a:\n    colour: red\n", "net.yaml:3: networks.a.colour: unknown key: expected one of"),
    ("networks:\n  a:\n    attachable: true\n", "net.yaml:3: networks.a.attachable: not supported by cnirun"),
    ("networks:\n  a:\n    ipam:\n      config: {subnet: 10.151.0.0/24}\n",
     "net.yaml:4: networks.a.ipam.config: expected a list of subnet entries, got a mapping"),
    ("networks:\n  a:\n    ipam:\n      config:\n        - subnet: banana\n",
     "net.yaml:5: networks.a.ipam.config[0].subnet: invalid subnet 'banana'"),
    ("networks:\n  a:\n    ipam:\n      config:\n        - subnet: 10.151.3.0/24\n          gateway: 10.9.9.9\n",
     "net.yaml:6: networks.a.ipam.config[0].gateway: 10.9.9.9 is outside the subnet 10.151.3.0/24"),
    ("networks:\n  a:\n    ipam:\n      config:\n        - subnet: 10.151.3.0/24\n          ip_range: 10.151.4.0/25\n",
     "net.yaml:6: networks.a.ipam.config[0].ip_range: ip_range 10.151.4.0/25 is not inside"),
    ("networks:\n  a:\n    driver_opts:\n      com.docker.network.bridge.enable_icc: 'maybe'\n",
     "net.yaml:4: networks.a.driver_opts.com.docker.network.bridge.enable_icc: expected true or false"),
    ("networks:\n  a:\n    driver: macvlan\n    x-cni: {isolate: same-bridge}\n",
     "net.yaml:4: networks.a.x-cni.isolate: isolation between networks needs a generated bridge network"),
    ("networks:\n  a:\n    driver_opts:\n      com.docker.network.bridge.name: much-too-long-bridge\n",
     "invalid bridge name 'much-too-long-bridge'"),
    ("networks:\n  a:\n    driver: macvlan\n    driver_opts: {macvlan_mode: weird}\n",
     "net.yaml:4: networks.a.driver_opts.macvlan_mode: invalid macvlan_mode 'weird'"),
    ("networks:\n  a:\n    external: true\n    driver: bridge\n", "net.yaml:4: networks.a.driver: an external network"),
    ("networks:\n  a:\n    x-cni: {plugins: [{cniVersion: 1}]}\n", "networks.a.x-cni.plugins[0].type: every plugin needs a type"),
    ("networks:\n  a:\n    x-cni: {plugins: [{type: loopback}]}\n    internal: true\n",
     "net.yaml:4: networks.a.internal: x-cni.plugins replaces the generated chain"),
    ("networks:\n  a: {}\n  a: {}\n", "net.yaml:3: networks.a: duplicate key (first at line 2)"),
    ("networks:\n  a:\n    name: 'bad name'\n", "net.yaml:3: networks.a.name: invalid network name 'bad name'"),
])
def test_located_errors(text: str, expected: str) -> None:
    assert expected in error_of(text)


def test_malformed_yaml_has_file_and_line() -> None:
    with pytest.raises(ComposeError) as e:
        parse("networks:\n  a:\n    driver: bridge\n   bad indent: [\n", "broken.yaml")
    assert str(e.value).startswith("broken.yaml:4: invalid YAML:")


def test_file_errors(tmp_path: Path) -> None:
    with pytest.raises(ComposeError, match="no such file"):
        load_networks_file(tmp_path / "missing.yaml")
    f = tmp_path / "n.yaml"
    f.write_text("services: {}\n")
    with pytest.raises(ComposeError, match="no top-level networks"):
        load_networks_file(f)
