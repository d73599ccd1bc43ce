"""Issue #10: `cnirun network connect/disconnect` and `cnirun port add/rm/ls` on running containers.

Real dockerd, podman and plugins. Address plan of this file: 10.191.N.0/24,
bridges cnc10*, networks and containers t10-*, host ports 19100-19199 on
127.0.0.1. Each test ends with the World's leak check (veths, reservations,
cache files, rules, containers, state, netns).
"""
from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from _wait import wait_for
from conftest import (
    World,
    _make_world,
    docker_runtime_installed,
    first_address,
    needs_docker,
    needs_plugins,
    needs_podman,
    needs_root,
    world_fixture,
)

pytestmark = [needs_root, needs_plugins]


def _world(tmp_path: Path, engine: str = "") -> World:
    """Network t10-N (bridge cnc10xN, 10.191.N.0/24) and t10-N-b (cnc10yN, the upper half of that /24,
    no default route: it is a container's second interface)."""
    w = _make_world(tmp_path, 191, net="t10-{n}", bridge="cnc10x{n}", engine=engine, name_prefix="t10-{n}-")
    w.add_network(f"t10-{w.n}-b", f"cnc10y{w.n}", f"10.191.{w.n}.128/25", routes=False, hairpin=False)
    return w


dworld = world_fixture(_world)
pworld = world_fixture(_world, "podman")


def ok(p: subprocess.CompletedProcess[str]) -> subprocess.CompletedProcess[str]:
    assert p.returncode == 0, f"exit {p.returncode}: {p.stderr}"
    return p


def addr(engine: str, name: str, ifname: str) -> str:
    p = subprocess.run([engine, "exec", name, "ip", "-4", "addr", "show", ifname], capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    return first_address(p.stdout)


def ifaces(engine: str, name: str) -> list[str]:
    p = subprocess.run([engine, "exec", name, "cat", "/proc/net/dev"], capture_output=True, text=True)
    return sorted(ln.split(":")[0].strip() for ln in p.stdout.splitlines()[2:] if ":" in ln)


def fetch(port: int) -> str:
    p = subprocess.run(["wget", "-qO-", "-T", "3", f"http://127.0.0.1:{port}/"], capture_output=True, text=True)
    return p.stdout if p.returncode == 0 else f"failed: {p.stderr.strip()}"


def httpd(name: str) -> list[str]:
    """busybox httpd serving a page that names the container."""
    return ["sh", "-c", f"mkdir -p /www && echo hello-{name} > /www/index.html && exec httpd -f -p 80 -h /www"]


def in_subnet(cidr: str, subnet: str) -> bool:
    import ipaddress

    return ipaddress.ip_interface(cidr).ip in ipaddress.ip_network(subnet)


def cache_ports(w: World) -> list[list[Any]]:
    out = []
    for f in sorted((w.cache_dir / "results").glob("*")):
        obj = json.loads(f.read_text())
        out += [[m["hostPort"], m["containerPort"]] for m in (obj.get("capabilityArgs") or {}).get("portMappings", [])]
    return sorted(out)


def dnat_ports(w: World) -> list[int]:
    """Host ports portmap DNATs for this World's subnet."""
    rules = subprocess.run(["iptables-save", "-t", "nat"], capture_output=True, text=True).stdout
    out = set()
    for ln in rules.splitlines():
        if "--dport" in ln and f"10.191.{w.n}." in ln and "DNAT" in ln:
            out.add(int(ln.split("--dport")[1].split()[0]))
    return sorted(out)


def connect_cycle(w: World, engine: str, name: str) -> None:
    """connect the second network (eth1, address at once), ps/inspect show it, disconnect leaves eth0 working."""
    eth0 = addr(engine, name, "eth0")
    ok(w.cnirun("network", "connect", w.second, name))
    eth1 = addr(engine, name, "eth1")
    assert in_subnet(eth1, w.subnet_of(w.second)) and in_subnet(eth0, w.subnet_of(w.net))
    ping = subprocess.run(["busybox", "ping", "-c1", "-W2", eth1.split("/")[0]], capture_output=True)
    assert ping.returncode == 0  # the container answers on eth1, through the second bridge
    info = json.loads(ok(w.cnirun("inspect", name)).stdout)
    assert sorted((a["network"], a["ifname"]) for a in info["attachments"]) == [(w.net, "eth0"), (w.second, "eth1")]
    again = w.cnirun("network", "connect", w.second, name)
    assert again.returncode == 1 and "already connected" in again.stderr and len(again.stderr.splitlines()) == 1
    ok(w.cnirun("network", "disconnect", w.second, name))
    assert ifaces(engine, name) == ["eth0", "lo"]
    assert addr(engine, name, "eth0") == eth0
    ipam = w.data_dir / w.second
    assert not [p for p in ipam.iterdir() if p.name[0].isdigit()]
    gone = w.cnirun("network", "disconnect", w.second, name)
    assert gone.returncode == 1 and "not connected" in gone.stderr


# -- Docker sandbox mode ----------------------------------------------------------------
@needs_docker
def test_sandbox_connect_disconnect_and_ports(dworld: World) -> None:
    w, name = dworld, f"t10-{dworld.n}-web"
    ok(w.cnirun("run", "-d", "--mode", "sandbox", "--name", name, "-p", f"127.0.0.1:{host_port(w)}:80",
                "busybox", *httpd(name)))
    try:
        connect_cycle(w, "docker", name)
        port_cycle(w, "docker", name, host_port(w))
    finally:
        subprocess.run(["docker", "rm", "-f", name], capture_output=True)
    w.assert_clean(within=20.0)


def host_port(w: World) -> int:
    """The test's host port, 19100-19149 (port_cycle's second one is 50 above it): the World's own, as its
    n is (fewer than 50 Worlds of this file), so tests in parallel workers never publish the same port."""
    return 19100 + w.n % 50


def port_cycle(w: World, engine: str, name: str, first: int) -> None:
    """port add/rm: reached over 127.0.0.1 before and after, same IP, conflicts refused, the cache rewritten."""
    extra = first + 50
    eth0 = addr(engine, name, "eth0")
    assert fetch(first).strip() == f"hello-{name}"
    assert fetch(extra).startswith("failed")
    ok(w.cnirun("port", "add", name, f"127.0.0.1:{extra}:80"))
    assert fetch(extra).strip() == f"hello-{name}" and fetch(first).strip() == f"hello-{name}"
    assert addr(engine, name, "eth0") == eth0
    assert ok(w.cnirun("port", name)).stdout.splitlines() == [
        f"80/tcp -> 127.0.0.1:{first}", f"80/tcp -> 127.0.0.1:{extra}"]
    assert ok(w.cnirun("port", "ls", name)).stdout == ok(w.cnirun("port", name)).stdout
    # The one output convention: json with stable field names, templates, and one-line errors.
    rows = json.loads(ok(w.cnirun("port", "ls", name, "--format", "json")).stdout)
    assert [(r["container_port"], r["protocol"], r["host_ip"], r["host_port"]) for r in rows] == [
        (80, "tcp", "127.0.0.1", first), (80, "tcp", "127.0.0.1", extra)]
    assert ok(w.cnirun("port", "ls", name, "--format={{.HostPort}}")).stdout.split() == [str(first), str(extra)]
    badfmt = w.cnirun("port", "ls", name, "--format", "{{.Nope}}")
    assert badfmt.returncode == 1 and badfmt.stderr.count("\n") == 1 and "Nope" in badfmt.stderr
    assert cache_ports(w) == sorted([[first, 80], [extra, 80]])
    assert dnat_ports(w) == sorted([first, extra])
    # ps shows them in docker ps's notation, on the attachment that publishes them
    ps = ok(w.cnirun("ps", "--no-trunc")).stdout.splitlines()
    assert ps[0].split()[-1] == "PORTS"
    row = next(ln for ln in ps if name in ln and " eth0 " in ln)
    assert row.endswith(f"127.0.0.1:{first}->80/tcp, 127.0.0.1:{extra}->80/tcp"), row
    dup = w.cnirun("port", "add", name, f"127.0.0.1:{extra}:80")
    assert dup.returncode == 1 and "already publishes" in dup.stderr
    bad = w.cnirun("port", "add", name, "127.0.0.1:99999:80")
    assert bad.returncode == 1 and bad.stderr.startswith("cnirun: invalid port")
    ok(w.cnirun("port", "rm", name, f"127.0.0.1:{first}:80"))
    assert fetch(first).startswith("failed") and fetch(extra).strip() == f"hello-{name}"
    assert cache_ports(w) == [[extra, 80]] and dnat_ports(w) == [extra]
    assert addr(engine, name, "eth0") == eth0
    notpub = w.cnirun("port", "rm", name, f"127.0.0.1:{first}:80")
    assert notpub.returncode == 1 and "does not publish" in notpub.stderr


@needs_docker
def test_port_conflict_refused_before_anything_changes(dworld: World) -> None:
    w = dworld
    a, b = f"t10-{w.n}-a", f"t10-{w.n}-b"
    port = host_port(w)
    ok(w.cnirun("run", "-d", "--mode", "sandbox", "--name", a, "-p", f"127.0.0.1:{port}:80", "busybox", *httpd(a)))
    ok(w.cnirun("run", "-d", "--mode", "sandbox", "--name", b, "busybox", *httpd(b)))
    try:
        before = (cache_ports(w), dnat_ports(w))
        taken = w.cnirun("port", "add", b, f"127.0.0.1:{port}:80")
        assert taken.returncode == 1 and "already published by container" in taken.stderr
        assert len(taken.stderr.splitlines()) == 1
        assert (cache_ports(w), dnat_ports(w)) == before
        assert fetch(port).strip() == f"hello-{a}"
        nocont = w.cnirun("port", "add", f"t10-{w.n}-nosuch", "127.0.0.1:19199:80")
        assert nocont.returncode == 1 and "no such container" in nocont.stderr
        nonet = w.cnirun("network", "connect", "t10-nosuch", b)
        assert nonet.returncode == 1 and "t10-nosuch" in nonet.stderr and len(nonet.stderr.splitlines()) == 1
    finally:
        subprocess.run(["docker", "rm", "-f", a, b], capture_output=True)
    w.assert_clean(within=20.0)


@needs_docker
def test_sandbox_restart_keeps_connected_networks_and_ports(dworld: World) -> None:
    w, name = dworld, f"t10-{dworld.n}-rs"
    port = host_port(w)
    ok(w.cnirun("run", "-d", "--mode", "sandbox", "--name", name, "busybox", *httpd(name)))
    try:
        ok(w.cnirun("network", "connect", w.second, name))
        ok(w.cnirun("port", "add", name, f"127.0.0.1:{port}:80"))
        eth0, eth1 = addr("docker", name, "eth0"), addr("docker", name, "eth1")
        ok(subprocess.run(["docker", "restart", "-t", "1", name], capture_output=True, text=True))
        ok(subprocess.run(["docker", "stop", "-t", "1", name], capture_output=True, text=True))
        ok(subprocess.run(["docker", "start", name], capture_output=True, text=True))
        assert (addr("docker", name, "eth0"), addr("docker", name, "eth1")) == (eth0, eth1)
        assert fetch(port).strip() == f"hello-{name}"
    finally:
        subprocess.run(["docker", "rm", "-f", name], capture_output=True)
    w.assert_clean(within=20.0)


# -- a foreign container ------------------------------------------------------------------
@needs_docker
def test_foreign_docker_container(dworld: World) -> None:
    """A plain `docker run --network none`: connected, pinned, torn down on removal by the watcher."""
    w, name = dworld, f"t10-{dworld.n}-plain"
    ok(subprocess.run(["docker", "run", "-d", "--name", name, "--network", "none", "busybox", *httpd(name)],
                      capture_output=True, text=True))
    try:
        ok(w.cnirun("network", "connect", w.net, name))
        assert in_subnet(addr("docker", name, "eth0"), w.subnet_of(w.net))
        port = host_port(w)
        ok(w.cnirun("port", "add", name, f"127.0.0.1:{port}:80"))
        assert fetch(port).strip() == f"hello-{name}"
        ok(w.cnirun("network", "connect", w.second, name))
        assert ifaces("docker", name) == ["eth0", "eth1", "lo"]
        ok(w.cnirun("network", "disconnect", w.second, name))
        assert ifaces("docker", name) == ["eth0", "lo"]
        cid = ok(subprocess.run(["docker", "inspect", "-f", "{{.Id}}", name], capture_output=True,
                                text=True)).stdout.strip()
        assert (w.state_dir / "netns" / cid).exists()
    finally:
        subprocess.run(["docker", "rm", "-f", name], capture_output=True)
    w.assert_clean(within=6.0)  # the watcher sees the destroy event (not only its 10 s recheck) and DELs in the pin


@needs_docker
def test_connect_whose_add_fails_changes_nothing(dworld: World) -> None:
    """A chain that fails after bridge and host-local succeeded: one line, the container as before, no leak."""
    w, name = dworld, f"t10-{dworld.n}-fail"
    bad, bridge = f"t10-{w.n}-bad", f"cnc10z{w.n}"
    (Path(w.env["NETCONFPATH"]) / f"{bad}.conflist").write_text(json.dumps({
        "cniVersion": "1.0.0", "name": bad,
        "plugins": [
            {"type": "bridge", "bridge": bridge, "isGateway": True,
             "ipam": {"type": "host-local", "dataDir": str(w.data_dir),
                      "ranges": [[{"subnet": f"10.191.{w.n}.64/27"}]]}},
            # the real tuning plugin, failing on a sysctl that does not exist
            {"type": "tuning", "sysctl": {"net.ipv4.conf.eth1.t10_no_such_sysctl": "1"}},
        ],
    }))
    ok(w.cnirun("run", "-d", "--name", name, "busybox", "sleep", "120"))
    try:
        eth0 = addr("docker", name, "eth0")
        p = w.cnirun("network", "connect", bad, name)
        assert p.returncode == 1, p.stderr
        assert len(p.stderr.splitlines()) == 1 and "tuning" in p.stderr and "Traceback" not in p.stderr, p.stderr
        assert ifaces("docker", name) == ["eth0", "lo"] and addr("docker", name, "eth0") == eth0
        ipam = w.data_dir / bad
        assert not ipam.is_dir() or not [f for f in ipam.iterdir() if f.name[0].isdigit()]
        info = json.loads(ok(w.cnirun("inspect", name)).stdout)
        assert [a["network"] for a in info["attachments"]] == [w.net]
        # the live record names no half-made connection: a restart attaches eth0 only
        ok(subprocess.run(["docker", "restart", "-t", "0", name], capture_output=True, text=True))
        deadline = time.monotonic() + 30
        while ifaces("docker", name) != ["eth0", "lo"] and time.monotonic() < deadline:
            time.sleep(0.3)
        assert ifaces("docker", name) == ["eth0", "lo"]
    finally:
        subprocess.run(["docker", "rm", "-f", name], capture_output=True)
        w.assert_clean(within=25.0)
        subprocess.run(["ip", "link", "del", bridge], capture_output=True)


@needs_docker
def test_connect_racing_the_container_exit_leaves_nothing(dworld: World) -> None:
    """Containers that exit while connect and port add run on them: each call succeeds or fails in one
    line, and once they are gone (gc after the engine removed them) nothing of theirs is left."""
    w = dworld
    names = [f"t10-{w.n}-race{i}" for i in range(4)]
    outcomes = []
    try:
        for i, name in enumerate(names):
            ok(subprocess.run(["docker", "run", "-d", "--rm", "--name", name, "--network", "none", "busybox",
                               "sleep", f"0.{2 + i * 2}"], capture_output=True, text=True))
            for _ in range(6):
                p = w.cnirun("network", "connect", w.net, name)
                outcomes.append(p.returncode)
                assert p.returncode in (0, 1), p.stderr
                assert "Traceback" not in p.stderr and len(p.stderr.splitlines()) <= 1, p.stderr
                if p.returncode == 1 and "already connected" not in p.stderr:
                    break
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and subprocess.run(
                ["docker", "ps", "-aq", "--filter", f"name=t10-{w.n}-race"], capture_output=True,
                text=True).stdout.strip():
            time.sleep(0.3)
    finally:
        subprocess.run(["docker", "rm", "-f", *names], capture_output=True)
    assert 1 in outcomes  # at least one call met a container that was gone
    ok(w.cnirun("gc"))
    w.assert_clean(within=25.0)


@needs_docker
def test_host_and_shared_netns_refused(dworld: World) -> None:
    w = dworld
    host, shared = f"t10-{w.n}-host", f"t10-{w.n}-shared"
    ok(subprocess.run(["docker", "run", "-d", "--name", host, "--network", "host", "busybox", "sleep", "60"],
                      capture_output=True, text=True))
    ok(subprocess.run(["docker", "run", "-d", "--name", shared, "--network", f"container:{host}", "busybox",
                       "sleep", "60"], capture_output=True, text=True))
    try:
        for c, word in ((host, "host's network"), (shared, "shares another network namespace")):
            p = w.cnirun("network", "connect", w.net, c)
            assert p.returncode == 1 and word in p.stderr and len(p.stderr.splitlines()) == 1, p.stderr
        subprocess.run(["docker", "stop", "-t", "0", host], capture_output=True)
        p = w.cnirun("network", "connect", w.net, host)
        assert p.returncode == 1 and "not running" in p.stderr
    finally:
        subprocess.run(["docker", "rm", "-f", shared, host], capture_output=True)
    w.assert_clean()


# -- Docker hook mode ------------------------------------------------------------------------
@needs_docker
def test_hook_mode_connect_ports_and_restart(dworld: World) -> None:
    w, name = dworld, f"t10-{dworld.n}-hook"
    port = host_port(w)
    with docker_runtime_installed(w, f"t10-{w.n}-"):
        ok(w.cnirun("run", "-d", "--mode", "hook", "--name", name, "busybox", *httpd(name)))
        try:
            connect_cycle(w, "docker", name)
            ok(w.cnirun("network", "connect", w.second, name))
            ok(w.cnirun("port", "add", name, f"127.0.0.1:{port}:80"))
            eth1 = addr("docker", name, "eth1")
            assert fetch(port).strip() == f"hello-{name}"
            ok(subprocess.run(["docker", "restart", "-t", "1", name], capture_output=True, text=True))
            assert ifaces("docker", name) == ["eth0", "eth1", "lo"]
            assert in_subnet(addr("docker", name, "eth1"), w.subnet_of(w.second))
            assert fetch(port).strip() == f"hello-{name}"
            ok(subprocess.run(["docker", "stop", "-t", "1", name], capture_output=True, text=True))
            ok(subprocess.run(["docker", "start", name], capture_output=True, text=True))
            assert ifaces("docker", name) == ["eth0", "eth1", "lo"]
            assert fetch(port).strip() == f"hello-{name}"
            assert addr("docker", name, "eth1").split(".")[2] == eth1.split(".")[2]
        finally:
            subprocess.run(["docker", "rm", "-f", name], capture_output=True)
        w.assert_clean(within=25.0)


# -- Podman ------------------------------------------------------------------------------------
@needs_podman
def test_podman_connect_ports_and_restart(pworld: World) -> None:
    w, name = pworld, f"t10-{pworld.n}-pod"
    port = host_port(w)
    ok(w.cnirun("run", "-d", "--name", name, "-p", f"127.0.0.1:{port}:80", "busybox", *httpd(name)))
    try:
        connect_cycle(w, "podman", name)
        port_cycle(w, "podman", name, port)
        ok(w.cnirun("network", "connect", w.second, name))
        eth1 = addr("podman", name, "eth1")
        ok(subprocess.run(["podman", "restart", "-t", "1", name], capture_output=True, text=True))
        assert addr("podman", name, "eth1") == eth1
        assert fetch(port + 50).strip() == f"hello-{name}"
    finally:
        subprocess.run(["podman", "rm", "-f", name], capture_output=True)
    w.assert_clean(within=25.0)


# -- connect racing a `cnirun run` container's teardown ---------------------------------------
# Its own address plan: 10.222.N.0/24 (N below 100), networks t24b-N, bridges c24bN and c24bbN.
def _race_world(tmp_path: Path, engine: str = "", sandbox: str = "") -> World:
    """t24b-N (c24bN, 10.222.N.0/25), whose DEL is slow: cnirun's noop plugin ends its chain, sleeping 5 s
    on DEL and logging each call; t24b-N-b (c24bbN, 10.222.N.128/25) to connect."""
    from cnirun.plugins import install_plugin_script, noop

    plugins = tmp_path / "plugins"
    plugins.mkdir()
    install_plugin_script(plugins, "noop", "cnirun.plugins.noop")
    slow_del = tmp_path / "slow-del.json"
    noop.write_debug(slow_del, commands={"DEL": {"sleep": 5}})
    w = _make_world(tmp_path, 222, "connect race", net="t24b-{n}", bridge="c24b{n}", subnet="10.222.{n}.0/25",
                    engine=engine, name_prefix="t24b-{n}-", extra=[{"type": "noop", "debugFile": str(slow_del)}])
    w.add_network(f"t24b-{w.n}-b", f"c24bb{w.n}", f"10.222.{w.n}.128/25", routes=False, hairpin=False)
    w.env["CNI_PATH"] = f"{plugins}:{w.env['CNI_PATH']}"
    if sandbox:
        w.env["CNIRUN_SANDBOX"] = sandbox
    return w


def _running(engine: str, name: str) -> bool:
    p = subprocess.run([engine, "inspect", "-f", "{{.State.Running}}", name], capture_output=True, text=True)
    return p.stdout.strip() == "true"


def _lock_waiters(path: str) -> int:
    """How many flock requests wait for the lock file `path` (/proc/locks: `-> FLOCK ... maj:min:inode`)."""
    st = os.stat(path)
    ident = f"{os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}:{st.st_ino}"
    with open("/proc/locks") as f:
        return sum(1 for ln in f if "->" in ln and ident in ln.split())


def connect_racing_teardown(w: World, engine: str, rounds: int = 2) -> None:
    """Each round: `network connect` is held before its ADD (the test holds the container's lock), the
    `cnirun run` container is killed, its teardown starts (its DEL of eth0 is slow, or it waits for the
    lock too), then connect goes on. connect succeeds or fails in one line, and once the run is over
    nothing of either network is left: the teardown DELs what connect added, or connect refuses."""
    from cnirun.core.lock import flock
    from cnirun.core.paths import container_lock
    from cnirun.plugins import noop

    slow_del = w.tmp / "slow-del.json"
    mode = ["--mode", "sandbox"] if engine == "docker" else []
    for i in range(rounds):
        name = f"t24b-{w.n}-r{i}"
        run = w.popen("run", "--rm", *mode, "--name", name, "busybox", "sleep", "120",
                      stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        conn: subprocess.Popen[str] | None = None
        held: int | None = None
        try:
            if not wait_for(lambda: _running(engine, name) and list((w.cache_dir / "results").glob(f"{w.net}-*")),
                            60):
                raise AssertionError(f"never ran: {run.communicate(timeout=60)[1] if run.poll() is not None else ''}")
            run_id = next(p.name for p in (w.state_dir / "containers").iterdir() if not p.name.startswith("."))
            lock = container_lock(run_id, w.env)
            held = flock(lock)
            conn = w.popen("network", "connect", w.second, name, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            wait_for(lambda: _lock_waiters(lock) == 1, 60, "connect waiting for the container's lock")
            dels = len(noop.read_log(slow_del))
            ok(subprocess.run([engine, "kill", name], capture_output=True, text=True))
            wait_for(lambda: len(noop.read_log(slow_del)) > dels or _lock_waiters(lock) > 1, 60,
                     "the run's teardown: its DEL, or its wait for the container's lock")
            os.close(held)
            held = None
            _, err = conn.communicate(timeout=120)
            assert conn.returncode in (0, 1), err
            assert "Traceback" not in err and len(err.splitlines()) <= 1, err
            run.communicate(timeout=120)
        finally:
            if held is not None:
                os.close(held)
            for p in (run, conn):
                if p is not None and p.poll() is None:
                    p.kill()
                    p.wait()
            subprocess.run([engine, "rm", "-f", name], capture_output=True)
        w.assert_clean(within=60.0)


@needs_docker
@pytest.mark.parametrize("sandbox", ["single", "helper"])
def test_connect_racing_a_sandbox_runs_teardown_leaves_nothing(tmp_path: Path, sandbox: str) -> None:
    """connect_racing_teardown on Docker sandbox-mode runs, the user's container alone and with a helper."""
    w = _race_world(tmp_path, sandbox=sandbox)
    try:
        connect_racing_teardown(w, "docker")
    finally:
        w.finish()


@needs_podman
def test_connect_racing_a_podman_runs_teardown_leaves_nothing(tmp_path: Path) -> None:
    """connect_racing_teardown on Podman runs."""
    w = _race_world(tmp_path, engine="podman")
    try:
        connect_racing_teardown(w, "podman")
    finally:
        w.finish()
