"""The OCI hook, the Docker shim and the installers, without an engine.

The real-plugin tests use a process in its own netns (`unshare -n sleep`)
as the "container" and call the hook exactly as runc would: the hooks.d
command line, the recorded environment only, the OCI state on stdin.
Subnets 10.141.0.0/24 .. 10.141.9.0/24, bridges cnh4u*.
"""
from __future__ import annotations

import json
import os
import re
import secrets
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO, needs_root

from _hook_helpers import HookWorld, bridge_exists, delete_bridges, leftovers, wait_clean, wait_records
from _wait import wait_for
from cnirun.oci.install import docker_runtime, hooksd
from cnirun.oci import shim
from cnirun.oci.argv import hook_argv, hook_env, package_parent
from cnirun.network import lifecycle, netns as nsmod
from cnirun.core import oci_state
from cnirun.network.network_options import options_for
from cnirun.core.errors import ArgumentError
from cnirun.network.options import ContainerNetworkSpec
from cnirun.plugins import install_plugin_script
from cnirun.cni.runtime import CNI



@pytest.fixture
def world(tmp_path: Path) -> HookWorld:
    return HookWorld.make(tmp_path)


def _own_netns_bundle() -> str:
    """A bundle whose config.json asks for a new network namespace, as `--network none` does."""
    import atexit
    import shutil
    import tempfile

    d = tempfile.mkdtemp(prefix="cnirun-h4u-bundle-")
    atexit.register(shutil.rmtree, d, True)
    Path(d, "config.json").write_text(json.dumps({"ociVersion": "1.0.2", "linux": {"namespaces": [{"type": "network"}]}}))
    return d


BUNDLE = _own_netns_bundle()


def state_json(
    cid: str, pid: int = 0, annotations: dict[str, str] | None = None, status: str = "created", bundle: str = BUNDLE
) -> bytes:
    return json.dumps(
        {"ociVersion": "1.0.2", "id": cid, "pid": pid, "status": status, "bundle": bundle, "annotations": annotations or {}}
    ).encode()


def run_hook_process(world: HookWorld, stage: str, state: bytes) -> subprocess.CompletedProcess[str]:
    """Run the hook as an engine does: the hooks.d argv and ONLY the recorded environment."""
    env_list = hook_env(world.env())
    env = dict(item.split("=", 1) for item in env_list)
    return subprocess.run(hook_argv(stage), input=state.decode(), env=env, capture_output=True, text=True, cwd="/")


# -- OCI state and stage handling ---------------------------------------------------
def test_parse_state_reads_id_pid_annotations() -> None:
    st = oci_state.parse_state(state_json("abc", 42, {"cnirun.networks": "a"}))
    assert (st.id, st.pid, st.annotations) == ("abc", 42, {"cnirun.networks": "a"})


@pytest.mark.parametrize(
    "data, words",
    [
        (b"not json", "not JSON"),
        (b"{}", "no container id"),
        (b'{"id": "x", "pid": -3}', "invalid pid"),
        (b'{"id": "x", "annotations": []}', "invalid annotations"),
    ],
)
def test_parse_state_rejects_bad_input(data: bytes, words: str) -> None:
    with pytest.raises(oci_state.HookError, match=words):
        oci_state.parse_state(data)


def test_unknown_stage_fails_with_one_line(world: HookWorld) -> None:
    proc = run_hook_process(world, "poststart", state_json("c1"))
    assert proc.returncode == 1
    assert proc.stderr.count("\n") == 1 and proc.stderr.startswith("cnirun: unknown hook stage 'poststart'")


def test_container_without_annotation_is_skipped(world: HookWorld) -> None:
    proc = run_hook_process(world, "createRuntime", state_json("c2", 1))
    assert proc.returncode == 0 and proc.stderr == ""
    assert world.log_records()[-1]["outcome"] == "skipped"


@pytest.mark.parametrize(
    "annotations, words",
    [
        ({"cnirun.networks": "../../etc/x"}, "invalid network name"),
        ({"cnirun.networks": "a,a"}, "listed twice"),
        ({"cnirun.networks": "a", "cnirun.ports": "99999:80"}, "invalid port"),
        ({"cnirun.networks": "a", "cnirun.ip": "not-an-ip"}, "invalid IP"),
        ({"cnirun.networks": "a", "cnirun.mac": "01:00:00:00:00:01"}, "multicast"),
    ],
)
def test_bad_annotations_refused_before_anything_runs(world: HookWorld, annotations: dict[str, str], words: str) -> None:
    proc = run_hook_process(world, "createRuntime", state_json("c3", os.getpid(), annotations))
    assert proc.returncode == 1
    assert proc.stderr.startswith("cnirun: ") and words in proc.stderr and proc.stderr.count("\n") == 1
    assert "Traceback" not in proc.stderr
    assert not (world.state / "netns").exists() or not list((world.state / "netns").iterdir())
    rec = world.log_records()[-1]
    assert rec["outcome"] == "failed" and rec["container"] == "c3" and "duration_ms" in rec


def test_container_id_must_be_safe(world: HookWorld) -> None:
    proc = run_hook_process(world, "poststop", state_json("../evil"))
    assert proc.returncode == 1 and "invalid container ID" in proc.stderr


def test_poststop_with_nothing_cached_is_harmless(world: HookWorld) -> None:
    proc = run_hook_process(world, "poststop", state_json("never-attached", 0, {"cnirun.networks": "x"}, "stopped"))
    assert proc.returncode == 0 and proc.stderr == ""
    recs = wait_records(world, "never-attached", 1)
    assert recs[-1]["outcome"] == "ok" and recs[-1]["background"] is True


def test_hook_env_records_paths_and_a_path_with_sbin() -> None:
    env = hook_env({"PATH": "/opt/bin", "NETCONFPATH": "/n", "CNI_CACHE_DIR": "/c", "HOME": "/root"})
    assert env[0].startswith("PATH=/opt/bin:") and "/usr/sbin" in env[0] and "/sbin" in env[0].split("=")[1].split(":")
    assert "NETCONFPATH=/n" in env and "CNI_CACHE_DIR=/c" in env
    assert not any(e.startswith("HOME=") for e in env)


def test_hook_argv_is_lean() -> None:
    argv = hook_argv("poststop")
    assert argv[1:3] == ["-I", "-S"] and argv[-1] == "poststop" and os.path.isabs(argv[0])
    out = subprocess.run(
        [*argv[:4], argv[4].replace("run_process()", "print(sorted(m for m in sys.modules if m.split('.')[0] in ('docker','typer','yaml','pyroute2')))")],
        capture_output=True, text=True,
    )
    assert out.stdout.strip() == "[]"


# -- options --------------------------------------------------------------------------
def _net(world: HookWorld, name: str, subnet: str, full: bool) -> object:
    world.bridge_net(name, "cnh4ux", subnet, full=full)
    return CNI(netconf_path=str(world.netconf)).network(name)


def test_options_for_ports_ip_mac(world: HookWorld) -> None:
    plain = _net(world, "plain", "10.141.8.0/24", full=False)
    full = _net(world, "full", "10.141.9.0/24", full=True)
    spec = ContainerNetworkSpec.from_labels(
        {"cnirun.networks": "plain,full", "cnirun.ports": "18080:80", "cnirun.ip": "10.141.8.5", "cnirun.mac": "02:00:00:00:00:05"}
    )
    opts = options_for(spec, [plain, full])
    assert opts[0].capability_args["ips"] == ["10.141.8.5"]
    assert ("MAC", "02:00:00:00:00:05") in opts[0].args and ("IgnoreUnknown", "1") in opts[0].args
    assert opts[1].capability_args == {"portMappings": [{"hostPort": 18080, "containerPort": 80, "protocol": "tcp"}]}
    with pytest.raises(ArgumentError, match="outside network plain"):
        options_for(ContainerNetworkSpec.from_labels({"cnirun.networks": "plain", "cnirun.ip": "10.141.9.5"}), [plain])
    with pytest.raises(ArgumentError, match="portmap"):
        options_for(ContainerNetworkSpec.from_labels({"cnirun.networks": "plain", "cnirun.ports": "1:1"}), [plain])


# -- the shim's command-line handling ----------------------------------------------------
@pytest.mark.parametrize(
    "argv, bundle, cid",
    [
        (["runc", "--root", "/r", "--log", "/l", "--log-format", "json", "create", "--bundle", "/b", "--pid-file", "/p", "id1"], "/b", "id1"),
        (["runc", "create", "--bundle=/b2", "id2"], "/b2", "id2"),
        (["runc", "create", "-b", "/b3", "--console-socket", "/s", "id3"], "/b3", "id3"),
        (["runc", "create", "-b=/b4", "id4"], "/b4", "id4"),
        (["runc", "--systemd-cgroup", "create", "--no-pivot", "id5"], "CWD", "id5"),
        (["runc", "create", "--bundle", "/x/create", "id6"], "/x/create", "id6"),
    ],
)
def test_shim_finds_bundle_and_id(argv: list[str], bundle: str, cid: str) -> None:
    cmd, idx = shim.subcommand(argv)
    assert cmd == "create"
    got_bundle, got_id = shim.parse_create(argv, idx)
    assert got_bundle == (os.getcwd() if bundle == "CWD" else bundle) and got_id == cid


@pytest.mark.parametrize(
    "argv, cmd",
    [
        (["runc", "--root", "create", "start", "c"], "start"),  # a root dir named "create"
        (["runc", "--log", "create", "delete", "create"], "delete"),  # ... and a container named so
        (["runc", "state", "x"], "state"),
        (["runc", "--version"], ""),
    ],
)
def test_shim_does_not_mistake_values_for_create(argv: list[str], cmd: str) -> None:
    assert shim.subcommand(argv)[0] == cmd


SHIM_CONF = {"runc": "/bin/true", "hook_argv": ["/py", "-I", "-S", "-c", "boot"], "hook_env": ["PATH=/usr/sbin:/usr/bin"]}


def test_add_hooks_appends_and_keeps_existing() -> None:
    spec = {"hooks": {"prestart": [{"path": "/docker", "args": ["setkey"]}], "poststop": [{"path": "/other"}]}}
    shim.add_hooks(spec, {"cnirun.networks": "a"}, SHIM_CONF)
    shim.add_hooks(spec, {"cnirun.networks": "a"}, SHIM_CONF)  # create run twice on one bundle: no duplicate
    assert spec["hooks"]["prestart"] == [{"path": "/docker", "args": ["setkey"]}]
    assert spec["hooks"]["poststop"][0] == {"path": "/other"} and len(spec["hooks"]["poststop"]) == 2
    assert spec["hooks"]["poststop"][1]["args"][-1] == "poststop"
    assert spec["hooks"]["createRuntime"][0]["args"] == ["/py", "-I", "-S", "-c", "boot", "createRuntime"]
    assert spec["annotations"] == {"cnirun.networks": "a"}


def _bundle(tmp_path: Path, cid: str, annotations: dict | None = None) -> Path:
    b = tmp_path / "bundle"
    b.mkdir()
    spec: dict = {"ociVersion": "1.0.2", "process": {"args": ["sh"]}}
    if annotations is not None:
        spec["annotations"] = annotations
    (b / "config.json").write_text(json.dumps(spec))
    return b


def _docker_root(tmp_path: Path, cid: str, labels: dict[str, str], file_id: str | None = None) -> Path:
    d = tmp_path / "docker" / "containers" / cid
    d.mkdir(parents=True)
    (d / "config.v2.json").write_text(json.dumps({"ID": file_id or cid, "Config": {"Labels": labels}}))
    return tmp_path / "docker"


def test_prepare_bundle_reads_docker_labels(tmp_path: Path) -> None:
    cid = secrets.token_hex(32)
    root = _docker_root(tmp_path, cid, {"cnirun.networks": "n1", "cnirun.ports": "8080:80", "other": "x"})
    b = _bundle(tmp_path, cid)
    assert shim.prepare_bundle(str(b), cid, {**SHIM_CONF, "docker_root": str(root)})
    spec = json.loads((b / "config.json").read_text())
    assert spec["annotations"] == {"cnirun.networks": "n1", "cnirun.ports": "8080:80"}
    # SHIM_CONF names no launcher: one installed before the early attach (no gate, no delete) gets both hooks.
    assert {k: [h["args"][-1] for h in v] for k, v in spec["hooks"].items()} == {
        "createRuntime": ["createRuntime"], "poststop": ["poststop"]}


def test_prepare_bundle_leaves_unlabelled_and_foreign_containers_alone(tmp_path: Path) -> None:
    cid = secrets.token_hex(32)
    root = _docker_root(tmp_path, cid, {"cnirun.networks": "n1"}, file_id="someone-else")
    b = _bundle(tmp_path, cid)
    before = (b / "config.json").read_bytes()
    assert not shim.prepare_bundle(str(b), cid, {**SHIM_CONF, "docker_root": str(root)})
    assert not shim.prepare_bundle(str(b), "unknown", {**SHIM_CONF, "docker_root": str(root)})
    assert (b / "config.json").read_bytes() == before


def test_prepare_bundle_uses_existing_annotations(tmp_path: Path) -> None:
    b = _bundle(tmp_path, "c", {"cnirun.networks": "n2"})
    assert shim.prepare_bundle(str(b), "c", {**SHIM_CONF, "docker_root": str(tmp_path / "none")})
    assert json.loads((b / "config.json").read_text())["hooks"]["createRuntime"]


def _fake_runc(tmp_path: Path) -> tuple[Path, Path]:
    out = tmp_path / "runc.out"
    runc = tmp_path / "fake-runc"
    runc.write_text(f'#!/bin/sh\nprintf "%s\\n" "$0" "$@" > {out}\nenv >> {out}\nexit 7\n')
    runc.chmod(0o755)
    return runc, out


def test_launcher_passes_non_create_calls_straight_to_runc(tmp_path: Path) -> None:
    runc, out = _fake_runc(tmp_path)
    text = docker_runtime.launcher_text(sys.executable, package_parent(), str(runc), str(tmp_path / "none.json"))
    launcher = tmp_path / "docker-runtime"
    launcher.write_text(text)
    launcher.chmod(0o755)
    proc = subprocess.run([str(launcher), "--root", "/r", "state", "some id"], capture_output=True, text=True)
    assert proc.returncode == 7
    lines = out.read_text().splitlines()
    assert lines[:5] == [str(runc), "--root", "/r", "state", "some id"]
    assert not any(line.startswith("CNIRUN_SHIM_CONFIG=") for line in lines)


def test_launcher_is_the_template_filled_in(tmp_path: Path) -> None:
    """docker-runtime.sh: every @name@ filled (shell-quoted), no #% line written, start/delete only with their dirs, sh -n clean."""
    odd = str(tmp_path / "it's @gates@ $HOME")
    full = docker_runtime.launcher_text(odd, "/pkg", odd, odd, "/g", "/f lock", "/p", "/l")
    bare = docker_runtime.launcher_text(odd, "/pkg", odd, odd)
    for text in (full, bare):
        assert text.startswith("#!/bin/sh\n") and "#%" not in text
        assert re.search(r"@[a-z_]+@", text.replace(shlex.quote(odd), "")) is None
        assert subprocess.run(["sh", "-n"], input=text, text=True).returncode == 0
    assert "    start)\n" in full and "    delete)\n" in full and "'/f lock' -n 9;" in full
    assert "    start)\n" not in bare and "    delete)\n" not in bare
    assert f"exec {shlex.quote(odd)} \"$@\"\n" in full
    with pytest.raises(KeyError):
        docker_runtime.render_template("x @nope@\n", {}, {})


def test_launcher_create_edits_bundle_then_execs_runc_with_same_argv(tmp_path: Path) -> None:
    runc, out = _fake_runc(tmp_path)
    settings = tmp_path / "settings.json"
    settings.write_text(json.dumps({**SHIM_CONF, "runc": str(runc)}))
    launcher = tmp_path / "docker-runtime"
    launcher.write_text(docker_runtime.launcher_text(sys.executable, package_parent(), str(runc), str(settings)))
    launcher.chmod(0o755)
    b = _bundle(tmp_path, "c9", {"cnirun.networks": "n"})
    argv = ["--root", "/r", "--log", "/l.json", "create", "--bundle", str(b), "--pid-file", "/p", "c9"]
    proc = subprocess.run([str(launcher), *argv], capture_output=True, text=True, env={**os.environ, "KEEP": "1"})
    assert proc.returncode == 7, proc.stderr
    lines = out.read_text().splitlines()
    assert lines[1 : 1 + len(argv)] == argv
    assert "KEEP=1" in lines and not any(line.startswith("CNIRUN_SHIM_CONFIG=") for line in lines)
    assert json.loads((b / "config.json").read_text())["hooks"]["createRuntime"][0]["args"][-1] == "createRuntime"


def test_shim_unreadable_spec_fails_the_create(tmp_path: Path) -> None:
    b = tmp_path / "b"
    b.mkdir()
    (b / "config.json").write_text("{broken")
    code = shim.main(["shim", "create", "--bundle", str(b), "x"])
    assert code == 1


# -- installers (files only; dockerd is exercised in test_oci_hook_docker.py) -------------------------
def test_hooksd_install_renders_templates(tmp_path: Path, world: HookWorld) -> None:
    paths = hooksd.install(str(tmp_path / "hooks.d"), world.env() | {"PATH": "/usr/bin"})
    by_stage = {}
    for p in paths:
        obj = json.loads(Path(p).read_text())
        assert obj["version"] == "1.0.0" and obj["when"] == {"annotations": {"^cnirun\\.networks$": ".+"}}
        by_stage[obj["stages"][0]] = obj["hook"]
    assert set(by_stage) == {"createRuntime", "poststop"}
    h = by_stage["createRuntime"]
    assert h["args"][-1] == "createRuntime" and h["path"] == h["args"][0]
    assert f"NETCONFPATH={world.netconf}" in h["env"] and f"CNI_CACHE_DIR={world.cache}" in h["env"]
    assert any(e.startswith("PATH=") and "/usr/sbin" in e for e in h["env"])
    assert hooksd.uninstall(str(tmp_path / "hooks.d")) == paths
    assert hooksd.uninstall(str(tmp_path / "hooks.d")) == []


@pytest.mark.parametrize("original", [None, b"", b'{"debug": true, "runtimes": {"other": {"path": "/x"}}}\n'])
def test_daemon_json_install_uninstall_restores_exactly(tmp_path: Path, original: bytes | None) -> None:
    dj = tmp_path / "docker" / "daemon.json"
    dj.parent.mkdir()
    if original is not None:
        dj.write_bytes(original)
    launcher = docker_runtime.install(str(tmp_path / "rt"), str(dj), {"PATH": "/usr/sbin:/usr/bin"}, reload=False)
    obj = json.loads(dj.read_text())
    assert obj["runtimes"]["cnirun"] == {"path": launcher} and os.access(launcher, os.X_OK)
    if original and b"debug" in original:
        assert obj["debug"] is True and obj["runtimes"]["other"] == {"path": "/x"}
    assert docker_runtime.registered_path(str(dj)) == launcher
    assert docker_runtime.uninstall(str(tmp_path / "rt"), str(dj), reload=False, force=True)
    if original is None:
        assert not dj.exists()
    else:
        assert dj.read_bytes() == original
    assert not (tmp_path / "rt").exists() and not Path(str(dj) + ".cnirun-backup").exists()


def test_daemon_json_changed_meanwhile_only_our_key_goes(tmp_path: Path) -> None:
    dj = tmp_path / "daemon.json"
    dj.write_text('{"debug": true}')
    docker_runtime.install(str(tmp_path / "rt"), str(dj), {"PATH": "/usr/sbin"}, reload=False)
    obj = json.loads(dj.read_text())
    obj["log-level"] = "warn"
    dj.write_text(json.dumps(obj))
    docker_runtime.uninstall(str(tmp_path / "rt"), str(dj), reload=False, force=True)
    assert json.loads(dj.read_text()) == {"debug": True, "log-level": "warn"}


def test_daemon_json_invalid_is_refused(tmp_path: Path) -> None:
    dj = tmp_path / "daemon.json"
    dj.write_text("{nope")
    with pytest.raises(docker_runtime.InstallError, match="not valid JSON"):
        docker_runtime.install(str(tmp_path / "rt"), str(dj), {}, reload=False)
    assert dj.read_text() == "{nope" and not (tmp_path / "rt").exists()


def test_installed_runtime_seen_from_engine_info() -> None:
    assert docker_runtime.docker_runtime_installed({"Runtimes": {"runc": {}, "cnirun": {"path": "/x"}}})
    assert not docker_runtime.docker_runtime_installed({"Runtimes": {"runc": {}}})


# -- real plugins, a real netns ---------------------------------------------------------------
@pytest.fixture
def container() -> object:
    """A process in its own netns, standing in for a container's init."""
    proc = subprocess.Popen(["unshare", "--net", "sleep", "300"])
    # unshare execs sleep in place: wait until the new netns is there.
    for _ in range(200):
        if os.readlink(f"/proc/{proc.pid}/ns/net") != os.readlink("/proc/self/ns/net"):
            break
        import time

        time.sleep(0.005)
    yield proc
    proc.kill()
    proc.wait()


def _addr(pid: int) -> str:
    return subprocess.run(
        ["nsenter", "-t", str(pid), "-n", "ip", "-4", "-o", "addr", "show", "eth0"], capture_output=True, text=True
    ).stdout


@needs_root
def test_attach_restart_and_poststop_leave_nothing(world: HookWorld, container: subprocess.Popen) -> None:
    bridges = ["cnh4u1"]
    try:
        world.bridge_net("h4u1", "cnh4u1", "10.141.1.0/24")
        cid = "h4u-" + secrets.token_hex(8)
        ann = {"cnirun.networks": "h4u1", "cnirun.ports": "18141:80"}
        proc = run_hook_process(world, "createRuntime", state_json(cid, container.pid, ann))
        assert proc.returncode == 0, proc.stderr
        assert "inet 10.141.1." in _addr(container.pid)
        assert (world.state / "netns" / cid).exists()
        assert cid in subprocess.run(["iptables-save"], capture_output=True, text=True).stdout
        # A restart runs createRuntime again: DEL first, so no duplicate allocation.
        proc = run_hook_process(world, "createRuntime", state_json(cid, container.pid, ann))
        assert proc.returncode == 0, proc.stderr
        assert len(list((world.cache / "results").iterdir())) == 1
        # The process dies before poststop, as it does under runc.
        container.kill()
        container.wait()
        proc = run_hook_process(world, "poststop", state_json(cid, 0, ann, "stopped"))
        assert proc.returncode == 0 and proc.stderr == ""
        assert wait_clean(world, cid, bridges) == []
        recs = wait_records(world, cid, 3)
        assert [r["stage"] for r in recs] == ["createRuntime", "createRuntime", "poststop"]
        assert recs[0]["networks"] == ["h4u1"] and recs[0]["interfaces"]["eth0"][0].startswith("10.141.1.")
        assert all(r["outcome"] == "ok" and r["container"] == cid for r in recs)
    finally:
        delete_bridges(bridges)
    assert not bridge_exists("cnh4u1")


@needs_root
def test_failed_add_leaves_nothing_and_poststop_is_harmless(world: HookWorld, container: subprocess.Popen) -> None:
    bridges = ["cnh4u2", "cnh4u4"]
    install_plugin_script(world.bin, "noop", "cnirun.plugins.noop")
    debug = world.root / "noop-debug"
    debug.write_text(json.dumps({"commands": {"ADD": {"reportError": "planned failure", "reportErrorCode": 7}}}))
    try:
        world.bridge_net("h4u2ok", "cnh4u2", "10.141.2.0/24")
        world.bridge_net("h4u2bad", "cnh4u4", "10.141.3.0/24", extra=[{"type": "noop", "debugFile": str(debug)}])
        cid = "h4u-" + secrets.token_hex(8)
        ann = {"cnirun.networks": "h4u2ok,h4u2bad"}
        proc = run_hook_process(world, "createRuntime", state_json(cid, container.pid, ann))
        assert proc.returncode == 1
        assert proc.stderr.count("\n") == 1 and "planned failure" in proc.stderr and proc.stderr.startswith("cnirun: ")
        assert leftovers(world, cid, bridges) == []
        assert _addr(container.pid) == ""
        proc = run_hook_process(world, "poststop", state_json(cid, 0, ann, "stopped"))
        assert proc.returncode == 0 and proc.stderr == ""
        assert wait_clean(world, cid, bridges) == []
    finally:
        delete_bridges(bridges)


@needs_root
def test_gc_helpers_reclaim_after_a_skipped_poststop(world: HookWorld, container: subprocess.Popen) -> None:
    """A killed engine never runs poststop: the pin lets gc still DEL fully."""
    bridges = ["cnh4u3"]
    try:
        world.bridge_net("h4u3", "cnh4u3", "10.141.4.0/24")
        cid = "h4u-" + secrets.token_hex(8)
        proc = run_hook_process(world, "createRuntime", state_json(cid, container.pid, {"cnirun.networks": "h4u3"}))
        assert proc.returncode == 0, proc.stderr
        container.kill()
        container.wait()
        env = world.env()
        assert nsmod.pinned_containers(env) == [cid]
        old = {k: os.environ.get(k) for k in env}
        os.environ.update(env)
        try:
            assert lifecycle.reclaim(CNI(), cid) == []
        finally:
            for k, v in old.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
        assert wait_clean(world, cid, bridges) == []
    finally:
        delete_bridges(bridges)


def test_daemon_json_earlier_cnirun_entry_comes_back(tmp_path: Path) -> None:
    dj = tmp_path / "daemon.json"
    original = b'{"runtimes": {"cnirun": {"path": "/opt/old-launcher"}}}'
    dj.write_bytes(original)
    docker_runtime.install(str(tmp_path / "rt"), str(dj), {"PATH": "/usr/sbin"}, reload=False)
    assert json.loads(dj.read_text())["runtimes"]["cnirun"]["path"] != "/opt/old-launcher"
    docker_runtime.uninstall(str(tmp_path / "rt"), str(dj), reload=False, force=True)
    assert dj.read_bytes() == original


@needs_root
def test_restart_waits_for_the_background_poststop(world: HookWorld, container: subprocess.Popen) -> None:
    """poststop returns at once; a createRuntime right behind it waits for its DEL, then attaches."""
    bridges = ["cnh4u5"]
    try:
        world.bridge_net("h4u5", "cnh4u5", "10.141.5.0/24")
        cid = "h4u-" + secrets.token_hex(8)
        ann = {"cnirun.networks": "h4u5"}
        assert run_hook_process(world, "createRuntime", state_json(cid, container.pid, ann)).returncode == 0
        second = subprocess.Popen(["unshare", "--net", "sleep", "300"])
        try:
            import time

            time.sleep(0.1)
            post = run_hook_process(world, "poststop", state_json(cid, 0, ann, "stopped"))
            again = run_hook_process(world, "createRuntime", state_json(cid, second.pid, ann))
            assert post.returncode == 0 and again.returncode == 0, again.stderr
            assert "inet 10.141.5." in _addr(second.pid)
            recs = wait_records(world, cid, 3)
            assert [r["stage"] for r in recs] == ["createRuntime", "poststop", "createRuntime"]
            assert all(r["outcome"] == "ok" for r in recs)
            assert recs[1].get("background") is True
            assert len(list((world.cache / "results").iterdir())) == 1
        finally:
            second.kill()
            second.wait()
        assert run_hook_process(world, "poststop", state_json(cid, 0, ann, "stopped")).returncode == 0
        assert wait_clean(world, cid, bridges) == []
    finally:
        delete_bridges(bridges)


def test_installed_settings_expose_the_recorded_env(tmp_path: Path) -> None:
    dj = tmp_path / "daemon.json"
    docker_runtime.install(str(tmp_path / "rt"), str(dj), {"PATH": "/usr/bin", "NETCONFPATH": "/n1"}, reload=False)
    got = docker_runtime.installed_settings(str(dj))
    assert got is not None and got["env"]["NETCONFPATH"] == "/n1" and os.path.isabs(got["runc"])
    docker_runtime.uninstall(str(tmp_path / "rt"), str(dj), reload=False, force=True)
    assert docker_runtime.installed_settings(str(dj)) is None


def test_cli_hook_command_runs_the_same_code(world: HookWorld) -> None:
    from conftest import CNIRUN_BIN

    proc = subprocess.run([CNIRUN_BIN, "hook", "createRuntime"], input='{"id": "c-cli", "pid": 1}', env=world.full_env(),
                          capture_output=True, text=True)
    assert proc.returncode == 0 and world.log_records()[-1]["outcome"] == "skipped"
    proc = subprocess.run([CNIRUN_BIN, "hook", "bogus"], input="{}", env=world.full_env(), capture_output=True, text=True)
    assert proc.returncode == 1 and proc.stderr.startswith("cnirun: unknown hook stage")


# -- what the hook path imports ------------------------------------------------------------
# Each of these costs milliseconds at every container start (dataclasses pulls
# in inspect/ast/dis, the json package and subprocess pull in re and enum...).
NOT_ON_HOOK_PATH = {
    "dataclasses", "typing", "pathlib", "inspect", "json", "re", "enum", "subprocess", "signal", "threading",
    "contextlib", "tempfile", "urllib", "fnmatch", "base64", "copy", "shlex", "shutil",
    "docker", "typer", "click", "yaml", "pyroute2", "requests",
}


def _modules_of_hook_run(world: HookWorld, stage: str, state: bytes, extra_env: dict[str, str] | None = None) -> set[str]:
    """Run the hook as an engine does; the modules its main process has loaded when it exits.

    Submodules also count as their top-level package ("json.decoder" adds "json").
    """
    out = world.root / f"modules-{stage}-{secrets.token_hex(4)}"
    argv = hook_argv(stage)
    assert argv[3] == "-c" and argv[4].endswith("from cnirun.oci.hook import run_process; run_process()")
    # main() as run_process() runs it, then the list (run_process leaves with os._exit: no atexit)
    argv[4] = argv[4].replace(
        "run_process()",
        f"code = main(); open({str(out)!r}, 'w').write('\\n'.join(sorted(sys.modules))); sys.exit(code)",
    ).replace("import run_process", "import main")
    env = dict(item.split("=", 1) for item in hook_env(world.env()))
    env.update(extra_env or {})
    proc = subprocess.run(argv, input=state, env=env, capture_output=True, cwd="/")
    assert proc.returncode == 0, proc.stderr
    names = set(out.read_text().split())
    return names | {m.split(".")[0] for m in names}


@needs_root
def test_hook_path_imports_nothing_heavy(world: HookWorld, container: subprocess.Popen) -> None:
    """createRuntime (DEL-before-ADD, pin, ADD, cache) and poststop load none of the slow modules."""
    stub = world.bin / "h4ustub"
    stub.write_text('#!/bin/sh\ncat >/dev/null\necho \'{"cniVersion":"1.0.0","ips":[{"address":"10.141.9.5/24"}]}\'\n')
    stub.chmod(0o755)
    (world.netconf / "h4ustub.conflist").write_text(
        json.dumps({"cniVersion": "1.0.0", "name": "h4ustub", "plugins": [{"type": "h4ustub", "capabilities": {"portMappings": True}}]})
    )
    cid = "h4u-" + secrets.token_hex(8)
    ann = {"cnirun.networks": "h4ustub", "cnirun.ports": "18149:80"}
    create = _modules_of_hook_run(world, "createRuntime", state_json(cid, container.pid, ann))
    assert world.log_records()[-1]["outcome"] == "ok"
    assert {"cnirun", "ctypes", "_json"} <= create and create & NOT_ON_HOOK_PATH == set()
    # the poststop parent only takes the lock and forks: not even the runtime core
    parent = _modules_of_hook_run(world, "poststop", state_json(cid, 0, ann, "stopped"))
    assert "cnirun.oci.hook" in parent and parent & (NOT_ON_HOOK_PATH | {"ctypes", "ipaddress", "cnirun.cni.runtime"}) == set()
    assert wait_clean(world, cid, []) == []
    # the DEL itself (in the foreground here) is as lean as the ADD
    assert _modules_of_hook_run(world, "createRuntime", state_json(cid, container.pid, ann)) & NOT_ON_HOOK_PATH == set()
    sync = _modules_of_hook_run(world, "poststop", state_json(cid, 0, ann, "stopped"), {"CNIRUN_HOOK_SYNC": "1"})
    assert sync & NOT_ON_HOOK_PATH == set()
    assert [r["outcome"] for r in wait_records(world, cid, 4)] == ["ok"] * 4
    assert wait_clean(world, cid, []) == []


def test_shim_create_path_imports_nothing_heavy(tmp_path: Path) -> None:
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    (bundle / "config.json").write_text(json.dumps({"ociVersion": "1.0.2", "annotations": {"cnirun.networks": "n"}}))
    settings = tmp_path / "settings.json"
    settings.write_text(json.dumps({"runc": "/bin/true", "hook_argv": hook_argv("")[:-1], "hook_env": ["PATH=/usr/bin"]}))
    out = tmp_path / "modules"
    boot = (
        f"import atexit, sys; sys.path.insert(0, {package_parent()!r}); "
        f"atexit.register(lambda: open({str(out)!r}, 'w').write('\\n'.join(sorted(sys.modules)))); "
        "from cnirun.oci.shim import main, prepare_bundle, load_config; conf = load_config(); "
        f"print(prepare_bundle({str(bundle)!r}, 'c1', conf))"
    )
    proc = subprocess.run([sys.executable, "-I", "-S", "-c", boot], env={"CNIRUN_SHIM_CONFIG": str(settings)},
                          capture_output=True, text=True)
    assert proc.returncode == 0 and proc.stdout.strip() == "True", proc.stderr
    assert {m.split(".")[0] for m in out.read_text().split()} & NOT_ON_HOOK_PATH == set()
    assert json.loads((bundle / "config.json").read_text())["hooks"]["createRuntime"]


# Modules of the lean packages (cnirun/core's docstring) that import heavy modules, and why they may.
LEAN_PACKAGES = ("core", "cni", "network", "oci", "dns", "state", "run", "engines")
HEAVY_BY_DESIGN = {
    "cnirun.cni.skel": "the plugin skeleton: a plugin's own process, not the runtime's",
    "cnirun.cni.leftovers": "gc's sweep of leftover rules (subprocess), never on a start",
    "cnirun.oci.install.hooksd": "`cnirun install`",
    "cnirun.oci.install.docker_runtime": "`cnirun install`",
    "cnirun.run.watch": "the detached watcher, a process of its own",
    "cnirun.engines.docker_pull": "pulling an image (its progress display)",
    "cnirun.engines.versions": "`cnirun version` asks the engines",
}
RUN_PATH_ALLOWED = {"threading"}  # cnirun run's console pumps and signal forwarding (not the hook's)


def test_lean_modules_import_nothing_heavy() -> None:
    """Each module of the lean packages, imported alone in a fresh interpreter, loads none of
    NOT_ON_HOOK_PATH (those of run/ and engines/ may load threading), except those HEAVY_BY_DESIGN names."""
    import importlib
    import pkgutil

    names = []
    for pkg in LEAN_PACKAGES:
        path = importlib.import_module(f"cnirun.{pkg}").__path__
        names += [m.name for m in pkgutil.walk_packages(path, f"cnirun.{pkg}.")]
    names = [n for n in names if n not in HEAVY_BY_DESIGN and not n.startswith("cnirun.oci.install.")]
    code = "import sys, {0}; print(' '.join(sorted({{m.split('.')[0] for m in sys.modules}})))"
    procs = {n: subprocess.Popen([sys.executable, "-c", code.format(n)], stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE, text=True, cwd=REPO) for n in names}
    heavy = {}
    for n, proc in procs.items():
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, f"{n}: {err}"
        allowed = RUN_PATH_ALLOWED if n.split(".")[1] in ("run", "engines") else set()
        found = set(out.split()) & NOT_ON_HOOK_PATH - allowed
        if found:
            heavy[n] = sorted(found)
    assert len(names) > 50 and heavy == {}


def test_hosts_entries_added_in_place_and_replaced_on_restart(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from cnirun.network.attachment import Attachment

    cid = secrets.token_hex(32)
    root = tmp_path / "docker"
    hosts = root / "containers" / cid / "hosts"  # where Docker writes a container's hosts file
    hosts.parent.mkdir(parents=True)
    hosts.write_text("127.0.0.1\tlocalhost\n")
    monkeypatch.setenv("CNIRUN_DOCKER_ROOT", str(root))
    inode = hosts.stat().st_ino
    bundle = tmp_path / "b"
    bundle.mkdir()
    (bundle / "config.json").write_text(json.dumps({
        "hostname": "web1",
        "mounts": [{"destination": "/etc/hosts", "source": str(hosts), "type": "bind"}],
    }))
    from cnirun.network.files import add_hosts_entries  # what the attach calls with the bundle's config

    config = oci_state.read_config(str(bundle))
    att = Attachment("n1", "eth0", {"cniVersion": "1.0.0", "ips": [{"address": "10.141.9.7/24"}]})
    assert add_hosts_entries(config, cid, [att]) == ""
    assert hosts.read_text() == "127.0.0.1\tlocalhost\n10.141.9.7\tweb1\t# cnirun\n"
    assert hosts.stat().st_ino == inode  # a bind mount keeps showing the same file
    att2 = Attachment("n1", "eth0", {"cniVersion": "1.0.0", "ips": [{"address": "10.141.9.8/24"}]})
    assert add_hosts_entries(config, cid, [att2]) == ""  # a restart: replaced, not appended
    assert hosts.read_text() == "127.0.0.1\tlocalhost\n10.141.9.8\tweb1\t# cnirun\n"
    # another container's file, even the engine's, is not this container's
    assert "not the engine's own file" in add_hosts_entries(config, ("d" if cid[0] == "c" else "c") + cid[1:], [att])


def test_installed_envs_reads_the_recorded_environment(tmp_path: Path) -> None:
    d = tmp_path / "hooks.d"
    hooksd.install(str(d), {"CNI_CACHE_DIR": str(tmp_path / "somewhere"), "NETCONFPATH": str(tmp_path / "net.d"), "PATH": "/usr/bin"})
    envs = hooksd.installed_envs((str(d), str(tmp_path / "missing")))
    assert len(envs) == 1 and envs[0]["CNI_CACHE_DIR"] == str(tmp_path / "somewhere")


def test_podman_dropin_only_for_the_default_dir_and_only_ours_removed(tmp_path: Path) -> None:
    dropin = tmp_path / "60-cnirun-hooks-dir.conf"
    assert hooksd.podman_reads(str(tmp_path / "custom"), str(dropin)) == ""  # custom dir: podman --hooks-dir
    assert not dropin.exists()
    dropin.write_text("[engine]\nhooks_dir = ['/x']\n")  # someone else's file
    assert hooksd.forget_podman_dropin(str(dropin)) == "" and dropin.exists()


@pytest.mark.skipif(not (REPO / ".venv" / "bin" / "cnirun-hook").exists(), reason="no .venv (make setup)")
def test_installed_launchers_do_not_import_re() -> None:
    """The launchers in .venv (bin/cnirun as pip installs it, no re; scripts/setup.sh adds -S: no site and
    its .pth files) still find everything."""
    for name in ("cnirun", "cnirun-hook", "cnirun-shim"):
        launcher = REPO / ".venv" / "bin" / name
        p = subprocess.run([str(launcher), "--help"], capture_output=True, text=True, timeout=60,
                           env={**os.environ, "PYTHONPROFILEIMPORTTIME": "1"})
        imported = [ln.rsplit("|", 1)[1].strip() for ln in p.stderr.splitlines() if ln.startswith("import time:")]
        assert imported, f"{name}: no import trace ({p.stderr[:200]})"
        if name != "cnirun":  # `cnirun --help` loads typer, which needs re; the hook and the shim never do
            assert "re" not in imported, f"{name} imports re"
        assert "import re\n" not in launcher.read_text()
        assert "site" not in imported and "cnirun" in imported, f"{name}: {p.stderr[-300:]}"


# -- the Docker shim's early attach: shim -> worker -> start gate (runc faked, plugins real) ------
def _early_bundle(tmp_path: Path, annotations: dict[str, str] | None = None) -> Path:
    """A bundle as dockerd writes it for `--network none`: a new network namespace, no path."""
    b = tmp_path / "early-bundle"
    b.mkdir()
    spec = {"ociVersion": "1.0.2", "process": {"args": ["sh"]}, "hostname": "early",
            "linux": {"namespaces": [{"type": "pid"}, {"type": "network"}, {"type": "mount"}]},
            **({"annotations": annotations} if annotations is not None else {})}
    (b / "config.json").write_text(json.dumps(spec))
    return b


def _noop_net(world: HookWorld, name: str, bridge: str, subnet: str, behaviour: dict) -> None:
    """A bridge network ending in cnirun's noop plugin, which behaves as `behaviour` says (its debug file)."""
    install_plugin_script(world.bin, "noop", "cnirun.plugins.noop")
    debug = world.root / f"noop-debug-{name}"
    debug.write_text(json.dumps(behaviour))
    world.bridge_net(name, bridge, subnet, extra=[{"type": "noop", "debugFile": str(debug)}])


def _early_launcher(world: HookWorld, tmp_path: Path) -> tuple[Path, Path]:
    """The installed launcher (with the start gate), its settings naming a fake runc; (launcher, runc's record)."""
    runc, out = _fake_runc(tmp_path)
    settings = tmp_path / "settings.json"
    settings.write_text(json.dumps({"runc": str(runc), "hook_argv": hook_argv("")[:-1],
                                    "hook_env": hook_env(world.env()),
                                    "docker_root": str(tmp_path / "no-docker")}))
    launcher = tmp_path / "docker-runtime"
    launcher.write_text(docker_runtime.launcher_text(sys.executable, package_parent(), str(runc),
                                                     str(settings), str(world.state / "starting"), "flock",
                                                     str(world.state / "netns"), str(world.state / "locks")))
    launcher.chmod(0o755)
    return launcher, out


def _runtime(launcher: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(launcher), "--root", "/r", "--log", str(launcher.parent / "runc-log.json"),
                           "--log-format", "json", *args], capture_output=True, text=True, timeout=60)


@needs_root
def test_shim_attaches_while_runc_creates_and_start_waits_for_it(world: HookWorld, tmp_path: Path) -> None:
    bridges = ["cnh4u6"]
    try:
        world.bridge_net("h4u6", "cnh4u6", "10.141.6.0/24")
        launcher, out = _early_launcher(world, tmp_path)
        b = _early_bundle(tmp_path, {"cnirun.networks": "h4u6", "cnirun.ip": "10.141.6.9"})
        cid = "h4u-" + secrets.token_hex(8)
        proc = _runtime(launcher, "create", "--bundle", str(b), cid)
        assert proc.returncode == 7, proc.stderr  # runc (faked) ran, with the bundle prepared
        spec = json.loads((b / "config.json").read_text())
        pin = str(world.state / "netns" / cid)
        assert {"type": "network", "path": pin} in spec["linux"]["namespaces"]
        assert not spec["hooks"]  # neither the attach nor the DEL is a hook any more
        assert nsmod.is_pinned(pin)  # the namespace exists before runc is run
        assert (world.state / "starting" / cid).exists()
        start = _runtime(launcher, "start", cid)  # waits for the worker's ADD
        assert start.returncode == 7, start.stderr
        log = str(launcher.parent / "runc-log.json")  # runc start ran, with the same argv
        assert out.read_text().splitlines()[:9] == [str(tmp_path / "fake-runc"), "--root", "/r", "--log", log,
                                                    "--log-format", "json", "start", cid]
        assert not (world.state / "starting" / cid).exists()
        inside = subprocess.run(["nsenter", f"--net={pin}", "ip", "-o", "addr"], capture_output=True, text=True).stdout
        assert "inet 10.141.6.9/24" in inside and "lo" in inside
        lo = subprocess.run(["nsenter", f"--net={pin}", "ip", "-o", "link", "show", "lo"], capture_output=True, text=True)
        assert ",UP" in lo.stdout
        rec = wait_records(world, cid, 1)[0]
        assert (rec["stage"], rec["outcome"], rec["interfaces"]) == ("create", "ok", {"eth0": ["10.141.6.9/24"]})
        delete = _runtime(launcher, "delete", cid)  # returns at once: runc's delete (faked) runs beside the DEL
        assert delete.returncode == 7, delete.stderr
        assert wait_clean(world, cid, bridges) == []
        assert [r["stage"] for r in wait_records(world, cid, 2)] == ["create", "delete"]
    finally:
        delete_bridges(bridges)


@needs_root
def test_shim_add_failure_fails_the_start_with_one_line_and_leaves_nothing(world: HookWorld, tmp_path: Path) -> None:
    bridges = ["cnh4u7"]
    try:
        _noop_net(world, "h4u7", "cnh4u7", "10.141.7.0/24",
                  {"commands": {"ADD": {"reportError": "planned failure", "reportErrorCode": 7}}})
        launcher, out = _early_launcher(world, tmp_path)
        b = _early_bundle(tmp_path, {"cnirun.networks": "h4u7"})
        cid = "h4u-" + secrets.token_hex(8)
        assert _runtime(launcher, "create", "--bundle", str(b), cid).returncode == 7
        out.unlink()
        start = _runtime(launcher, "start", cid)
        assert start.returncode == 1
        assert start.stderr.count("\n") == 1 and start.stderr.startswith("cnirun: ") and "planned failure" in start.stderr
        # runc start never ran, the container's process never gets going: it is killed instead (runc kill ID
        # KILL), so containerd can delete the created task that the engine's cleanup removes.
        args = out.read_text().splitlines()[1:10]  # the global options kept, `start` turned into `kill`
        assert args[:2] == ["--root", "/r"] and args[4:9] == ["--log-format", "json", "kill", cid, "KILL"], args
        assert wait_clean(world, cid, bridges) == []  # the worker undid its ADDs and unpinned
        assert [r["outcome"] for r in wait_records(world, cid, 1)] == ["failed"]
    finally:
        delete_bridges(bridges)


@needs_root
def test_shim_refuses_before_runc_what_the_labels_get_wrong(world: HookWorld, tmp_path: Path) -> None:
    launcher, out = _early_launcher(world, tmp_path)
    b = _early_bundle(tmp_path, {"cnirun.networks": "h4u-nosuchnet"})
    cid = "h4u-" + secrets.token_hex(8)
    proc = _runtime(launcher, "create", "--bundle", str(b), cid)
    assert proc.returncode == 1
    assert proc.stderr.startswith('cnirun: no net configuration with name "h4u-nosuchnet"'), proc.stderr
    assert proc.stderr.count("\n") == 1
    assert not out.exists()  # runc never ran
    log = [json.loads(line) for line in (launcher.parent / "runc-log.json").read_text().splitlines()]
    assert log[-1]["level"] == "error" and "h4u-nosuchnet" in log[-1]["msg"]  # containerd shows this line
    assert leftovers(world, cid, []) == []


@needs_root
def test_new_pinned_netns_is_fresh_with_loopback_up(world: HookWorld) -> None:
    env = world.env()
    own = os.readlink("/proc/self/ns/net")
    path = nsmod.new_pinned_netns("h4u-fresh", env)
    try:
        assert path == str(world.state / "netns" / "h4u-fresh") and nsmod.is_pinned(path)
        assert os.stat(path).st_ino != os.stat("/proc/self/ns/net").st_ino
        assert os.readlink("/proc/self/ns/net") == own  # the caller stays in its namespace
        links = subprocess.run(["nsenter", f"--net={path}", "ip", "-o", "link"], capture_output=True, text=True).stdout
        assert [ln.split(":")[1].strip() for ln in links.splitlines()] == ["lo"] and ",UP" in links
    finally:
        assert nsmod.unpin_netns("h4u-fresh", env) == ""
    assert not os.path.exists(path)


def test_an_older_launcher_gets_both_hooks_and_no_early_attach(tmp_path: Path) -> None:
    """A package upgraded without `cnirun install docker-runtime`: the old launcher neither waits at start nor
    DELs at delete, so the shim must not attach early; the hooks do both, as before."""
    b = _early_bundle(tmp_path, {"cnirun.networks": "n"})
    state = tmp_path / "state"
    assert shim.prepare_bundle(str(b), "c-old", {**SHIM_CONF, "hook_env": [f"CNIRUN_STATE_DIR={state}"]})
    spec = json.loads((b / "config.json").read_text())
    assert sorted(spec["hooks"]) == ["createRuntime", "poststop"]
    assert {"type": "network"} in spec["linux"]["namespaces"]  # runc makes the namespace, no pin path
    assert not (state / "starting").exists() and not (state / "netns").exists()


@needs_root
def test_a_delete_killed_mid_del_is_finished_by_gc(world: HookWorld, tmp_path: Path) -> None:
    """SIGKILL of the Docker runtime's background DEL while a plugin's DEL runs: `cnirun gc` finishes it."""
    import signal
    import time

    from conftest import CNIRUN_BIN

    bridges = ["cnh4u8"]
    try:
        _noop_net(world, "h4u8", "cnh4u8", "10.141.10.0/24", {"reportResult": "PASSTHROUGH", "commands": {"DEL": {"sleep": 3}}})
        launcher, _ = _early_launcher(world, tmp_path)
        b = _early_bundle(tmp_path, {"cnirun.networks": "h4u8"})
        cid = "h4u-" + secrets.token_hex(8)
        assert _runtime(launcher, "create", "--bundle", str(b), cid).returncode == 7
        assert _runtime(launcher, "start", cid).returncode == 7
        assert _runtime(launcher, "delete", cid).returncode == 7
        target: list[int] = []
        deadline = time.monotonic() + 10
        while not target and time.monotonic() < deadline:  # the DEL process, inside the slow DEL
            out = subprocess.run(["pgrep", "-f", f"delete_main.*{cid}"], capture_output=True, text=True).stdout
            target = [int(p) for p in out.split()]
            time.sleep(0.05)
        assert target, "the launcher's delete started no DEL process"
        time.sleep(0.5)  # the test: the DEL is well inside its slow plugin when it is killed
        for pid in target:
            os.kill(pid, signal.SIGKILL)
        wait_for(lambda: not any(os.path.exists(f"/proc/{pid}") for pid in target), 10, "the killed DEL to be gone")
        assert leftovers(world, cid, bridges) != []  # killed mid-way: the pin and the cache are still there
        gc = subprocess.run([CNIRUN_BIN, "gc"], env=world.full_env(), capture_output=True, text=True, timeout=120)
        assert gc.returncode == 0, gc.stderr
        assert wait_clean(world, cid, bridges) == []
    finally:
        delete_bridges(bridges)


@needs_root
def test_shim_leaves_a_connected_ipv6_network_to_the_createruntime_hook(world: HookWorld, tmp_path: Path) -> None:
    """A network `cnirun network connect` added (live.json) with an IPv6 range is attached after Docker's own
    prestart hook, which turns IPv6 off in the namespace, as a label network with one is: the shim's create
    hands the container to the createRuntime hook and attaches nothing itself."""
    bridges = ["ctc71", "ctc72"]
    world.bridge_net("tc71", "ctc71", "10.212.71.0/24")
    ranges = [[{"subnet": "10.212.72.0/24"}], [{"subnet": "fd97:c:72::/64"}]]
    dual = {"cniVersion": "1.0.0", "name": "tc72", "plugins": [
        {"type": "bridge", "bridge": "ctc72", "ipam": {"type": "host-local", "dataDir": str(world.ipam), "ranges": ranges}}]}
    (world.netconf / "tc72.conflist").write_text(json.dumps(dual))
    launcher, _ = _early_launcher(world, tmp_path)
    cid = "tc-" + secrets.token_hex(8)
    record = world.state / "containers" / cid
    record.mkdir(parents=True)
    (record / "live.json").write_text(json.dumps({"networks": [
        {"network": "tc72", "ifname": "eth1", "capability_args": {}, "args": [], "names": []}]}))
    b = _early_bundle(tmp_path, {"cnirun.networks": "tc71"})
    try:
        proc = _runtime(launcher, "create", "--bundle", str(b), cid)
        assert proc.returncode == 7, proc.stderr  # runc (faked) ran
        spec = json.loads((b / "config.json").read_text())
        assert [h["args"][-1] for h in spec.get("hooks", {}).get("createRuntime", [])] == ["createRuntime"]
        assert {"type": "network"} in spec["linux"]["namespaces"]  # runc makes the namespace: no pin, no ADD
        assert leftovers(world, cid, bridges) == []
    finally:  # what an early attach did (before this was so): the delete DELs it
        _runtime(launcher, "delete", cid)
        assert wait_clean(world, cid, bridges) == []
        delete_bridges(bridges)
