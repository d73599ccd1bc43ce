"""cnirun.cni.skel (the plugin SDK), the noop test plugin, the launcher helper,
and the sysctl example plugin against a real network namespace."""
from __future__ import annotations

import io
import json
import os
import shutil
import stat
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from cnirun.core.errors import CNIError
from cnirun.plugins import install_plugin_script, noop
from cnirun.plugins import sysctl as sysctl_plugin
from cnirun.cni.skel import CmdArgs, parse_cni_args, plugin_main

ALL = ("0.1.0", "0.2.0", "0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0")


def conf(version="1.1.0", name="testnet", **extra):
    c = {"cniVersion": version, "name": name, "type": "x"}
    c.update(extra)
    return json.dumps(c).encode()


def env_for(cmd, **over):
    env = {
        "CNI_COMMAND": cmd,
        "CNI_CONTAINERID": "ctr1",
        "CNI_NETNS": "/var/run/netns/does-not-exist",
        "CNI_IFNAME": "eth0",
        "CNI_ARGS": "",
        "CNI_PATH": "/opt/cni/bin",
    }
    for k, v in over.items():
        if v is None:
            env.pop(k, None)
        else:
            env[k] = v
    return env


class Recorder:
    """Callbacks that record their CmdArgs and return canned values."""

    def __init__(self, ret=None, exc=None):
        self.calls: list[tuple[str, CmdArgs]] = []
        self.ret = ret
        self.exc = exc

    def cb(self, name):
        def f(args):
            self.calls.append((name, args))
            if self.exc is not None:
                raise self.exc
            return self.ret

        return f

    @property
    def names(self):
        return [n for n, _ in self.calls]


def run(env, stdin=b"", rec=None, **kw):
    rec = rec or Recorder()
    out, err = io.StringIO(), io.StringIO()
    kw.setdefault("gc", rec.cb("GC"))
    kw.setdefault("status", rec.cb("STATUS"))
    rc = plugin_main(
        rec.cb("ADD"), rec.cb("CHECK"), rec.cb("DEL"), environ=env, stdin=stdin, stdout=out, stderr=err, **kw
    )
    return rc, out.getvalue(), err.getvalue(), rec


def error_of(out):
    obj = json.loads(out)
    assert set(obj) <= {"cniVersion", "code", "msg", "details"}
    return obj


# ---------------------------------------------------------------- skel: success


def test_add_passes_every_argument_and_prints_result():
    rec = Recorder(ret={"ips": [{"address": "10.0.0.2/24"}]})
    stdin = conf("1.0.0", extra_key=1)
    env = env_for("ADD", CNI_ARGS="A=1;B=2", CNI_PATH="/a:/b", CNI_NETNS="/run/netns/x")
    rc, out, err, _ = run(env, stdin, rec)
    assert rc == 0 and err == ""
    assert json.loads(out) == {"cniVersion": "1.0.0", "ips": [{"address": "10.0.0.2/24"}]}
    assert rec.names == ["ADD"]
    a = rec.calls[0][1]
    assert a == CmdArgs(
        container_id="ctr1",
        netns="/run/netns/x",
        ifname="eth0",
        args="A=1;B=2",
        path="/a:/b",
        stdin=stdin,
        netconf=json.loads(stdin),
        command="ADD",
    )
    assert a.cni_args() == {"A": "1", "B": "2"}
    assert a.path_list == ["/a", "/b"]
    assert a.cni_version == "1.0.0" and a.name == "testnet"


def test_result_keeps_its_own_cni_version_and_strings_are_verbatim():
    rc, out, _, _ = run(env_for("ADD"), conf("1.0.0"), Recorder(ret={"cniVersion": "1.0.0", "dns": {}}))
    assert rc == 0 and json.loads(out) == {"cniVersion": "1.0.0", "dns": {}}
    rc, out, _, _ = run(env_for("ADD"), conf(), Recorder(ret='{"raw": true}'))
    assert rc == 0 and out == '{"raw": true}'


@pytest.mark.parametrize("cmd", ["DEL", "CHECK", "GC", "STATUS"])
def test_other_commands_call_their_callback_and_print_nothing(cmd):
    rc, out, err, rec = run(env_for(cmd), conf())
    assert (rc, out, err) == (0, "", "")
    assert rec.names == [cmd]


def test_missing_gc_and_status_callbacks_succeed():
    rc, out, _, rec = run(env_for("GC"), conf(), gc=None)
    assert (rc, out, rec.names) == (0, "", [])
    rc, out, _, rec = run(env_for("STATUS"), conf(), status=None)
    assert (rc, out, rec.names) == (0, "", [])


def test_stdin_may_be_a_text_or_binary_stream():
    for stdin in (io.BytesIO(conf()), io.StringIO(conf().decode()), conf().decode()):
        rc, _, _, rec = run(env_for("DEL"), stdin)
        assert rc == 0 and rec.calls[0][1].stdin == conf()


# ---------------------------------------------------------------- skel: environment


@pytest.mark.parametrize(
    "cmd, missing",
    [
        ("ADD", "CNI_CONTAINERID,CNI_NETNS,CNI_IFNAME,CNI_PATH"),
        ("CHECK", "CNI_CONTAINERID,CNI_NETNS,CNI_IFNAME,CNI_PATH"),
        ("DEL", "CNI_CONTAINERID,CNI_IFNAME,CNI_PATH"),
        ("GC", "CNI_PATH"),
        ("STATUS", "CNI_PATH"),
    ],
)
def test_missing_env_vars_are_reported_together(cmd, missing):
    rc, out, _, rec = run({"CNI_COMMAND": cmd}, conf())
    assert rc == 1 and rec.calls == []
    assert error_of(out) == {
        "cniVersion": "1.1.0",
        "code": 4,
        "msg": f"required env variables [{missing}] missing",
    }


def test_del_does_not_need_netns_and_gc_needs_no_container():
    rc, _, _, rec = run(env_for("DEL", CNI_NETNS=None), conf())
    assert rc == 0 and rec.calls[0][1].netns == ""
    rc, _, _, rec = run({"CNI_COMMAND": "GC", "CNI_PATH": "/x"}, conf())
    assert rc == 0 and rec.names == ["GC"]


def test_empty_command_prints_about_on_stderr():
    rc, out, err, rec = run({}, b"", about="CNI test plugin v1", versions=("0.4.0", "1.0.0"))
    assert (rc, out, rec.calls) == (0, "", [])
    assert err == "CNI test plugin v1\nCNI protocol versions supported: 0.4.0, 1.0.0\n"


def test_empty_command_without_about_is_an_error():
    rc, out, err, _ = run({"CNI_COMMAND": ""}, b"")
    assert rc == 1 and err == ""
    assert error_of(out)["msg"] == "required env variables [CNI_COMMAND] missing"
    assert error_of(out)["code"] == 4


@pytest.mark.parametrize(
    "over, msg, details",
    [
        ({"CNI_CONTAINERID": "bad/id"}, "invalid characters in containerID", "bad/id"),
        ({"CNI_CONTAINERID": "-dash"}, "invalid characters in containerID", "-dash"),
        (
            {"CNI_IFNAME": "a" * 16},
            "interface name is too long",
            "interface name should be less than 16 characters",
        ),
        ({"CNI_IFNAME": ".."}, "interface name is . or ..", ""),
        ({"CNI_IFNAME": "eth 0"}, "interface name contains / or : or whitespace characters", ""),
        ({"CNI_IFNAME": "eth:0"}, "interface name contains / or : or whitespace characters", ""),
    ],
)
def test_invalid_container_id_or_ifname(over, msg, details):
    rc, out, _, rec = run(env_for("ADD", **over), conf())
    assert rc == 1 and rec.calls == []
    e = error_of(out)
    assert (e["code"], e["msg"], e.get("details", "")) == (4, msg, details)


def test_validation_error_precedes_missing_vars():
    # upstream checks variables in order and stops at the first invalid one
    rc, out, _, _ = run({"CNI_COMMAND": "ADD", "CNI_CONTAINERID": "bad/id"}, conf())
    assert error_of(out)["msg"] == "invalid characters in containerID"


def test_unknown_command():
    rc, out, _, rec = run(env_for("FOO"), conf("1.0.0"))
    assert rc == 1 and rec.calls == []
    assert error_of(out) == {"cniVersion": "1.0.0", "code": 4, "msg": "unknown CNI_COMMAND: FOO"}
    # as upstream, stdin is still read and validated first
    rc, out, _, _ = run(env_for("FOO"), b"not json")
    assert error_of(out)["code"] == 6


# ---------------------------------------------------------------- skel: VERSION


class ExplodingStdin:
    def read(self, *a):
        raise AssertionError("VERSION must not read stdin")


def test_version_does_not_read_stdin():
    rc, out, _, rec = run({"CNI_COMMAND": "VERSION"}, ExplodingStdin(), versions=("0.3.1", "0.4.0"))
    assert rc == 0 and rec.calls == []
    assert json.loads(out) == {"cniVersion": "1.1.0", "supportedVersions": ["0.3.1", "0.4.0"]}


def test_version_defaults_to_every_version():
    rc, out, _, _ = run({"CNI_COMMAND": "VERSION"}, b"")
    assert json.loads(out)["supportedVersions"] == list(ALL)


# ---------------------------------------------------------------- skel: stdin


class BrokenStdin:
    def read(self, *a):
        raise OSError(5, "Input/output error")


def test_stdin_read_error_is_code_5():
    rc, out, _, rec = run(env_for("ADD"), BrokenStdin())
    assert rc == 1 and rec.calls == []
    e = error_of(out)
    assert e["code"] == 5 and e["msg"].startswith("error reading from stdin:")


@pytest.mark.parametrize("stdin", [b"", b"{", b"[1]", b'"str"', b'{"name": 5}', b"\xff\xfe"])
def test_undecodable_config_is_code_6(stdin):
    rc, out, _, rec = run(env_for("ADD"), stdin)
    assert rc == 1 and rec.calls == []
    e = error_of(out)
    assert e["code"] == 6 and e["msg"].startswith("error unmarshall network config")


def test_missing_or_bad_network_name_is_code_7():
    rc, out, _, _ = run(env_for("ADD"), b'{"cniVersion": "1.0.0"}')
    assert error_of(out)["code"] == 7 and error_of(out)["msg"] == "missing network name"
    rc, out, _, _ = run(env_for("ADD"), conf(name="bad name"))
    e = error_of(out)
    assert (e["code"], e["msg"], e["details"]) == (7, "invalid characters found in network name", "bad name")


def test_non_string_cni_version_is_code_6():
    rc, out, _, _ = run(env_for("ADD"), b'{"name": "n", "cniVersion": 1}')
    assert rc == 1 and error_of(out)["code"] == 6


# ---------------------------------------------------------------- skel: versions


def test_unsupported_config_version_is_code_1():
    rc, out, _, rec = run(env_for("ADD"), conf("0.3.1"), versions=("0.4.0", "1.0.0"))
    assert rc == 1 and rec.calls == []
    assert error_of(out) == {
        "cniVersion": "0.3.1",
        "code": 1,
        "msg": "incompatible CNI versions",
        "details": 'config is "0.3.1", plugin supports ["0.4.0" "1.0.0"]',
    }


def test_absent_config_version_means_0_1_0():
    rc, out, _, rec = run(env_for("ADD"), b'{"name": "n"}', versions=("1.0.0",))
    assert rc == 1
    assert error_of(out)["details"] == 'config is "0.1.0", plugin supports ["1.0.0"]'
    rc, out, _, rec = run(env_for("ADD"), b'{"name": "n"}', Recorder(ret={}), versions=("0.1.0",))
    assert rc == 0 and json.loads(out) == {"cniVersion": "0.1.0"}


def test_unknown_config_version_errors_print_current_version():
    rc, out, _, _ = run(env_for("ADD"), conf("9.9.9"))
    assert error_of(out)["cniVersion"] == "1.1.0" and error_of(out)["code"] == 1


@pytest.mark.parametrize(
    "cmd, version, versions, msg",
    [
        ("CHECK", "0.3.1", ALL, "config version does not allow CHECK"),
        ("CHECK", "1.0.0", ("0.3.1", "0.4.0"), "plugin version does not allow CHECK"),
        ("GC", "1.0.0", ALL, "config version does not allow GC"),
        ("GC", "1.1.0", ("1.0.0",), "plugin version does not allow GC"),
        ("STATUS", "0.4.0", ALL, "config version does not allow STATUS"),
        ("STATUS", "1.1.0", ("0.4.0", "1.0.0"), "plugin version does not allow STATUS"),
    ],
)
def test_version_gates(cmd, version, versions, msg):
    rc, out, _, rec = run(env_for(cmd), conf(version), versions=versions)
    assert rc == 1 and rec.calls == []
    e = error_of(out)
    assert (e["code"], e["msg"]) == (1, msg)


def test_gate_passed_but_version_not_listed_is_incompatible():
    # plugin has a version >= the config's, but not the config's exact version
    rc, out, _, rec = run(env_for("CHECK"), conf("0.4.0"), versions=("1.0.0",))
    assert rc == 1 and rec.calls == []
    assert error_of(out)["msg"] == "incompatible CNI versions"


def test_version_gates_pass_at_minimum():
    for cmd, version in (("CHECK", "0.4.0"), ("GC", "1.1.0"), ("STATUS", "1.1.0")):
        rc, out, _, rec = run(env_for(cmd), conf(version))
        assert (rc, out, rec.names) == (0, "", [cmd])


def test_gate_config_version_unparsable_is_code_6():
    rc, out, _, _ = run(env_for("CHECK"), conf("one.two"))
    assert error_of(out)["code"] == 6


# ---------------------------------------------------------------- skel: callback errors


def test_callback_cni_error_is_printed_with_config_version():
    rec = Recorder(exc=CNIError("no more addresses", "pool exhausted", code=110))
    rc, out, _, _ = run(env_for("ADD"), conf("0.4.0"), rec)
    assert rc == 1
    assert error_of(out) == {
        "cniVersion": "0.4.0",
        "code": 110,
        "msg": "no more addresses",
        "details": "pool exhausted",
    }


def test_callback_other_exception_is_code_999():
    rc, out, _, _ = run(env_for("DEL"), conf(), Recorder(exc=ValueError("boom")))
    assert rc == 1 and error_of(out) == {"cniVersion": "1.1.0", "code": 999, "msg": "boom"}


def test_callback_bad_return_type_is_code_999():
    rc, out, _, _ = run(env_for("ADD"), conf(), Recorder(ret=42))
    assert rc == 1 and error_of(out)["code"] == 999


def test_own_netns_is_refused_unless_overridden():
    rc, out, _, rec = run(env_for("ADD", CNI_NETNS="/proc/self/ns/net"), conf())
    assert rc == 1 and rec.calls == []
    assert error_of(out)["code"] == 8
    rc, out, _, rec = run(env_for("ADD", CNI_NETNS="/proc/self/ns/net", CNI_NETNS_OVERRIDE="true"), conf())
    assert rc == 0 and rec.names == ["ADD"]
    assert rec.calls[0][1].netns_override == "true"


# ---------------------------------------------------------------- CNI_ARGS


def test_parse_cni_args():
    assert parse_cni_args("") == {}
    assert parse_cni_args("IgnoreUnknown=1;K8S_POD_NAME=web") == {"IgnoreUnknown": "1", "K8S_POD_NAME": "web"}
    assert parse_cni_args("A=") == {"A": ""}
    for bad in ("A", "A=1;", "A=1=2", ";"):
        with pytest.raises(CNIError) as ei:
            parse_cni_args(bad)
        assert ei.value.code == 4 and ei.value.msg.startswith("ARGS: invalid pair")


def test_cni_args_error_from_callback_is_code_4():
    def add(args):
        args.cni_args()
        return {}

    out = io.StringIO()
    rc = plugin_main(add, None, None, environ=env_for("ADD", CNI_ARGS="garbage"), stdin=conf(), stdout=out, stderr=io.StringIO())
    assert rc == 1 and error_of(out.getvalue())["code"] == 4


# ---------------------------------------------------------------- prev_result


def test_prev_result_same_version_is_passed_verbatim():
    prev = {"cniVersion": "1.0.0", "ips": [{"address": "10.1.2.3/24"}], "custom": "kept"}
    a = CmdArgs("c", "", "eth0", "", "", b"", {"cniVersion": "1.0.0", "name": "n", "prevResult": prev})
    assert a.prev_result() == prev
    # a prevResult without cniVersion is taken to be in the config's version
    a.netconf["prevResult"] = {"ips": []}
    assert a.prev_result() == {"ips": [], "cniVersion": "1.0.0"}
    a.netconf.pop("prevResult")
    assert a.prev_result() is None


def test_prev_result_is_converted_to_config_version():
    from cnirun.cni import result
    prev = {"cniVersion": "0.3.1", "ips": [{"version": "4", "address": "10.1.2.3/24"}], "dns": {}}
    a = CmdArgs("c", "", "eth0", "", "", b"", {"cniVersion": "1.0.0", "name": "n", "prevResult": prev})
    got = a.prev_result()
    assert got == result.convert(prev, "1.0.0")
    assert got["cniVersion"] == "1.0.0" and "version" not in got["ips"][0]


# ---------------------------------------------------------------- launcher + noop (subprocess)


@pytest.fixture
def cni_bin(tmp_path):
    d = tmp_path / "bin"
    install_plugin_script(d, "noop", "cnirun.plugins.noop")
    install_plugin_script(d, "sysctl", "cnirun.plugins.sysctl")
    return d


def exec_plugin(cni_bin, type_name, env, stdin=b"", timeout=30):
    full = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}
    full.update(env)
    full["CNI_PATH"] = env.get("CNI_PATH", str(cni_bin))
    return subprocess.run(
        [str(cni_bin / type_name)], input=stdin, env=full, capture_output=True, timeout=timeout
    )


def test_install_plugin_script(tmp_path):
    path = install_plugin_script(tmp_path / "new" / "dir", "noop", "cnirun.plugins.noop")
    assert path == tmp_path / "new" / "dir" / "noop"
    assert stat.S_IMODE(path.stat().st_mode) == 0o755
    text = path.read_text()
    assert text.startswith(f"#!{sys.executable}\n")
    assert "from cnirun.plugins.noop import main" in text
    # rewriting in place works and leaves no temporary file behind
    install_plugin_script(path.parent, "noop", "cnirun.plugins.noop")
    assert sorted(p.name for p in path.parent.iterdir()) == ["noop"]
    for bad in ("a/b", "", ".."):
        with pytest.raises(ValueError):
            install_plugin_script(tmp_path, bad, "cnirun.plugins.noop")
    with pytest.raises(ValueError):
        install_plugin_script(tmp_path, "x", "not a module")


def test_launcher_runs_from_any_cwd_without_pythonpath(cni_bin, tmp_path):
    full = {"PATH": os.environ.get("PATH", ""), "CNI_COMMAND": "VERSION"}
    p = subprocess.run([str(cni_bin / "noop")], env=full, cwd="/", capture_output=True, timeout=30)
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout) == {"cniVersion": "1.1.0", "supportedVersions": list(ALL)}


def test_noop_about_text(cni_bin):
    p = exec_plugin(cni_bin, "noop", {})
    assert p.returncode == 0 and p.stdout == b""
    assert p.stderr.decode().startswith(noop.ABOUT)


@pytest.fixture
def debug(tmp_path):
    return tmp_path / "debug.json"


def test_noop_records_add_exactly(cni_bin, debug):
    canned = {"cniVersion": "1.0.0", "ips": [{"address": "10.1.2.3/24"}]}
    noop.write_debug(debug, reportResult=json.dumps(canned))
    stdin = conf("1.0.0", some="stdin-json")
    env = env_for("ADD", CNI_ARGS=f"DEBUG={debug};FOO=bar", CNI_NETNS="/run/netns/x")
    p = exec_plugin(cni_bin, "noop", env, stdin)
    assert p.returncode == 0, p.stdout
    assert json.loads(p.stdout) == canned
    [entry] = noop.read_log(debug)
    assert entry["command"] == "ADD"
    assert entry["containerID"] == "ctr1"
    assert entry["netns"] == "/run/netns/x"
    assert entry["ifname"] == "eth0"
    assert entry["args"] == f"DEBUG={debug};FOO=bar"
    assert entry["path"] == "/opt/cni/bin"
    assert entry["stdin"] == stdin.decode()
    assert entry["env"] == env
    assert isinstance(entry["pid"], int) and entry["pid"] != os.getpid()


def test_noop_records_every_command_including_version(cni_bin, debug):
    noop.write_debug(debug)
    args = f"DEBUG={debug}"
    for cmd in ("ADD", "CHECK", "DEL", "GC", "STATUS", "VERSION"):
        p = exec_plugin(cni_bin, "noop", env_for(cmd, CNI_ARGS=args), conf())
        assert p.returncode == 0, (cmd, p.stdout)
    log = noop.read_log(debug)
    assert [e["command"] for e in log] == ["ADD", "CHECK", "DEL", "GC", "STATUS", "VERSION"]
    assert all(e["stdin"] == conf().decode() for e in log)  # VERSION's stdin is recorded too


def test_noop_records_calls_that_skel_rejects(cni_bin, debug):
    noop.write_debug(debug)
    p = exec_plugin(cni_bin, "noop", env_for("CHECK", CNI_ARGS=f"DEBUG={debug}"), conf("0.3.1"))
    assert p.returncode == 1
    assert json.loads(p.stdout)["msg"] == "config version does not allow CHECK"
    assert [e["command"] for e in noop.read_log(debug)] == ["CHECK"]


def test_noop_debug_file_from_config_key(cni_bin, debug):
    noop.write_debug(debug, reportResult='{"cniVersion": "1.1.0"}')
    stdin = conf(debugFile=str(debug))
    p = exec_plugin(cni_bin, "noop", env_for("ADD"), stdin)
    assert p.returncode == 0 and json.loads(p.stdout) == {"cniVersion": "1.1.0"}
    assert noop.read_log(debug)[0]["stdin"] == stdin.decode()


def test_noop_report_error(cni_bin, debug):
    noop.write_debug(debug, reportError="banana", reportErrorCode=117, reportErrorDetails="peel")
    p = exec_plugin(cni_bin, "noop", env_for("ADD", CNI_ARGS=f"DEBUG={debug}"), conf("0.4.0"))
    assert p.returncode == 1
    assert json.loads(p.stdout) == {"cniVersion": "0.4.0", "code": 117, "msg": "banana", "details": "peel"}
    noop.write_debug(debug, reportError="plain")
    p = exec_plugin(cni_bin, "noop", env_for("DEL", CNI_ARGS=f"DEBUG={debug}"), conf())
    assert p.returncode == 1 and json.loads(p.stdout)["code"] == 999


def test_noop_per_command_overrides(cni_bin, debug):
    noop.write_debug(debug, commands={"DEL": {"reportError": "del failed", "reportErrorCode": 3}})
    args = f"DEBUG={debug}"
    p = exec_plugin(cni_bin, "noop", env_for("ADD", CNI_ARGS=args), conf())
    assert p.returncode == 0
    p = exec_plugin(cni_bin, "noop", env_for("DEL", CNI_ARGS=args), conf())
    assert p.returncode == 1 and json.loads(p.stdout)["msg"] == "del failed"


def test_noop_report_stderr_and_exit_code(cni_bin, debug):
    noop.write_debug(debug, reportStderr="warning: something\n", exitWithCode=3)
    p = exec_plugin(cni_bin, "noop", env_for("DEL", CNI_ARGS=f"DEBUG={debug}"), conf())
    assert p.returncode == 3 and p.stdout == b"" and p.stderr == b"warning: something\n"


def test_noop_version_support(cni_bin, debug):
    noop.write_debug(debug, reportVersionSupport=["0.3.1", "0.4.0"])
    args = f"DEBUG={debug}"
    p = exec_plugin(cni_bin, "noop", {"CNI_COMMAND": "VERSION", "CNI_ARGS": args}, b'{"cniVersion":"1.1.0"}')
    assert json.loads(p.stdout) == {"cniVersion": "1.1.0", "supportedVersions": ["0.3.1", "0.4.0"]}
    p = exec_plugin(cni_bin, "noop", env_for("ADD", CNI_ARGS=args), conf("1.0.0"))
    assert p.returncode == 1 and json.loads(p.stdout)["code"] == 1


def test_noop_version_override_simulates_old_plugin(cni_bin, debug):
    noop.write_debug(debug, commands={"VERSION": {"reportError": "unknown CNI_COMMAND: VERSION", "reportErrorCode": 4}})
    p = exec_plugin(cni_bin, "noop", {"CNI_COMMAND": "VERSION", "CNI_ARGS": f"DEBUG={debug}"})
    assert p.returncode == 1 and json.loads(p.stdout)["msg"] == "unknown CNI_COMMAND: VERSION"
    noop.write_debug(debug, commands={"VERSION": {"reportResult": '{"cniVersion": "0.2.0"}'}})
    p = exec_plugin(cni_bin, "noop", {"CNI_COMMAND": "VERSION", "CNI_ARGS": f"DEBUG={debug}"})
    assert p.returncode == 0 and json.loads(p.stdout) == {"cniVersion": "0.2.0"}


def test_noop_top_level_behaviour_does_not_touch_version(cni_bin, debug):
    noop.write_debug(debug, crash=True, sleep=60)
    p = exec_plugin(cni_bin, "noop", {"CNI_COMMAND": "VERSION", "CNI_ARGS": f"DEBUG={debug}"}, timeout=20)
    assert p.returncode == 0 and json.loads(p.stdout)["cniVersion"] == "1.1.0"


PREV_040 = {
    "cniVersion": "0.4.0",
    "interfaces": [{"name": "eth0", "sandbox": "/run/netns/x"}],
    "ips": [{"version": "4", "address": "10.1.2.3/24", "gateway": "10.1.2.1", "interface": 0}],
    "dns": {},
}


def test_noop_passthrough_same_version(cni_bin, debug):
    noop.write_debug(debug, reportResult="PASSTHROUGH")
    stdin = conf("0.4.0", prevResult=PREV_040)
    p = exec_plugin(cni_bin, "noop", env_for("ADD", CNI_ARGS=f"DEBUG={debug}"), stdin)
    assert p.returncode == 0, p.stdout
    assert json.loads(p.stdout) == PREV_040


def test_noop_passthrough_converts_to_config_version(cni_bin, debug):
    from cnirun.cni import result
    noop.write_debug(debug, reportResult="PASSTHROUGH")
    stdin = conf("1.1.0", prevResult=PREV_040)
    p = exec_plugin(cni_bin, "noop", env_for("ADD", CNI_ARGS=f"DEBUG={debug}"), stdin)
    assert p.returncode == 0, p.stdout
    got = json.loads(p.stdout)
    assert got == result.convert(PREV_040, "1.1.0")
    assert got["cniVersion"] == "1.1.0" and "version" not in got["ips"][0]
    assert got["ips"][0]["address"] == "10.1.2.3/24"


def test_noop_passthrough_without_prev_result(cni_bin, debug):
    noop.write_debug(debug, reportResult="PASSTHROUGH")
    args = f"DEBUG={debug}"
    p = exec_plugin(cni_bin, "noop", env_for("ADD", CNI_ARGS=args), conf())
    assert p.returncode == 1 and json.loads(p.stdout)["code"] == 7
    p = exec_plugin(cni_bin, "noop", env_for("DEL", CNI_ARGS=args), conf())
    assert p.returncode == 0 and p.stdout == b""


def test_noop_without_debug_file_is_a_harmless_passthrough(cni_bin):
    p = exec_plugin(cni_bin, "noop", env_for("ADD"), conf("0.4.0", prevResult=PREV_040))
    assert p.returncode == 0 and json.loads(p.stdout) == PREV_040
    p = exec_plugin(cni_bin, "noop", env_for("ADD"), conf("1.0.0"))
    assert p.returncode == 0 and json.loads(p.stdout) == {"cniVersion": "1.0.0"}
    for cmd in ("DEL", "CHECK", "GC", "STATUS"):
        p = exec_plugin(cni_bin, "noop", env_for(cmd), conf("1.1.0", prevResult={"cniVersion": "1.1.0"}))
        assert (p.returncode, p.stdout) == (0, b""), cmd


def test_noop_missing_debug_file_still_records(cni_bin, tmp_path):
    path = tmp_path / "not-written-yet.json"
    p = exec_plugin(cni_bin, "noop", env_for("DEL", CNI_ARGS=f"DEBUG={path}"), conf())
    assert p.returncode == 0
    assert [e["command"] for e in noop.read_log(path)] == ["DEL"]


def test_noop_corrupt_debug_file_is_an_error(cni_bin, debug):
    debug.write_text("{not json")
    p = exec_plugin(cni_bin, "noop", env_for("ADD", CNI_ARGS=f"DEBUG={debug}"), conf())
    assert p.returncode == 1 and "cannot parse debug file" in json.loads(p.stdout)["msg"]


def test_noop_crash(cni_bin, debug):
    noop.write_debug(debug, crash=True)
    p = exec_plugin(cni_bin, "noop", env_for("ADD", CNI_ARGS=f"DEBUG={debug}"), conf())
    assert (p.returncode, p.stdout, p.stderr) == (2, b"", b"")
    assert len(noop.read_log(debug)) == 1


def test_noop_stderr_only(cni_bin, debug):
    noop.write_debug(debug, stderrOnly="something went wrong")
    p = exec_plugin(cni_bin, "noop", env_for("ADD", CNI_ARGS=f"DEBUG={debug}"), conf())
    assert (p.returncode, p.stdout, p.stderr) == (1, b"", b"something went wrong")


def test_noop_hang_is_killable(cni_bin, debug):
    noop.write_debug(debug, sleep=60)
    t0 = time.monotonic()
    with pytest.raises(subprocess.TimeoutExpired):  # subprocess.run kills the child
        exec_plugin(cni_bin, "noop", env_for("ADD", CNI_ARGS=f"DEBUG={debug}"), conf(), timeout=1.5)
    assert time.monotonic() - t0 < 10
    assert len(noop.read_log(debug)) == 1  # it recorded the call before hanging


def test_noop_short_sleep_then_answers(cni_bin, debug):
    noop.write_debug(debug, sleep=0.3, reportResult='{"cniVersion": "1.1.0"}')
    t0 = time.monotonic()
    p = exec_plugin(cni_bin, "noop", env_for("ADD", CNI_ARGS=f"DEBUG={debug}"), conf())
    assert p.returncode == 0 and time.monotonic() - t0 >= 0.3


def test_noop_bad_cni_args_is_code_4(cni_bin, debug):
    noop.write_debug(debug)
    p = exec_plugin(cni_bin, "noop", env_for("ADD", CNI_ARGS=f"DEBUG={debug};junk"), conf())
    assert p.returncode == 1 and json.loads(p.stdout)["code"] == 4
    assert len(noop.read_log(debug)) == 1


def test_noop_in_process(debug):
    noop.write_debug(debug, reportResult={"cniVersion": "1.1.0", "dns": {"nameservers": ["1.1.1.1"]}})
    out, err = io.StringIO(), io.StringIO()
    rc = noop.main(env_for("ADD", CNI_ARGS=f"DEBUG={debug}"), conf(), out, err)
    assert rc == 0 and json.loads(out.getvalue())["dns"] == {"nameservers": ["1.1.1.1"]}
    assert noop.read_log(debug)[0]["pid"] == os.getpid()


def test_noop_concurrent_calls_record_whole_lines(cni_bin, debug):
    noop.write_debug(debug)
    full = {"PATH": os.environ.get("PATH", "")}
    procs = []
    for i in range(8):
        env = dict(full, **env_for("DEL", CNI_CONTAINERID=f"c{i}", CNI_ARGS=f"DEBUG={debug}"))
        p = subprocess.Popen([str(cni_bin / "noop")], env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        p.stdin.write(conf())
        p.stdin.close()
        procs.append(p)
    for p in procs:
        assert p.wait(timeout=30) == 0
        p.stdout.close()
    assert sorted(e["containerID"] for e in noop.read_log(debug)) == [f"c{i}" for i in range(8)]


# ---------------------------------------------------------------- sysctl plugin, real netns

needs_root_netns = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("ip") is None, reason="needs root and iproute2"
)


def ip(*args, check=True):
    return subprocess.run(["ip", *args], capture_output=True, text=True, check=check)


@pytest.fixture
def netns():
    """A fresh named netns holding a veth pair eth0 <-> peer0; always deleted."""
    name = f"cnirun-t-{uuid.uuid4().hex[:10]}"
    ip("netns", "add", name)
    try:
        ip("-n", name, "link", "add", "eth0", "type", "veth", "peer", "name", "peer0")
        path = f"/run/netns/{name}"
        if not os.path.exists(path):
            path = f"/var/run/netns/{name}"
        yield name, path
    finally:
        ip("netns", "del", name, check=False)


def ns_sysctl(name, key):
    p = subprocess.run(
        ["ip", "netns", "exec", name, "cat", "/proc/sys/" + key.replace(".", "/")],
        capture_output=True, text=True, check=True,
    )
    return p.stdout.strip()


def sysctl_conf(data_dir, sysctls, version="1.0.0", prev=True, name="sysnet"):
    c = {
        "cniVersion": version,
        "name": name,
        "type": "sysctl",
        "dataDir": str(data_dir),
        "sysctl": sysctls,
    }
    if prev:
        c["prevResult"] = {
            "cniVersion": version,
            "interfaces": [{"name": "eth0", "sandbox": "x"}],
            "ips": [{"address": "10.9.0.2/24", "interface": 0}],
        }
    return c


def run_sysctl(cmd, netns_path, c, cid="ctr1", ifname="eth0"):
    out, err = io.StringIO(), io.StringIO()
    env = env_for(cmd, CNI_NETNS=netns_path, CNI_CONTAINERID=cid, CNI_IFNAME=ifname)
    rc = sysctl_plugin.main(env, json.dumps(c).encode(), out, err)
    return rc, out.getvalue()


@needs_root_netns
def test_sysctl_add_check_del_in_real_netns(netns, tmp_path):
    name, path = netns
    host_rp = Path("/proc/sys/net/ipv4/conf/all/rp_filter").read_text().strip()
    before_rp = ns_sysctl(name, "net.ipv4.conf.eth0.rp_filter")
    before_pg = ns_sysctl(name, "net.ipv4.ping_group_range")
    want_rp = "2" if before_rp != "2" else "1"
    c = sysctl_conf(
        tmp_path / "data",
        {"net.ipv4.conf.IFNAME.rp_filter": want_rp, "net/ipv4/ping_group_range": "0 2147483647"},
    )

    rc, out = run_sysctl("ADD", path, c)
    assert rc == 0, out
    assert json.loads(out) == c["prevResult"]
    assert ns_sysctl(name, "net.ipv4.conf.eth0.rp_filter") == want_rp
    assert ns_sysctl(name, "net.ipv4.ping_group_range").split() == ["0", "2147483647"]
    assert Path("/proc/sys/net/ipv4/conf/all/rp_filter").read_text().strip() == host_rp  # host untouched
    record = tmp_path / "data" / "sysnet-ctr1-eth0.json"
    assert stat.S_IMODE(record.stat().st_mode) == 0o600

    rc, out = run_sysctl("CHECK", path, c)
    assert (rc, out) == (0, "")
    subprocess.run(
        ["ip", "netns", "exec", name, "sh", "-c", f"echo {before_rp} > /proc/sys/net/ipv4/conf/eth0/rp_filter"],
        check=True,
    )
    rc, out = run_sysctl("CHECK", path, c)
    assert rc == 1 and json.loads(out)["code"] == sysctl_plugin.ERR_MISMATCH

    rc, out = run_sysctl("DEL", path, c)
    assert (rc, out) == (0, "")
    assert ns_sysctl(name, "net.ipv4.conf.eth0.rp_filter") == before_rp
    assert ns_sysctl(name, "net.ipv4.ping_group_range") == before_pg
    assert not record.exists()
    rc, out = run_sysctl("DEL", path, c)  # repeated DEL succeeds
    assert (rc, out) == (0, "")


@needs_root_netns
def test_sysctl_failed_write_rolls_back(netns, tmp_path):
    name, path = netns
    before = ns_sysctl(name, "net.ipv4.conf.eth0.rp_filter")
    c = sysctl_conf(
        tmp_path, {"net.ipv4.conf.eth0.rp_filter": "2", "net.ipv4.conf.nosuchif0.rp_filter": "2"}
    )
    rc, out = run_sysctl("ADD", path, c)
    assert rc == 1 and json.loads(out)["code"] == 5
    assert ns_sysctl(name, "net.ipv4.conf.eth0.rp_filter") == before
    assert list(tmp_path.iterdir()) == []


@needs_root_netns
def test_sysctl_del_after_netns_is_gone(tmp_path):
    name = f"cnirun-t-{uuid.uuid4().hex[:10]}"
    ip("netns", "add", name)
    try:
        path = f"/run/netns/{name}" if os.path.exists(f"/run/netns/{name}") else f"/var/run/netns/{name}"
        c = sysctl_conf(tmp_path, {"net.ipv4.conf.lo.rp_filter": "2"})
        assert run_sysctl("ADD", path, c)[0] == 0
    finally:
        ip("netns", "del", name, check=False)
    rc, out = run_sysctl("DEL", path, c)
    assert (rc, out) == (0, "")
    assert list(tmp_path.iterdir()) == []


@needs_root_netns
def test_sysctl_as_executable_plugin(netns, tmp_path, cni_bin):
    name, path = netns
    c = sysctl_conf(tmp_path / "d", {"net.ipv4.conf.IFNAME.rp_filter": "2"}, version="1.1.0")
    env = env_for("ADD", CNI_NETNS=path)
    p = exec_plugin(cni_bin, "sysctl", env, json.dumps(c).encode())
    assert p.returncode == 0, p.stdout
    assert json.loads(p.stdout) == c["prevResult"]
    assert ns_sysctl(name, "net.ipv4.conf.eth0.rp_filter") == "2"
    p = exec_plugin(cni_bin, "sysctl", env_for("CHECK", CNI_NETNS=path), json.dumps(c).encode())
    assert p.returncode == 0, p.stdout
    p = exec_plugin(cni_bin, "sysctl", env_for("DEL", CNI_NETNS=path), json.dumps(c).encode())
    assert p.returncode == 0, p.stdout


def test_sysctl_config_errors(tmp_path):
    for sysctls in ({"kernel.hostname": "x"}, {"net..x": "1"}, {"net.a.b": True}, {"net/../../etc/x": "1"}, [1]):
        rc, out = run_sysctl("ADD", "/run/netns/none", sysctl_conf(tmp_path, sysctls))
        assert rc == 1 and json.loads(out)["code"] == 7, sysctls
    rc, out = run_sysctl("ADD", "/run/netns/none", sysctl_conf(tmp_path, {}, prev=False))
    assert rc == 1 and "chained" in json.loads(out)["msg"]
    rc, out = run_sysctl("ADD", "/run/netns/none", sysctl_conf(tmp_path, {"net.ipv4.ip_forward": "1"}))
    assert rc == 1 and json.loads(out)["code"] == 8  # the namespace does not exist


def test_sysctl_gc_removes_stale_records(tmp_path):
    def rec(net, cid, ifname):
        p = tmp_path / f"{net}-{cid}-{ifname}.json"
        p.write_text(json.dumps({"networkName": net, "containerID": cid, "ifname": ifname, "saved": {}}))
        return p

    keep = rec("sysnet", "alive", "eth0")
    stale = rec("sysnet", "dead", "eth0")
    other = rec("othernet", "dead", "eth0")
    c = sysctl_conf(tmp_path, {}, version="1.1.0", prev=False)
    c["cni.dev/valid-attachments"] = [{"containerID": "alive", "ifname": "eth0"}]
    out = io.StringIO()
    rc = sysctl_plugin.main({"CNI_COMMAND": "GC", "CNI_PATH": "/x"}, json.dumps(c).encode(), out, io.StringIO())
    assert (rc, out.getvalue()) == (0, "")
    assert keep.exists() and other.exists() and not stale.exists()
