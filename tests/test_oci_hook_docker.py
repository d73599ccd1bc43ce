"""Docker with the cnirun runtime shim: real dockerd, real runc, real plugins.

One module fixture installs the runtime (`cnirun install docker-runtime`,
with this module's NETCONFPATH, CNI_CACHE_DIR, ... in effect) and uninstalls
it at the end, checking daemon.json is byte-for-byte what it was. The module
is skipped when a `cnirun` runtime is already registered on this host (a
real installation is not ours to replace).
Subnets 10.143.0.0/24 .. 10.143.9.0/24, bridges cnh4d*.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import time
import urllib.request
from typing import Iterator

import pytest

from conftest import installed_docker_runtime
from _hook_helpers import HookWorld, bridge_exists, delete_bridges, wait_clean, wait_records
BRIDGES = ["cnh4d1", "cnh4d2"]


def _docker_ok() -> bool:
    if os.geteuid() != 0 or not shutil.which("docker"):
        return False
    return subprocess.run(["docker", "info"], capture_output=True).returncode == 0


pytestmark = [
    pytest.mark.docker,
    pytest.mark.skipif(not _docker_ok(), reason="needs root and a running dockerd"),
]


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HookWorld]:
    w = HookWorld.make(tmp_path_factory.mktemp("h4docker"))
    w.bridge_net("h4d1", "cnh4d1", "10.143.1.0/24")
    w.bridge_net("h4d2", "cnh4d2", "10.143.2.0/24", full=False)
    try:
        with installed_docker_runtime(w.full_env(), w.root / "runtime"):
            yield w
    finally:
        delete_bridges(BRIDGES)
        assert not any(bridge_exists(b) for b in BRIDGES)


def docker(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    env = {"PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"), "HOME": "/root"}
    return subprocess.run(["docker", *args], capture_output=True, text=True, env=env, timeout=timeout)


def test_run_rm_shows_cni_addresses_and_leaves_nothing(world: HookWorld) -> None:
    proc = docker(
        "run", "--rm", "--runtime", "cnirun", "--network", "none", "--label", "cnirun.networks=h4d1,h4d2",
        "--label", "h4test=run", "busybox", "sh", "-c", "ip -4 -o addr show eth0; ip -4 -o addr show eth1",
    )
    assert proc.returncode == 0, proc.stderr
    assert "inet 10.143.1." in proc.stdout and "inet 10.143.2." in proc.stdout
    cid = [r for r in world.log_records() if r["stage"] == "create"][-1]["container"]
    recs = wait_records(world, cid, 2)
    assert [(r["stage"], r["outcome"]) for r in recs] == [("create", "ok"), ("delete", "ok")]
    assert wait_clean(world, cid, BRIDGES) == []


def test_restart_reattaches_and_rm_f_cleans_up(world: HookWorld) -> None:
    proc = docker("run", "-d", "--runtime", "cnirun", "--network", "none", "--label", "cnirun.networks=h4d1",
                  "--label", "cnirun.ip=10.143.1.50", "busybox", "sleep", "600")
    assert proc.returncode == 0, proc.stderr
    cid = proc.stdout.strip()
    try:
        for _ in range(2):
            out = docker("restart", "-t", "0", cid)
            assert out.returncode == 0, out.stderr
            addr = docker("exec", cid, "ip", "-4", "-o", "addr", "show", "eth0")
            assert "inet 10.143.1.50/24" in addr.stdout, addr.stderr
            assert len([p for p in (world.cache / "results").iterdir() if cid in p.name]) == 1
        stop = docker("stop", "-t", "0", cid)
        assert stop.returncode == 0, stop.stderr
        assert wait_clean(world, cid, BRIDGES) == []  # a stopped container holds nothing
        start = docker("start", cid)
        assert start.returncode == 0, start.stderr
        assert "inet 10.143.1.50/24" in docker("exec", cid, "ip", "-4", "-o", "addr", "show", "eth0").stdout
    finally:
        docker("rm", "-f", cid)
    assert wait_clean(world, cid, BRIDGES) == []
    recs = wait_records(world, cid, 8)
    assert [r["stage"] for r in recs] == ["create", "delete"] * 4
    assert all(r["outcome"] == "ok" for r in recs)


def test_published_port_answers_on_loopback(world: HookWorld) -> None:
    proc = docker("run", "-d", "--runtime", "cnirun", "--network", "none", "--label", "cnirun.networks=h4d1",
                  "--label", "cnirun.ports=127.0.0.1:18143:8080", "busybox",
                  "sh", "-c", "mkdir -p /w && echo hello-h4 > /w/index.html && httpd -f -p 8080 -h /w")
    assert proc.returncode == 0, proc.stderr
    cid = proc.stdout.strip()
    try:
        body = ""
        for _ in range(50):
            try:
                body = urllib.request.urlopen("http://127.0.0.1:18143/", timeout=2).read().decode()
                break
            except OSError:
                time.sleep(0.1)
        assert body.strip() == "hello-h4"
    finally:
        docker("rm", "-f", cid)
    assert wait_clean(world, cid, BRIDGES) == []


def test_unlabelled_container_under_the_runtime_is_untouched(world: HookWorld) -> None:
    n = len(world.log_records())
    proc = docker("run", "--rm", "--runtime", "cnirun", "--network", "none", "busybox", "ls", "/sys/class/net")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["lo"]
    assert len(world.log_records()) == n


@pytest.mark.parametrize(
    "labels, words",
    [
        (["cnirun.networks=h4d1,nosuchnet"], 'cnirun: no net configuration with name "nosuchnet"'),
        (["cnirun.networks=h4d1", "cnirun.ip=10.99.0.5"], "cnirun: IP address 10.99.0.5 is outside network h4d1"),
        (["cnirun.networks=/usr/bin/evil"], "cnirun: invalid network name"),
    ],
)
def test_bad_labels_fail_the_start_with_one_line(world: HookWorld, labels: list[str], words: str) -> None:
    args = [a for label in labels for a in ("--label", label)]
    proc = docker("run", "--rm", "--runtime", "cnirun", "--network", "none", *args, "busybox", "true")
    assert proc.returncode != 0
    assert words in proc.stderr
    failed = [r for r in world.log_records() if r["outcome"] == "failed"][-1]
    assert words.split(": ", 1)[1] in failed["error"]
    assert wait_clean(world, failed["container"], BRIDGES) == []


def test_a_create_that_fails_after_the_attach_leaves_nothing(world: HookWorld) -> None:
    """runc's create fails (a sysctl it cannot write) after the shim's worker attached: the delete undoes it."""
    n = len(world.log_records())
    proc = docker("run", "--rm", "--runtime", "cnirun", "--network", "none", "--sysctl", "net.ipv4.h4nosuchknob=1",
                  "--label", "cnirun.networks=h4d1", "busybox", "true")
    assert proc.returncode != 0 and "h4nosuchknob" in proc.stderr
    created = [r for r in world.log_records()[n:] if r["stage"] == "create"]
    assert [r["outcome"] for r in created] == ["ok"]  # the attach itself went through
    cid = created[0]["container"]
    assert wait_clean(world, cid, BRIDGES) == []
    assert [r["stage"] for r in wait_records(world, cid, 2)] == ["create", "delete"]


def test_docker_bridge_mode_is_refused_with_one_line(world: HookWorld) -> None:
    """Without --network none Docker plugs its own eth0 into the namespace: the createRuntime hook refuses."""
    proc = docker("run", "--rm", "--runtime", "cnirun", "--label", "cnirun.networks=h4d1", "busybox", "true")
    assert proc.returncode != 0
    assert "cnirun: the container's network namespace already has eth0" in proc.stderr
    assert "--network none" in proc.stderr
    failed = [r for r in world.log_records() if r["outcome"] == "failed"][-1]
    assert failed["stage"] == "createRuntime"
    assert wait_clean(world, failed["container"], BRIDGES) == []


def test_loopback_is_up_in_the_namespace_the_shim_made(world: HookWorld) -> None:
    proc = docker("run", "--rm", "--runtime", "cnirun", "--network", "none", "--label", "cnirun.networks=h4d1",
                  "busybox", "sh", "-c", "ip -o link show lo; ping -c1 -W1 127.0.0.1 >/dev/null && echo lo-answers")
    assert proc.returncode == 0, proc.stderr
    assert "<LOOPBACK,UP" in proc.stdout and "lo-answers" in proc.stdout
    cid = [r for r in world.log_records() if r["stage"] == "create"][-1]["container"]
    assert wait_clean(world, cid, BRIDGES) == []
