"""Scale (#13): many chains at once, on real plugins and engines; nothing left behind.

- 50 concurrent `cnirun cni add` / `del` cycles across 3 networks (bridge +
  host-local + portmap + firewall + tuning): all succeed, addresses distinct
  while held, every port's DNAT rule in place, nothing left afterwards.
- 20 concurrent `cnirun --rm busybox true` in Docker sandbox mode, Docker
  hook mode and on Podman: 20 of 20 succeed, addresses distinct while they
  run, zero leaks.

Address plan: 10.197.N.0/24 (the World's network) and 10.198.0.0/16; names
t197*/t3-197-*; host ports 19700-19799.
"""
from __future__ import annotations

import json
import os
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from conftest import (
    CNIRUN,
    REPO,
    World,
    _make_world,
    docker_runtime_installed,
    needs_docker,
    needs_plugins,
    needs_podman,
    needs_root,
    world_fixture,
)

pytestmark = [needs_root, needs_plugins]

CYCLES = 50
PORT_BASE = 19700


world = world_fixture(_make_world, 197, "scale")


TUNING = {"type": "tuning", "sysctl": {"net.ipv4.conf.eth0.send_redirects": "0"}}


def _networks(w: World) -> list[tuple[str, str, str]]:
    """(name, bridge, subnet) of the three networks, tuning last in each chain: the World's and two in 10.198/16."""
    w.conflist(extra=[TUNING])
    for name, bridge, subnet in ((f"t197s{w.n}b", f"t197b{w.n}", f"10.198.{2 * w.n}.0/24"),
                                 (f"t197s{w.n}c", f"t197c{w.n}", f"10.198.{2 * w.n + 1}.0/24")):
        w.add_network(name, bridge, subnet, extra=[TUNING])
    return [(w.net, w.bridge, w.subnet), *((o.name, o.bridge, o.subnet) for o in w.others)]


def _ip(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30)


def _leftovers(w: World, ns_names: list[str]) -> list[str]:
    """The World's leak check (its three networks) plus the test's named netns and its ports' rules."""
    out = w.leftovers()
    rules = subprocess.run(["iptables-save"], capture_output=True, text=True).stdout.splitlines()
    mine = [r for r in rules if any(f"--dport {PORT_BASE + i} " in r + " " for i in range(CYCLES))]
    if mine:
        out.append(f"iptables rules: {mine[:3]} ({len(mine)})")
    present = set(os.listdir("/run/netns"))
    if present & set(ns_names):
        out.append(f"netns: {sorted(present & set(ns_names))[:3]}")
    return out


@pytest.mark.alone
def test_50_concurrent_add_del_cycles_across_3_networks(world: World) -> None:
    nets = _networks(world)
    # the bridges do not exist yet: the first ADDs on each network race to create it
    for _, bridge, _ in nets:
        assert not Path(f"/sys/class/net/{bridge}").exists()
    tag = f"t197s{world.n}x{os.getpid() % 10000}"
    jobs = [(i, nets[i % 3][0], f"{tag}-{i}") for i in range(CYCLES)]
    ns_names = [ns for _, _, ns in jobs]
    for ns in ns_names:
        assert _ip("netns", "add", ns).returncode == 0

    def cni(verb: str, i: int, net: str, ns: str) -> tuple[int, str, str]:
        env = dict(world.env, CNI_CONTAINERID=f"{tag}-c{i}",
                   CAP_ARGS=json.dumps({"portMappings": [
                       {"hostPort": PORT_BASE + i, "containerPort": 80, "protocol": "tcp"}]}))
        p = subprocess.run([*CNIRUN, "cni", verb, net, ns], env=env, capture_output=True, text=True,
                           timeout=180, cwd=REPO)
        return p.returncode, p.stdout, p.stderr

    def add(job: tuple[int, str, str]) -> str:
        i, net, ns = job
        rc, out, err = cni("add", i, net, ns)
        assert rc == 0, f"ADD {i} on {net}: {err}"
        return str(json.loads(out)["ips"][0]["address"])

    def cycle(job: tuple[int, str, str]) -> str:
        """DEL then ADD again (the second round overlaps DELs and ADDs of every network)."""
        i, net, ns = job
        rc, _, err = cni("del", i, net, ns)
        assert rc == 0, f"DEL {i} on {net}: {err}"
        return add(job)

    def delete(job: tuple[int, str, str]) -> None:
        i, net, ns = job
        rc, _, err = cni("del", i, net, ns)
        assert rc == 0, f"DEL {i} on {net}: {err}"

    def check_held(addresses: list[str]) -> None:
        assert len(addresses) == CYCLES and len(set(addresses)) == CYCLES, sorted(addresses)
        for (i, net, ns), addr in zip(jobs, addresses):
            subnet = next(s for n, _, s in nets if n == net)
            assert addr.startswith(subnet.rsplit(".", 1)[0] + "."), (net, addr)
            shown = _ip("-n", ns, "-4", "-o", "addr", "show", "eth0").stdout
            assert addr in shown, (ns, addr, shown)
        dnat = subprocess.run(["iptables", "-w", "-t", "nat", "-S", "CNI-HOSTPORT-DNAT"], capture_output=True,
                              text=True).stdout
        for i in range(CYCLES):
            assert f"--dports {PORT_BASE + i}" in dnat or f"--dport {PORT_BASE + i}" in dnat, i
        jumps = subprocess.run(["iptables", "-w", "-t", "nat", "-S", "PREROUTING"], capture_output=True,
                               text=True).stdout
        assert jumps.count("-j CNI-HOSTPORT-DNAT") == 1  # the shared jump was not inserted twice

    try:
        with ThreadPoolExecutor(CYCLES) as pool:
            t0 = time.monotonic()
            first = list(pool.map(add, jobs))
            check_held(first)
            second = list(pool.map(cycle, jobs))
            check_held(second)
            list(pool.map(delete, jobs))
            took = time.monotonic() - t0
        print(f"{3 * CYCLES} ADDs and {3 * CYCLES} DELs on 3 networks, {CYCLES} at a time: {took:.1f} s")
        for _, bridge, _ in nets:
            assert Path(f"/sys/class/net/{bridge}").exists()
    finally:
        for job in jobs:
            cni("del", *job)  # a failed run: whatever it left (a no-op after a clean run)
        for ns in ns_names:
            _ip("netns", "delete", ns)
        left = _leftovers(world, ns_names)
    assert left == []


# -- 20 concurrent `cnirun --rm busybox ...` ------------------------------------------------------
RUNS = 20
# Each container prints its address, says it is up (a file in a shared bind) and waits for
# the go-file: all 20 hold their addresses at the same time when they are compared.
WAIT_SCRIPT = (
    "ip -4 -o addr show eth0 | awk '{print $4}' > /sync/addr.$N && touch /sync/up.$N && "
    "i=0; while [ ! -e /sync/go ] && [ $i -lt 1200 ]; do sleep 0.1; i=$((i+1)); done"
)


def _concurrent_runs(w: World, *mode: str) -> None:
    sync = w.tmp / "sync"
    sync.mkdir()
    procs = [
        subprocess.Popen([*CNIRUN, *mode, "--rm", "-e", f"N={i}", "-v", f"{sync}:/sync", "busybox", "sh", "-c",
                          WAIT_SCRIPT], env=w.env, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True)
        for i in range(RUNS)
    ]
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and len(list(sync.glob("up.*"))) < RUNS:
            if any(p.poll() not in (None, 0) for p in procs):
                break
            time.sleep(0.2)
        up = len(list(sync.glob("up.*")))
        addresses = [(sync / f"addr.{i}").read_text().strip() if (sync / f"addr.{i}").exists() else ""
                     for i in range(RUNS)]
        (sync / "go").touch()
        results = [(p.wait(timeout=240), *p.communicate()) for p in procs]
    finally:
        (sync / "go").touch()
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    failed = [(i, rc, err[-300:]) for i, (rc, _out, err) in enumerate(results) if rc != 0]
    assert failed == [] and up == RUNS, f"{RUNS - len(failed)}/{RUNS} succeeded, {up} were up at once: {failed[:3]}"
    prefix = w.subnet.rsplit(".", 1)[0] + "."
    assert all(a.startswith(prefix) for a in addresses), addresses
    assert len(set(addresses)) == RUNS, sorted(addresses)
    w.assert_clean(within=30)


@needs_docker
def test_20_concurrent_runs_docker_sandbox(world: World) -> None:
    _concurrent_runs(world, "--mode", "sandbox")


@needs_docker
def test_20_concurrent_runs_docker_hook(world: World) -> None:
    with docker_runtime_installed(world, "cnirun-t197-"):
        _concurrent_runs(world, "--mode", "hook")


@needs_podman
def test_20_concurrent_runs_podman(world: World) -> None:
    _concurrent_runs(world, "--engine", "podman")
