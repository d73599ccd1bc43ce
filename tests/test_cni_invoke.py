"""Plugin invocation as libcni does it, asserted through the noop recording plugin.

Each plugin of a chain is the noop plugin installed under its own type name
(p1, p2, ...) recording into its own debug file, so a test sees exactly what
every plugin got: environment, stdin, order.
"""
from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from cnirun.cni import cache as cnicache
from cnirun.core.errors import (
    CacheError,
    CNIError,
    ConfigError,
    NetnsError,
    PluginError,
    PluginNotFound,
    PluginTimeout,
    VersionError,
    ArgumentError,
)
from cnirun.cni.invoke import Invocation, decode_failure, exec_plugin, find_plugin, plugin_dirs
from cnirun.plugins import install_plugin_script
from cnirun.cni.runtime_conf import RuntimeConf, parse_cap_args, parse_cni_args

from _core_fixtures import CoreEnv, core  # noqa: F401  (fixture)

CNI_VARS = ("CNI_COMMAND", "CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME", "CNI_ARGS", "CNI_PATH")
R1 = {"cniVersion": "1.0.0", "ips": [{"address": "10.121.97.2/24", "gateway": "10.121.97.1"}]}
R2 = {"cniVersion": "1.0.0", "interfaces": [{"name": "eth0", "mac": "02:00:00:00:00:01"}],
      "ips": [{"address": "10.121.97.2/24", "gateway": "10.121.97.1", "interface": 0}]}


def chain(core: CoreEnv, n: int, **behaviours: dict[str, Any]) -> list[dict[str, Any]]:
    """n plugins p1..pn (noop under its own type), each recording to debug-p<i>."""
    plugins = []
    for i in range(1, n + 1):
        t = f"p{i}"
        install_plugin_script(core.bin, t, "cnirun.plugins.noop")
        core.debug(t, **behaviours.get(t, {"reportResult": "PASSTHROUGH"} if i > 1 else {"reportResult": R1}))
        plugins.append({"type": t, "debugFile": str(core.root / f"debug-{t}")})
    return plugins


def order(core: CoreEnv, n: int) -> list[tuple[str, str]]:
    """Every recorded call of p1..pn as (time-sorted) (plugin, command) pairs."""
    calls = []
    for i in range(1, n + 1):
        calls += [(c["time"], f"p{i}", c["command"]) for c in core.calls(f"p{i}")]
    return [(p, c) for _, p, c in sorted(calls)]


# -- environment -------------------------------------------------------------


def test_all_six_variables_always_set_and_override_inherited(core: CoreEnv) -> None:
    core.conflist("env", chain(core, 1))
    inherited = {"PATH": os.environ.get("PATH", ""), "CNI_IFNAME": "bogus", "CNI_ARGS": "X=1", "KEEP": "me"}
    cni = core.cni(environ=inherited)
    net = cni.network("env")
    cni.add(net, core.rt("c-env", ifname="eth3"))
    cni.delete(net, core.rt("c-env", ifname="eth3", netns=""))
    cni.gc(net)
    calls = core.calls("p1")
    assert [c["command"] for c in calls] == ["ADD", "DEL"]
    add, dele = calls
    assert {k: add["env"][k] for k in CNI_VARS} == {
        "CNI_COMMAND": "ADD", "CNI_CONTAINERID": "c-env", "CNI_NETNS": str(core.netns_file),
        "CNI_IFNAME": "eth3", "CNI_ARGS": "", "CNI_PATH": str(core.bin),
    }
    # DEL: netns taken from the cache, CNI_ARGS still set (empty), never inherited
    assert dele["env"]["CNI_NETNS"] == str(core.netns_file)
    assert dele["env"]["CNI_ARGS"] == "" and dele["env"]["CNI_IFNAME"] == "eth3"


def test_gc_and_status_env_has_every_variable_empty(core: CoreEnv) -> None:
    core.conflist("env11", chain(core, 1), cniVersion="1.1.0")
    cni = core.cni(environ={"PATH": os.environ["PATH"], "CNI_CONTAINERID": "inherited"})
    net = cni.network("env11")
    cni.gc(net)
    cni.status(net)
    calls = core.calls("p1")
    assert [c["command"] for c in calls] == ["GC", "STATUS"]
    for call, cmd in zip(calls, ("GC", "STATUS")):
        assert call["env"]["CNI_COMMAND"] == cmd
        assert all(k in call["env"] for k in CNI_VARS)
        assert call["env"]["CNI_CONTAINERID"] == "" and call["env"]["CNI_NETNS"] == ""
        assert call["env"]["CNI_PATH"] == str(core.bin)


def test_cni_args_and_path_passed(core: CoreEnv, tmp_path: Path) -> None:
    core.conflist("args", chain(core, 1))
    extra = tmp_path / "extra-bin"
    extra.mkdir()
    cni = core.cni(plugin_path=[str(core.bin), str(extra)])
    cni.add(cni.network("args"), core.rt(args=[("IgnoreUnknown", "1"), ("K8S_POD_NAME", "x")]))
    env = core.calls("p1")[0]["env"]
    assert env["CNI_ARGS"] == "IgnoreUnknown=1;K8S_POD_NAME=x"
    assert env["CNI_PATH"] == f"{core.bin}:{extra}"


def test_empty_path_gets_a_fallback(core: CoreEnv) -> None:
    core.conflist("nopath", chain(core, 1))
    cni = core.cni(environ={})  # e.g. an OCI hook started with no environment at all
    cni.add(cni.network("nopath"), core.rt())
    assert len(core.calls("p1")) == 1


# -- stdin ---------------------------------------------------------------------


def test_stdin_injection_and_chaining(core: CoreEnv) -> None:
    plugins = chain(core, 3)
    plugins[0]["capabilities"] = {"portMappings": True, "ips": False}
    plugins[0]["vendor/unknown"] = {"keep": [1, {"deep": None}]}
    plugins[1]["capabilities"] = {"mac": True}
    plugins[2]["runtimeConfig"] = {"fromFile": True}  # nothing injected: the file's own stays
    core.conflist("inj", plugins, cniVersion="0.4.0", cniVersions=["1.0.0", "1.1.0"], topLevel="x")
    cni = core.cni()
    caps = {"portMappings": [{"hostPort": 8080, "containerPort": 80, "protocol": "tcp"}], "ips": ["10.121.97.9/24"]}
    result = cni.add(cni.network("inj"), core.rt(capability_args=caps))
    s1, s2, s3 = (core.stdins(f"p{i}", "ADD")[0] for i in (1, 2, 3))
    for s in (s1, s2, s3):
        assert s["name"] == "inj" and s["cniVersion"] == "1.1.0"
        assert "topLevel" not in s
    assert "prevResult" not in s1
    assert s1["runtimeConfig"] == {"portMappings": caps["portMappings"]}  # ips: false, not asked
    assert s1["vendor/unknown"] == {"keep": [1, {"deep": None}]}
    assert s1["capabilities"] == {"portMappings": True, "ips": False}  # libcni passes it on
    assert "runtimeConfig" not in s2  # asked for mac, runtime gave none
    assert s3["runtimeConfig"] == {"fromFile": True}
    # prevResult chaining: p2 gets p1's result, p3 gets p2's (PASSTHROUGH, converted to 1.1.0)
    assert s2["prevResult"] == dict(R1, cniVersion="1.0.0")
    assert s3["prevResult"]["ips"] == R1["ips"]
    assert result["cniVersion"] == "1.1.0" and result["ips"] == R1["ips"]


def test_unknown_keys_reach_the_plugin_untouched(core: CoreEnv) -> None:
    weird = {"type": "p1", "debugFile": str(core.root / "debug-p1"), "ipMasq": True, "mtu": 1400,
             "ipam": {"type": "x", "ranges": [[{"subnet": "10.121.97.0/24"}]], "custom": [None, 1.5, "é"]},
             "dns": {"nameservers": ["10.121.97.1"]}, "args": {"cni": {"labels": [{"key": "a", "value": "b"}]}},
             "cni.dev/extra": 7}
    install_plugin_script(core.bin, "p1", "cnirun.plugins.noop")
    core.debug("p1", reportResult=R1)
    core.conflist("keys", [weird])
    cni = core.cni()
    cni.add(cni.network("keys"), core.rt())
    got = core.stdins("p1", "ADD")[0]
    assert {k: v for k, v in got.items() if k not in ("name", "cniVersion")} == weird


def test_result_without_version_gets_the_config_version(core: CoreEnv) -> None:
    core.conflist("nover", chain(core, 1, p1={"reportResult": {"ips": [{"address": "10.121.97.3/24"}]}}),
                  cniVersion="0.4.0")
    cni = core.cni()
    res = cni.add(cni.network("nover"), core.rt())
    assert res["cniVersion"] == "0.4.0"
    assert res["ips"][0]["version"] == "4"


def test_single_plugin_conf_runs(core: CoreEnv) -> None:
    install_plugin_script(core.bin, "p1", "cnirun.plugins.noop")
    core.debug("p1", reportResult=R1)
    core.write("one.conf", {"cniVersion": "1.0.0", "name": "one", "type": "p1", "debugFile": str(core.root / "debug-p1")})
    cni = core.cni()
    assert cni.add(cni.network("one"), core.rt())["ips"] == R1["ips"]
    cni.delete("one", core.rt())
    assert [c["command"] for c in core.calls("p1")] == ["ADD", "DEL"]


# -- order -------------------------------------------------------------------


def test_add_in_order_check_in_order_del_in_reverse_with_cached_result(core: CoreEnv) -> None:
    core.conflist("ord", chain(core, 3))
    cni = core.cni()
    net = cni.network("ord")
    final = cni.add(net, core.rt())
    cni.check(net, core.rt())
    cni.delete(net, core.rt())
    assert order(core, 3) == [
        ("p1", "ADD"), ("p2", "ADD"), ("p3", "ADD"),
        ("p1", "CHECK"), ("p2", "CHECK"), ("p3", "CHECK"),
        ("p3", "DEL"), ("p2", "DEL"), ("p1", "DEL"),
    ]
    # CHECK and DEL: every plugin gets the final cached result as prevResult
    for i in (1, 2, 3):
        assert core.stdins(f"p{i}", "CHECK")[0]["prevResult"] == final
        assert core.stdins(f"p{i}", "DEL")[0]["prevResult"] == final


def test_del_uses_the_cached_config_after_the_file_changed(core: CoreEnv) -> None:
    core.conflist("chg", chain(core, 2))
    cni = core.cni()
    cni.add(cni.network("chg"), core.rt())
    install_plugin_script(core.bin, "other", "cnirun.plugins.noop")
    core.debug("other")
    core.conflist("chg", [{"type": "other", "debugFile": str(core.root / "debug-other")}])
    cni.delete(cni.network("chg"), core.rt())
    assert [c["command"] for c in core.calls("p1")] == ["ADD", "DEL"]
    assert [c["command"] for c in core.calls("p2")] == ["ADD", "DEL"]
    assert core.calls("other") == []


def test_del_works_after_the_network_file_is_gone(core: CoreEnv) -> None:
    core.conflist("gone", chain(core, 2))
    cni = core.cni()
    cni.add(cni.network("gone"), core.rt())
    (core.netconf / "gone.conflist").unlink()
    cni.delete("gone", core.rt())
    assert order(core, 2)[-2:] == [("p2", "DEL"), ("p1", "DEL")]
    assert core.cache_files() == []


def test_del_with_missing_netns_passes_empty_netns(core: CoreEnv) -> None:
    core.conflist("nons", chain(core, 1))
    cni = core.cni()
    cni.add(cni.network("nons"), core.rt())
    core.netns_file.unlink()
    cni.delete("nons", core.rt())
    dele = core.calls("p1")[-1]
    assert dele["command"] == "DEL" and dele["netns"] == ""
    assert core.cache_files() == []


def test_del_with_corrupt_cache_goes_on_without_prev_result(core: CoreEnv) -> None:
    core.conflist("corr", chain(core, 2))
    cni = core.cni()
    cni.add(cni.network("corr"), core.rt())
    (core.cache / "results" / "corr-ctr1-eth0").write_bytes(b"")  # what a crash/reboot leaves
    cni.delete("corr", core.rt())
    for i in (1, 2):
        assert "prevResult" not in core.stdins(f"p{i}", "DEL")[0]
    assert core.cache_files() == []


def test_del_without_cache_uses_the_file(core: CoreEnv) -> None:
    core.conflist("nocache", chain(core, 1))
    cni = core.cni()
    cni.delete("nocache", core.rt("never-added"))
    assert [c["command"] for c in core.calls("p1")] == ["DEL"]
    assert "prevResult" not in core.stdins("p1")[0]


def test_del_below_040_gets_no_prev_result(core: CoreEnv) -> None:
    core.conflist("old", chain(core, 1), cniVersion="0.3.1")
    cni = core.cni()
    cni.add(cni.network("old"), core.rt())
    cni.delete("old", core.rt())
    assert "prevResult" not in core.stdins("p1", "DEL")[0]


def test_del_failure_keeps_the_cache_and_stops(core: CoreEnv) -> None:
    core.conflist("delfail", chain(core, 2, p2={"reportResult": "PASSTHROUGH", "commands": {"DEL": {"reportError": "busy"}}}))
    cni = core.cni()
    cni.add(cni.network("delfail"), core.rt())
    with pytest.raises(PluginError, match="busy"):
        cni.delete("delfail", core.rt())
    assert [c["command"] for c in core.calls("p1")] == ["ADD"]  # stopped at p2, as libcni
    assert core.cache_files() == ["delfail-ctr1-eth0"]
    core.debug("p2", reportResult="PASSTHROUGH")
    cni.delete("delfail", core.rt())  # retry works from the kept cache
    assert core.cache_files() == []


def test_repeated_del_succeeds(core: CoreEnv) -> None:
    core.conflist("twice", chain(core, 1))
    cni = core.cni()
    cni.add(cni.network("twice"), core.rt())
    cni.delete("twice", core.rt())
    assert core.cache_files() == []
    cni.delete("twice", core.rt())  # nothing cached any more: DEL still runs, and succeeds (spec)
    assert [c["command"] for c in core.calls("p1")] == ["ADD", "DEL", "DEL"]
    assert core.cache_files() == []


# -- ADD failing part-way ----------------------------------------------------


def test_failed_add_runs_del_for_the_whole_chain(core: CoreEnv) -> None:
    core.conflist("partial", chain(core, 3, p2={"reportError": "no more addresses", "reportErrorCode": 110,
                                                "reportErrorDetails": "range full"}))
    cni = core.cni()
    with pytest.raises(PluginError) as ei:
        cni.add(cni.network("partial"), core.rt())
    e = ei.value
    assert (e.plugin, e.network, e.command, e.code, e.msg, e.details) == (
        "p2", "partial", "ADD", 110, "no more addresses", "range full")
    assert str(e) == 'plugin type="p2" name="partial" failed (add): code 110: no more addresses (range full)'
    assert order(core, 3) == [("p1", "ADD"), ("p2", "ADD"), ("p3", "DEL"), ("p2", "DEL"), ("p1", "DEL")]
    # the rollback DEL hands over what ADD got so far
    assert core.stdins("p1", "DEL")[0]["prevResult"]["ips"] == R1["ips"]
    assert core.cache_files() == []


def test_missing_plugin_fails_before_anything_runs(core: CoreEnv) -> None:
    plugins = chain(core, 1) + [{"type": "not-installed"}]
    core.conflist("miss", plugins)
    cni = core.cni()
    with pytest.raises(PluginNotFound) as ei:
        cni.add(cni.network("miss"), core.rt())
    assert 'failed to find plugin "not-installed"' in str(ei.value) and str(core.bin) in str(ei.value)
    assert core.calls("p1") == []


# -- failures of one plugin ------------------------------------------------------


def _run_one(core: CoreEnv, **behaviour: Any) -> PluginError:
    core.conflist("f", chain(core, 1, p1=behaviour))
    cni = core.cni(timeout=behaviour.pop("_timeout", None))
    with pytest.raises(PluginError) as ei:
        cni.add(cni.network("f"), core.rt())
    assert core.cache_files() == []
    return ei.value


def test_crash_with_no_output(core: CoreEnv) -> None:
    e = _run_one(core, crash=True)
    assert "netplugin failed with no error message (exit status 2)" in str(e)
    assert 'type="p1" name="f"' in str(e)


def test_stderr_only(core: CoreEnv) -> None:
    e = _run_one(core, stderrOnly="segfault somewhere")
    assert e.msg == "netplugin failed: 'segfault somewhere'"


def test_garbage_result(core: CoreEnv) -> None:
    e = _run_one(core, reportResult="this is not json")
    assert e.code == 6 and "invalid result: not JSON" in e.msg


def test_invalid_result_object(core: CoreEnv) -> None:
    e = _run_one(core, reportResult={"cniVersion": "1.0.0", "ips": [{"address": "nonsense"}]})
    assert e.code == 6 and "invalid result" in e.msg


def test_error_json_from_plugin_fields(core: CoreEnv) -> None:
    e = _run_one(core, reportError="bad thing", reportErrorCode=7, reportErrorDetails="field x")
    assert (e.code, e.msg, e.details, e.plugin, e.network) == (7, "bad thing", "field x", "p1", "f")


def test_plugin_stderr_passed_through_on_success(core: CoreEnv, capfd: pytest.CaptureFixture[str]) -> None:
    core.conflist("se", chain(core, 1, p1={"reportResult": R1, "reportStderr": "a log line\n"}))
    cni = core.cni()
    cni.add(cni.network("se"), core.rt())
    assert "a log line" in capfd.readouterr().err


def test_decode_failure_rules() -> None:
    e = decode_failure("t", "n", "ADD", b'{"code": 11, "msg": "later"}', b"", 1)
    assert (e.code, e.msg) == (11, "later")
    assert decode_failure("t", "n", "ADD", b"", b"", -9).msg.endswith("(killed by signal 9)")
    assert decode_failure("t", "n", "DEL", b"", b"oops\n", 1).msg == "netplugin failed: 'oops'"


# -- timeouts --------------------------------------------------------------------


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie still answers kill(0): look at its state
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_timeout_api_argument_kills_the_hung_plugin(core: CoreEnv) -> None:
    plugins = chain(core, 2, p2={"commands": {"ADD": {"sleep": 30}}})
    core.conflist("hang", plugins)
    cni = core.cni(timeout=1.0)
    t0 = time.monotonic()
    with pytest.raises(PluginTimeout) as ei:
        cni.add(cni.network("hang"), core.rt())
    assert time.monotonic() - t0 < 10
    e = ei.value
    assert e.plugin == "p2" and e.code == 11
    assert 'plugin type="p2" name="hang" failed (add)' in str(e) and "no answer within 1 s, killed" in str(e)
    pid = core.calls("p2")[0]["pid"]
    assert not _alive(pid)
    # rollback DEL ran for the chain, nothing cached
    assert order(core, 2)[-2:] == [("p2", "DEL"), ("p1", "DEL")]
    assert core.cache_files() == []


def test_timeout_from_environment(core: CoreEnv, monkeypatch: pytest.MonkeyPatch) -> None:
    core.conflist("hang2", chain(core, 1, p1={"commands": {"ADD": {"sleep": 30}}}))
    monkeypatch.setenv("CNIRUN_PLUGIN_TIMEOUT", "0.5")
    cni = core.cni()
    with pytest.raises(PluginTimeout, match=r"within 0\.5 s"):
        cni.add(cni.network("hang2"), core.rt())
    assert not _alive(core.calls("p1")[0]["pid"])


@pytest.mark.parametrize("value", ["abc", "0", "-3"])
def test_bad_timeout_value(core: CoreEnv, monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    core.conflist("t", chain(core, 1))
    monkeypatch.setenv("CNIRUN_PLUGIN_TIMEOUT", value)
    cni = core.cni()
    with pytest.raises(CNIError, match="CNIRUN_PLUGIN_TIMEOUT"):
        cni.add(cni.network("t"), core.rt())
    assert core.calls("p1") == []


# -- CHECK -------------------------------------------------------------------


def test_check_below_040_is_an_error(core: CoreEnv) -> None:
    core.conflist("chk", chain(core, 1), cniVersion="0.3.1")
    cni = core.cni()
    with pytest.raises(VersionError, match="does not support the CHECK command"):
        cni.check(cni.network("chk"), core.rt())
    assert core.calls("p1") == []


@pytest.mark.parametrize("flag", [True, "true"])
def test_check_disabled(core: CoreEnv, flag: object) -> None:
    core.conflist("chk", chain(core, 1), disableCheck=flag)
    cni = core.cni()
    cni.check(cni.network("chk"), core.rt())
    assert core.calls("p1") == []


def test_check_without_cache_has_no_prev_result(core: CoreEnv) -> None:
    core.conflist("chk", chain(core, 1))
    cni = core.cni()
    cni.check(cni.network("chk"), core.rt())
    assert "prevResult" not in core.stdins("p1", "CHECK")[0]


def test_check_with_unreadable_cache_is_an_error(core: CoreEnv) -> None:
    core.conflist("chk", chain(core, 1))
    cni = core.cni()
    cni.add(cni.network("chk"), core.rt())
    (core.cache / "results" / "chk-ctr1-eth0").write_text("{garbage")
    with pytest.raises(CacheError, match="corrupt cache file"):
        cni.check(cni.network("chk"), core.rt())
    assert [c["command"] for c in core.calls("p1")] == ["ADD"]


def test_check_failure_surfaces(core: CoreEnv) -> None:
    core.conflist("chk", chain(core, 1, p1={"reportResult": R1, "commands": {"CHECK": {"reportError": "veth gone"}}}))
    cni = core.cni()
    cni.add(cni.network("chk"), core.rt())
    with pytest.raises(PluginError, match="veth gone"):
        cni.check(cni.network("chk"), core.rt())


def test_check_needs_the_netns(core: CoreEnv) -> None:
    core.conflist("chk", chain(core, 1))
    cni = core.cni()
    with pytest.raises(NetnsError, match="does not exist"):
        cni.check(cni.network("chk"), core.rt(netns="/run/netns/definitely-not-here"))


# -- GC ----------------------------------------------------------------------


def _gc_setup(core: CoreEnv, version: str, **top: Any) -> Any:
    core.conflist("gcnet", chain(core, 2), cniVersion=version, **top)
    cni = core.cni()
    net = cni.network("gcnet")
    cni.add(net, core.rt("keep", args=[("A", "1")]))
    cni.add(net, core.rt("stale", ifname="eth1", args=[("B", "2")], capability_args={"mac": "x"}))
    for i in (1, 2):
        Path(core.root / f"debug-p{i}.log").unlink()
    return cni, net


def test_gc_dels_stale_attachments_and_calls_plugin_gc(core: CoreEnv) -> None:
    cni, net = _gc_setup(core, "1.1.0")
    assert cni.gc(net, [("keep", "eth0")]) == []
    assert core.cache_files() == ["gcnet-keep-eth0"]
    assert order(core, 2) == [("p2", "DEL"), ("p1", "DEL"), ("p1", "GC"), ("p2", "GC")]
    dele = core.calls("p1")[0]
    # the stale attachment's DEL is a full one, with its cached netns and arguments
    assert (dele["containerID"], dele["ifname"], dele["netns"], dele["args"]) == (
        "stale", "eth1", str(core.netns_file), "B=2")
    gc_in = core.stdins("p1", "GC")[0]
    assert gc_in["cni.dev/valid-attachments"] == [{"containerID": "keep", "ifname": "eth0"}]
    assert gc_in["cni.dev/attachments"] == gc_in["cni.dev/valid-attachments"]
    assert "prevResult" not in gc_in and "runtimeConfig" not in gc_in
    assert gc_in["name"] == "gcnet" and gc_in["cniVersion"] == "1.1.0"


def test_gc_below_110_only_dels(core: CoreEnv) -> None:
    cni, net = _gc_setup(core, "1.0.0")
    assert cni.gc(net, []) == []
    assert core.cache_files() == []
    assert {c for _, c in order(core, 2)} == {"DEL"}


@pytest.mark.parametrize("flag", [True, "TRUE"])
def test_gc_disabled(core: CoreEnv, flag: object) -> None:
    cni, net = _gc_setup(core, "1.1.0", disableGC=flag)
    assert cni.gc(net, []) == []
    assert len(core.cache_files()) == 2 and order(core, 2) == []


def test_gc_goes_on_past_errors(core: CoreEnv) -> None:
    cni, net = _gc_setup(core, "1.1.0")
    core.debug("p1", reportResult=R1, commands={"GC": {"reportError": "gc1 failed"}})
    core.debug("p2", reportResult="PASSTHROUGH", commands={"DEL": {"reportError": "del failed"}})
    errors = cni.gc(net, [])
    assert [e.msg for e in errors] == ["del failed", "del failed", "gc1 failed"]
    assert ("p2", "GC") in order(core, 2)


def test_gc_runs_alone(core: CoreEnv) -> None:
    """While GC runs, an ADD waits for it (one host-wide lock for the whole GC pass)."""
    core.conflist("gcnet", chain(core, 1, p1={"reportResult": R1, "commands": {"GC": {"sleep": 1.0}}}),
                  cniVersion="1.1.0")
    cni = core.cni()
    net = cni.network("gcnet")
    t = threading.Thread(target=cni.gc, args=(net, []))
    t.start()
    deadline = time.monotonic() + 10
    while not core.calls("p1") and time.monotonic() < deadline:
        time.sleep(0.02)
    cni.add(net, core.rt("during-gc"))
    t.join()
    gc_call, add_call = core.calls("p1")[:2]
    assert (gc_call["command"], add_call["command"]) == ("GC", "ADD")
    assert add_call["time"] >= gc_call["time"] + 0.9


def test_concurrent_adds_are_serialised(core: CoreEnv) -> None:
    core.conflist("many", chain(core, 1))
    cni = core.cni()
    net = cni.network("many")
    errors: list[BaseException] = []

    def one(i: int) -> None:
        try:
            cni.add(net, core.rt(f"c{i}"))
        except BaseException as e:  # noqa: BLE001
            errors.append(e)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(core.cache_files()) == 8


# -- STATUS --------------------------------------------------------------------


def test_status_110_calls_every_plugin(core: CoreEnv) -> None:
    core.conflist("st", chain(core, 2), cniVersion="1.1.0")
    cni = core.cni()
    cni.status(cni.network("st"))
    assert order(core, 2) == [("p1", "STATUS"), ("p2", "STATUS")]


def test_status_skipped_below_110(core: CoreEnv) -> None:
    core.conflist("st", chain(core, 1), cniVersion="1.0.0")
    cni = core.cni()
    cni.status(cni.network("st"))
    assert core.calls("p1") == []


def test_status_error_stops_at_first(core: CoreEnv) -> None:
    core.conflist("st", chain(core, 2, p1={"reportError": "not ready", "reportErrorCode": 50}), cniVersion="1.1.0")
    cni = core.cni()
    with pytest.raises(PluginError) as ei:
        cni.status(cni.network("st"))
    assert ei.value.code == 50 and ei.value.command == "STATUS"
    assert core.calls("p2") == []


# -- VERSION and validate ---------------------------------------------------------


def test_version_probe(core: CoreEnv) -> None:
    cni = core.cni()
    info = cni.version("noop")
    assert info.supported_versions == ["0.1.0", "0.2.0", "0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"]


def test_version_probe_sends_110_and_no_container(core: CoreEnv) -> None:
    chain(core, 1)
    assert "1.1.0" in core.cni().version("p1").supported_versions
    # VERSION has no config to name a debug file: pass DEBUG= in CNI_ARGS to see the call.
    dbg = core.root / "debug-p1"
    out = exec_plugin(str(core.bin / "p1"), Invocation(command="VERSION", args=f"DEBUG={dbg}"),
                      b'{"cniVersion":"1.1.0"}')
    assert json.loads(out)["cniVersion"] == "1.1.0"
    call = core.calls("p1")[-1]
    assert call["command"] == "VERSION" and call["stdin"] == '{"cniVersion":"1.1.0"}'


def test_old_plugin_without_version_command(core: CoreEnv) -> None:
    core.debug("old", commands={"VERSION": {"reportError": "unknown CNI_COMMAND: VERSION", "reportErrorCode": 4}})
    # point noop at the debug file via a wrapper that sets CNI_ARGS for VERSION
    wrapper = core.bin / "oldplugin"
    wrapper.write_text(f"#!/bin/sh\nCNI_ARGS=DEBUG={core.root / 'debug-old'} exec {core.bin / 'noop'}\n")
    wrapper.chmod(0o755)
    info = core.cni().version("oldplugin")
    assert (info.cni_version, info.supported_versions) == ("0.1.0", ["0.1.0"])


def test_validate(core: CoreEnv) -> None:
    plugins = chain(core, 2)
    plugins[0]["capabilities"] = {"portMappings": True}
    plugins[1]["capabilities"] = {"mac": True, "ips": False}
    core.conflist("val", plugins, cniVersion="1.1.0")
    cni = core.cni()
    assert cni.validate(cni.network("val")) == ["mac", "portMappings"]


def test_validate_version_mismatch_and_missing_plugin(core: CoreEnv) -> None:
    core.debug("lim", reportVersionSupport=["0.3.1", "0.4.0"])
    wrapper = core.bin / "limited"
    wrapper.write_text(f"#!/bin/sh\nCNI_ARGS=DEBUG={core.root / 'debug-lim'} exec {core.bin / 'noop'}\n")
    wrapper.chmod(0o755)
    core.conflist("val", [{"type": "limited"}], cniVersion="1.0.0")
    cni = core.cni()
    with pytest.raises(VersionError) as ei:
        cni.validate(cni.network("val"))
    assert 'plugin type="limited" does not support config version "1.0.0"' in str(ei.value)
    assert "0.3.1, 0.4.0" in str(ei.value)
    core.conflist("val2", [{"type": "absent"}])
    with pytest.raises(PluginNotFound):
        cni.validate(cni.network("val2"))


# -- argument validation -------------------------------------------------------------


@pytest.mark.parametrize("cid, code", [("", 3), ("bad id", 4), ("-x", 4), ("a/b", 4)])
def test_bad_container_id(core: CoreEnv, cid: str, code: int) -> None:
    core.conflist("v", chain(core, 1))
    cni = core.cni()
    with pytest.raises(CNIError) as ei:
        cni.add(cni.network("v"), core.rt(cid))
    assert ei.value.code == code
    assert core.calls("p1") == []


@pytest.mark.parametrize("ifname", ["", "a" * 16, ".", "..", "eth/0", "eth:0", "eth 0", "eth\t0"])
def test_bad_interface_name(core: CoreEnv, ifname: str) -> None:
    core.conflist("v", chain(core, 1))
    cni = core.cni()
    with pytest.raises(ArgumentError, match="interface name") as ei:
        cni.add(cni.network("v"), core.rt(ifname=ifname))
    assert ei.value.code == 4
    assert core.calls("p1") == []


def test_missing_and_absent_netns(core: CoreEnv) -> None:
    core.conflist("v", chain(core, 1))
    cni = core.cni()
    with pytest.raises(NetnsError, match="missing network namespace"):
        cni.add(cni.network("v"), core.rt(netns=""))
    with pytest.raises(NetnsError, match="does not exist") as ei:
        cni.add(cni.network("v"), core.rt(netns="/run/netns/no-such-netns"))
    assert ei.value.code == 8
    assert core.calls("p1") == []


def test_cache_dir_not_usable_fails_before_add(core: CoreEnv) -> None:
    core.conflist("v", chain(core, 1))
    blocker = core.root / "blocker"
    blocker.write_text("")
    cni = core.cni(cache_dir=str(blocker))
    with pytest.raises(CacheError, match="CNI_CACHE_DIR"):
        cni.add(cni.network("v"), core.rt())
    assert core.calls("p1") == []


def test_parse_cni_args_and_cap_args() -> None:
    assert parse_cni_args("") == []
    assert parse_cni_args("A=1;B=;C=x=y") == [("A", "1"), ("B", ""), ("C", "x=y")]
    for bad in ("A", "=1", "A=1;B"):
        with pytest.raises(ArgumentError, match="CNI_ARGS"):
            parse_cni_args(bad)
    assert parse_cap_args('{"portMappings": []}') == {"portMappings": []}
    for bad in ("{", "[1]", '"x"'):
        with pytest.raises(ArgumentError, match="CAP_ARGS"):
            parse_cap_args(bad)


def test_find_plugin_rules(core: CoreEnv, tmp_path: Path) -> None:
    first, second = tmp_path / "first", tmp_path / "second"
    first.mkdir()
    second.mkdir()
    (second / "x").write_text("")  # the exec bit is not checked (libcni)
    (first / "x").mkdir()  # a directory is not a plugin
    assert find_plugin("x", [str(first), str(second)]) == str(second / "x")
    for bad in ("a/b", "a\\b", "..", ""):
        with pytest.raises(PluginNotFound):
            find_plugin(bad, [str(second)])


def test_plugin_dirs_defaults_then_cnirun_s_own(monkeypatch: pytest.MonkeyPatch) -> None:
    from cnirun.cni.invoke import OWN_PLUGIN_DIR

    monkeypatch.delenv("CNI_PATH", raising=False)
    assert plugin_dirs(None) == ["/opt/cni/bin", "/usr/lib/cni", "/usr/libexec/cni", OWN_PLUGIN_DIR]
    monkeypatch.setenv("CNI_PATH", "/a::/b")
    assert plugin_dirs(None) == ["/a", "/b", OWN_PLUGIN_DIR]
    assert plugin_dirs(f"/a:{OWN_PLUGIN_DIR}") == ["/a", OWN_PLUGIN_DIR]  # recorded paths round-trip
    assert plugin_dirs(["/only"]) == ["/only"]  # the API's explicit list is taken as it is


def test_cnirun_s_own_plugins_are_found_without_an_install_step() -> None:
    """sysctl and flannel launchers run in place: a CNI_PATH without them still finds them, VERSION answers."""
    import os

    from cnirun.cni.invoke import OWN_PLUGIN_DIR, probe_version

    found = find_plugin("sysctl", plugin_dirs("/nonexistent"))
    assert found == os.path.join(OWN_PLUGIN_DIR, "sysctl")
    assert "1.0.0" in probe_version(found, plugin_type="sysctl").supported_versions
    assert find_plugin("flannel", plugin_dirs("/nonexistent")) == os.path.join(OWN_PLUGIN_DIR, "flannel")


def test_runtime_conf_is_not_mutated_by_del(core: CoreEnv) -> None:
    core.conflist("mut", chain(core, 1))
    cni = core.cni()
    cni.add(cni.network("mut"), core.rt())
    rt = RuntimeConf("ctr1", netns="/run/netns/gone-already")
    cni.delete("mut", rt)
    assert rt.netns == "/run/netns/gone-already"


def test_config_error_unknown_network(core: CoreEnv) -> None:
    cni = core.cni()
    with pytest.raises(ConfigError, match='no net configuration with name "zzz"'):
        cni.network("zzz")
    assert cnicache.list_attachments(str(core.cache)) == []


def test_package_exports_the_api_lazily() -> None:
    import subprocess
    import sys

    code = ("import sys, cnirun; assert 'cnirun.cni.runtime' not in sys.modules; "
            "from cnirun import CNI, RuntimeConf, Result, PluginError, CNIError; "
            "assert CNI.__module__ == 'cnirun.cni.runtime' and issubclass(PluginError, CNIError); print('ok')")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.stdout.strip() == "ok", out.stderr
    import cnirun

    with pytest.raises(AttributeError):
        cnirun.NoSuchThing  # noqa: B018


def test_run_program_until_answers_at_the_marker_and_reaps_the_program_later() -> None:
    """With `until`, run_program returns once stdout holds it (exit code 0), while the program
    still runs; a thread reaps it when it exits: no zombie is left. Without the marker on stdout
    it waits for the exit, and the real exit code counts."""
    from cnirun.cni.invoke import run_program

    t = time.monotonic()
    code, out, _ = run_program(["/bin/sh", "-c", 'echo "$$"; echo "# new generation 7"; exec sleep 1.5'],
                               until=b"# new generation ")
    took = time.monotonic() - t
    assert (code, took < 1.0) == (0, True), (code, took, out)
    pid = int(out.split()[0])
    assert os.path.exists(f"/proc/{pid}")  # still running: the answer did not wait for it
    deadline = time.monotonic() + 10
    while os.path.exists(f"/proc/{pid}") and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not os.path.exists(f"/proc/{pid}"), "the program was not reaped after it exited"
    assert run_program(["/bin/sh", "-c", "echo no marker; exit 3"], until=b"# new generation ")[0] == 3
    assert run_program(["/bin/sh", "-c", "echo '# new gen'; exit 4"], until=b"# new generation ")[0] == 4
