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

from conftest import needs_podman, needs_root

from _hook_helpers import CNIRUN, HookWorld, bridge_exists, delete_bridges, wait_clean, wait_records

pytestmark = [pytest.mark.podman, needs_root, needs_podman]
BRIDGES = ["cnh4p1", "cnh4p2"]


@pytest.fixture
def world(tmp_path: Path) -> Iterator[HookWorld]:
    w = HookWorld.make(tmp_path)
    w.bridge_net("h4p1", "cnh4p1", "10.142.1.0/24")
    w.bridge_net("h4p2", "cnh4p2", "10.142.2.0/24", full=False)
    proc = subprocess.run(
        [CNIRUN, "install", "hooks", "--dir", str(tmp_path / "hooks.d")],
        env=w.full_env(), capture_output=True, text=True,
    )
    assert proc.returncode == 0, proc.stderr
    yield w
    proc = subprocess.run([CNIRUN, "uninstall", "hooks", "--dir", str(tmp_path / "hooks.d")], capture_output=True, text=True)
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
    inst = subprocess.run([CNIRUN, "install", "hooks"], env=w.full_env(), capture_output=True, text=True)
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
        un = subprocess.run([CNIRUN, "uninstall", "hooks"], capture_output=True, text=True)
        delete_bridges(["cnh4p9"])
        if not had_dir:
            for d in (DEFAULT_DIR, DEFAULT_DIR.parent):
                try:
                    d.rmdir()
                except OSError:
                    pass
    assert un.returncode == 0, un.stderr
    assert not DROPIN.exists() and not (DEFAULT_DIR / "cnirun-attach.json").exists()
