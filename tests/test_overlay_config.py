"""Issue #15 without root: subnet arithmetic, lease encoding, subnet.env, the flannel plugin's config building."""
from __future__ import annotations

import ipaddress
import json
import os
import random
from pathlib import Path
from typing import Any

import pytest

from cnirun.core.errors import CNIError
from cnirun.overlay import config, lease, subnet_env
from cnirun.overlay.errors import OverlayError
from cnirun.overlay.etcd import parse_url, prefix_end
from cnirun.plugins import flannel, install_plugin_script, noop


# -- config -----------------------------------------------------------------------------
def test_flannel_defaults() -> None:
    cfg = config.from_dict({"Network": "10.5.0.0/16"})
    assert cfg.subnet_len == 24 and cfg.vni == 1 and cfg.port == 8472 and cfg.device_name == "flannel.1"
    assert str(cfg.subnet_min) == "10.5.1.0" and str(cfg.subnet_max) == "10.5.255.0"  # first subnet skipped
    assert cfg.capacity() == 255
    assert cfg.to_dict() == {"Network": "10.5.0.0/16", "SubnetLen": 24, "Backend": {"Type": "vxlan", "VNI": 1, "Port": 8472}}
    # a small network: two bits more than the network (flannel's rule)
    assert config.from_dict({"Network": "10.5.0.0/23"}).subnet_len == 25


def test_subnets_and_keys() -> None:
    cfg = config.build("10.172.0.0/22", 24)
    assert [str(s) for s in cfg.subnets()] == ["10.172.1.0/24", "10.172.2.0/24", "10.172.3.0/24"]
    s = ipaddress.IPv4Network("10.172.2.0/24")
    assert config.subnet_key(s) == "10.172.2.0-24"
    assert config.parse_subnet_key("/coreos.com/network/subnets/10.172.2.0-24") == s
    assert config.parse_subnet_key("/coreos.com/network/subnets/garbage") is None
    assert cfg.contains(s) and not cfg.contains(ipaddress.IPv4Network("10.172.0.0/24"))
    assert str(config.gateway(s)) == "10.172.2.1/24"
    explicit = config.from_dict({"Network": "10.172.0.0/16", "SubnetMin": "10.172.10.0", "SubnetMax": "10.172.19.0"})
    assert explicit.capacity() == 10 and explicit.to_dict()["SubnetMin"] == "10.172.10.0"
    assert config.build("10.172.0.0/16").same_as(config.from_json(config.build("10.172.0.0/16").to_json()))
    assert not config.build("10.172.0.0/16").same_as(config.build("10.172.0.0/16", vni=2))


@pytest.mark.parametrize(
    "obj, words",
    [
        ({"Network": "10.172.0.0/24", "SubnetLen": 24}, "cannot hold"),
        ({"Network": "10.172.0.0/16", "SubnetMin": "10.172.5.0", "SubnetMax": "10.172.4.0"}, "holds no /24 subnet"),
        ({"Network": "nope"}, "not an IPv4 CIDR"),
        ({}, '"Network"'),
        ({"Network": "10.172.0.0/16", "SubnetLen": 31}, "at most 30"),
        ({"Network": "10.172.0.0/16", "Backend": {"Type": "host-gw"}}, "vxlan backend only"),
        ({"Network": "10.172.0.0/16", "Backend": {"Type": "vxlan", "VNI": 1 << 24}}, "VNI"),
        ({"Network": "10.172.0.0/16", "Backend": {"Type": "vxlan", "Port": 70000}}, "Port"),
        ({"Network": "10.172.0.0/16", "Backend": {"Type": "vxlan", "DirectRouting": True}}, "DirectRouting"),
        ({"Network": "10.172.0.0/16", "SubnetMin": "10.172.1.7"}, "start of a /24"),
        ({"IPv6Network": "fd00::/48", "EnableIPv6": True}, "IPv6"),
    ],
)
def test_bad_configs_say_what_is_wrong(obj: dict, words: str) -> None:
    with pytest.raises(OverlayError) as e:
        config.from_dict(obj)
    assert words in str(e.value) and "\n" not in str(e.value)


def test_etcd_urls() -> None:
    assert parse_url("http://127.0.0.1:2379") == ("http", "127.0.0.1", 2379)
    assert parse_url("10.0.0.1:4001") == ("http", "10.0.0.1", 4001)
    assert prefix_end("/coreos.com/network/subnets/") == "/coreos.com/network/subnets0"
    with pytest.raises(OverlayError):
        parse_url("ftp://x")


def test_etcd_credentials_that_cannot_work_are_one_line_before_any_connection(tmp_path: Path) -> None:
    """TLS files over http://, a missing file, a certificate without its key, a user without a password and a
    password without a user: OverlayError naming the option, raised by Store() before it connects; the
    password is not in the credentials' repr."""
    from cnirun.overlay.etcd import Credentials, Store

    ca = tmp_path / "ca.crt"
    ca.write_text("x")
    cases = [
        ("http://127.0.0.1:1", Credentials(cafile=str(ca)), "--etcd-cafile needs an https:// --etcd URL"),
        ("https://127.0.0.1:1", Credentials(cafile=str(tmp_path / "nope")), "--etcd-cafile"),
        ("https://127.0.0.1:1", Credentials(certfile=str(ca)), "go together"),
        ("http://127.0.0.1:1", Credentials(username="u"), "needs a password"),
        ("http://127.0.0.1:1", Credentials(password="p"), "without --etcd-username"),
    ]
    for url, creds, words in cases:
        with pytest.raises(OverlayError) as e:
            Store(url, creds=creds)
        assert words in str(e.value) and "\n" not in str(e.value)
    assert "s3cr3t" not in repr(Credentials(username="u", password="s3cr3t"))  # never in a log or traceback


# -- lease values ---------------------------------------------------------------------------
def test_lease_value_is_flannels() -> None:
    a = lease.LeaseAttrs(ipaddress.IPv4Address("192.0.2.11"), "0e:11:22:33:44:55", 1)
    assert json.loads(a.encode()) == {"PublicIP": "192.0.2.11", "BackendType": "vxlan",
                                      "BackendData": {"VNI": 1, "VtepMAC": "0e:11:22:33:44:55"}}
    assert lease.decode(a.encode()) == a
    # what flanneld writes (extra fields, upper-case MAC) decodes too
    flanneld = b'{"PublicIP":"192.0.2.12","PublicIPv6":null,"BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"AE:1B:00:00:00:01"}}'
    assert lease.decode(flanneld).vtep_mac == "ae:1b:00:00:00:01"
    for bad in (b"nope", b"[]", b'{"PublicIP":"x"}', b'{"PublicIP":"192.0.2.1","BackendType":"vxlan","BackendData":{}}'):
        with pytest.raises(OverlayError):
            lease.decode(bad)


def _valid_lease_obj(rng: random.Random) -> dict[str, Any]:
    return {"PublicIP": f"192.0.2.{rng.randint(1, 254)}", "BackendType": "vxlan",
            "BackendData": {"VNI": 1, "VtepMAC": f"0e:00:00:00:00:{rng.randint(0, 255):02x}"}}


_ODD_VALUES: list[Any] = [None, True, False, 0, -1, 1 << 70, 1.5, float("1e308"), "", "x" * 300, "192.0.2.1 ",
                          "::1", "0e:00:00:00:00", "\u0000", [], ["192.0.2.1"], {}, {"a": 1}, "1" * 40]


def _malformed(rng: random.Random) -> bytes:
    """One lease value an attacker could write: mutated, mistyped, nested, huge or not JSON at all."""
    kind = rng.randrange(7)
    good = json.dumps(_valid_lease_obj(rng)).encode()
    if kind == 0:  # bytes flipped, cut or inserted
        b = bytearray(good)
        for _ in range(rng.randint(1, 6)):
            op, i = rng.randrange(3), rng.randrange(len(b))
            if op == 0:
                b[i] = rng.randrange(256)
            elif op == 1:
                del b[i:i + rng.randint(1, 8)]
            else:
                b[i:i] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 8)))
        return bytes(b)
    if kind == 1:  # one field given a value of the wrong type or range
        obj = _valid_lease_obj(rng)
        path = rng.choice([("PublicIP",), ("BackendType",), ("BackendData",), ("BackendData", "VNI"),
                           ("BackendData", "VtepMAC")])
        target = obj if len(path) == 1 else obj["BackendData"]
        target[path[-1]] = rng.choice(_ODD_VALUES)
        return json.dumps(obj).encode()
    if kind == 2:  # nesting deeper than the parser's recursion limit
        depth = rng.randint(900, 4000)
        return (rng.choice(["[", '{"a":']) * depth).encode()
    if kind == 3:  # too big
        obj = _valid_lease_obj(rng)
        obj["Pad"] = "x" * rng.randint(lease.MAX_VALUE_BYTES, 200_000)
        return json.dumps(obj).encode()
    if kind == 4:  # random bytes
        return bytes(rng.randrange(256) for _ in range(rng.randint(0, 200)))
    if kind == 5:  # a JSON value that is not an object
        return json.dumps(rng.choice(_ODD_VALUES)).encode()
    return json.dumps(_valid_lease_obj(rng)).encode("utf-16")  # JSON, but not in UTF-8


def test_lease_parser_fuzz_never_raises_anything_but_overlay_error() -> None:
    """5000 malformed lease values (fixed seed): each is OverlayError with one short line, or, when it
    still decodes, the result has exactly the types and ranges cnirun relies on; never another exception."""
    rng = random.Random(2312)
    decoded = refused = 0
    kinds_refused: set[str] = set()
    for _ in range(5000):
        value = _malformed(rng)
        try:
            attrs = lease.decode(value)
        except OverlayError as e:
            refused += 1
            msg = str(e)
            assert "\n" not in msg and len(msg) < 160, msg
            kinds_refused.add(msg.split(" ")[1] if msg.startswith("lease") else msg[:20])
            continue
        decoded += 1
        obj = json.loads(value)
        assert isinstance(obj["PublicIP"], str) and attrs.public_ip == ipaddress.IPv4Address(obj["PublicIP"])
        assert isinstance(attrs.backend_type, str) and isinstance(attrs.vni, int) and not isinstance(attrs.vni, bool)
        assert 0 <= attrs.vni < 1 << 24
        if attrs.backend_type == "vxlan":
            assert lease.normalize_mac(attrs.vtep_mac) == attrs.vtep_mac
    assert refused > 4000 and decoded > 0, (refused, decoded)
    assert {"value", "PublicIP", "BackendData.VNI"} <= kinds_refused, kinds_refused
    # Nesting as deep as the parser's recursion limit is refused before it is parsed.
    for value in (b"[" * 5000, b'{"a":' * 17, b'{"PublicIP": 167772161, "BackendType": "vxlan"}',
                  b'{"PublicIP": "192.0.2.1", "BackendType": "vxlan", "BackendData": {"VNI": 99999999999, "VtepMAC": "0e:00:00:00:00:01"}}',
                  b'{"PublicIP": "192.0.2.1", "BackendType": ["vxlan"]}', b"{" + b" " * 10_000 + b"}"):
        with pytest.raises(OverlayError):
            lease.decode(value)
    with pytest.raises(OverlayError, match="more than 16 JSON objects and lists"):
        lease.decode("[" * 4000)


def test_choose_peers_fuzz_programs_only_honest_leases() -> None:
    """3000 random keys and values (fixed seed) beside two honest hosts: choose_peers never raises,
    every accepted lease is a /24 of the network with unicast PublicIP/VtepMAC that are not this host's,
    and the honest hosts are always accepted (they came first)."""
    from cnirun.overlay import agent, registry
    from cnirun.overlay.etcd import KeyValue

    rng = random.Random(1223)
    cfg = config.build("10.172.0.0/16", 24)
    own_attrs = lease.LeaseAttrs(ipaddress.IPv4Address("10.171.0.11"), "0e:00:00:00:00:0b", 1)
    own = registry.Lease(ipaddress.IPv4Network("10.172.5.0/24"), own_attrs, own_attrs.encode(), create_revision=2)
    honest = [lease.LeaseAttrs(ipaddress.IPv4Address(f"10.171.0.{n}"), f"0e:00:00:00:00:{n:02x}", 1) for n in (12, 13)]
    honest_kvs = [KeyValue(f"{registry.SUBNETS_PREFIX}10.172.{n}.0-24", a.encode(), 3 + i, 0, 3 + i)
                  for i, (n, a) in enumerate(zip((6, 7), honest))]
    keys = ["10.172.6.5-32", "10.172.0.0-16", "10.172.5.0-25", "10.172.5.128-25", "10.99.0.0-24", "10.172.9.0-24",
            "10.172.9.7-24", "10.172.10.0-24", "garbage", "10.172.11.0-24/x", "10.172.12.0-23", "0.0.0.0-0"]
    strangers = 0
    reasons: set[str] = set()
    for round_ in range(300):
        kvs = list(honest_kvs)
        for i in range(10):
            obj = _valid_lease_obj(rng)
            roll = rng.randrange(6)
            if roll == 0:
                obj["BackendData"]["VtepMAC"] = rng.choice([honest[0].vtep_mac, own_attrs.vtep_mac, "01:00:5e:00:00:01",
                                                            "00:00:00:00:00:00", "ff:ff:ff:ff:ff:ff"])
            elif roll == 1:
                obj["PublicIP"] = rng.choice(["10.171.0.11", "127.0.0.1", "224.0.0.5", "0.0.0.0", "255.255.255.255",
                                              "10.172.9.9", "240.0.0.1", "0.1.2.3"])
            value = json.dumps(obj).encode() if roll < 4 else _malformed(rng)
            key = registry.SUBNETS_PREFIX + rng.choice(keys)
            kvs.append(KeyValue(key, value, 100 + round_ * 10 + i, 0, 100 + round_ * 10 + i))
        kvs.append(KeyValue(own.key, b'{"PublicIP": "192.0.2.99"}', 50, 0, 50))  # own key: never a peer
        rng.shuffle(kvs)
        accepted, rejected = agent.choose_peers(cfg, own, kvs)
        assert {str(s) for s in accepted} >= {"10.172.6.0/24", "10.172.7.0/24"}
        macs = {}
        for subnet, got in accepted.items():
            a = got.attrs
            assert subnet.prefixlen == 24 and subnet.subnet_of(cfg.network) and not subnet.overlaps(own.subnet)
            assert a.public_ip not in cfg.network and a.public_ip != own_attrs.public_ip
            assert not (a.public_ip.is_loopback or a.public_ip.is_multicast or a.public_ip.is_unspecified
                        or a.public_ip.is_reserved) and str(a.public_ip).split(".")[0] != "0"
            assert a.vtep_mac != own_attrs.vtep_mac and not int(a.vtep_mac[:2], 16) & 1 and a.vtep_mac != "00:00:00:00:00:00"
            assert a.vtep_mac not in macs and a.public_ip not in macs.values()  # one lease per host identity
            macs[a.vtep_mac] = a.public_ip
        assert own.key not in rejected and all("\n" not in why for why in rejected.values())
        strangers += len(accepted) - 2
        reasons.update(why.split(" ")[0] for why in rejected.values())
    assert strangers > 100, strangers  # well-formed leases of unknown hosts are programmed: the checks above ran
    assert {"PublicIP", "VtepMAC", "10.172.6.5/32", "10.172.0.0/16", "10.99.0.0/24", "lease", "the"} <= reasons, reasons


def test_vtep_mac_is_stable_and_local() -> None:
    ip = ipaddress.IPv4Address("192.0.2.11")
    mac = lease.vtep_mac_for(ip, 1)
    assert mac == lease.vtep_mac_for(ip, 1) != lease.vtep_mac_for(ip, 2)
    first = int(mac.split(":")[0], 16)
    assert first & 0x02 and not first & 0x01  # locally administered, unicast


# -- subnet.env ---------------------------------------------------------------------------------
def test_subnet_env_round_trip(tmp_path: Path) -> None:
    env = subnet_env.SubnetEnv(ipaddress.IPv4Network("10.172.0.0/16"), ipaddress.IPv4Interface("10.172.5.1/24"), 1450, False)
    path = tmp_path / "run" / "subnet.env"
    subnet_env.write(str(path), env)
    assert path.read_text() == "FLANNEL_NETWORK=10.172.0.0/16\nFLANNEL_SUBNET=10.172.5.1/24\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=false\n"
    assert subnet_env.read(str(path)) == env
    assert subnet_env.read_previous_subnet(str(path)) == ipaddress.IPv4Network("10.172.5.0/24")
    assert subnet_env.read_previous_subnet(str(tmp_path / "none")) is None
    path.write_text("FLANNEL_NETWORK=10.172.0.0/16\n")
    with pytest.raises(CNIError) as e:
        subnet_env.read(str(path))
    assert "FLANNEL_SUBNET, FLANNEL_MTU, FLANNEL_IPMASQ" in str(e.value)


# -- the flannel plugin's delegate ----------------------------------------------------------------
ENV = subnet_env.SubnetEnv(ipaddress.IPv4Network("10.172.0.0/16"), ipaddress.IPv4Interface("10.172.5.1/24"), 1450, False)


def test_delegate_as_flannel_builds_it() -> None:
    d = flannel.build_delegate({"cniVersion": "1.0.0", "name": "overlay", "type": "flannel"}, ENV)
    assert d == {
        "name": "overlay", "type": "bridge", "ipMasq": True, "mtu": 1450, "isGateway": True, "cniVersion": "1.0.0",
        "ipam": {"type": "host-local", "ranges": [[{"subnet": "10.172.5.0/24"}]], "routes": [{"dst": "10.172.0.0/16"}]},
    }
    masq = subnet_env.SubnetEnv(ENV.network, ENV.subnet, 1400, True)
    assert flannel.build_delegate({"name": "o"}, masq)["ipMasq"] is False


def test_delegate_overrides_and_ipam() -> None:
    conf = {"name": "o", "cniVersion": "0.4.0", "runtimeConfig": {"portMappings": []},
            "ipam": {"dataDir": "/tmp/x", "routes": [{"dst": "192.0.2.0/24"}]},
            "delegate": {"bridge": "cni1", "isGateway": False, "mtu": 1400, "hairpinMode": True}}
    d = flannel.build_delegate(conf, ENV)
    assert d["bridge"] == "cni1" and d["isGateway"] is False and d["mtu"] == 1400 and d["hairpinMode"] is True
    assert d["runtimeConfig"] == {"portMappings": []}
    assert d["ipam"]["dataDir"] == "/tmp/x"
    assert d["ipam"]["routes"] == [{"dst": "192.0.2.0/24"}, {"dst": "10.172.0.0/16"}]
    assert "isGateway" not in flannel.build_delegate({"name": "o", "delegate": {"type": "ipvlan"}}, ENV)
    for bad, words in (({"name": "x"}, "'name'"), ({"ipam": {}}, "'ipam'"), ({"type": 3}, "'type'")):
        with pytest.raises(CNIError) as e:
            flannel.build_delegate({"name": "o", "delegate": bad}, ENV)
        assert words in str(e.value)


def _plugin(tmp: Path, command: str, conf: dict) -> tuple[int, dict]:
    import io

    env = {"CNI_COMMAND": command, "CNI_CONTAINERID": "ctr1", "CNI_NETNS": str(tmp / "netns"), "CNI_IFNAME": "eth0",
           "CNI_PATH": str(tmp / "bin"), "PATH": os.environ.get("PATH", "")}
    out = io.StringIO()
    old = dict(os.environ)
    os.environ.update(env)  # the delegate is executed with this process's environment
    try:
        rc = flannel.main(environ=env, stdin=json.dumps(conf).encode(), stdout=out, stderr=io.StringIO())
    finally:
        os.environ.clear()
        os.environ.update(old)
    return rc, json.loads(out.getvalue() or "{}")


def test_plugin_add_del_through_a_recording_delegate(tmp_path: Path) -> None:
    install_plugin_script(tmp_path / "bin", "noop", "cnirun.plugins.noop")
    debug = tmp_path / "debug"
    noop.write_debug(debug)
    (tmp_path / "netns").write_text("")
    subnet_env.write(str(tmp_path / "subnet.env"), ENV)
    conf = {"cniVersion": "1.0.0", "name": "overlay", "type": "flannel", "subnetFile": str(tmp_path / "subnet.env"),
            "dataDir": str(tmp_path / "data"), "delegate": {"type": "noop", "debugFile": str(debug)}}
    rc, out = _plugin(tmp_path, "ADD", conf)
    assert rc == 0, out
    saved = json.loads((tmp_path / "data" / "ctr1").read_text())
    assert saved["type"] == "noop" and saved["ipam"]["ranges"] == [[{"subnet": "10.172.5.0/24"}]]
    assert oct((tmp_path / "data" / "ctr1").stat().st_mode & 0o777) == "0o600"
    calls = noop.read_log(debug)
    assert [c["command"] for c in calls] == ["ADD"] and json.loads(calls[0]["stdin"]) == saved
    rc, out = _plugin(tmp_path, "DEL", conf)
    assert rc == 0 and not (tmp_path / "data" / "ctr1").exists()
    assert [c["command"] for c in noop.read_log(debug)] == ["ADD", "DEL"]
    rc, out = _plugin(tmp_path, "DEL", conf)  # again: nothing saved, success
    assert rc == 0 and len(noop.read_log(debug)) == 2
    # no subnet.env: a CNI error naming the file, nothing saved
    rc, out = _plugin(tmp_path, "ADD", {**conf, "subnetFile": str(tmp_path / "missing.env")})
    assert rc == 1 and "missing.env" in out["msg"] and not (tmp_path / "data" / "ctr1").exists()
