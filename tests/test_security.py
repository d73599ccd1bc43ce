"""Issue #16: the OCI hook path attacked, against real dockerd, podman, runc and plugins.

Each test is an attack the issue reported, or the rule that closes it: a
container in the host's netns or another container's, a read-only hosts
mount with a newline hostname, a label port on a busy host port or one
published twice, a huge port range, a slow plugin, env secrets in /proc,
CNI_ARGS injection through cnirun.ip, an unsafe install environment, a
network that refuses label joins.

Where the attack aims at the host's own network (--network host), the
network is `t16-probe`: only cnirun's recording noop plugin, which changes
nothing, so a failing test cannot break the machine's network.

Address plan: 10.161.0.0/16, bridges cns16*, networks t16-*. The module
installs the Docker runtime (daemon.json restored at the end) and Podman
hooks into a private --hooks-dir, both with this module's NETCONFPATH,
CNI_CACHE_DIR, CNIRUN_STATE_DIR, host-local dataDir in tmp.
"""
from __future__ import annotations

import contextlib
import json
import os
import secrets
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator

import pytest

from conftest import HAVE_DOCKER, HAVE_PODMAN, needs_docker, needs_podman, needs_root

from conftest import CNIRUN_BIN, DAEMON_JSON, installed_docker_runtime
from _hook_helpers import HookWorld, bridge_exists, delete_bridges, leftovers, wait_clean
from cnirun.oci.install import docker_runtime
from cnirun.oci import attach, argv as hook_command
from cnirun.core.errors import ArgumentError
from cnirun.network.options import check_cni_arg, parse_hostname, parse_ip, parse_ports
from cnirun.plugins import install_plugin_script

BRIDGES = ["cns16a", "cns16b"]
NEWLINE_HOSTNAME = "a\nroot2::0:0::/root:/bin/sh\n#"


pytestmark = needs_root
ENGINES = [pytest.param("docker", marks=needs_docker), pytest.param("podman", marks=needs_podman)]


class ProbeWorld(HookWorld):
    """A HookWorld with a noop probe network (t16-probe, and t16-closed, which refuses labels): what its plugin saw."""

    probe_debug: Path

    def probe_calls(self) -> list[dict]:
        """Every call the noop probe recorded (VERSION included)."""
        log = Path(str(self.probe_debug) + ".log")
        if not log.exists():
            return []
        return [json.loads(line) for line in log.read_text().splitlines() if line.strip()]

    def cni_calls(self) -> list[str]:
        return [c["command"] for c in self.probe_calls() if c["command"] in ("ADD", "DEL", "CHECK")]


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ProbeWorld]:
    root = tmp_path_factory.mktemp("sec16")
    w = ProbeWorld.make(root)
    w.bridge_net("t16-a", "cns16a", "10.161.1.0/24")
    w.bridge_net("t16-b", "cns16b", "10.161.2.0/24", full=False)
    install_plugin_script(w.bin, "noop", "cnirun.plugins.noop")
    w.probe_debug = root / "probe.json"
    w.probe_debug.write_text("{}")
    (w.netconf / "t16-probe.conflist").write_text(json.dumps(
        {"cniVersion": "1.0.0", "name": "t16-probe", "plugins": [{"type": "noop", "debugFile": str(w.probe_debug)}]}
    ))
    (w.netconf / "t16-closed.conflist").write_text(json.dumps(
        {"cniVersion": "1.0.0", "name": "t16-closed", "cnirun": {"allowLabels": False},
         "plugins": [{"type": "noop", "debugFile": str(w.probe_debug)}]}
    ))
    try:
        if HAVE_PODMAN:
            proc = subprocess.run([CNIRUN_BIN, "install", "hooks", "--dir", str(root / "hooks.d")],
                                  env=w.full_env(), capture_output=True, text=True, timeout=60)
            assert proc.returncode == 0, proc.stderr
        with contextlib.ExitStack() as runtime:
            if HAVE_DOCKER and not docker_runtime.registered_path(DAEMON_JSON):  # else not ours to replace
                runtime.enter_context(installed_docker_runtime(w.full_env(), root / "runtime"))
            yield w
    finally:
        if HAVE_PODMAN:
            subprocess.run([CNIRUN_BIN, "uninstall", "hooks", "--dir", str(root / "hooks.d")], capture_output=True, timeout=60)
        delete_bridges(BRIDGES)
        assert not any(bridge_exists(b) for b in BRIDGES)


def run_engine(world: ProbeWorld, engine: str, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """docker/podman with only PATH and HOME: the hooks must carry their own environment."""
    env = {"PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"), "HOME": "/root"}
    if engine == "docker":
        if not docker_runtime.registered_path(DAEMON_JSON):
            pytest.skip("the cnirun docker runtime is not installed by this module")
        argv = ["docker", *args]
        if args and args[0] == "run":
            argv = ["docker", "run", "--runtime", "cnirun", *args[1:]]
    else:
        argv = ["podman", "--hooks-dir", str(world.root / "hooks.d"), *args]
    return subprocess.run(argv, capture_output=True, text=True, env=env, timeout=timeout)


def label(engine: str, text: str) -> list[str]:
    """A cnirun.* label (Docker) or annotation (Podman: quoted when it has a comma)."""
    if engine == "docker":
        return ["--label", text]
    return ["--annotation", f'"{text}"' if "," in text else text]


def last_record(world: ProbeWorld, stage: str = "attach") -> dict:
    """The newest log record of `stage`; "attach": the createRuntime hook's or the Docker shim's ("create")."""
    stages = ("createRuntime", "create") if stage == "attach" else (stage,)
    return [r for r in world.log_records() if r["stage"] in stages][-1]


def one_cnirun_line(stderr: str, words: str) -> None:
    lines = [ln for ln in stderr.splitlines() if "cnirun:" in ln]
    assert len(lines) == 1 and words in lines[0], stderr
    assert "Traceback" not in stderr


def engine_rm(engine: str, world: ProbeWorld, cid: str) -> None:
    run_engine(world, engine, "rm", "-f", *(["-t", "0"] if engine == "podman" else []), cid)


# -- 1. the hook attaches only into the container's own new network namespace ---------------------
@pytest.mark.parametrize("engine", ENGINES)
def test_host_network_namespace_is_refused_and_no_plugin_runs(world: ProbeWorld, engine: str) -> None:
    calls = len(world.probe_calls())
    proc = run_engine(world, engine, "run", "--rm", "--network", "host", *label(engine, "cnirun.networks=t16-probe"),
                      "busybox", "true")
    assert proc.returncode != 0
    one_cnirun_line(proc.stderr, "network namespace")
    assert world.probe_calls()[calls:] == []  # not even VERSION: nothing ran in the host's netns
    rec = last_record(world)
    assert rec["outcome"] == "failed" and "--network none" in rec["error"]
    assert not list((world.state / "netns").glob("*")) if (world.state / "netns").exists() else True


@pytest.mark.parametrize("engine", ENGINES)
def test_container_victim_keeps_its_interface_and_reservation(world: ProbeWorld, engine: str) -> None:
    victim = run_engine(world, engine, "run", "-d", "--network", "none", *label(engine, "cnirun.networks=t16-a"),
                        "busybox", "sleep", "600")
    assert victim.returncode == 0, victim.stderr
    vid = victim.stdout.strip()
    try:
        before = run_engine(world, engine, "exec", vid, "ip", "-4", "-o", "addr", "show", "eth0").stdout
        assert "inet 10.161.1." in before
        cached = sorted(p.name for p in (world.cache / "results").iterdir())
        attack = run_engine(world, engine, "run", "--rm", "--network", f"container:{vid}",
                            *label(engine, "cnirun.networks=t16-a"), "busybox", "true")
        assert attack.returncode != 0
        one_cnirun_line(attack.stderr, "network namespace")
        after = run_engine(world, engine, "exec", vid, "ip", "-4", "-o", "addr", "show", "eth0").stdout
        assert after == before  # the victim's eth0 is still there, with its address
        assert sorted(p.name for p in (world.cache / "results").iterdir()) == cached
        reservations = [p.name for p in (world.ipam / "t16-a").iterdir() if p.name.startswith("10.161.")]
        assert reservations == [before.split("inet ")[1].split("/")[0]]
    finally:
        engine_rm(engine, world, vid)
    assert wait_clean(world, vid, BRIDGES) == []


def test_hook_refuses_a_namespace_pinned_for_another_container(world: ProbeWorld) -> None:
    """Two containers sharing one namespace: the second is refused (unit-level, as runc calls the hook)."""
    proc = subprocess.Popen(["unshare", "--net", "sleep", "300"])
    try:
        _wait_own_netns(proc.pid)
        first, second = "t16-" + secrets.token_hex(6), "t16-" + secrets.token_hex(6)
        ok = _hook(world, "createRuntime", first, proc.pid, {"cnirun.networks": "t16-probe"})
        assert ok.returncode == 0, ok.stderr
        calls = len(world.probe_calls())
        bad = _hook(world, "createRuntime", second, proc.pid, {"cnirun.networks": "t16-probe"})
        assert bad.returncode == 1
        one_cnirun_line(bad.stderr, f"already used by container {first[:12]}")
        assert world.probe_calls()[calls:] == []
        assert _hook(world, "poststop", first, 0, {"cnirun.networks": "t16-probe"}, "stopped").returncode == 0
        assert wait_clean(world, first, []) == []
    finally:
        proc.kill()
        proc.wait()


# -- 2. hosts entries only into the engine's own hosts file -----------------------------------------
@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("mount, hostname", [(":ro", NEWLINE_HOSTNAME), ("", "web16")])
def test_user_mounted_hosts_file_is_never_written(world: ProbeWorld, engine: str, mount: str, hostname: str, tmp_path: Path) -> None:
    target = tmp_path / "passwd-like"
    target.write_text("root:x:0:0::/root:/bin/sh\n")
    before = target.read_bytes()
    proc = run_engine(world, engine, "run", "--rm", "--network", "none", "-v", f"{target}:/etc/hosts{mount}",
                      "--hostname", hostname, *label(engine, "cnirun.networks=t16-a"), "busybox", "cat", "/etc/hosts")
    # The engine may refuse a hostname with newlines itself; either way the file is untouched.
    assert target.read_bytes() == before, proc.stdout + proc.stderr
    if proc.returncode == 0:
        assert "cnirun" not in proc.stdout
        rec = last_record(world)
        assert "hosts file not updated" in rec.get("hosts", ""), rec
        assert wait_clean(world, rec["container"], BRIDGES) == []


@pytest.mark.parametrize("engine", ENGINES)
def test_engine_file_gets_the_address(world: ProbeWorld, engine: str) -> None:
    proc = run_engine(world, engine, "run", "--rm", "--network", "none", "--hostname", "web16",
                      *label(engine, "cnirun.networks=t16-a"), "busybox", "cat", "/etc/hosts")
    assert proc.returncode == 0, proc.stderr
    line = [ln for ln in proc.stdout.splitlines() if ln.endswith("# cnirun")]
    assert len(line) == 1 and line[0].startswith("10.161.1.") and "\tweb16\t" in line[0], proc.stdout
    assert wait_clean(world, last_record(world)["container"], BRIDGES) == []


def test_engine_files_refuse_symlinks_and_foreign_paths(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from cnirun.network.attachment import Attachment
    from cnirun.network.files import add_hosts_entries, engine_file
    from cnirun.core.oci_state import OCIConfig

    cid = secrets.token_hex(32)
    root = tmp_path / "docker"
    d = root / "containers" / cid
    d.mkdir(parents=True)
    victim = tmp_path / "victim"
    victim.write_text("keep\n")
    (d / "hosts").symlink_to(victim)  # Docker's path, but a symlink to elsewhere
    monkeypatch.setenv("CNIRUN_DOCKER_ROOT", str(root))
    att = Attachment("n", "eth0", {"ips": [{"address": "10.161.9.9/24"}]})
    assert not engine_file(str(d / "hosts"), cid)
    assert "not the engine's own file" in add_hosts_entries(OCIConfig("", "web", str(d / "hosts")), cid, [att])
    assert victim.read_text() == "keep\n"
    (d / "hosts").unlink()
    os.link(victim, d / "hosts")  # a hard link: same inode as a file elsewhere
    assert "one link" in add_hosts_entries(OCIConfig("", "web", str(d / "hosts")), cid, [att])
    assert victim.read_text() == "keep\n"
    podman_like = "/run/containers/storage/overlay-containers/" + cid + "/userdata/hosts"
    assert engine_file(podman_like, cid) and not engine_file(podman_like, "x" + cid[1:])
    assert not engine_file("/run/containers/storage/overlay-containers/../../../etc/hosts", cid)
    assert "RFC 1123" in add_hosts_entries(OCIConfig("", NEWLINE_HOSTNAME, podman_like), cid, [att])
    # resolv.conf after a restart (point_resolv_conf): the same checks, for the engine's own resolv.conf only.
    from cnirun.network.files import point_resolv_conf

    assert engine_file(podman_like[: -len("hosts")] + "resolv.conf", cid, name="resolv.conf")
    assert not engine_file(podman_like, cid, name="resolv.conf")
    (d / "resolv.conf").symlink_to(victim)
    cfg = OCIConfig("", "web", "", [], str(d / "resolv.conf"))
    assert "not the engine's own file" in point_resolv_conf(cfg, cid, {"10.161.9.1"}, ["127.0.0.11"])
    (d / "resolv.conf").unlink()
    (d / "resolv.conf").write_text("nameserver 10.161.9.1\noptions ndots:0\n")
    assert point_resolv_conf(cfg, cid, {"10.161.9.1"}, ["127.0.0.11"]) == ""
    assert (d / "resolv.conf").read_text() == "nameserver 127.0.0.11\noptions ndots:0\n"
    assert victim.read_text() == "keep\n"


@pytest.mark.parametrize("name", ["web16", "a.b-c.d", "x" * 63])
def test_rfc1123_names_accepted(name: str) -> None:
    assert parse_hostname(name) == name


@pytest.mark.parametrize("name", [NEWLINE_HOSTNAME, "-a", "a-", "a..b", "a_b", "x" * 64, "a b", "a;b", ""])
def test_non_rfc1123_names_refused(name: str) -> None:
    with pytest.raises(ArgumentError, match="RFC 1123"):
        parse_hostname(name)


# -- 6. CNI_ARGS injection through cnirun.ip ---------------------------------------------------
INJECTION = "fd00::5%x;INJECTED=1;K8S_POD_NAME=pwn"


@pytest.mark.parametrize("engine", ENGINES)
def test_ip_label_cannot_inject_cni_args(world: ProbeWorld, engine: str) -> None:
    calls = len(world.probe_calls())
    proc = run_engine(world, engine, "run", "--rm", "--network", "none", *label(engine, "cnirun.networks=t16-probe"),
                      *label(engine, f"cnirun.ip={INJECTION}"), "busybox", "true")
    assert proc.returncode != 0
    one_cnirun_line(proc.stderr, "invalid IP address")
    assert world.cni_calls()[calls:] == [] or all("INJECTED" not in c["args"] for c in world.probe_calls()[calls:])
    assert "INJECTED" not in json.dumps(world.probe_calls())


@pytest.mark.parametrize("value", [INJECTION, "fe80::1%eth0", "10.161.0.5;X=1", "10.161.0.5\nX=1", "fd00::5%25x"])
def test_ip_values_with_zone_or_separators_refused(value: str) -> None:
    with pytest.raises(ArgumentError, match="invalid IP address"):
        parse_ip(value)


@pytest.mark.parametrize("key, value", [("IP", "a;b"), ("IP", "a=b"), ("MAC", "x\ny"), ("K;X", "v"), ("IP", "a\0")])
def test_cni_arg_separators_refused(key: str, value: str) -> None:
    with pytest.raises(ArgumentError, match="CNI_ARGS"):
        check_cni_arg(key, value)


# -- 3. label ports go through the same check as cnirun run -p ------------------------------------
@pytest.mark.parametrize("engine", ENGINES)
def test_label_port_on_a_busy_host_port_is_refused(world: ProbeWorld, engine: str) -> None:
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    port = server.getsockname()[1]
    try:
        proc = run_engine(world, engine, "run", "--rm", "--network", "none", *label(engine, "cnirun.networks=t16-a"),
                          *label(engine, f"cnirun.ports=127.0.0.1:{port}:80"), "busybox", "true")
        assert proc.returncode != 0
        one_cnirun_line(proc.stderr, f"host port {port}/tcp is in use on this host")
        assert "DNAT" not in "\n".join(ln for ln in _iptables() if f"--dport {port}" in ln)
        assert wait_clean(world, last_record(world)["container"], BRIDGES) == []
    finally:
        server.close()


@needs_docker
@needs_podman
def test_a_port_is_published_once_across_labels_engines_and_cnirun_run(world: ProbeWorld) -> None:
    port = 18161
    first = run_engine(world, "docker", "run", "-d", "--network", "none", "--label", "cnirun.networks=t16-a",
                       "--label", f"cnirun.ports=127.0.0.1:{port}:80", "busybox", "sleep", "600")
    assert first.returncode == 0, first.stderr
    cid = first.stdout.strip()
    try:
        for engine in ("docker", "podman"):
            again = run_engine(world, engine, "run", "--rm", "--network", "none", *label(engine, "cnirun.networks=t16-a"),
                               *label(engine, f"cnirun.ports=127.0.0.1:{port}:8080"), "busybox", "true")
            assert again.returncode != 0
            one_cnirun_line(again.stderr, f"host port {port}/tcp is already published by container {cid[:12]}")
        run = subprocess.run([*_cnirun_run(), "--engine", "podman", "--rm", "--net", "t16-a", "-p", f"{port}:80",
                              "busybox", "true"], env=world.full_env(), capture_output=True, text=True, timeout=120)
        assert run.returncode == 125
        one_cnirun_line(run.stderr, f"host port {port}/tcp is already published")
        rules = [ln for ln in _iptables() if f"--dport {port}" in ln and "DNAT" in ln]
        assert len(rules) == 1, rules
        # a restart re-publishes its own port: not a conflict with itself
        restart = run_engine(world, "docker", "restart", "-t", "0", cid)
        assert restart.returncode == 0, restart.stderr
    finally:
        engine_rm("docker", world, cid)
    assert wait_clean(world, cid, BRIDGES) == []


# -- 4. caps and the hook's time budget ---------------------------------------------------------
@pytest.mark.parametrize("engine", ENGINES)
def test_huge_port_range_is_refused_at_once(world: ProbeWorld, engine: str) -> None:
    started = time.monotonic()
    proc = run_engine(world, engine, "run", "--rm", "--network", "none", *label(engine, "cnirun.networks=t16-a"),
                      *label(engine, "cnirun.ports=40000-41999:40000-41999"), "busybox", "true")
    assert proc.returncode != 0
    one_cnirun_line(proc.stderr, "has 2000 ports: at most 100 per range")
    assert time.monotonic() - started < 15
    assert wait_clean(world, last_record(world)["container"], BRIDGES) == []


def test_too_many_mappings_refused() -> None:
    with pytest.raises(ArgumentError, match="at most 200 per container"):
        parse_ports(",".join(f"{40000 + i * 100}-{40099 + i * 100}:{40000 + i * 100}-{40099 + i * 100}" for i in range(3)))
    assert len(parse_ports("40000-40099:40000-40099,40100-40199:40100-40199")) == 200


@pytest.mark.alone
def test_the_most_a_container_may_publish_fits_the_budget(world: ProbeWorld) -> None:
    """200 mappings through the real portmap: well inside the hook's budget."""
    proc = subprocess.Popen(["unshare", "--net", "sleep", "300"])
    cid = "t16-" + secrets.token_hex(6)
    try:
        _wait_own_netns(proc.pid)
        ann = {"cnirun.networks": "t16-a", "cnirun.ports": "127.0.0.1:41000-41099:1000-1099,127.0.0.1:41100-41199:1100-1199"}
        started = time.monotonic()
        out = _hook(world, "createRuntime", cid, proc.pid, ann)
        took = time.monotonic() - started
        assert out.returncode == 0, out.stderr
        assert took < attach.ATTACH_BUDGET / 3, took
    finally:
        proc.kill()
        proc.wait()
        _hook(world, "poststop", cid, 0, {"cnirun.networks": "t16-a"}, "stopped")
    assert wait_clean(world, cid, BRIDGES, timeout=60) == []


@pytest.mark.alone
def test_a_slow_plugin_is_cut_off_by_the_hook_budget(world: ProbeWorld) -> None:
    """A plugin that hangs: the hook gives up within its budget, undoes everything, says so in one line."""
    slow = world.root / "slow.json"
    slow.write_text(json.dumps({"commands": {"ADD": {"sleep": 60}}}))
    (world.netconf / "t16-slow.conflist").write_text(json.dumps(
        {"cniVersion": "1.0.0", "name": "t16-slow", "plugins": [{"type": "noop", "debugFile": str(slow)}]}
    ))
    proc = subprocess.Popen(["unshare", "--net", "sleep", "300"])
    cid = "t16-" + secrets.token_hex(6)
    try:
        _wait_own_netns(proc.pid)
        started = time.monotonic()
        out = _hook(world, "createRuntime", cid, proc.pid, {"cnirun.networks": "t16-slow"}, budget="2")
        took = time.monotonic() - started
        assert out.returncode == 1
        one_cnirun_line(out.stderr, "attaching took longer than 2 s")
        assert took < 2 + attach.CLEANUP_GRACE, took
        adds = [c for c in json.loads("[" + ",".join(Path(str(slow) + ".log").read_text().splitlines()) + "]")
                if c["command"] == "ADD"]
        assert adds and all(not _alive(c["pid"]) for c in adds)  # the hung plugin was killed
        assert leftovers(world, cid, []) == []
    finally:
        proc.kill()
        proc.wait()
        (world.netconf / "t16-slow.conflist").unlink()


# -- 5. no secret on a command line --------------------------------------------------------------
@needs_podman
def test_podman_run_env_values_never_on_a_command_line(world: ProbeWorld, tmp_path: Path) -> None:
    secret1, secret2, secret3 = (f"s16-{secrets.token_hex(8)}" for _ in range(3))
    env_file = tmp_path / "env"
    env_file.write_text(f"FROMFILE={secret2}\n")
    env = {**world.full_env(), "PASSED": secret3}
    child = subprocess.Popen(
        [*_cnirun_run(), "--engine", "podman", "--rm", "--net", "t16-b", "-e", f"GIVEN={secret1}",
         "--env-file", str(env_file), "-e", "PASSED", "-e", f"MULTI=a\n{secret1}",
         "busybox", "sh", "-c", 'echo "$GIVEN $FROMFILE $PASSED"; echo "$MULTI" | tail -n 1; sleep 2'],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    seen: list[str] = []
    # The user's own command line names GIVEN's value; so does, for a moment,
    # a child cnirun forks before it execs (same cmdline until exec): not ours to hide.
    own = "\0".join(child.args) + "\0"
    while child.poll() is None:
        for pid in os.listdir("/proc"):
            if not pid.isdigit() or int(pid) == child.pid:
                continue
            try:
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
            except OSError:
                continue
            if cmdline == own:
                continue
            if any(s in cmdline for s in (secret1, secret2, secret3)):
                seen.append(cmdline.replace("\0", " "))
        time.sleep(0.02)
    out, err = child.communicate()
    assert child.returncode == 0, err
    assert out.split("\n")[:2] == [f"{secret1} {secret2} {secret3}", secret1]
    assert seen == [], seen
    assert not list((world.state / "containers").glob("*/env")) if (world.state / "containers").exists() else True


# -- 7. install checks what it records; uninstall removes what it made -------------------------------
def test_install_refuses_relative_and_writable_directories(world: ProbeWorld, tmp_path: Path) -> None:
    hooks_dir = tmp_path / "made" / "by" / "install"
    open_dir = tmp_path / "open-bin"
    open_dir.mkdir()
    open_dir.chmod(0o777)
    cases = [
        ({"CNI_PATH": "relbin:/usr/lib/cni"}, "CNI_PATH has the relative entry 'relbin'"),
        ({"PATH": "bin:/usr/bin"}, "PATH has the relative entry 'bin'"),
        ({"CNI_PATH": f"{open_dir}:/usr/lib/cni"}, f"{open_dir} is writable by users other than root"),
    ]
    for extra, words in cases:
        proc = subprocess.run([CNIRUN_BIN, "install", "hooks", "--dir", str(hooks_dir)], env={**world.full_env(), **extra},
                              capture_output=True, text=True)
        assert proc.returncode == 1
        one_cnirun_line(proc.stderr, words)
        assert not (tmp_path / "made").exists()
    proc = subprocess.run([CNIRUN_BIN, "install", "hooks", "--dir", str(hooks_dir), "--force"],
                          env={**world.full_env(), "CNI_PATH": f"{open_dir}:/usr/lib/cni"}, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert "WARNING" in proc.stderr and str(open_dir) in proc.stderr
    un = subprocess.run([CNIRUN_BIN, "uninstall", "hooks", "--dir", str(hooks_dir)], capture_output=True, text=True)
    assert un.returncode == 0, un.stderr
    assert not (tmp_path / "made").exists()  # every directory install created is gone again


def test_uninstall_keeps_directories_that_existed_or_are_not_empty(world: ProbeWorld, tmp_path: Path) -> None:
    existing = tmp_path / "hooks.d"
    existing.mkdir()
    assert subprocess.run([CNIRUN_BIN, "install", "hooks", "--dir", str(existing)], env=world.full_env()).returncode == 0
    assert subprocess.run([CNIRUN_BIN, "uninstall", "hooks", "--dir", str(existing)], capture_output=True).returncode == 0
    assert existing.is_dir() and list(existing.iterdir()) == []
    made = tmp_path / "new" / "hooks.d"
    assert subprocess.run([CNIRUN_BIN, "install", "hooks", "--dir", str(made)], env=world.full_env()).returncode == 0
    (made / "someone-elses.json").write_text("{}")
    assert subprocess.run([CNIRUN_BIN, "uninstall", "hooks", "--dir", str(made)], capture_output=True).returncode == 0
    assert [p.name for p in made.iterdir()] == ["someone-elses.json"]


# -- per-network authorization ----------------------------------------------------------------------
@pytest.mark.parametrize("engine", ENGINES)
def test_network_that_refuses_labels_cannot_be_joined_by_naming_it(world: ProbeWorld, engine: str) -> None:
    calls = len(world.probe_calls())
    proc = run_engine(world, engine, "run", "--rm", "--network", "none", *label(engine, "cnirun.networks=t16-closed"),
                      "busybox", "true")
    assert proc.returncode != 0
    one_cnirun_line(proc.stderr, "network t16-closed does not accept containers through labels or annotations")
    assert world.cni_calls()[calls:] == []


# -- helpers ----------------------------------------------------------------------------------------
def _cnirun_run() -> list[str]:
    return [sys.executable, "-m", "cnirun.cli.main"]


def _iptables() -> list[str]:
    return subprocess.run(["iptables-save"], capture_output=True, text=True).stdout.splitlines()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _wait_own_netns(pid: int) -> None:
    for _ in range(400):
        try:
            if os.readlink(f"/proc/{pid}/ns/net") != os.readlink("/proc/self/ns/net"):
                return
        except OSError:
            pass
        time.sleep(0.005)
    raise AssertionError("unshare did not make its netns")


def _hook(world: ProbeWorld, stage: str, cid: str, pid: int, ann: dict[str, str], status: str = "created",
          budget: str = "") -> subprocess.CompletedProcess[str]:
    """Run the hook as runc does: the recorded environment only, the state on stdin, a bundle of `--network none`."""
    bundle = world.root / "bundle"
    if not bundle.exists():
        bundle.mkdir()
        (bundle / "config.json").write_text(json.dumps({"ociVersion": "1.0.2", "linux": {"namespaces": [{"type": "network"}]}}))
    env = dict(item.split("=", 1) for item in hook_command.hook_env({**world.env(), **({"CNIRUN_HOOK_BUDGET": budget} if budget else {})}))
    state = {"ociVersion": "1.0.2", "id": cid, "pid": pid, "status": status, "bundle": str(bundle), "annotations": ann}
    return subprocess.run(hook_command.hook_argv(stage), input=json.dumps(state), env=env, capture_output=True, text=True,
                          cwd="/", timeout=120)


@needs_docker
def test_cnirun_run_attaches_a_closed_network_itself(world: ProbeWorld) -> None:
    """`cnirun run` is root's own attach: for a network refusing labels it takes sandbox mode, never the hook."""
    refused = subprocess.run([*_cnirun_run(), "--mode", "hook", "--rm", "--net", "t16-closed", "busybox", "true"],
                             env=world.full_env(), capture_output=True, text=True, timeout=120)
    assert refused.returncode == 125
    one_cnirun_line(refused.stderr, "--mode hook cannot attach t16-closed")
    calls = len(world.probe_calls())
    ok = subprocess.run([*_cnirun_run(), "--rm", "--net", "t16-closed", "busybox", "true"],
                        env=world.full_env(), capture_output=True, text=True, timeout=120)
    assert ok.returncode == 0, ok.stderr
    # the DEL of a foreground run may finish just after cnirun returned (as the hook's poststop)
    deadline = time.monotonic() + 15
    while "DEL" not in world.cni_calls()[calls:] and time.monotonic() < deadline:
        time.sleep(0.1)
    assert world.cni_calls()[calls:][:1] == ["ADD"] and "DEL" in world.cni_calls()[calls:]


@pytest.mark.parametrize("body, where", [
    ('    hostname: "a\\nroot2::0:0::/root:/bin/sh"\n', "services.web.hostname: invalid hostname"),
    ('    networks:\n      n1:\n        aliases: ["ok", "x\\n10.0.0.1 evil"]\n', r"aliases\[1\]: invalid alias"),
])
def test_compose_hostnames_and_aliases_are_rfc1123(tmp_path: Path, body: str, where: str) -> None:
    from cnirun.compose.project import load_project
    from cnirun.core.errors import CNIError

    f = tmp_path / "compose.yaml"
    f.write_text("services:\n  web:\n    image: busybox\n" + body + "networks:\n  n1: {}\n")
    with pytest.raises(CNIError, match=where):
        load_project(str(f))
