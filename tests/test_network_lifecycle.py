"""cnirun.network.lifecycle and network_options without root or an engine: options, attach, detach, reattach, reclaim.

Plugins are cnirun's recording noop (it does not enter the netns, whose path
is a plain file here), so every step can be checked from the calls it made.
The end-to-end counterparts are in test_cni_runtime.py, test_runner_*.py and test_oci_hook*.py.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from cnirun.network import lifecycle, network_options
from cnirun.cni.config import conflist_from_bytes
from cnirun.core.errors import ArgumentError, PluginError
from cnirun.core.lock import lock_container, unlock_container
from cnirun.network.options import ContainerNetworkSpec, PortMapping

from _core_fixtures import CoreEnv, core  # noqa: F401  (fixture)

R = {"cniVersion": "1.0.0", "ips": [{"address": "10.9.0.5/24", "gateway": "10.9.0.1"}]}


def net(name: str, *plugins: dict[str, Any], subnet: str = "") -> Any:
    body: dict[str, Any] = {"cniVersion": "1.0.0", "name": name, "plugins": list(plugins)}
    if subnet:
        body["plugins"][0]["ipam"] = {"type": "host-local", "ranges": [[{"subnet": subnet}]]}
    return conflist_from_bytes(json.dumps(body).encode(), f"/x/{name}.conflist")


@pytest.fixture
def state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    d = tmp_path / "state"
    monkeypatch.setenv("CNIRUN_STATE_DIR", str(d))
    return d


# -- options_for: the one place run options are built ------------------------------------------
def test_options_go_to_the_network_that_can_take_them() -> None:
    a = net("a", {"type": "bridge", "capabilities": {"ips": True, "mac": True}}, subnet="10.9.0.0/24")
    b = net("b", {"type": "bridge"}, {"type": "portmap", "capabilities": {"portMappings": True}}, subnet="10.8.0.0/24")
    spec = ContainerNetworkSpec(["a", "b"], [PortMapping(8080, 80)], ips={"a": "10.9.0.7", "b": "10.8.0.7"},
                                mac="02:00:00:00:00:07")
    oa, ob = network_options.options_for(spec, [a, b])
    assert oa.capability_args == {"ips": ["10.9.0.7"], "mac": "02:00:00:00:00:07"} and oa.args == []
    assert ob.capability_args == {"portMappings": [{"hostPort": 8080, "containerPort": 80, "protocol": "tcp"}]}
    assert ob.args == [("IgnoreUnknown", "1"), ("IP", "10.8.0.7")]  # no ips capability: CNI_ARGS


@pytest.mark.parametrize(
    "spec, words",
    [
        (ContainerNetworkSpec(["a"], [], ips={"a": "10.7.0.1"}), "outside network a's subnet 10.9.0.0/24"),
        (ContainerNetworkSpec(["a"], [], ips={"z": "10.9.0.1"}), "network 'z', which this container does not join"),
        (ContainerNetworkSpec(["a"], [PortMapping(1, 2)]), "need a network with the portmap plugin"),
    ],
)
def test_options_refuse_what_cannot_work(spec: ContainerNetworkSpec, words: str) -> None:
    a = net("a", {"type": "bridge"}, subnet="10.9.0.0/24")
    with pytest.raises(ArgumentError, match=words):
        network_options.options_for(spec, [a])


def test_options_refuse_an_address_host_local_has_handed_out(tmp_path: Path) -> None:
    body = {"cniVersion": "1.0.0", "name": "a", "plugins": [{"type": "bridge", "ipam": {
        "type": "host-local", "dataDir": str(tmp_path), "ranges": [[{"subnet": "10.9.0.0/24"}]]}}]}
    a = conflist_from_bytes(json.dumps(body).encode(), "/x/a.conflist")
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "10.9.0.9").write_text("someone")
    with pytest.raises(ArgumentError, match="already taken"):
        network_options.options_for(ContainerNetworkSpec(["a"], [], ips={"a": "10.9.0.9"}), [a])


def _cached_with_mac(core: CoreEnv, network: str, config: dict[str, Any], container_id: str, mac: str) -> None:
    from cnirun.cni import cache as cnicache

    result = {"cniVersion": "1.0.0", "interfaces": [{"name": "eth0", "mac": mac, "sandbox": "/proc/1/ns/net"}]}
    cnicache.write(str(core.cache), cnicache.CachedAttachment(
        network, container_id, "eth0", json.dumps(config).encode(), "/proc/1/ns/net", result=result))


def test_mac_user_finds_a_mac_on_the_same_bridge_wherever_the_chains_name_it(core: CoreEnv) -> None:
    """A MAC is taken on a network when another container's cached attachment has it on any network whose
    chain plugs into the same bridge: the bridge plugin may come after other plugins, and a cache entry may
    hold a conflist or a single plugin's config (libcni's AddNetwork); another bridge does not count."""
    mac = "02:24:0a:e5:00:07"
    a = net("t24i-a", {"type": "tuning"}, {"type": "bridge", "bridge": "c24ia"})
    later = {"cniVersion": "1.0.0", "name": "t24i-b", "plugins": [{"type": "tuning"}, {"type": "bridge", "bridge": "c24ia"}]}
    single = {"cniVersion": "1.0.0", "name": "t24i-c", "type": "bridge", "bridge": "c24ia"}
    other = {"cniVersion": "1.0.0", "name": "t24i-d", "plugins": [{"type": "bridge", "bridge": "c24ib"}]}
    cni = core.cni()
    _cached_with_mac(core, "t24i-d", other, "c" * 64, mac)
    assert network_options.mac_user(cni, a, mac) == ""
    _cached_with_mac(core, "t24i-b", later, "b" * 64, mac)
    assert network_options.mac_user(cni, a, mac.upper()) == "b" * 64
    assert network_options.mac_user(cni, a, mac, container_id="b" * 64) == ""  # its own does not count
    _cached_with_mac(core, "t24i-c", single, "d" * 64, mac.replace("07", "08"))
    assert network_options.mac_user(cni, a, mac.replace("07", "08")) == "d" * 64


# -- attach / detach ---------------------------------------------------------------------------
def _two_networks(core: CoreEnv) -> list[Any]:
    core.debug("n1", reportResult=R)
    core.debug("n2", reportResult={"cniVersion": "1.0.0", "ips": [{"address": "10.9.1.5/24"}]})
    core.conflist("n1", [core.noop_plugin("n1")])
    core.conflist("n2", [core.noop_plugin("n2")])
    cni = core.cni()
    return [cni, cni.network("n1"), cni.network("n2")]


def test_attach_names_interfaces_in_order_and_detach_dels_the_last_first(core: CoreEnv, state: Path) -> None:
    cni, n1, n2 = _two_networks(core)
    atts = lifecycle.attach(cni, [n1, n2], "c1", str(core.netns_file))
    assert [(a.network, a.ifname, a.addresses()) for a in atts] == [
        ("n1", "eth0", ["10.9.0.5/24"]), ("n2", "eth1", ["10.9.1.5/24"])]
    assert core.cache_files() == ["n1-c1-eth0", "n2-c1-eth1"]
    assert lifecycle.detach(cni, "c1", str(core.netns_file)) == []
    assert core.cache_files() == []
    n1_del, n2_del = (next(c for c in core.calls(n) if c["command"] == "DEL") for n in ("n1", "n2"))
    assert n2_del["time"] < n1_del["time"]
    assert n1_del["env"]["CNI_NETNS"] == str(core.netns_file)


def test_detach_drops_the_names_before_any_del(core: CoreEnv, state: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A container on its way out stops resolving before its DELs run (each a chain of plugins): its names
    are gone from every network's names store when the first DEL starts."""
    from cnirun.dns import store

    cni, n1, n2 = _two_networks(core)
    lifecycle.attach(cni, [n1, n2], "c9", str(core.netns_file))
    state.mkdir(exist_ok=True)
    for network in ("n1", "n2"):
        store.write_hosts(network, "c9", ["10.9.0.5"], ["web"], [], str(core.cache), False)
    seen: list[tuple[str, bool, bool]] = []
    delete = cni.delete

    def recorded(network: str, rt: Any) -> None:
        seen.append((network, store.registered("n1", "c9"), store.registered("n2", "c9")))
        delete(network, rt)

    monkeypatch.setattr(cni, "delete", recorded)
    assert lifecycle.detach(cni, "c9", str(core.netns_file)) == []
    assert seen == [("n2", False, False), ("n1", False, False)]


def test_attach_undoes_what_it_did_when_a_later_network_fails(core: CoreEnv, state: Path) -> None:
    cni, n1, _ = _two_networks(core)
    core.debug("bad", commands={"ADD": {"reportError": "boom", "reportErrorCode": 11}})
    core.conflist("bad", [core.noop_plugin("bad")])
    with pytest.raises(PluginError, match="boom"):
        lifecycle.attach(cni, [n1, cni.network("bad")], "c2", str(core.netns_file))
    assert core.cache_files() == []
    assert [c["command"] for c in core.calls("n1")] == ["ADD", "DEL"]


def test_detach_without_the_netns_sweeps_and_forgets_the_freed_addresses(
    core: CoreEnv, state: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cni, n1, _ = _two_networks(core)
    lifecycle.attach(cni, [n1], "c3", str(core.netns_file))
    swept: list[tuple[str, str]] = []
    import cnirun.cni.leftovers

    monkeypatch.setattr(cnirun.cni.leftovers, "remove_rules_naming", lambda n, c, *a: swept.append((n, c)) or [])
    other = state / "containers" / "other-run"
    other.mkdir(parents=True)
    (other / "hosts").write_text("127.0.0.1\tlocalhost\n10.9.0.5\tpeer\n10.9.0.6\tkeep\n")
    os.unlink(core.netns_file)  # the netns is gone
    assert lifecycle.detach(cni, "c3") == []
    assert swept == [("n1", "c3")]
    assert (other / "hosts").read_text() == "127.0.0.1\tlocalhost\n10.9.0.6\tkeep\n"
    del_call = next(c for c in core.calls("n1") if c["command"] == "DEL")
    assert del_call["env"]["CNI_NETNS"] == ""  # never the stale path


def test_detach_never_enters_a_cached_proc_path(core: CoreEnv, state: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A /proc/<pid>/ns/net path may name another process's netns by now: DEL goes without it."""
    cni, n1, _ = _two_networks(core)
    import cnirun.cni.leftovers

    monkeypatch.setattr(cnirun.cni.leftovers, "remove_rules_naming", lambda *a: [])
    lifecycle.attach(cni, [n1], "c4", str(core.netns_file))
    from cnirun.cni import cache

    att = cache.read(cni.cache_dir, "n1", "c4", "eth0")
    att.netns = f"/proc/{os.getpid()}/ns/net"  # what a sandbox run records: exists, but may be anyone's
    cache.write_file(cni.cache_dir, att)
    assert lifecycle.detach(cni, "c4") == []
    assert next(c for c in core.calls("n1") if c["command"] == "DEL")["env"]["CNI_NETNS"] == ""


def test_a_failed_del_keeps_the_cache_for_a_retry(core: CoreEnv, state: Path) -> None:
    cni, n1, _ = _two_networks(core)
    lifecycle.attach(cni, [n1], "c5", str(core.netns_file))
    core.debug("n1", reportResult=R, commands={"DEL": {"reportError": "busy", "reportErrorCode": 11}})
    problems = lifecycle.detach(cni, "c5", str(core.netns_file))
    assert len(problems) == 1 and "busy" in problems[0]
    assert core.cache_files() == ["n1-c5-eth0"]
    core.debug("n1", reportResult=R)
    assert lifecycle.detach(cni, "c5", str(core.netns_file)) == []
    assert core.cache_files() == []


def test_reattach_dels_then_adds_the_same_networks_asking_for_the_old_address(core: CoreEnv, state: Path) -> None:
    core.debug("ips", reportResult=R)
    core.conflist("ipsnet", [core.noop_plugin("ips", capabilities={"ips": True})])
    cni = core.cni()
    lifecycle.attach(cni, [cni.network("ipsnet")], "c6", str(core.netns_file))
    new_netns = core.root / "new-netns"  # the helper's new netns (a plain file: noop does not enter it)
    new_netns.write_text("")
    atts = lifecycle.reattach(cni, "c6", str(new_netns), lifecycle.cached_attachments(cni, "c6"))
    assert [a.ifname for a in atts] == ["eth0"]
    calls = core.calls("ips")
    assert [c["command"] for c in calls] == ["ADD", "DEL", "ADD"]
    assert json.loads(calls[2]["stdin"])["runtimeConfig"] == {"ips": ["10.9.0.5"]}
    assert calls[1]["env"]["CNI_NETNS"] == ""  # the old netns is gone by definition


def test_reclaim_leaves_a_busy_container_alone(core: CoreEnv, state: Path) -> None:
    cni, n1, _ = _two_networks(core)
    lifecycle.attach(cni, [n1], "c7", str(core.netns_file))
    fd = lock_container("c7")
    assert fd is not None
    try:
        assert lifecycle.reclaim(cni, "c7") is None
        assert core.cache_files() == ["n1-c7-eth0"]
    finally:
        unlock_container(fd, "c7")
    assert lifecycle.reclaim(cni, "c7") == []
    assert core.cache_files() == []


def test_reattach_cut_short_is_finished_in_the_new_netns(core: CoreEnv, state: Path) -> None:
    """An entry already in the new netns (an earlier reattach killed after its ADD) is DELeted there."""
    core.debug("ips", reportResult=R)
    core.conflist("ipsnet", [core.noop_plugin("ips", capabilities={"ips": True})])
    cni = core.cni()
    lifecycle.attach(cni, [cni.network("ipsnet")], "c8", str(core.netns_file))
    lifecycle.reattach(cni, "c8", str(core.netns_file), lifecycle.cached_attachments(cni, "c8"))
    calls = core.calls("ips")
    assert [c["command"] for c in calls] == ["ADD", "DEL", "ADD"]
    assert calls[1]["env"]["CNI_NETNS"] == str(core.netns_file)
