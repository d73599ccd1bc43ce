"""Names by DNS on cnirun networks (issue 12, and `network connect --alias` of issue 10), on the real engines.

Each test has its World (10.195.N.0/24, its own state dir, so its own names
store and resolvers); second networks are t195b-N on 10.195.(100+N).0/24.
Every query goes to a resolver cnirun started (the network's gateway, port
53) and asks for a container name: nothing outside the host is ever asked.
"""
from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Iterator

import pytest

from _earlier import BEFORE_PACKAGES, earlier_cnirun
from _host import conf_file_args
from _wait import wait_for
from conftest import (
    CNIRUN, REPO, World, _make_world, docker_runtime_installed, first_address, needs_docker, needs_plugins,
    needs_podman, needs_root,
)

pytestmark = [needs_root, needs_plugins]


@pytest.fixture
def world(tmp_path: Path) -> Any:
    w = _make_world(tmp_path, 195, "dns")
    yield w
    try:
        w.assert_clean(within=10.0)
        assert_no_resolver(w, within=10.0)
    finally:
        w.stop_watcher()
        for br in (w.bridge, f"t195b{w.n}"):
            subprocess.run(["ip", "link", "del", br], capture_output=True)


def gateway(w: World) -> str:
    return f"10.195.{w.n}.1"


def _resolver_processes(w: World) -> list[tuple[int, str]]:
    """(pid, --conf-file= argument) of the dnsmasq processes serving this World's state dir."""
    prefix = f"--conf-file={w.state_dir}/dns/"
    return [(pid, conf) for pid, conf in conf_file_args() if conf.startswith(prefix)]


def resolvers_of(w: World) -> list[str]:
    """Command lines of the dnsmasq processes serving this World's state dir."""
    return [conf for _, conf in _resolver_processes(w)]


def dns_dirs(w: World) -> list[str]:
    """The names store's network dirs and containers' own resolvers (_views/<id>; the empty _views stays, and
    the keeper's lock and log)."""
    d = w.state_dir / "dns"
    out = sorted(p.name for p in d.iterdir() if not p.name.endswith(".lock") and p.name[:1].isalnum()) \
        if d.is_dir() else []
    views = d / "_views"
    return out + (sorted("_views/" + p.name for p in views.iterdir()) if views.is_dir() else [])


def views_of(w: World) -> list[str]:
    """The command lines of this World's containers' own resolvers (in their netns, on 127.0.0.11)."""
    return [r for r in resolvers_of(w) if "/dns/_views/" in r]


def view_pids(w: World) -> list[int]:
    """The pids of this World's containers' own resolvers."""
    return [pid for pid, conf in _resolver_processes(w) if "/dns/_views/" in conf]


def resolv_nameservers(container: str, engine: str = "docker") -> list[str]:
    p = subprocess.run([engine, "exec", container, "cat", "/etc/resolv.conf"], capture_output=True, text=True,
                       timeout=30)
    return [ln.split()[1] for ln in p.stdout.splitlines() if ln.startswith("nameserver ")]


def lookup(container: str, name: str, engine: str = "docker") -> subprocess.CompletedProcess[str]:
    """nslookup through the container's own resolv.conf (no server named): what its programs get."""
    return subprocess.run([engine, "exec", container, "nslookup", name], capture_output=True, text=True, timeout=30)


def assert_no_resolver(w: World, within: float = 0.0) -> None:
    deadline = time.monotonic() + within
    while (resolvers_of(w) or dns_dirs(w)) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert resolvers_of(w) == [], "resolvers left running"
    assert dns_dirs(w) == [], "names store left behind"


def second_network(w: World) -> str:
    """A second bridge network of the World: t195b-N, bridge t195bN, 10.195.(100+N).0/24."""
    name = f"t195b-{w.n}"
    net = {
        "cniVersion": "1.0.0", "name": name,
        "plugins": [{
            "type": "bridge", "bridge": f"t195b{w.n}", "isGateway": True, "ipMasq": True,
            "ipam": {"type": "host-local", "dataDir": str(w.data_dir),
                     "ranges": [[{"subnet": f"10.195.{100 + w.n}.0/24"}]], "routes": [{"dst": "0.0.0.0/0"}]},
        }, {"type": "firewall"}],
    }
    (Path(w.env["NETCONFPATH"]) / f"{name}.conflist").write_text(json.dumps(net))
    return name


def run_d(w: World, *args: str) -> str:
    p = w.cnirun("-d", *args)
    assert p.returncode == 0, p.stderr
    return p.stdout.strip()


def nslookup(container: str, name: str, server: str, engine: str = "docker") -> subprocess.CompletedProcess[str]:
    return subprocess.run([engine, "exec", container, "nslookup", name, server], capture_output=True, text=True,
                          timeout=30)


def answer(p: subprocess.CompletedProcess[str]) -> list[str]:
    """The addresses in a busybox nslookup answer (after the `Name:` line)."""
    out, seen = [], False
    for line in p.stdout.splitlines():
        if line.startswith("Name:"):
            seen = True
        elif seen and line.startswith("Address:"):
            out.append(line.split()[-1])
    return out


def address_of(container: str, ifname: str = "eth0", engine: str = "docker") -> str:
    p = subprocess.run([engine, "exec", container, "ip", "-4", "-o", "addr", "show", ifname], capture_output=True,
                       text=True, timeout=30)
    return first_address(p.stdout).split("/")[0]


def rm(engine: str, *names: str) -> None:
    stop_now = ["-t", "0"] if engine == "podman" else []  # podman waits 10 s on a sleep ignoring SIGTERM
    for name in names:  # one at a time: podman removes none when one of them is gone already
        subprocess.run([engine, "rm", "-f", *stop_now, name], capture_output=True, timeout=60)


# -- Docker ---------------------------------------------------------------------------------
@needs_docker
def test_names_aliases_resolv_conf_and_docker_rm_f(world: World) -> None:
    """Name and --network-alias resolve from another container (a dotted alias not: an outside domain);
    resolv.conf points at the resolver;
    `docker rm -f` behind cnirun's back drops the name; the resolver stops when the network empties."""
    w, gw = world, gateway(world)
    a, b = f"t195a{w.n}", f"t195c{w.n}"
    try:
        run_d(w, "--name", a, "--network-alias", "web", "--network-alias", "www.example.test", "busybox",
              "sleep", "120")
        run_d(w, "--name", b, "busybox", "sleep", "120")
        assert len(resolvers_of(w)) == 1
        a_ip = address_of(a)
        for name in (a, "web"):
            assert answer(nslookup(b, name, gw)) == [a_ip], name
        # A dotted alias is an outside domain: not answered on a network that does not allow it.
        assert "www.example.test" not in served(w, w.net)
        resolv = subprocess.run(["docker", "exec", b, "cat", "/etc/resolv.conf"], capture_output=True,
                                text=True).stdout
        assert resolv.splitlines()[0] == f"nameserver {gw}", resolv
        # resolv.conf is what the container uses without naming a server: busybox ping resolves through it.
        assert subprocess.run(["docker", "exec", b, "ping", "-c1", "-W2", a], capture_output=True).returncode == 0
        rm("docker", a)
        assert wait_for(lambda: nslookup(b, a, gw).returncode != 0), "name still resolves after docker rm -f"
        assert nslookup(b, "web", gw).returncode != 0
        assert len(resolvers_of(w)) == 1  # b is still on the network
    finally:
        rm("docker", a, b)
    assert_no_resolver(w, within=15.0)


@needs_docker
def test_dns_option_wins_and_no_dns_network(world: World) -> None:
    w = world
    p = w.cnirun("--rm", "--dns", "10.195.250.77", "busybox", "cat", "/etc/resolv.conf")
    assert p.returncode == 0, p.stderr
    assert [ln for ln in p.stdout.splitlines() if ln.startswith("nameserver")] == ["nameserver 10.195.250.77"]
    # A network created with --no-dns has no resolver: resolv.conf is the host's.
    sub = f"10.195.{150 + w.n}.0/24"
    w.env["CNIRUN_IPAM_DATA_DIR"] = str(w.data_dir)
    p = w.cnirun("network", "create", f"t195n{w.n}", "--subnet", sub, "--no-dns")
    assert p.returncode == 0, p.stderr
    try:
        p = w.cnirun("--rm", "--net", f"t195n{w.n}", "busybox", "cat", "/etc/resolv.conf")
        assert p.returncode == 0, p.stderr
        assert f"10.195.{150 + w.n}.1" not in p.stdout
        assert resolvers_of(w) == [] and dns_dirs(w) == []
    finally:
        w.cnirun("network", "rm", f"t195n{w.n}")


@needs_docker
def test_scoping_across_two_networks(world: World) -> None:
    """x on both networks, y only on the second, z only on the first: each resolves what it shares."""
    w = world
    second = second_network(w)
    gw1, gw2 = gateway(w), f"10.195.{100 + w.n}.1"
    x, y, z = (f"t195{c}{w.n}" for c in "xyz")
    try:
        run_d(w, "--name", x, "--net", w.net, "--net", second, "busybox", "sleep", "120")
        run_d(w, "--name", y, "--net", second, "busybox", "sleep", "120")
        run_d(w, "--name", z, "--net", w.net, "busybox", "sleep", "120")
        assert len(resolvers_of(w)) - len(views_of(w)) == 2 and len(views_of(w)) == 1  # x has its own
        x1, x2, y2 = address_of(x, "eth0"), address_of(x, "eth1"), address_of(y)
        assert answer(nslookup(z, x, gw1)) == [x1]  # the address on the shared network
        assert answer(nslookup(y, x, gw2)) == [x2]
        assert nslookup(z, y, gw1).returncode != 0  # y shares no network with z
        assert answer(nslookup(x, y, gw2)) == [y2]
        # Asking the other network's resolver directly is refused (cnirun.dns.guard) ...
        bypass = nslookup(z, y, gw2)
        assert bypass.returncode != 0 and y2 not in bypass.stdout, bypass.stdout
        # ... while its own containers and the host itself still get answers.
        assert answer(nslookup(y, x, gw2)) == [x2]
        host = subprocess.run(["busybox", "nslookup", y, gw2], capture_output=True, text=True, timeout=30)
        assert answer(host) == [y2], host.stdout
        rm("docker", y)
        # The second network still has x: its resolver stays; x's names go only when x goes.
        assert wait_for(lambda: nslookup(x, y, gw2).returncode != 0)
        assert len(resolvers_of(w)) - len(views_of(w)) == 2 and len(views_of(w)) == 1  # x has its own
    finally:
        rm("docker", x, y, z)
    assert_no_resolver(w, within=15.0)


@pytest.mark.parametrize("mode", [
    pytest.param("sandbox", marks=needs_docker), pytest.param("hook", marks=needs_docker),
    pytest.param("podman", marks=needs_podman),
])
def test_a_container_on_two_networks_resolves_peers_of_both(world: World, mode: str) -> None:
    """x on both networks asks its own resolver (127.0.0.11 in its netns), which answers for both networks:
    y only on the second and z only on the first resolve from x by name, through its resolv.conf."""
    w = world
    second = second_network(w)
    x, y, z = (f"t195{c}{w.n}" for c in "qrs")
    engine = "podman" if mode == "podman" else "docker"
    if mode == "podman":
        w.env["CNIRUN_ENGINE"] = "podman"
    hook = docker_runtime_installed(w, "t195") if mode == "hook" else contextlib.nullcontext()
    how = ["--mode", "hook"] if mode == "hook" else []
    with hook:
        try:
            run_d(w, *how, "--name", x, "--net", w.net, "--net", second, "busybox", "sleep", "120")
            run_d(w, *how, "--name", y, "--net", second, "busybox", "sleep", "120")
            run_d(w, *how, "--name", z, "--net", w.net, "busybox", "sleep", "120")
            assert resolv_nameservers(x, engine) == ["127.0.0.11"]
            assert resolv_nameservers(z, engine) == [gateway(w)]  # one network: its resolver, none of its own
            assert len(views_of(w)) == 1 and len(resolvers_of(w)) == 3
            assert answer(lookup(x, y, engine)) == [address_of(y, engine=engine)]
            assert answer(lookup(x, z, engine)) == [address_of(z, engine=engine)]
            # Programs resolve through resolv.conf with the libc (busybox ping; Podman's busybox lacks the
            # capability to send the echo, not the name).
            p = subprocess.run([engine, "exec", x, "ping", "-c1", "-W2", y], capture_output=True, text=True)
            assert f"PING {y} ({address_of(y, engine=engine)})" in p.stdout, (p.stdout, p.stderr)
            assert lookup(z, y, engine).returncode != 0  # still scoped: z shares no network with y
            rm(engine, y)
            assert wait_for(lambda: lookup(x, y, engine).returncode != 0), "a removed peer still resolves from x"
            assert answer(lookup(x, z, engine)) == [address_of(z, engine=engine)]
            rm(engine, x)
            assert wait_for(lambda: views_of(w) == [], 20.0), "x's own resolver outlived x"
        finally:
            rm(engine, x, y, z)
        assert_no_resolver(w, within=20.0)


@needs_docker
def test_connect_and_disconnect_switch_the_containers_resolver(world: World) -> None:
    """Connecting a running container to a second network gives it both networks' names at once (its
    resolv.conf now names its own resolver); disconnecting takes them away and points it back."""
    w = world
    second = second_network(w)
    a, peer, near = f"t195u{w.n}", f"t195v{w.n}", f"t195w{w.n}"
    try:
        run_d(w, "--name", a, "busybox", "sleep", "120")
        run_d(w, "--name", near, "busybox", "sleep", "120")
        run_d(w, "--name", peer, "--net", second, "busybox", "sleep", "120")
        assert resolv_nameservers(a) == [gateway(w)]
        assert lookup(a, peer).returncode != 0
        p = w.cnirun("network", "connect", second, a)
        assert p.returncode == 0, p.stderr
        assert resolv_nameservers(a) == ["127.0.0.11"]
        assert answer(lookup(a, peer)) == [address_of(peer)]
        assert answer(lookup(a, near)) == [address_of(near)]
        assert answer(lookup(peer, a)) == [address_of(a, "eth1")]  # the peer sees a on their shared network
        # Its own resolver dies (OOM, a stray kill): the keeper starts it again in the same netns; with no
        # keeper (killed), gc does.
        (view,) = view_pids(w)
        os.kill(view, signal.SIGKILL)
        assert wait_for(lambda: view_pids(w) not in ([], [view]), 5), "the keeper did not start it again"
        assert answer(lookup(a, peer)) == [address_of(peer)]
        kill_keeper(w)
        (view,) = view_pids(w)
        os.kill(view, signal.SIGKILL)
        assert wait_for(lambda: view_pids(w) == [], 5)
        p = w.cnirun("gc")
        assert p.returncode == 0 and "restarted the DNS resolver of container" in p.stdout, p.stdout
        assert answer(lookup(a, peer)) == [address_of(peer)]
        p = w.cnirun("network", "disconnect", second, a)
        assert p.returncode == 0, p.stderr
        assert resolv_nameservers(a) == [gateway(w)]
        assert views_of(w) == []
        assert lookup(a, peer).returncode != 0
        assert answer(lookup(a, near)) == [address_of(near)]
    finally:
        rm("docker", a, peer, near)
    assert_no_resolver(w, within=15.0)


def guard_rules(net: str) -> list[str]:
    out = subprocess.run(["iptables", "-w", "-S", "INPUT"], capture_output=True, text=True).stdout
    return [ln for ln in out.splitlines() if f'"cnirun-dns {net} ' in ln]


@needs_docker
def test_guard_rules_come_back_with_network_reload(world: World) -> None:
    """A flush of INPUT (a firewall reload) opens a network's resolver to the other networks; `cnirun
    network reload` puts the rules back; they go when the resolver stops."""
    import shlex

    w = world
    second = second_network(w)
    gw2 = f"10.195.{100 + w.n}.1"
    y, z = f"t195e{w.n}", f"t195f{w.n}"
    try:
        run_d(w, "--name", y, "--net", second, "busybox", "sleep", "120")
        run_d(w, "--name", z, "busybox", "sleep", "120")
        rules = guard_rules(second)
        assert len(rules) == 2, rules  # udp and tcp
        assert nslookup(z, y, gw2).returncode != 0
        for rule in rules:  # what a flush of INPUT does to them, without touching others' rules
            subprocess.run(["iptables", "-w", "-D", "INPUT", *shlex.split(rule)[2:]], check=True)
        assert answer(nslookup(z, y, gw2)) == [address_of(y)]  # open to the other network now
        p = w.cnirun("network", "reload", "--dry-run", second)
        assert p.returncode == 0 and "missing: cnirun: the DNS resolver's guard rules" in p.stdout, p.stdout
        assert guard_rules(second) == []
        p = w.cnirun("network", "reload", second)
        assert p.returncode == 0, p.stderr
        assert f"{second} network: repaired: cnirun: the DNS resolver's guard rules" in p.stdout, p.stdout
        assert sorted(guard_rules(second)) == sorted(rules)
        assert nslookup(z, y, gw2).returncode != 0
        p = w.cnirun("network", "reload", second)
        assert "guard" not in p.stdout, p.stdout
        # One of the two gone: both are there once each afterwards, never twice.
        subprocess.run(["iptables", "-w", "-D", "INPUT", *shlex.split(rules[0])[2:]], check=True)
        p = w.cnirun("network", "reload", second)
        assert "repaired: cnirun: the DNS resolver's guard rules" in p.stdout, p.stdout
        assert sorted(guard_rules(second)) == sorted(rules)
        rm("docker", y)
        assert wait_for(lambda: guard_rules(second) == []), "the guard outlived its resolver"
    finally:
        rm("docker", y, z)
    assert_no_resolver(w, within=15.0)


@needs_docker
def test_hook_mode_connected_container_keeps_both_networks_names_after_restart(world: World) -> None:
    """dockerd writes resolv.conf again on every start, from the run's --dns (the first network's resolver):
    the hook points it back at the container's own resolver when `network connect` added a network."""
    w = world
    second = second_network(w)
    a, peer = f"t195j{w.n}", f"t195l{w.n}"
    with docker_runtime_installed(w, "t195"):
        try:
            run_d(w, "--mode", "hook", "--name", a, "busybox", "sleep", "120")
            run_d(w, "--mode", "hook", "--name", peer, "--net", second, "busybox", "sleep", "120")
            p = w.cnirun("network", "connect", second, a)
            assert p.returncode == 0, p.stderr
            assert resolv_nameservers(a) == ["127.0.0.11"]
            assert answer(lookup(a, peer)) == [address_of(peer)]
            subprocess.run(["docker", "restart", "-t", "0", a], capture_output=True, check=True, timeout=60)
            assert resolv_nameservers(a) == ["127.0.0.11"]
            assert address_of(a, "eth1")  # connected again by the hook
            assert answer(lookup(a, peer)) == [address_of(peer)]
            assert len(views_of(w)) == 1
        finally:
            rm("docker", a, peer)
        assert_no_resolver(w, within=20.0)


@needs_docker
def test_connect_alias_and_disconnect(world: World) -> None:
    """`network connect --alias` publishes the name and alias on that network only; disconnect drops them."""
    w = world
    second = second_network(w)
    gw2 = f"10.195.{100 + w.n}.1"
    a, peer = f"t195k{w.n}", f"t195p{w.n}"
    try:
        subprocess.run(["docker", "run", "-d", "--name", a, "--network", "none", "busybox", "sleep", "120"],
                       capture_output=True, check=True)
        run_d(w, "--name", peer, "--net", second, "busybox", "sleep", "120")
        p = w.cnirun("network", "connect", "--alias", "db", second, a)
        assert p.returncode == 0, p.stderr
        a_ip = address_of(a)
        assert answer(nslookup(peer, a, gw2)) == [a_ip]
        assert answer(nslookup(peer, "db", gw2)) == [a_ip]
        p = w.cnirun("network", "disconnect", second, a)
        assert p.returncode == 0, p.stderr
        assert nslookup(peer, "db", gw2).returncode != 0
        assert nslookup(peer, a, gw2).returncode != 0
        p = w.cnirun("network", "connect", "--alias", "bad_alias!", second, a)
        assert p.returncode == 1 and p.stderr.startswith("cnirun: invalid alias"), p.stderr
    finally:
        rm("docker", a, peer)
    assert_no_resolver(w, within=15.0)


@needs_docker
def test_bad_alias_is_refused(world: World) -> None:
    p = world.cnirun("--rm", "--network-alias", "-bad-", "busybox", "true")
    assert p.returncode == 125
    assert p.stderr.startswith("cnirun: invalid --network-alias '-bad-'") and len(p.stderr.splitlines()) == 1
    assert resolvers_of(world) == []


@needs_docker
def test_sigkill_after_resolver_start_then_gc_leaves_nothing(world: World) -> None:
    w = world
    name = f"t195s{w.n}"
    proc = w.popen("--name", name, "busybox", "sleep", "120", stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        assert wait_for(lambda: len(resolvers_of(w)) == 1, 30), "resolver never started"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        # The resolver outlives cnirun (it is a daemon), the container too; gc reclaims both.
        assert len(resolvers_of(w)) == 1
        p = w.cnirun("gc")
        assert p.returncode == 0, p.stderr
    finally:
        rm("docker", name)
        w.cnirun("gc")
    assert_no_resolver(w)


@needs_docker
def test_sigkill_with_a_containers_own_resolver_then_gc_leaves_nothing(world: World) -> None:
    """The container's own resolver lives in its netns and keeps it alive: after cnirun is killed and the
    container removed behind its back, gc stops it and the netns, veths and addresses go with the rest."""
    w = world
    second = second_network(w)
    name = f"t195g{w.n}"
    proc = w.popen("--name", name, "--net", w.net, "--net", second, "busybox", "sleep", "120",
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        assert wait_for(lambda: len(views_of(w)) == 1, 30), "the container's own resolver never started"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        rm("docker", name)
        assert len(views_of(w)) == 1  # nobody has torn it down yet
        p = w.cnirun("gc")
        assert p.returncode == 0, p.stderr
        assert views_of(w) == []
    finally:
        rm("docker", name)
        w.cnirun("gc")
    assert_no_resolver(w)


def test_gc_stops_a_resolver_whose_names_are_gone(world: World) -> None:
    """A names file whose container has no cached attachment (its owner died after the DEL) goes at gc,
    and with it the resolver; a resolver whose record is gone is stopped too."""
    from cnirun.dns import gc, store
    from cnirun.dns.names import register

    w = world
    with environ_of(w, gateway(w)):
        from cnirun.cni.runtime import CNI

        net = CNI().network(w.net)
        result = {"ips": [{"address": f"10.195.{w.n}.9/24", "gateway": gateway(w)}]}
        assert register(net, "c" * 64, result, ["ghost"], str(w.cache_dir)) == [gateway(w)]
        assert len(resolvers_of(w)) == 1 and store.names(w.net) == {"c" * 64: ["ghost"]}
        assert len(guard_rules(w.net)) == 2
        # Rules of a network whose record is gone (a stop cut short between the two) go at gc too.
        from cnirun.dns import guard as dns_guard

        state = dns_guard.state_tag(store.dns_root())
        assert dns_guard.install(f"{w.net}-gone", w.bridge, [f"10.195.{w.n}.2"], state) == ""
        assert len(guard_rules(f"{w.net}-gone")) == 2
        done = gc.collect()
        assert any("gone container" in line for line in done), done
        assert any(f"DNS guard rule of gone network {w.net}-gone" in line for line in done), done
        assert resolvers_of(w) == [] and dns_dirs(w) == []
        assert guard_rules(w.net) == [] and guard_rules(f"{w.net}-gone") == []


@contextlib.contextmanager
def environ_of(w: World, gw: str) -> Iterator[None]:
    """The World's bridge made by hand with `gw` on it (a resolver needs its gateway on the host), and
    os.environ naming the World's state dir, networks and cache: for calls of cnirun's functions in-process."""
    env = {k: w.env[k] for k in ("CNIRUN_STATE_DIR", "NETCONFPATH", "CNI_CACHE_DIR")}
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    subprocess.run(["ip", "link", "add", w.bridge, "type", "bridge"], check=True)
    subprocess.run(["ip", "addr", "add", f"{gw}/24", "dev", w.bridge], check=True)
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


# -- resolvers and keepers started by an earlier cnirun (its World: t24e-N, c24eN, 10.225.N.0/24) --------
BEFORE_SPLIT = "9b2558d"  # the last commit with the names store, resolvers and keeper in one dns/names.py


@pytest.fixture
def eworld(tmp_path: Path) -> Any:
    w = _make_world(tmp_path, 225, "dns", net="t24e-{n}", bridge="c24e{n}", subnet="10.225.{n}.0/24")
    yield w
    try:
        assert_no_resolver(w, within=10.0)
        assert wait_for(lambda: keeper_of(w) == 0, 10.0), "the resolvers' keeper outlived the last resolver"
    finally:
        w.finish()


def test_a_resolver_started_before_the_split_stays_ours(eworld: World, tmp_path: Path) -> None:
    """A network's resolver that cnirun started before dns/ was split into modules (its code at BEFORE_SPLIT,
    run from a copy) is the current code's: a second container's register keeps it (same pid: its config,
    the record, reads the same) and it answers both names; the last unregister stops it and removes its
    rules and dir, and the keeper exits."""
    w = eworld
    gw = f"10.225.{w.n}.1"
    old_tree = earlier_cnirun(tmp_path, BEFORE_SPLIT)
    with environ_of(w, gw):
        from cnirun.cni.runtime import CNI
        from cnirun.dns.names import register, unregister

        def result(host: int) -> dict[str, Any]:
            return {"ips": [{"address": f"10.225.{w.n}.{host}/24", "gateway": gw}]}

        script = ("import sys; from cnirun.cni.runtime import CNI; from cnirun.dns.names import register; "
                  f"print(register(CNI().network({w.net!r}), 'a' * 64, {result(5)!r}, ['t24e-old'], "
                  f"{str(w.cache_dir)!r}))")
        env = {**w.env, "PYTHONPATH": str(old_tree)}
        try:
            p = subprocess.run([sys.executable, "-c", script], env=env, cwd=old_tree, capture_output=True,
                               text=True)
            assert p.returncode == 0 and p.stdout.split() == [f"['{gw}']"], p.stderr
            assert wait_for(lambda: keeper_of(w) != 0, 5.0), "the earlier cnirun started no keeper"
            started, kept_by = resolver_pid(w, w.net), keeper_of(w)
            assert started and str(old_tree) in Path(f"/proc/{kept_by}/environ").read_text()
            net = CNI().network(w.net)
            assert register(net, "b" * 64, result(6), ["t24e-new"], str(w.cache_dir)) == [gw]
            assert resolver_pid(w, w.net) == started, "the earlier cnirun's resolver was restarted"
            # Its keeper wrote no generation: it is replaced by the current one (the next test).
            assert wait_for(lambda: keeper_of(w) not in (0, kept_by), 5.0)
            assert query(gw, "t24e-old") == [f"10.225.{w.n}.5"] and query(gw, "t24e-new") == [f"10.225.{w.n}.6"]
            assert len(guard_rules(w.net)) == 2
        finally:
            unregister(w.net, "b" * 64)
            unregister(w.net, "a" * 64)
        assert guard_rules(w.net) == []


def test_a_keeper_of_an_earlier_generation_is_replaced(eworld: World, tmp_path: Path) -> None:
    """A keeper started by cnirun before keepers had a generation (BEFORE_PACKAGES, run from a copy), left by
    an upgrade without the modules it imports as it goes (the copy's dns_guard.py and invoke.py removed while
    it runs), is stopped by the next register, which starts the current keeper; that one starts the
    earlier cnirun's resolver again once it is killed, and exits after the last unregister."""
    w = eworld
    gw = f"10.225.{w.n}.1"
    old_tree = earlier_cnirun(tmp_path, BEFORE_PACKAGES)
    with environ_of(w, gw):
        from cnirun.cni.runtime import CNI
        from cnirun.dns.names import register, unregister

        script = ("from cnirun.runtime import CNI; from cnirun.dns import register; "
                  f"print(register(CNI().network({w.net!r}), 'a' * 64, "
                  f"{{'ips': [{{'address': '10.225.{w.n}.5/24', 'gateway': {gw!r}}}]}}, ['t24e-old'], "
                  f"{str(w.cache_dir)!r}))")
        try:
            p = subprocess.run([sys.executable, "-c", script], env={**w.env, "PYTHONPATH": str(old_tree)},
                               cwd=old_tree, capture_output=True, text=True)
            assert p.returncode == 0 and p.stdout.split() == [f"['{gw}']"], p.stderr
            assert wait_for(lambda: keeper_of(w) != 0, 5.0), "the earlier cnirun started no keeper"
            old = keeper_of(w)
            assert str(old_tree) in Path(f"/proc/{old}/environ").read_text()
            for gone in ("dns_guard.py", "invoke.py"):
                (old_tree / "cnirun" / gone).unlink()
            net = CNI().network(w.net)
            result = {"ips": [{"address": f"10.225.{w.n}.6/24", "gateway": gw}]}
            assert register(net, "b" * 64, result, ["t24e-new"], str(w.cache_dir)) == [gw]
            assert wait_for(lambda: keeper_of(w) not in (0, old), 5.0), "the earlier keeper was kept"
            assert str(old_tree) not in Path(f"/proc/{keeper_of(w)}/environ").read_text()
            killed = resolver_pid(w, w.net)
            os.kill(killed, signal.SIGKILL)
            assert wait_for(lambda: resolver_pid(w, w.net) not in (0, killed) and query(gw, "t24e-old"), 5.0), \
                (w.state_dir / "dns" / ".keeper.log").read_text()
            assert query(gw, "t24e-new") == [f"10.225.{w.n}.6"]
        finally:
            unregister(w.net, "b" * 64)
            unregister(w.net, "a" * 64)


# -- compose --------------------------------------------------------------------------------
@needs_docker
def test_compose_service_and_container_names_and_aliases(world: World, tmp_path: Path) -> None:
    w = world
    proj = f"t195q{w.n}"
    f = tmp_path / "compose.yaml"
    f.write_text(f"""
services:
  api:
    image: busybox
    command: sleep 120
    networks:
      back:
        aliases: [backend]
  client:
    image: busybox
    command: sleep 120
    networks: [back]
networks:
  back:
    ipam:
      config:
        - subnet: 10.195.{200 + w.n}.0/24
""")
    env = dict(w.env, CNIRUN_IPAM_DATA_DIR=str(w.data_dir))

    def compose(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*CNIRUN, "compose", "-f", str(f), "-p", proj, *args], env=env, capture_output=True,
                              text=True, timeout=180, cwd=REPO)

    gw = f"10.195.{200 + w.n}.1"
    try:
        p = compose("up", "-d")
        assert p.returncode == 0, p.stderr
        api_ip = address_of(f"{proj}-api-1")
        for name in ("api", "backend", f"{proj}-api-1"):
            assert answer(nslookup(f"{proj}-client-1", name, gw)) == [api_ip], name
        # Peers are found by DNS: the hosts file holds only the container's own lines.
        hosts = subprocess.run(["docker", "exec", f"{proj}-client-1", "cat", "/etc/hosts"], capture_output=True,
                               text=True).stdout
        assert api_ip not in hosts, hosts
        assert subprocess.run(["docker", "exec", f"{proj}-client-1", "ping", "-c1", "-W2", "backend"],
                              capture_output=True).returncode == 0
    finally:
        p = compose("down")
    assert p.returncode == 0, p.stderr
    assert_no_resolver(w, within=15.0)


# -- Docker hook mode and Podman -------------------------------------------------------------
@needs_docker
def test_hook_mode_names_and_resolv_conf(world: World) -> None:
    w = world
    a, b = f"t195h{w.n}", f"t195i{w.n}"
    with docker_runtime_installed(w, "t195"):
        try:
            run_d(w, "--mode", "hook", "--name", a, "--network-alias", "hooked", "busybox", "sleep", "120")
            run_d(w, "--mode", "hook", "--name", b, "busybox", "sleep", "120")
            a_ip = address_of(a)
            assert answer(nslookup(b, "hooked", gateway(w))) == [a_ip]
            assert answer(nslookup(b, a, gateway(w))) == [a_ip]
            resolv = subprocess.run(["docker", "exec", b, "cat", "/etc/resolv.conf"], capture_output=True,
                                    text=True).stdout
            assert f"nameserver {gateway(w)}" in resolv.splitlines(), resolv
            rm("docker", a)
            assert wait_for(lambda: nslookup(b, "hooked", gateway(w)).returncode != 0)
        finally:
            rm("docker", a, b)
        assert_no_resolver(w, within=20.0)


@needs_podman
def test_podman_names_resolve(world: World) -> None:
    w = world
    w.env["CNIRUN_ENGINE"] = "podman"
    a, b = f"t195m{w.n}", f"t195o{w.n}"
    try:
        run_d(w, "--name", a, "--network-alias", "pod-web", "busybox", "sleep", "120")
        run_d(w, "--name", b, "busybox", "sleep", "120")
        a_ip = address_of(a, engine="podman")
        assert answer(nslookup(b, "pod-web", gateway(w), "podman")) == [a_ip]
        resolv = subprocess.run(["podman", "exec", b, "cat", "/etc/resolv.conf"], capture_output=True,
                                text=True).stdout
        assert resolv.splitlines()[0] == f"nameserver {gateway(w)}", resolv
        rm("podman", a)
        assert wait_for(lambda: nslookup(b, "pod-web", gateway(w), "podman").returncode != 0)
    finally:
        rm("podman", a, b)
    assert_no_resolver(w, within=20.0)


@needs_docker
def test_aaaa_on_a_dual_stack_network(world: World) -> None:
    """Every address a container has on the network is published: A and AAAA on a dual-stack network."""
    w = world
    net, v6 = f"t195v{w.n}", f"fd95:195:0:{w.n}::/64"
    w.env["CNIRUN_IPAM_DATA_DIR"] = str(w.data_dir)
    p = w.cnirun("network", "create", net, "--subnet", f"10.195.{50 + w.n}.0/24", "--subnet", v6)
    assert p.returncode == 0, p.stderr
    a, b = f"t195six{w.n}", f"t195sev{w.n}"
    try:
        run_d(w, "--name", a, "--net", net, "busybox", "sleep", "120")
        run_d(w, "--name", b, "--net", net, "busybox", "sleep", "120")
        six = subprocess.run(["docker", "exec", a, "ip", "-6", "-o", "addr", "show", "eth0", "scope", "global"],
                             capture_output=True, text=True).stdout.split()[3].split("/")[0]
        looked = subprocess.run(["docker", "exec", b, "nslookup", "-type=aaaa", a, f"10.195.{50 + w.n}.1"],
                                capture_output=True, text=True)
        assert answer(looked) == [six], looked.stdout
        assert sorted(answer(nslookup(b, a, f"10.195.{50 + w.n}.1"))) == sorted([address_of(a), six])  # A and AAAA
    finally:
        rm("docker", a, b)
        assert_no_resolver(w, within=15.0)
        w.cnirun("network", "rm", net)


# -- a resolver that dies, decoys, who may read the names (helper D's networks: td-N, ctdN, 10.213.N.0/24) ----
@pytest.fixture
def dworld(tmp_path: Path) -> Any:
    w = _make_world(tmp_path, 213, "dns", net="td-{n}", bridge="ctd{n}", subnet="10.213.{n}.0/24",
                    name_prefix="td{n}-")
    yield w
    w.finish()  # the test's containers (decoys too), the leak check, its bridges
    assert_no_resolver(w, within=10.0)
    assert wait_for(lambda: keeper_of(w) == 0, 10.0), "the resolvers' keeper outlived the last resolver"


def reply(server: str, name: str, timeout: float = 0.3) -> bytes | None:
    """`server`:53's reply to an A query for `name` (None: no reply in `timeout`, or refused)."""
    import socket
    import struct

    qid = os.getpid() & 0xFFFF
    qname = b"".join(bytes([len(p)]) + p.encode() for p in name.split(".")) + b"\0"
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(timeout)
    try:
        s.sendto(struct.pack(">HHHHHH", qid, 0x0100, 1, 0, 0, 0) + qname + struct.pack(">HH", 1, 1), (server, 53))
        return s.recv(1500)
    except OSError:
        return None
    finally:
        s.close()


def query(server: str, name: str, timeout: float = 0.3) -> list[str]:
    """The A records `server`:53 answers for `name` ([] for none, no answer in `timeout` or refused)."""
    import struct

    data = reply(server, name, timeout)
    if data is None:
        return []
    qname_size = sum(len(p.encode()) + 1 for p in name.split(".")) + 1
    count, pos, out = struct.unpack(">H", data[6:8])[0], 12 + qname_size + 4, []
    for _ in range(count):
        while data[pos] and data[pos] < 0xC0:  # the answer's name: labels, or a pointer
            pos += data[pos] + 1
        pos += 2 if data[pos] >= 0xC0 else 1
        rtype, _cls, _ttl, size = struct.unpack(">HHIH", data[pos:pos + 10])
        pos += 10
        if rtype == 1 and size == 4:
            out.append(".".join(str(b) for b in data[pos:pos + 4]))
        pos += size
    return out


def keeper_of(w: World) -> int:
    """The pid of the World's resolvers' keeper (0 for none): in its lock file, while it holds the lock."""
    import fcntl

    path = w.state_dir / "dns" / ".keeper.lock"
    try:
        fd = os.open(path, os.O_RDWR)
    except OSError:
        return 0
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return 0
    except BlockingIOError:
        return int((path.read_text().split() or ["0"])[0])  # "PID GENERATION"
    finally:
        os.close(fd)


def is_dnsmasq(pid: int) -> bool:
    """Whether `pid` runs the host's dnsmasq binary (not a decoy that only names a resolver's config)."""
    try:
        return os.path.samefile(f"/proc/{pid}/exe", "/usr/sbin/dnsmasq")
    except OSError:
        return False


def resolver_pid(w: World, network: str) -> int:
    return next((pid for pid, conf in _resolver_processes(w) if f"/dns/{network}/" in conf and is_dnsmasq(pid)), 0)


def kill_keeper(w: World) -> None:
    """SIGKILL the keeper, if one runs (so that only a command can bring a resolver back)."""
    pid = keeper_of(w)
    if pid:
        os.kill(pid, signal.SIGKILL)
    assert wait_for(lambda: keeper_of(w) == 0, 5.0)


def downtime(server: str, name: str, kill: int, limit: float) -> float:
    """SIGKILL `kill`, then ask `server` for `name` until it answers: seconds without the name (at most `limit`)."""
    os.kill(kill, signal.SIGKILL)
    start = time.monotonic()
    while time.monotonic() - start < limit and not query(server, name, 0.02):
        pass
    return time.monotonic() - start


@needs_docker
def test_a_killed_resolver_comes_back_by_itself(dworld: World) -> None:
    """kill -9 of a network's resolver: its keeper starts it again with no command, and names answer
    again within a second (measured: the figure is printed); again after a second kill."""
    w = dworld
    gw, name = f"10.213.{w.n}.1", f"td{w.n}-a"
    run_d(w, "--name", name, "busybox", "sleep", "300")
    ip = address_of(name)
    assert query(gw, name) == [ip]
    for _ in range(2):
        old = resolver_pid(w, w.net)
        took = downtime(gw, name, old, 10.0)
        print(f"names unavailable for {took * 1000:.0f} ms after kill -9 of the resolver")
        assert query(gw, name) == [ip], "the resolver did not come back"
        assert took < 1.5, f"names came back after {took:.1f} s"
        assert resolver_pid(w, w.net) not in (0, old)
    assert "restarted the DNS resolver of network " + w.net in (w.state_dir / "dns" / ".keeper.log").read_text()
    rm("docker", name)


@needs_docker
def test_network_reload_restarts_a_dead_resolver(dworld: World) -> None:
    """With no keeper (killed), a dead resolver stays dead until `cnirun network reload`, which starts it
    again, says so, and starts a keeper again."""
    w = dworld
    gw, name = f"10.213.{w.n}.1", f"td{w.n}-r"
    run_d(w, "--name", name, "busybox", "sleep", "300")
    kill_keeper(w)
    os.kill(resolver_pid(w, w.net), signal.SIGKILL)
    assert wait_for(lambda: not query(gw, name, 0.1), 5.0)
    dry = w.cnirun("network", "reload", "--dry-run")
    assert f"{w.net} network: missing: cnirun: the DNS resolver (dnsmasq), dead" in dry.stdout, dry.stdout
    assert not query(gw, name)
    p = w.cnirun("network", "reload")
    assert p.returncode == 0, p.stderr
    assert f"{w.net} network: repaired: cnirun: the DNS resolver (dnsmasq), dead" in p.stdout, p.stdout
    assert query(gw, name) == [address_of(name)]
    assert wait_for(lambda: keeper_of(w) != 0, 5.0), "reload started no keeper"
    rm("docker", name)


@needs_docker
def test_a_decoy_does_not_stop_the_resolver_coming_back(dworld: World) -> None:
    """A process in another container with the resolver's `--conf-file=` in its arguments is not taken for
    the resolver: kill -9 of the real one, and gc (the keeper killed) and the keeper each start it again;
    the decoy is never signalled, not even when the network's resolver stops."""
    w = dworld
    gw, name, decoy = f"10.213.{w.n}.1", f"td{w.n}-n", f"td{w.n}-decoy"
    conf = w.state_dir / "dns" / w.net / "cnirun-dnsmasq.conf"
    run_d(w, "--name", name, "busybox", "sleep", "300")
    ip = address_of(name)
    p = subprocess.run(["docker", "run", "-d", "--name", decoy, "--network", "none", "busybox", "sh", "-c",
                        "sleep 300; true", f"--conf-file={conf}"], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    decoys = lambda: [pid for pid, c in _resolver_processes(w) if c == f"--conf-file={conf}"  # noqa: E731
                      and not is_dnsmasq(pid)]
    assert wait_for(lambda: len(decoys()) == 1, 10.0), "the decoy does not show"
    decoy_pid = decoys()[0]
    # gc alone (no keeper): the decoy must not pass for the resolver.
    kill_keeper(w)
    os.kill(resolver_pid(w, w.net), signal.SIGKILL)
    assert wait_for(lambda: not query(gw, name, 0.1), 5.0)
    g = w.cnirun("gc")
    assert g.returncode == 0, g.stderr
    assert f"restarted the DNS resolver of network {w.net}" in g.stdout, g.stdout
    assert query(gw, name) == [ip]
    # The keeper (gc started it again) too.
    assert wait_for(lambda: keeper_of(w) != 0, 5.0)
    assert downtime(gw, name, resolver_pid(w, w.net), 10.0) < 1.5
    assert query(gw, name) == [ip]
    # The network empties: its resolver stops, the decoy lives on.
    rm("docker", name)
    assert_no_resolver_process(w)
    time.sleep(2.5)  # past a stop's SIGTERM wait, when a resolver that ignored it would get SIGKILL
    assert Path(f"/proc/{decoy_pid}").exists(), "cnirun killed the decoy"
    rm("docker", decoy)


def assert_no_resolver_process(w: World) -> None:
    assert wait_for(lambda: [c for pid, c in _resolver_processes(w) if is_dnsmasq(pid)] == [], 15.0)


def served(w: World, network: str) -> list[str]:
    """Every name the network's resolver answers from its hosts files (what dnsmasq reads)."""
    out: list[str] = []
    for f in sorted((w.state_dir / "dns" / network / "hosts").glob("*")):
        out += [n for line in f.read_text().splitlines() if line and not line.startswith("#")
                for n in line.split()[1:]]
    return out


@needs_docker
def test_names_store_is_roots_only(dworld: World) -> None:
    """The names store (network dirs, hosts files, resolver configs, a container's own resolver's dir) is
    root's only: directories 0700, cnirun's files 0600, also when an older cnirun made the root 0755; the
    resolvers (root) still answer from it."""
    w = dworld
    second = w.add_network(f"td-{w.n}b", f"ctd{w.n}b", f"10.213.{100 + w.n}.0/24").name
    (w.state_dir / "dns").mkdir(mode=0o755)
    os.chmod(w.state_dir / "dns", 0o755)
    a, b = f"td{w.n}-a", f"td{w.n}-b"
    run_d(w, "--name", a, "busybox", "sleep", "300")
    run_d(w, "--name", b, "--net", w.net, "--net", second, "busybox", "sleep", "300")
    assert query(f"10.213.{w.n}.1", a) == [address_of(a)]
    assert answer(lookup(b, a)) == [address_of(a)]  # through its own resolver, in its netns
    root = w.state_dir / "dns"
    dirs = [root, *(p for p in root.rglob("*") if p.is_dir())]
    files = [p for p in root.rglob("*") if p.is_file() and p.name not in ("dnsmasq.pid", "dnsmasq.log")]
    assert {str(p): oct(p.stat().st_mode & 0o777) for p in dirs if p.stat().st_mode & 0o777 != 0o700} == {}
    assert {str(p): oct(p.stat().st_mode & 0o777) for p in files if p.stat().st_mode & 0o777 != 0o600} == {}
    assert {str(p.relative_to(root)) for p in dirs} >= {".", w.net, f"{w.net}/hosts", "_views"}
    assert {p.name for p in files} >= {"cnirun-dnsmasq.conf", "start.err", w.net + ".lock"}
    rm("docker", a, b)


@needs_docker
def test_an_alias_never_takes_over_a_containers_own_name(dworld: World) -> None:
    """An alias that is another container's name on the network is not answered while that container is
    there (whichever came first); aliases stay shareable; a freed name is answered for the alias again."""
    w = dworld
    gw, db, evil, other = f"10.213.{w.n}.1", f"td{w.n}-db", f"td{w.n}-evil", f"td{w.n}-other"
    run_d(w, "--name", db, "busybox", "sleep", "300")
    run_d(w, "--name", evil, "--network-alias", db, "--network-alias", "shared", "busybox", "sleep", "300")
    run_d(w, "--name", other, "--network-alias", "shared", "busybox", "sleep", "300")
    db_ip, evil_ip, other_ip = address_of(db), address_of(evil), address_of(other)
    assert query(gw, db) == [db_ip], "an alias took over a container's name"
    assert sorted(query(gw, "shared")) == sorted([evil_ip, other_ip])
    rm("docker", db)
    assert wait_for(lambda: query(gw, db) == [evil_ip]), "the freed name is not answered for the alias"
    # The name's owner comes back after the alias: the name is its own again.
    run_d(w, "--name", db, "busybox", "sleep", "300")
    assert query(gw, db) == [address_of(db)]
    rm("docker", db, evil, other)


@needs_docker
def test_outside_names_only_where_the_network_allows_them(dworld: World) -> None:
    """A dotted alias (an outside domain, `www.example.com`) is not answered on a network without
    `"cnirun": {"dnsOutsideNames": true}`, and is (locally, nothing forwarded) on one with it."""
    w = dworld
    net = w.add_network(f"td-{w.n}o", f"ctd{w.n}o", f"10.213.{100 + w.n}.0/24")
    path = Path(w.env["NETCONFPATH"]) / f"{net.name}.conflist"
    conf = json.loads(path.read_text())
    path.write_text(json.dumps({**conf, "cnirun": {"dnsOutsideNames": True}}))
    a, b = f"td{w.n}-a", f"td{w.n}-b"
    run_d(w, "--name", a, "--network-alias", "www.example.com", "--network-alias", "web", "busybox", "sleep", "300")
    run_d(w, "--name", b, "--net", net.name, "--network-alias", "www.example.com", "busybox", "sleep", "300")
    assert sorted(served(w, w.net)) == sorted([a, "web"])
    assert query(f"10.213.{w.n}.1", "web") == [address_of(a)]
    assert query(f"10.213.{100 + w.n}.1", "www.example.com") == [address_of(b)]
    rm("docker", a, b)
