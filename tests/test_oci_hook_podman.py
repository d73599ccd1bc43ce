"""Podman with cnirun's hooks.d files: real podman, real runc, real plugins.

`cnirun install hooks --dir DIR` runs with this test's NETCONFPATH,
CNI_CACHE_DIR, ... in its environment; podman then runs the hook with only
what was recorded. Subnets 10.142.0.0/24 .. 10.142.9.0/24, bridges cnh4p*.
"""
from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Iterator

import pytest

from conftest import needs_podman, needs_root, restarts_keep_links

from conftest import CNIRUN_BIN
from _hook_helpers import HookWorld, bridge_exists, delete_bridges, wait_clean, wait_records

pytestmark = [pytest.mark.podman, needs_root, needs_podman]
BRIDGES = ["cnh4p1", "cnh4p2"]


@pytest.fixture
def world(tmp_path: Path) -> Iterator[HookWorld]:
    w = HookWorld.make(tmp_path)
    w.bridge_net("h4p1", "cnh4p1", "10.142.1.0/24")
    w.bridge_net("h4p2", "cnh4p2", "10.142.2.0/24", full=False)
    proc = subprocess.run(
        [CNIRUN_BIN, "install", "hooks", "--dir", str(tmp_path / "hooks.d")],
        env=w.full_env(), capture_output=True, text=True,
    )
    assert proc.returncode == 0, proc.stderr
    yield w
    proc = subprocess.run([CNIRUN_BIN, "uninstall", "hooks", "--dir", str(tmp_path / "hooks.d")], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert not (tmp_path / "hooks.d").exists()  # install made it, uninstall removed it
    delete_bridges(BRIDGES)
    assert not any(bridge_exists(b) for b in BRIDGES)


def podman(world: HookWorld, *args: str) -> subprocess.CompletedProcess[str]:
    # The user's shell environment must not matter: the hooks carry their own.
    env = {"PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"), "HOME": "/root"}
    return subprocess.run(
        ["podman", "--hooks-dir", str(world.root / "hooks.d"), *args], capture_output=True, text=True, env=env, timeout=120
    )


def annotation(text: str) -> str:
    """podman's --annotation is a CSV string slice: a value with commas must be quoted."""
    return f'"{text}"' if "," in text else text


def test_installed_files_record_the_environment(world: HookWorld) -> None:
    attach = json.loads((world.root / "hooks.d" / "cnirun-attach.json").read_text())
    assert f"NETCONFPATH={world.netconf}" in attach["hook"]["env"]
    assert attach["stages"] == ["createRuntime"]


def test_podman_run_gets_cni_addresses_and_leaves_nothing(world: HookWorld) -> None:
    proc = podman(
        world, "run", "--rm", "--network", "none", "--annotation", annotation("cnirun.networks=h4p1,h4p2"),
        "busybox", "sh", "-c", "ip -4 -o addr show eth0; ip -4 -o addr show eth1",
    )
    assert proc.returncode == 0, proc.stderr
    assert "inet 10.142.1." in proc.stdout and "inet 10.142.2." in proc.stdout
    cid = world.log_records()[0]["container"]
    recs = wait_records(world, cid, 2)
    assert [r["stage"] for r in recs] == ["createRuntime", "poststop"]
    assert len(cid) == 64 and recs[0]["networks"] == ["h4p1", "h4p2"]
    assert all(r["outcome"] == "ok" for r in recs)
    assert wait_clean(world, cid, BRIDGES) == []


def test_podman_static_ip_mac_and_port(world: HookWorld) -> None:
    proc = podman(
        world, "run", "--rm", "--network", "none", "--annotation", "cnirun.networks=h4p1",
        "--annotation", "cnirun.ip=10.142.1.77", "--annotation", "cnirun.mac=02:42:0a:8e:01:4d",
        "--annotation", "cnirun.ports=127.0.0.1:18142:80",
        "busybox", "ip", "-o", "addr", "show", "eth0",
    )
    assert proc.returncode == 0, proc.stderr
    assert "inet 10.142.1.77/24" in proc.stdout
    link = podman(world, "run", "--rm", "--network", "none", "--annotation", "cnirun.networks=h4p1",
                  "--annotation", "cnirun.mac=02:42:0a:8e:01:4e", "busybox", "cat", "/sys/class/net/eth0/address")
    assert link.stdout.strip() == "02:42:0a:8e:01:4e", link.stderr
    for rec in world.log_records():
        assert wait_clean(world, rec["container"], BRIDGES) == []


def test_podman_without_annotation_is_untouched(world: HookWorld) -> None:
    proc = podman(world, "run", "--rm", "--network", "none", "busybox", "ls", "/sys/class/net")
    assert proc.returncode == 0 and proc.stdout.split() == ["lo"]
    assert world.log_records() == []  # `when` did not match: the hook never ran


def test_podman_unknown_network_fails_the_start_with_one_line(world: HookWorld) -> None:
    proc = podman(world, "run", "--rm", "--network", "none", "--annotation", annotation("cnirun.networks=h4p1,nosuchnet"), "busybox", "true")
    assert proc.returncode != 0
    assert 'cnirun: no net configuration with name "nosuchnet"' in proc.stderr
    recs = world.log_records()
    assert recs[0]["outcome"] == "failed"
    assert wait_clean(world, recs[0]["container"], BRIDGES) == []
    names = podman(world, "ps", "-a", "--format", "{{.ID}}")
    assert recs[0]["container"][:12] not in names.stdout


DEFAULT_DIR = Path("/etc/containers/oci/hooks.d")
DROPIN = Path("/etc/containers/containers.conf.d/60-cnirun-hooks-dir.conf")


def test_default_dir_works_with_a_plain_podman_run(tmp_path: Path) -> None:
    """`cnirun install hooks` (no --dir) then `podman run` without --hooks-dir attaches.

    Podman 4.x reads only /usr/share/containers/oci/hooks.d by default, so
    install adds a containers.conf drop-in; uninstall removes both.
    """
    if (DEFAULT_DIR / "cnirun-attach.json").exists() or DROPIN.exists():
        pytest.skip("cnirun hooks are installed on this host: not ours to replace")
    w = HookWorld.make(tmp_path)
    w.bridge_net("h4p9", "cnh4p9", "10.142.9.0/24")
    had_dir = DEFAULT_DIR.exists()
    inst = subprocess.run([CNIRUN_BIN, "install", "hooks"], env=w.full_env(), capture_output=True, text=True)
    try:
        assert inst.returncode == 0, inst.stderr
        configured = subprocess.run(["grep", "-rs", "hooks_dir", "/etc/containers/containers.conf",
                                     "/usr/share/containers/containers.conf"], capture_output=True, text=True)
        if not any(ln.split(":", 1)[-1].strip().startswith("hooks_dir") for ln in configured.stdout.splitlines()):
            assert DROPIN.exists() and str(DEFAULT_DIR) in DROPIN.read_text()
        env = {"PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"), "HOME": "/root"}
        proc = subprocess.run(["podman", "run", "--rm", "--network", "none", "--annotation", "cnirun.networks=h4p9",
                               "busybox", "ip", "-4", "-o", "addr", "show", "eth0"],
                              capture_output=True, text=True, env=env, timeout=120)
        assert proc.returncode == 0, proc.stderr
        assert "inet 10.142.9." in proc.stdout
        cid = w.log_records()[0]["container"]
        assert wait_clean(w, cid, ["cnh4p9"]) == []
    finally:
        un = subprocess.run([CNIRUN_BIN, "uninstall", "hooks"], capture_output=True, text=True)
        delete_bridges(["cnh4p9"])
        if not had_dir:
            for d in (DEFAULT_DIR, DEFAULT_DIR.parent):
                try:
                    d.rmdir()
                except OSError:
                    pass
    assert un.returncode == 0, un.stderr
    assert not DROPIN.exists() and not (DEFAULT_DIR / "cnirun-attach.json").exists()


TC_BRIDGES = ["ctc31", "ctc32"]


@pytest.fixture
def tc_world(tmp_path: Path) -> Iterator[HookWorld]:
    """hooks.d installed with two networks with tuning (MACs): tc31 (IPv4) and tc32 (dual stack)."""
    w = HookWorld.make(tmp_path)
    w.bridge_net("tc31", "ctc31", "10.212.31.0/24")
    dual = {"cniVersion": "1.0.0", "name": "tc32", "plugins": [
        {"type": "bridge", "bridge": "ctc32", "isGateway": True, "ipMasq": True, "capabilities": {"ips": True},
         "ipam": {"type": "host-local", "dataDir": str(w.ipam),
                  "ranges": [[{"subnet": "10.212.32.0/24"}], [{"subnet": "fd97:c:32::/64"}]]}},
        {"type": "tuning", "capabilities": {"mac": True}},
    ]}
    (w.netconf / "tc32.conflist").write_text(json.dumps(dual))
    proc = subprocess.run([CNIRUN_BIN, "install", "hooks", "--dir", str(tmp_path / "hooks.d")],
                          env=w.full_env(), capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    yield w
    proc = subprocess.run([CNIRUN_BIN, "uninstall", "hooks", "--dir", str(tmp_path / "hooks.d")], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    delete_bridges(TC_BRIDGES)
    assert not any(bridge_exists(b) for b in TC_BRIDGES)


def test_podman_restarts_keep_addresses_and_macs(tc_world: HookWorld) -> None:
    """A hooks.d container keeps its IPv4, IPv6 and MAC on its annotation's network (eth0) and on a network
    `cnirun network connect` added (eth1, dual stack) over 6 `podman restart`s and a stop + start."""
    w = tc_world
    name = f"tc-podman-{os.getpid()}"
    try:
        run = podman(w, "run", "-d", "--name", name, "--network", "none", "--annotation", "cnirun.networks=tc31",
                     "busybox", "sleep", "600")
        assert run.returncode == 0, run.stderr
        cid = run.stdout.strip()
        c = subprocess.run([CNIRUN_BIN, "network", "connect", "tc32", name], env={**w.full_env(), "CNIRUN_ENGINE": "podman"},
                           capture_output=True, text=True, timeout=60)
        assert c.returncode == 0, c.stderr
        first = restarts_keep_links(["podman", "--hooks-dir", str(w.root / "hooks.d")], name)
        assert first[0][0].startswith("10.212.31.") and first[1][0].startswith("10.212.32.")
        assert first[1][1].startswith("fd97:c:32::")
        assert [x for r in w.log_records() if r.get("container") == cid for x in r.get("warnings", [])] == []
    finally:
        podman(w, "rm", "-f", "-t", "0", name)
    for rec in w.log_records():
        assert wait_clean(w, rec["container"], TC_BRIDGES) == []


def test_a_mac_another_container_has_on_the_network_is_refused(tc_world: HookWorld) -> None:
    """Copying a running container's MAC on the same network is refused with one line before anything is made,
    whichever way it is asked for: the cnirun.mac annotation (hook), `cnirun run --mac`, `network connect --mac`.
    On another bridge the same MAC is fine."""
    w = tc_world
    name, other = f"tc-podman-{os.getpid()}", f"tc-podman-{os.getpid()}b"
    env = {**w.full_env(), "CNIRUN_ENGINE": "podman"}
    try:
        run = podman(w, "run", "-d", "--name", name, "--network", "none", "--annotation", "cnirun.networks=tc31",
                     "busybox", "sleep", "600")
        assert run.returncode == 0, run.stderr
        mac = podman(w, "exec", name, "cat", "/sys/class/net/eth0/address").stdout.strip()
        copy = podman(w, "run", "--rm", "--network", "none", "--annotation", "cnirun.networks=tc31",
                      "--annotation", f"cnirun.mac={mac}", "busybox", "true")
        assert copy.returncode != 0
        assert f"cnirun: MAC address {mac} is already used on network tc31 by container" in copy.stderr, copy.stderr
        r = subprocess.run([CNIRUN_BIN, "--rm", "--net", "tc31", "--mac", mac.upper(), "busybox", "true"], env=env,
                           capture_output=True, text=True, timeout=60)
        assert r.returncode == 125 and len(r.stderr.strip().splitlines()) == 1, r.stderr
        assert "already used on network tc31" in r.stderr
        b = podman(w, "run", "-d", "--name", other, "--network", "none", "--annotation", "cnirun.networks=tc32",
                   "--annotation", f"cnirun.mac={mac}", "busybox", "sleep", "600")  # another bridge: fine
        assert b.returncode == 0, b.stderr
        c = subprocess.run([CNIRUN_BIN, "network", "connect", "--mac", mac, "tc31", other], env=env,
                           capture_output=True, text=True, timeout=60)
        assert c.returncode != 0 and len(c.stderr.strip().splitlines()) == 1, c.stderr
        assert "already used on network tc31" in c.stderr
        assert podman(w, "exec", other, "ls", "/sys/class/net").stdout.split() == ["eth0", "lo"]
        reservations = sorted(p.name for p in (w.ipam / "tc31").iterdir() if p.name[0].isdigit())
        assert len(reservations) == 1  # only the first container's
    finally:
        for c in (name, other):  # one at a time: podman rm -f A B removes neither when B does not exist
            podman(w, "rm", "-f", "-t", "0", c)
    for rec in w.log_records():
        assert wait_clean(w, rec["container"], TC_BRIDGES) == []


def test_podman_policy_annotation(world: HookWorld) -> None:
    """The cnirun.ingress-allow annotation of a hooks.d container: the host may reach the port it names and no
    other; a bad value fails the start with the annotation's name; removal leaves no policy record."""
    from _wait import wait_for
    from test_live_policies import from_host as reach

    w = world
    w.bridge_net("h4p3", "cnh4p3", "10.142.3.0/24",
                 extra=[{"type": "cnirun-policy", "capabilities": {"firewallPolicy": True}}])
    name = f"h4p-pol-{os.getpid()}"

    try:
        run = podman(w, "run", "-d", "--name", name, "--network", "none", "--annotation", "cnirun.networks=h4p3",
                     "--annotation", "cnirun.ingress-allow=host:80", "busybox", "sh", "-c",
                     "nc -ll -p 80 -e echo hi & nc -ll -p 81 -e echo hi & wait")
        assert run.returncode == 0, run.stderr
        cid = run.stdout.strip()
        ip = podman(w, "exec", name, "ip", "-4", "-o", "addr", "show", "eth0").stdout.split()[3].split("/")[0]
        assert wait_for(lambda: reach(ip, 80) == "hi", 10.0), reach(ip, 80)
        assert reach(ip, 81) == "refused"
        bad = podman(w, "run", "--rm", "--network", "none", "--annotation", "cnirun.networks=h4p3",
                     "--annotation", "cnirun.ingress-allow=host:99999", "busybox", "true")
        assert bad.returncode != 0 and "cnirun.ingress-allow" in bad.stderr, bad.stderr
    finally:
        podman(w, "rm", "-f", "-t", "0", name)
    assert wait_clean(w, cid, BRIDGES + ["cnh4p3"]) == []
    records = w.state / "policies"
    assert wait_for(lambda: not records.exists() or not list(records.iterdir()), 10.0), list(records.iterdir())
    delete_bridges(["cnh4p3"])
