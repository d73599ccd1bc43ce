"""Real plugin chains (Debian's containernetworking-plugins) in namespaces the tests create.

Subnets 10.121.1.0/24 .. 10.121.9.0/24 and 10.121.40.0/24 .. 10.121.42.0/24; bridges cnt2<x>; host-local keeps its
reservations in a tmp dataDir. Every test checks that nothing is left: veths,
reservations, cache files, iptables rules naming the container, netns.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Iterator

import pytest

from cnirun.core.errors import ArgumentError, PluginError
from cnirun.cni.runtime import CNI
from cnirun.cni.runtime_conf import RuntimeConf

from conftest import CNIRUN_BIN
from _core_fixtures import (  # noqa: F401  (fixtures)
    CoreEnv,
    Netns,
    bridge_chain,
    bridge_members,
    core,
    delete_bridge,
    host_local_reservations,
    iptables_rules_naming,
    ip,
    ip_json,
    needs_real_plugins,
    needs_root,
    netns,
)

pytestmark = [needs_root, needs_real_plugins]


class RealNet:
    """One bridge network of a test, with its leftovers checks."""

    def __init__(self, core: CoreEnv, name: str, bridge: str, subnet_index: int, full: bool = True) -> None:
        self.core, self.name, self.bridge = core, name, bridge
        self.prefix = f"10.121.{subnet_index}"
        core.conflist(name, bridge_chain(bridge, f"{self.prefix}.0/24", f"{self.prefix}.1", core.ipam, full=full))
        self.cni: CNI = core.cni(real=True)
        self.net = self.cni.network(name)

    def assert_clean(self, container_ids: list[str]) -> None:
        assert bridge_members(self.bridge) == [], "veth left on the bridge"
        assert host_local_reservations(self.core.ipam, self.name) == [], "host-local reservation left"
        assert self.core.cache_files() == [], "cache file left"
        for cid in container_ids:
            assert iptables_rules_naming(cid) == [], f"iptables rules naming {cid} left"


@pytest.fixture
def real(core: CoreEnv) -> Iterator[list[RealNet]]:
    made: list[RealNet] = []
    yield made
    for n in made:
        delete_bridge(n.bridge)


def addrs_in(ns: str, ifname: str = "eth0") -> list[str]:
    out = []
    for link in ip_json("-n", ns, "addr", "show", "dev", ifname):
        out += [f"{a['local']}/{a['prefixlen']}" for a in link.get("addr_info", []) if a.get("family") == "inet"]
    return out


def test_full_chain_add_check_del(core: CoreEnv, netns: Netns, real: list[RealNet]) -> None:
    n = RealNet(core, "t2-full", "cnt2full", 1)
    real.append(n)
    ns = netns.new()
    cid = "t2full-" + ns.split("-")[1]
    caps = {"portMappings": [{"hostPort": 18121, "containerPort": 80, "protocol": "tcp"}]}
    rt = RuntimeConf(cid, netns=Netns.path(ns), ifname="eth0", capability_args=caps)
    result = n.cni.add(n.net, rt)
    address = result["ips"][0]["address"]
    assert address.startswith("10.121.1.") and result["ips"][0]["gateway"] == "10.121.1.1"
    assert addrs_in(ns) == [address]  # the address is on eth0 inside the netns
    routes = ip_json("-n", ns, "route", "show", "default")
    assert routes and routes[0]["gateway"] == "10.121.1.1"
    assert len(bridge_members("cnt2full")) == 1
    assert host_local_reservations(core.ipam, "t2-full") == [address.split("/")[0]]
    assert core.cache_files() == [f"t2-full-{cid}-eth0"]
    rules = iptables_rules_naming(cid)
    assert any("MASQUERADE" in r for r in rules) and any("18121" in r for r in rules), rules
    # CHECK of this chain with port mappings is not asserted here: portmap 1.1.1's
    # CHECK also looks for its DNAT chain in ip6tables for an IPv4-only container
    # and fails; test_check_fails_once_the_veth_is_removed checks the full chain.
    n.cni.delete("t2-full", RuntimeConf(cid, netns=Netns.path(ns)))
    assert addrs_in(ns) == []
    n.assert_clean([cid])


def test_two_namespaces_on_one_bridge_reach_each_other(core: CoreEnv, netns: Netns, real: list[RealNet]) -> None:
    n = RealNet(core, "t2-pair", "cnt2pair", 2)  # firewall: docker sets FORWARD to DROP
    real.append(n)
    ns1, ns2 = netns.new(), netns.new()
    r1 = n.cni.add(n.net, RuntimeConf("t2pair-a", netns=Netns.path(ns1)))
    r2 = n.cni.add(n.net, RuntimeConf("t2pair-b", netns=Netns.path(ns2)))
    ip1, ip2 = (r["ips"][0]["address"].split("/")[0] for r in (r1, r2))
    assert ip1 != ip2
    # a TCP round trip from ns1 to a listener in ns2 (no ping on this host)
    server = subprocess.Popen(
        ["ip", "netns", "exec", ns2, sys.executable, "-c",
         "import socket,sys\n"
         f"s=socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); s.bind(('{ip2}', 18122)); s.listen(1)\n"
         "print('ready', flush=True)\n"
         "s.settimeout(20); c,a=s.accept(); c.sendall(b'hello from '+a[0].encode()); c.close()\n"],
        stdout=subprocess.PIPE, text=True,
    )
    try:
        assert server.stdout is not None and server.stdout.readline().strip() == "ready"
        client = subprocess.run(
            ["ip", "netns", "exec", ns1, sys.executable, "-c",
             f"import socket; s=socket.create_connection(('{ip2}', 18122), timeout=10); print(s.recv(100).decode())"],
            capture_output=True, text=True, timeout=30,
        )
        assert client.stdout.strip() == f"hello from {ip1}", client.stderr
    finally:
        server.kill()
        server.wait()
    n.cni.delete("t2-pair", RuntimeConf("t2pair-a", netns=Netns.path(ns1)))
    n.cni.delete("t2-pair", RuntimeConf("t2pair-b", netns=Netns.path(ns2)))
    n.assert_clean(["t2pair-a", "t2pair-b"])


def test_check_fails_once_the_veth_is_removed(core: CoreEnv, netns: Netns, real: list[RealNet]) -> None:
    n = RealNet(core, "t2-chk", "cnt2chk", 3)
    real.append(n)
    ns = netns.new()
    rt = RuntimeConf("t2chk-1", netns=Netns.path(ns))
    n.cni.add(n.net, rt)
    n.cni.check(n.net, rt)
    ip("-n", ns, "link", "delete", "eth0")
    with pytest.raises(PluginError) as ei:
        n.cni.check(n.net, rt)
    assert ei.value.plugin == "bridge" and ei.value.command == "CHECK"
    n.cni.delete("t2-chk", rt)
    n.assert_clean(["t2chk-1"])


def test_del_after_the_netns_is_gone_leaves_nothing(core: CoreEnv, netns: Netns, real: list[RealNet]) -> None:
    n = RealNet(core, "t2-gone", "cnt2gone", 4)
    real.append(n)
    ns = netns.new()
    rt = RuntimeConf("t2gone-1", netns=Netns.path(ns),
                     capability_args={"portMappings": [{"hostPort": 18123, "containerPort": 80, "protocol": "tcp"}]})
    n.cni.add(n.net, rt)
    assert iptables_rules_naming("t2gone-1")
    ip("netns", "delete", ns)
    # only the container ID and ifname: netns, args and capabilities come from the cache
    n.cni.delete("t2-gone", RuntimeConf("t2gone-1"))
    n.assert_clean(["t2gone-1"])


def test_add_over_an_existing_attachment_is_refused_and_keeps_it(
    core: CoreEnv, netns: Netns, real: list[RealNet]
) -> None:
    """A second ADD of the same container/network/ifname changes nothing: before, it failed in the plugins
    and its undo DELeted the first attachment and forgot its cache entry (rules were left behind)."""
    n = RealNet(core, "t2-twice", "cnt2twice", 41)
    real.append(n)
    ns = netns.new()
    rt = RuntimeConf("t2twice-1", netns=Netns.path(ns), ifname="eth0",
                     capability_args={"portMappings": [{"hostPort": 18124, "containerPort": 80, "protocol": "tcp"}]})
    first = n.cni.add(n.net, rt)["ips"][0]["address"]
    rules = iptables_rules_naming("t2twice-1")
    with pytest.raises(ArgumentError, match="already attached to network t2-twice as eth0: DEL it first"):
        n.cni.add(n.net, rt)
    assert addrs_in(ns) == [first]
    assert core.cache_files() == ["t2-twice-t2twice-1-eth0"]
    assert host_local_reservations(core.ipam, "t2-twice") == [first.split("/")[0]]
    assert iptables_rules_naming("t2twice-1") == rules
    n.cni.delete("t2-twice", RuntimeConf("t2twice-1", netns=Netns.path(ns)))
    n.assert_clean(["t2twice-1"])


def test_failed_add_leaves_nothing(core: CoreEnv, netns: Netns, real: list[RealNet]) -> None:
    """tuning fails after bridge and host-local did their work: the rollback DEL undoes it all."""
    n = RealNet(core, "t2-roll", "cnt2roll", 5, full=False)
    real.append(n)
    core.conflist("t2-roll", bridge_chain("cnt2roll", "10.121.5.0/24", "10.121.5.1", core.ipam, full=False) +
                  [{"type": "tuning", "sysctl": {"net.no.such.sysctl": "1"}}])
    net = n.cni.network("t2-roll")
    ns = netns.new()
    with pytest.raises(PluginError) as ei:
        n.cni.add(net, RuntimeConf("t2roll-1", netns=Netns.path(ns)))
    assert ei.value.plugin == "tuning"
    assert addrs_in(ns) == []
    n.assert_clean(["t2roll-1"])


def test_twenty_concurrent_adds_get_distinct_addresses(core: CoreEnv, netns: Netns, real: list[RealNet]) -> None:
    """20 `cnirun cni add` processes at once on one bridge network (iptables chain races are locked out)."""
    n = RealNet(core, "t2-many", "cnt2many", 6)
    real.append(n)
    names = [netns.new("t2m") for _ in range(20)]
    env = core.env(real=True)

    def add(ns: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([CNIRUN_BIN, "cni", "add", "t2-many", Netns.path(ns)], env=env,
                              capture_output=True, text=True, timeout=300)

    with ThreadPoolExecutor(max_workers=20) as pool:
        procs = list(pool.map(add, names))
    failures = [p.stderr for p in procs if p.returncode != 0]
    assert failures == []
    addresses = [json.loads(p.stdout)["ips"][0]["address"] for p in procs]
    assert len(set(addresses)) == 20
    for ns, address in zip(names, addresses):
        assert addrs_in(ns) == [address]
    assert len(bridge_members("cnt2many")) == 20

    def delete(ns: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([CNIRUN_BIN, "cni", "del", "t2-many", Netns.path(ns)], env=env,
                              capture_output=True, text=True, timeout=300)

    with ThreadPoolExecutor(max_workers=20) as pool:
        dels = list(pool.map(delete, names))
    assert [p.stderr for p in dels if p.returncode != 0] == []
    from cnirun.cli.cni_cmd import cnitool_container_id

    n.assert_clean([cnitool_container_id(Netns.path(ns)) for ns in names])


def test_gc_removes_a_stale_attachment(core: CoreEnv, netns: Netns, real: list[RealNet]) -> None:
    n = RealNet(core, "t2-gc", "cnt2gc", 7)
    real.append(n)
    keep_ns, stale_ns = netns.new(), netns.new()
    n.cni.add(n.net, RuntimeConf("t2gc-keep", netns=Netns.path(keep_ns)))
    n.cni.add(n.net, RuntimeConf("t2gc-stale", netns=Netns.path(stale_ns)))
    ip("netns", "delete", stale_ns)  # the container died without a DEL
    assert n.cni.gc(n.net, [("t2gc-keep", "eth0")]) == []
    assert core.cache_files() == ["t2-gc-t2gc-keep-eth0"]
    assert len(host_local_reservations(core.ipam, "t2-gc")) == 1
    assert iptables_rules_naming("t2gc-stale") == []
    n.cni.delete("t2-gc", RuntimeConf("t2gc-keep", netns=Netns.path(keep_ns)))
    n.assert_clean(["t2gc-keep", "t2gc-stale"])


def test_validate_and_version_with_real_plugins(core: CoreEnv, real: list[RealNet]) -> None:
    n = RealNet(core, "t2-val", "cnt2val", 8)
    assert n.cni.validate(n.net) == ["portMappings"]
    assert "1.0.0" in n.cni.version("bridge").supported_versions
    core.conflist("t2-val11", bridge_chain("cnt2val", "10.121.8.0/24", "10.121.8.1", core.ipam), cniVersion="1.1.0")
    with pytest.raises(Exception, match='does not support config version "1.1.0"'):
        n.cni.validate(n.cni.network("t2-val11"))


def test_second_network_as_eth1(core: CoreEnv, netns: Netns, real: list[RealNet]) -> None:
    from cnirun.network.lifecycle import attach, detach

    a = RealNet(core, "t2-a", "cnt2a", 9, full=False)
    real.append(a)
    real.append(RealNet(core, "t2-b", "cnt2b", 42, full=False))
    ns = netns.new()
    cni = a.cni
    atts = attach(cni, [cni.network("t2-a"), cni.network("t2-b")], "t2ab-1", Netns.path(ns))
    assert [(x.network, x.ifname) for x in atts] == [("t2-a", "eth0"), ("t2-b", "eth1")]
    assert addrs_in(ns, "eth0")[0].startswith("10.121.9.") and addrs_in(ns, "eth1")[0].startswith("10.121.42.")
    assert detach(cni, "t2ab-1") == []
    assert core.cache_files() == []
    assert bridge_members("cnt2a") == [] and bridge_members("cnt2b") == []
    assert host_local_reservations(core.ipam, "t2-a") == [] and host_local_reservations(core.ipam, "t2-b") == []


def _cache_doc(core: CoreEnv, name: str) -> dict[str, Any]:
    return json.loads((core.cache / "results" / name).read_text())


def _processes_with_env(needle: str) -> list[int]:
    pids = []
    for pid in (p for p in os.listdir("/proc") if p.isdigit()):
        try:
            with open(f"/proc/{pid}/environ", "rb") as f:
                if needle.encode() in f.read().split(b"\0"):
                    pids.append(int(pid))
        except OSError:
            pass
    return pids


def test_add_killed_midway_leaves_an_intent_record_that_del_finishes(
    core: CoreEnv, netns: Netns, real: list[RealNet]
) -> None:
    """SIGKILL of `cnirun cni add` while a plugin runs: the cache holds the intent, DEL undoes it all.

    bridge + host-local reserve an address, then noop hangs in ADD; the
    runtime is killed there. The record names the attachment with the
    partial result; DEL kills the orphaned plugin and frees the reservation.
    """
    n = RealNet(core, "t2-kill", "cnt2kill", 40, full=False)
    real.append(n)
    core.debug("slow", commands={"ADD": {"sleep": 60}})
    core.conflist("t2-kill", bridge_chain("cnt2kill", "10.121.40.0/24", "10.121.40.1", core.ipam, full=False)
                  + [core.noop_plugin("slow")])
    ns = netns.new()
    env = core.env(real=True, CNI_CONTAINERID="t2kill-1")
    proc = subprocess.Popen([CNIRUN_BIN, "cni", "add", "t2-kill", Netns.path(ns)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not core.calls("slow"):
            time.sleep(0.05)
        assert core.calls("slow"), "noop never started"
    finally:
        proc.kill()
        proc.wait()
    # The record survived the kill: which attachment, how far ADD got, bridge's result.
    doc = _cache_doc(core, "t2-kill-t2kill-1-eth0")
    assert doc["cnirun.dev/pending"] == {"started": 2}
    assert doc["result"]["ips"][0]["address"].startswith("10.121.40.")
    assert doc["netns"] == Netns.path(ns)
    assert host_local_reservations(core.ipam, "t2-kill"), "bridge/host-local ran before the kill"
    orphans = _processes_with_env("CNI_CONTAINERID=t2kill-1")
    assert orphans, "the hung plugin outlives its killed runtime (own session)"
    # DEL from the cache alone (as cnirun gc does): no netns, no args given.
    d = subprocess.run([CNIRUN_BIN, "cni", "del", "t2-kill", Netns.path(ns)], env=env, capture_output=True, text=True)
    assert d.returncode == 0, d.stderr
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and _processes_with_env("CNI_CONTAINERID=t2kill-1"):
        time.sleep(0.05)
    assert _processes_with_env("CNI_CONTAINERID=t2kill-1") == [], "the orphaned plugin was not killed"
    n.assert_clean(["t2kill-1"])


def test_completed_add_leaves_no_pending_mark(core: CoreEnv, netns: Netns, real: list[RealNet]) -> None:
    n = RealNet(core, "t2-done", "cnt2done", 40, full=False)
    real.append(n)
    ns = netns.new()
    n.cni.add(n.net, RuntimeConf("t2done-1", netns=Netns.path(ns)))
    doc = _cache_doc(core, "t2-done-t2done-1-eth0")
    assert "cnirun.dev/pending" not in doc and doc["result"]["ips"]
    n.cni.delete("t2-done", RuntimeConf("t2done-1", netns=Netns.path(ns)))
    n.assert_clean(["t2done-1"])
