"""`cnirun cni ...` (cnitool drop-in), `cnirun exec`, and the issue's bad-input list,
all run as subprocesses of .venv/bin/cnirun.

Real chains use 10.121.10.0/24 .. 10.121.18.0/24 and bridges cnt2c<x>.
"""
from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any, Iterator

import pytest

from cnirun.plugins import install_plugin_script

from conftest import CNIRUN_BIN
from _core_fixtures import (  # noqa: F401  (fixtures)
    CoreEnv,
    Netns,
    assert_one_line_error,
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
    run_cnirun,
)

pytestmark = [needs_root]
REPO = Path(__file__).resolve().parent.parent

R1 = {"cniVersion": "1.0.0", "ips": [{"address": "10.121.96.2/24", "gateway": "10.121.96.1"}]}


def cnitool_id(path: str) -> str:
    return "cnitool-" + hashlib.sha512(path.encode()).hexdigest()[:20]


@pytest.fixture
def bridges() -> Iterator[list[str]]:
    made: list[str] = []
    yield made
    for b in made:
        delete_bridge(b)


def real_net(core: CoreEnv, bridges: list[str], name: str, bridge: str, index: int, **kw: Any) -> None:
    core.conflist(name, bridge_chain(bridge, f"10.121.{index}.0/24", f"10.121.{index}.1", core.ipam, **kw))
    bridges.append(bridge)


def assert_clean(core: CoreEnv, name: str, bridge: str | None, cids: list[str]) -> None:
    if bridge:
        assert bridge_members(bridge) == []
    assert host_local_reservations(core.ipam, name) == []
    assert core.cache_files() == []
    for cid in cids:
        assert iptables_rules_naming(cid) == []


def noop_net(core: CoreEnv, name: str = "t2-noop", **behaviour: Any) -> None:
    core.debug("n", **(behaviour or {"reportResult": R1}))
    core.conflist(name, [core.noop_plugin("n", capabilities={"portMappings": True})])


# -- cnitool drop-in -------------------------------------------------------------


@needs_real_plugins
def test_add_check_del_like_cnitool(core: CoreEnv, netns: Netns, bridges: list[str]) -> None:
    real_net(core, bridges, "t2-cli", "cnt2cli", 10)
    ns = netns.new()
    path = Netns.path(ns)
    env = core.env(real=True)
    add = run_cnirun(["cni", "add", "t2-cli", path], env)
    assert add.returncode == 0, add.stderr
    result = json.loads(add.stdout)
    assert add.stdout.startswith('{\n    "cniVersion": "1.0.0"')  # 4-space indent, as cnitool prints
    assert result["ips"][0]["address"].startswith("10.121.10.")
    cid = cnitool_id(path)
    assert core.cache_files() == [f"t2-cli-{cid}-eth0"]
    assert run_cnirun(["cni", "check", "t2-cli", path], env).returncode == 0
    # a bare netns name is resolved to /run/netns/NAME: same attachment
    dele = run_cnirun(["cni", "del", "t2-cli", ns], env)
    assert dele.returncode == 0 and dele.stdout == "" and dele.stderr == ""
    assert_clean(core, "t2-cli", "cnt2cli", [cid])


def _readme_network(core: CoreEnv, bridges: list[str], name: str, bridge: str, subnet: str, gateway: str) -> None:
    """The shipped default network (netconf/cnirun.conflist: bridge, portmap, firewall, tuning, bandwidth,
    cnirun-policy) as it is,
    renamed onto a private bridge, subnet and host-local dataDir."""
    conf = json.loads((REPO / "netconf" / "cnirun.conflist").read_text())
    bridge_plugin = conf["plugins"][0]
    bridge_plugin["bridge"] = bridge
    bridge_plugin["ipam"].update(dataDir=str(core.ipam), ranges=[[{"subnet": subnet, "gateway": gateway}]])
    conf["name"] = name
    assert [p["type"] for p in conf["plugins"]] == ["bridge", "portmap", "firewall", "tuning", "bandwidth",
                                                     "cnirun-policy"]
    core.write(f"{name}.conflist", conf)
    bridges.append(bridge)


@needs_real_plugins
def test_readme_cni_example_add_check_del_on_the_default_chain(core: CoreEnv, netns: Netns,
                                                               bridges: list[str]) -> None:
    """README's `cnirun cni` example as written (ip netns add; cni add; `cni check ... && echo ok`; cni del;
    cni version bridge; cni validate) on a private copy of the default network: CHECK of its unlimited
    bandwidth plugin passes (the plugin, 1.1.1, panics on CHECK without a limit and is not run then)."""
    _readme_network(core, bridges, "th-readme", "cthreadme", "10.217.40.0/24", "10.217.40.1")
    ns = netns.new("th")
    env = core.env(real=True)
    script = (f"set -e; cnirun cni add th-readme /run/netns/{ns} >/dev/null\n"
              f"cnirun cni check th-readme /run/netns/{ns} && echo ok\n"
              f"cnirun cni del th-readme /run/netns/{ns}\n"
              "cnirun cni version bridge\n"
              "cnirun cni validate th-readme\n")
    p = subprocess.run(["sh", "-c", script], env=dict(env, PATH=f"{Path(CNIRUN_BIN).parent}:{env['PATH']}"),
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 0 and p.stderr == "", p.stderr
    lines = p.stdout.splitlines()
    assert lines[0] == "ok" and '"supportedVersions"' in lines[1], p.stdout
    assert lines[2].startswith("th-readme: OK (cniVersion 1.0.0; plugins bridge, portmap, firewall, tuning, bandwidth, "
                               "cnirun-policy")
    assert_clean(core, "th-readme", "cthreadme", [cnitool_id(Netns.path(ns))])


@needs_real_plugins
def test_check_runs_the_bandwidth_plugin_when_the_attachment_has_a_limit(core: CoreEnv, netns: Netns,
                                                                         bridges: list[str]) -> None:
    """With a limit (CAP_ARGS at ADD) the real bandwidth plugin's CHECK runs: against the cached limit when
    CHECK is given none, against the caller's otherwise, and a rate that differs from the qdisc fails."""
    _readme_network(core, bridges, "th-limit", "cthlimit", "10.217.41.0/24", "10.217.41.1")
    path = Netns.path(netns.new("th"))
    limit = {"ingressRate": 1000000, "ingressBurst": 100000, "egressRate": 2000000, "egressBurst": 200000}
    env = core.env(real=True)
    limited = dict(env, CAP_ARGS=json.dumps({"bandwidth": limit}))
    add = run_cnirun(["cni", "add", "th-limit", path], limited)
    assert add.returncode == 0, add.stderr
    try:
        assert run_cnirun(["cni", "check", "th-limit", path], env).returncode == 0  # the cached limit
        assert run_cnirun(["cni", "check", "th-limit", path], limited).returncode == 0
        other = dict(env, CAP_ARGS=json.dumps({"bandwidth": {**limit, "egressRate": 3000000}}))
        assert_one_line_error(run_cnirun(["cni", "check", "th-limit", path], other),
                              'plugin type="bandwidth" name="th-limit" failed (check)', "Rate doesn't match")
    finally:
        dele = run_cnirun(["cni", "del", "th-limit", path], env)
    assert dele.returncode == 0, dele.stderr
    assert_clean(core, "th-limit", "cthlimit", [cnitool_id(path)])


@needs_real_plugins
def test_ifname_and_container_id_overrides(core: CoreEnv, netns: Netns, bridges: list[str]) -> None:
    real_net(core, bridges, "t2-ifn", "cnt2ifn", 11, full=False)
    ns = netns.new()
    path = Netns.path(ns)
    env = core.env(real=True, CNI_CONTAINERID="t2-my-ctr")
    # (one ifname at a time: bridge names its masquerade chain after network + container only)
    assert run_cnirun(["cni", "add", "t2-ifn", path, "-i", "net1"], env).returncode == 0
    assert core.cache_files() == ["t2-ifn-t2-my-ctr-net1"]
    assert "net1" in {link["ifname"] for link in ip_json("-n", ns, "link")}
    assert run_cnirun(["cni", "del", "t2-ifn", path, "--ifname", "net1"], env).returncode == 0
    assert core.cache_files() == []
    assert run_cnirun(["cni", "add", "t2-ifn", path], dict(env, CNI_IFNAME="net2")).returncode == 0
    assert core.cache_files() == ["t2-ifn-t2-my-ctr-net2"]
    assert "net2" in {link["ifname"] for link in ip_json("-n", ns, "link")}
    assert run_cnirun(["cni", "del", "t2-ifn", path], dict(env, CNI_IFNAME="net2")).returncode == 0
    assert_clean(core, "t2-ifn", "cnt2ifn", ["t2-my-ctr"])


def test_cni_args_and_cap_args_reach_the_plugin(core: CoreEnv) -> None:
    noop_net(core)
    env = core.env(CNI_ARGS="IgnoreUnknown=1;FOO=bar",
                   CAP_ARGS='{"portMappings": [{"hostPort": 1, "containerPort": 2, "protocol": "tcp"}], "mac": "x"}')
    add = run_cnirun(["cni", "add", "t2-noop", str(core.netns_file)], env)
    assert add.returncode == 0, add.stderr
    assert json.loads(add.stdout) == R1
    call = core.calls("n")[0]
    assert call["args"] == "IgnoreUnknown=1;FOO=bar"
    assert call["containerID"] == cnitool_id(str(core.netns_file))
    assert json.loads(call["stdin"])["runtimeConfig"] == {
        "portMappings": [{"hostPort": 1, "containerPort": 2, "protocol": "tcp"}]}
    assert run_cnirun(["cni", "del", "t2-noop", str(core.netns_file)], env).returncode == 0
    assert core.cache_files() == []


def test_relative_netns_path_is_made_absolute(core: CoreEnv) -> None:
    noop_net(core)
    env = core.env()
    proc = run_cnirun(["cni", "add", "t2-noop", core.netns_file.name], env, cwd=core.root)
    assert proc.returncode == 0, proc.stderr
    assert core.calls("n")[0]["netns"] == str(core.netns_file)
    assert core.calls("n")[0]["containerID"] == cnitool_id(str(core.netns_file))
    run_cnirun(["cni", "del", "t2-noop", core.netns_file.name], env, cwd=core.root)


def test_gc_and_status(core: CoreEnv) -> None:
    core.debug("n", reportResult=R1)
    core.conflist("t2-gc", [core.noop_plugin("n")], cniVersion="1.1.0")
    env = core.env()
    other = core.root / "other-ns"
    other.write_text("")
    for p in (core.netns_file, other):
        assert run_cnirun(["cni", "add", "t2-gc", str(p)], env).returncode == 0
    assert run_cnirun(["cni", "status", "t2-gc"], env).returncode == 0
    gc = run_cnirun(["cni", "gc", "t2-gc", str(core.netns_file)], env)
    assert gc.returncode == 0, gc.stderr
    assert core.cache_files() == [f"t2-gc-{cnitool_id(str(core.netns_file))}-eth0"]
    gc_call = [c for c in core.calls("n") if c["command"] == "GC"][0]
    assert json.loads(gc_call["stdin"])["cni.dev/valid-attachments"] == [
        {"containerID": cnitool_id(str(core.netns_file)), "ifname": "eth0"}]
    assert run_cnirun(["cni", "gc", "t2-gc"], env).returncode == 0
    assert core.cache_files() == []
    core.debug("n", reportError="not ready yet", reportErrorCode=50)
    st = run_cnirun(["cni", "status", "t2-gc"], env)
    assert_one_line_error(st, 'plugin type="noop" name="t2-gc" failed (status): code 50: not ready yet')


def test_version_and_validate(core: CoreEnv) -> None:
    noop_net(core)
    env = core.env(real=True)
    v = run_cnirun(["cni", "version", "noop"], env)
    assert v.returncode == 0 and "1.1.0" in json.loads(v.stdout)["supportedVersions"]
    val = run_cnirun(["cni", "validate", "t2-noop"], env)
    assert val.returncode == 0, val.stderr
    assert val.stdout.strip() == "t2-noop: OK (cniVersion 1.0.0; plugins noop; capabilities portMappings)"
    if os.path.exists("/usr/lib/cni/bridge"):
        vb = run_cnirun(["cni", "version", "bridge"], env)
        assert vb.returncode == 0 and "1.0.0" in json.loads(vb.stdout)["supportedVersions"]
    assert_one_line_error(run_cnirun(["cni", "version", "nonexistent"], env), 'failed to find plugin "nonexistent"')


@pytest.mark.parametrize("args, needle", [
    ([], "usage"),
    (["frob"], "unknown cni command 'frob'"),
    (["add", "only-network"], "`cni add` takes NETWORK NETNS, got 1"),
    (["add", "a", "b", "c"], "got 3"),
    (["add", "a", "b", "--bogus"], "unknown option '--bogus'"),
    (["add", "a", "b", "-i"], "-i needs an interface name"),
])
def test_usage_errors(core: CoreEnv, args: list[str], needle: str) -> None:
    proc = run_cnirun(["cni", *args], core.env())
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert needle in proc.stderr + proc.stdout


def test_cni_path_does_not_import_typer(core: CoreEnv) -> None:
    noop_net(core)
    proc = subprocess.run([str(Path(CNIRUN_BIN).parent / "python"), "-X", "importtime", "-m", "cnirun.cli.main", "cni",
                           "add", "t2-noop", str(core.netns_file)], env=core.env(), capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    imported = {line.split("|")[-1].strip() for line in proc.stderr.splitlines() if line.startswith("import time:")}
    assert not imported & {"typer", "click", "docker", "pyroute2", "yaml", "pydantic"}


# -- the bad-input list: one line, non-zero, no traceback, nothing left ------------


@pytest.mark.parametrize("content, needles", [
    ('{"cniVersion": "1.0.0", "name": "t2-bad", "plugins": [', ["t2-bad.conflist", "invalid JSON at line 1"]),
    ('{"cniVersion": "1.0.0", "plugins": [{"type": "noop"}]}', ["t2-bad.conflist", "name", "missing network name"]),
    ('{"cniVersion": "1.0.0", "name": "t2-bad", "plugins": [{"bridge": "x"}]}',
     ["t2-bad.conflist", "plugins[0].type", "missing plugin type"]),
    ('{"cniVersion": "1.0.0", "name": "t2-bad", "plugins": [{"type": "../../bin/sh"}]}',
     ["plugins[0].type", "must not contain a path separator"]),
])
def test_bad_config_files(core: CoreEnv, content: str, needles: list[str]) -> None:
    core.write("t2-bad.conflist", content)
    proc = run_cnirun(["cni", "add", "t2-bad", str(core.netns_file)], core.env())
    assert_one_line_error(proc, *needles)
    assert core.cache_files() == []


def test_unknown_network(core: CoreEnv) -> None:
    noop_net(core)
    proc = run_cnirun(["cni", "add", "t2-nope", str(core.netns_file)], core.env())
    assert_one_line_error(proc, 'no net configuration with name "t2-nope"', str(core.netconf), "known networks: t2-noop")


def test_plugin_not_found(core: CoreEnv) -> None:
    core.debug("n", reportResult=R1)
    core.conflist("t2-miss", [core.noop_plugin("n"), {"type": "t2-not-installed"}])
    proc = run_cnirun(["cni", "add", "t2-miss", str(core.netns_file)], core.env())
    assert_one_line_error(proc, 'failed to find plugin "t2-not-installed"', "CNI_PATH")
    assert core.calls("n") == [] and core.cache_files() == []


def test_plugin_error_json(core: CoreEnv) -> None:
    noop_net(core, reportError="address pool exhausted", reportErrorCode=111, reportErrorDetails="10.121.96.0/24")
    proc = run_cnirun(["cni", "add", "t2-noop", str(core.netns_file)], core.env())
    assert_one_line_error(proc, 'plugin type="noop" name="t2-noop" failed (add): code 111: address pool exhausted '
                                "(10.121.96.0/24)")
    assert core.cache_files() == []
    assert [c["command"] for c in core.calls("n")] == ["ADD", "DEL"]


def test_plugin_crash_without_output(core: CoreEnv) -> None:
    noop_net(core, crash=True)
    proc = run_cnirun(["cni", "add", "t2-noop", str(core.netns_file)], core.env())
    assert_one_line_error(proc, 'type="noop"', "netplugin failed with no error message")
    assert core.cache_files() == []


@needs_real_plugins
def test_plugin_hangs_past_the_timeout(core: CoreEnv, netns: Netns, bridges: list[str]) -> None:
    """bridge + host-local succeed, then a plugin hangs: it is killed, the chain is DELeted."""
    install_plugin_script(core.bin, "t2hang", "cnirun.plugins.noop")
    core.debug("h", commands={"ADD": {"sleep": 60}})
    plugins = bridge_chain("cnt2hang", "10.121.12.0/24", "10.121.12.1", core.ipam, full=False)
    plugins.append({"type": "t2hang", "debugFile": str(core.root / "debug-h")})
    core.conflist("t2-hang", plugins)
    bridges.append("cnt2hang")
    ns = netns.new()
    t0 = time.monotonic()
    proc = run_cnirun(["cni", "add", "t2-hang", Netns.path(ns)], core.env(real=True, CNIRUN_PLUGIN_TIMEOUT="2"))
    assert time.monotonic() - t0 < 30
    assert_one_line_error(proc, 'plugin type="t2hang" name="t2-hang" failed (add)', "no answer within 2 s, killed")
    pid = core.calls("h")[0]["pid"]
    assert not os.path.exists(f"/proc/{pid}") or open(f"/proc/{pid}/stat").read().split(")")[-1].split()[0] == "Z"
    assert [link["ifname"] for link in ip_json("-n", ns, "link") if link["ifname"] != "lo"] == []
    assert_clean(core, "t2-hang", "cnt2hang", [cnitool_id(Netns.path(ns))])


@pytest.mark.parametrize("value", ["A", "=x", "A=1;B"])
def test_bad_cni_args(core: CoreEnv, value: str) -> None:
    noop_net(core)
    proc = run_cnirun(["cni", "add", "t2-noop", str(core.netns_file)], core.env(CNI_ARGS=value))
    assert_one_line_error(proc, "invalid CNI_ARGS pair", "KEY=VALUE")
    assert core.calls("n") == []


@pytest.mark.parametrize("value", ["{", "[]", "portMappings"])
def test_bad_cap_args(core: CoreEnv, value: str) -> None:
    noop_net(core)
    proc = run_cnirun(["cni", "add", "t2-noop", str(core.netns_file)], core.env(CAP_ARGS=value))
    assert_one_line_error(proc, "invalid CAP_ARGS")
    assert core.calls("n") == []


@pytest.mark.parametrize("ifname", ["a-very-long-interface-name", "eth 0", "eth/0", ".."])
def test_bad_interface_name(core: CoreEnv, ifname: str) -> None:
    noop_net(core)
    proc = run_cnirun(["cni", "add", "t2-noop", str(core.netns_file), "-i", ifname], core.env())
    assert_one_line_error(proc, "invalid interface name")
    assert core.calls("n") == []


def test_netns_that_does_not_exist(core: CoreEnv) -> None:
    noop_net(core)
    proc = run_cnirun(["cni", "add", "t2-noop", "/run/netns/t2-no-such-netns"], core.env())
    assert_one_line_error(proc, "network namespace /run/netns/t2-no-such-netns does not exist")
    assert core.calls("n") == [] and core.cache_files() == []


def test_unreadable_config_dir(core: CoreEnv) -> None:
    """Root reads everything; drop CAP_DAC_OVERRIDE/READ_SEARCH so mode 000 bites."""
    noop_net(core)
    core.netconf.chmod(0)
    try:
        proc = subprocess.run(
            ["setpriv", "--bounding-set", "-dac_override,-dac_read_search", CNIRUN_BIN, "cni", "add", "t2-noop",
             str(core.netns_file)], env=core.env(), capture_output=True, text=True, timeout=60)
    finally:
        core.netconf.chmod(0o755)
    assert_one_line_error(proc, str(core.netconf), "permission denied reading the netconf directory")
    assert core.calls("n") == []


def test_cache_dir_is_a_file(core: CoreEnv) -> None:
    noop_net(core)
    blocker = core.root / "cache-file"
    blocker.write_text("")
    proc = run_cnirun(["cni", "add", "t2-noop", str(core.netns_file)], core.env(CNI_CACHE_DIR=str(blocker)))
    assert_one_line_error(proc, f"cache directory {blocker}", "CNI_CACHE_DIR")
    assert core.calls("n") == []


def test_cache_dir_read_only_mount(core: CoreEnv) -> None:
    noop_net(core)
    ro = core.root / "ro-cache"
    (ro / "results").mkdir(parents=True)
    if subprocess.run(["mount", "--bind", str(ro), str(ro)], capture_output=True).returncode != 0:
        pytest.skip("cannot bind-mount here")
    try:
        subprocess.run(["mount", "-o", "remount,bind,ro", str(ro)], check=True, capture_output=True)
        proc = run_cnirun(["cni", "add", "t2-noop", str(core.netns_file)], core.env(CNI_CACHE_DIR=str(ro)))
    finally:
        subprocess.run(["umount", str(ro)], capture_output=True)
    assert_one_line_error(proc, "is not writable", "CNI_CACHE_DIR")
    assert core.calls("n") == []


def test_bad_timeout_env(core: CoreEnv) -> None:
    noop_net(core)
    proc = run_cnirun(["cni", "add", "t2-noop", str(core.netns_file)], core.env(CNIRUN_PLUGIN_TIMEOUT="soon"))
    assert_one_line_error(proc, "CNIRUN_PLUGIN_TIMEOUT='soon' is not a number of seconds")
    assert core.calls("n") == []


def test_del_of_unknown_network_without_cache(core: CoreEnv) -> None:
    proc = run_cnirun(["cni", "del", "t2-never", str(core.netns_file)], core.env())
    assert_one_line_error(proc, 'no net configuration with name "t2-never"')


def test_del_of_removed_network_uses_the_cache(core: CoreEnv) -> None:
    noop_net(core)
    env = core.env()
    assert run_cnirun(["cni", "add", "t2-noop", str(core.netns_file)], env).returncode == 0
    (core.netconf / "t2-noop.conflist").unlink()
    dele = run_cnirun(["cni", "del", "t2-noop", str(core.netns_file)], env)
    assert dele.returncode == 0, dele.stderr
    assert [c["command"] for c in core.calls("n")] == ["ADD", "DEL"] and core.cache_files() == []


# -- cnirun exec ------------------------------------------------------------------


def _netns_exists(name: str) -> bool:
    return os.path.exists(Netns.path(name))


@pytest.fixture
def exec_net(core: CoreEnv, bridges: list[str]) -> CoreEnv:
    if not os.path.exists("/usr/lib/cni/bridge"):
        pytest.skip("containernetworking-plugins not installed")
    real_net(core, bridges, "t2-exec", "cnt2exec", 13)
    real_net(core, bridges, "t2-exec2", "cnt2exe2", 14, full=False)
    return core


def _exec_clean(core: CoreEnv, names: list[str]) -> None:
    """`names`: the netns cnirun exec made (the command prints `ip netns identify`,
    or the noop plugin recorded it as CNI_NETNS): they must be gone, and so must the
    rules naming the run (its container ID, which the netns name begins)."""
    for n in names:
        assert n.startswith("cnirun-")
        assert not _netns_exists(n), f"netns {n} left behind"
    for net, bridge in (("t2-exec", "cnt2exec"), ("t2-exec2", "cnt2exe2")):
        assert bridge_members(bridge) == [] and host_local_reservations(core.ipam, net) == []
    assert core.cache_files() == []
    for n in names:
        assert iptables_rules_naming(n.removeprefix("cnirun-")) == []


def test_exec_runs_the_command_attached_and_returns_its_code(exec_net: CoreEnv) -> None:
    core = exec_net
    proc = run_cnirun(
        ["exec", "--net", "t2-exec", "--net", "t2-exec2", "--", "sh", "-c",
         "ip netns identify; ip -br -4 addr show eth0; ip -br -4 addr show eth1; cat; exit 7"],
        core.env(real=True), input="from stdin\n")
    assert proc.returncode == 7, proc.stderr
    lines = proc.stdout.splitlines()
    name = lines[0]
    assert name.startswith("cnirun-")
    assert "10.121.13." in lines[1] and lines[1].startswith("eth0")
    assert "10.121.14." in lines[2] and lines[2].startswith("eth1")
    assert lines[3] == "from stdin"
    _exec_clean(core, [name])


def test_exec_default_network(exec_net: CoreEnv) -> None:
    core = exec_net
    proc = run_cnirun(["exec", "--", "sh", "-c", "ip netns identify; ip -br -4 addr show eth0"],
                      core.env(real=True, CNIRUN_DEFAULT_NETWORK="t2-exec"))
    assert proc.returncode == 0, proc.stderr
    name, addr = proc.stdout.splitlines()
    assert "10.121.13." in addr
    _exec_clean(core, [name])


def test_exec_bad_network_leaves_nothing(exec_net: CoreEnv) -> None:
    core = exec_net
    proc = run_cnirun(["exec", "--net", "t2-exec", "--net", "t2-missing", "--", "true"], core.env(real=True))
    assert_one_line_error(proc, 'no net configuration with name "t2-missing"')
    _exec_clean(core, [])


def test_exec_second_network_failing_undoes_the_first(exec_net: CoreEnv) -> None:
    core = exec_net
    # eth0: the real chain plus noop, which records the netns and the container ID (the run's ID)
    plugins = bridge_chain("cnt2exec", "10.121.13.0/24", "10.121.13.1", core.ipam) + [core.noop_plugin("x")]
    core.conflist("t2-exec", plugins)
    core.conflist("t2-exec2", [{"type": "t2-absent-plugin"}])
    proc = run_cnirun(["exec", "--net", "t2-exec", "--net", "t2-exec2", "--", "true"], core.env(real=True))
    assert_one_line_error(proc, 'failed to find plugin "t2-absent-plugin"')
    assert proc.returncode == 125
    calls = core.calls("x")
    assert [c["command"] for c in calls] == ["ADD", "DEL"]
    _exec_clean(core, [os.path.basename(calls[0]["netns"])])


@pytest.mark.parametrize("how, expected", [("sigterm", 143), ("ctrl-c", 130)])
def test_exec_signals_tear_down(exec_net: CoreEnv, how: str, expected: int) -> None:
    core = exec_net
    proc = subprocess.Popen(
        [CNIRUN_BIN, "exec", "--net", "t2-exec", "--", "sh", "-c", "ip netns identify; echo ready; exec sleep 60"],
        env=core.env(real=True), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        start_new_session=True,  # its own process group: "Ctrl-C" below signals that group, as a tty does
    )
    try:
        assert proc.stdout is not None
        name = proc.stdout.readline().strip()
        assert proc.stdout.readline().strip() == "ready"
        assert bridge_members("cnt2exec")
        if how == "sigterm":
            proc.send_signal(signal.SIGTERM)
        else:
            os.killpg(proc.pid, signal.SIGINT)
        code = proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert code == expected, proc.stderr.read() if proc.stderr else ""
    assert "Traceback" not in (proc.stderr.read() if proc.stderr else "")
    _exec_clean(core, [name])


def test_exec_command_not_found(core: CoreEnv) -> None:
    core.debug("n", reportResult=R1)
    core.conflist("t2-noop", [core.noop_plugin("n")])
    proc = run_cnirun(["exec", "--net", "t2-noop", "--", "t2-no-such-command"], core.env())
    assert_one_line_error(proc, "command not found: 't2-no-such-command'")
    assert proc.returncode == 127
    assert core.calls("n") == []


def test_exec_needs_a_command(core: CoreEnv) -> None:
    proc = run_cnirun(["exec", "--net", "x"], core.env())
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
