"""`cnirun run` on Docker: real dockerd, real plugins (10.131.N.0/24; host ports 18931 and 19536)."""
from __future__ import annotations

import ipaddress
import json
import os
import signal
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

from _parallel import next_n
from _wait import wait_for
from conftest import HAVE_PODMAN, Net, World, _make_world, first_address, needs_docker, needs_root, world_fixture

pytestmark = [needs_root, needs_docker]


def test_address_in_subnet_before_first_instruction(docker_world: World) -> None:
    r = docker_world.cnirun("--rm", "busybox", "sh", "-c", "ip -o -4 addr show eth0; hostname; cat /etc/hosts")
    assert r.returncode == 0, r.stderr
    addr = first_address(r.stdout)
    assert ipaddress.ip_interface(addr).ip in ipaddress.ip_network(docker_world.subnet)
    hostname = r.stdout.splitlines()[1]
    assert f"{addr.split('/')[0]}\t{hostname}" in r.stdout


@pytest.mark.parametrize(
    "cmd,code",
    [(["true"], 0), (["sh", "-c", "exit 3"], 3), (["/etc"], 126), (["no-such-command"], 127)],
)
def test_exit_codes_pass_through(docker_world: World, cmd: list[str], code: int) -> None:
    r = docker_world.cnirun("--rm", "busybox", *cmd)
    assert r.returncode == code, r.stderr


def test_two_containers_reach_each_other(docker_world: World) -> None:
    a = docker_world.cnirun("-d", "--rm", "busybox", "sleep", "60")
    assert a.returncode == 0, a.stderr
    cid = a.stdout.strip()
    try:
        info = json.loads(docker_world.cnirun("inspect", cid[:12]).stdout)
        ip = info["attachments"][0]["addresses"][0].split("/")[0]
        b = docker_world.cnirun("--rm", "busybox", "ping", "-c", "1", "-W", "3", ip)
        assert b.returncode == 0, b.stdout + b.stderr
    finally:
        subprocess.run(["docker", "rm", "-f", cid], capture_output=True)


def test_published_port_answers_on_localhost(docker_world: World) -> None:
    port = 18931
    r = docker_world.cnirun(
        "-d", "--rm", "-p", f"{port}:80", "busybox", "sh", "-c", "echo hello > /i.html && httpd -f -p 80 -h /"
    )
    assert r.returncode == 0, r.stderr
    cid = r.stdout.strip()
    try:
        body = ""
        for _ in range(20):
            try:
                body = urllib.request.urlopen(f"http://127.0.0.1:{port}/i.html", timeout=2).read().decode()
                break
            except OSError:
                time.sleep(0.2)
        assert body.strip() == "hello"
        # The same host port again is refused before anything is set up.
        again = docker_world.cnirun("--rm", "-p", f"{port}:80", "busybox", "true")
        assert again.returncode == 125 and "already published" in again.stderr
    finally:
        subprocess.run(["docker", "rm", "-f", cid], capture_output=True)


def test_detached_then_rm_f_tears_down(docker_world: World) -> None:
    r = docker_world.cnirun("-d", "busybox", "sleep", "60")
    assert r.returncode == 0, r.stderr
    cid = r.stdout.strip()
    assert len(cid) == 64
    time.sleep(0.5)
    assert docker_world.leftovers(), "the network should be up while the container runs"
    subprocess.run(["docker", "rm", "-f", cid], check=True, capture_output=True)
    docker_world.assert_clean(within=6.0)


def test_detached_survives_watcher_being_killed(docker_world: World) -> None:
    r = docker_world.cnirun("-d", "--rm", "busybox", "sleep", "60")
    cid = r.stdout.strip()
    # Kill the worker once it watches the container: the supervisor respawns it and it reconciles.
    log = docker_world.state_dir / "containers" / ".watcher.log"
    wait_for(lambda: log.exists() and f"watching docker container {cid[:12]}" in log.read_text(), 10,
             "the watcher to watch the container")
    pid = int((docker_world.state_dir / "containers" / ".watcher.pid").read_text())
    children = wait_for(lambda: subprocess.run(["pgrep", "-P", str(pid)], capture_output=True,
                                               text=True).stdout.split(), 10, "the watcher's worker")
    for c in children:
        subprocess.run(["kill", "-9", c])
    subprocess.run(["docker", "rm", "-f", cid], check=True, capture_output=True)
    docker_world.assert_clean(within=8.0)


def test_sigkill_then_gc_leaves_nothing(docker_world: World) -> None:
    p = docker_world.popen("--rm", "busybox", "sleep", "60", stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    docker_world.wait_for_cache_file()
    time.sleep(0.3)
    p.send_signal(signal.SIGKILL)
    p.wait()
    assert docker_world.leftovers()
    g = docker_world.cnirun("gc")
    assert g.returncode == 0, g.stderr
    docker_world.assert_clean()
    again = docker_world.cnirun("gc")
    assert again.returncode == 0 and "nothing to collect" in again.stdout


def test_sigterm_reaches_container_then_teardown(docker_world: World) -> None:
    p = docker_world.popen(
        "--rm", "busybox", "sh", "-c", "trap 'exit 42' TERM; while true; do sleep 0.1; done",
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        out = subprocess.run(
            ["docker", "ps", "-q", "--filter", f"label=cnirun.state={docker_world.state_dir / 'containers'}",
             "--filter", "label=cnirun.role=workload"], capture_output=True, text=True).stdout
        if out.strip():
            break
        time.sleep(0.05)
    time.sleep(0.5)
    p.send_signal(signal.SIGTERM)
    assert p.wait(timeout=20) == 42


def test_failing_plugin_leaves_nothing(docker_world: World) -> None:
    docker_world.fail_adds_with_noop()
    r = docker_world.cnirun("--rm", "busybox", "true")
    assert r.returncode == 125
    assert 'type="noop"' in r.stderr and "code 11" in r.stderr and "boom" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    docker_world.assert_clean()


def test_bad_input_one_line_errors(docker_world: World) -> None:
    for args, needle in (
        (["--net", "nope", "busybox", "true"], "known networks"),
        (["--ip", "10.199.0.9", "busybox", "true"], "outside network"),
        (["--bogus", "busybox"], "unknown option --bogus"),
        (["--pull", "never", "no-such-image-cnirun", "true"], "Unable to find image"),  # never: no registry
        (["--mode", "hook", "busybox", "true"], "cnirun install docker-runtime"),
    ):
        r = docker_world.cnirun(*args)
        assert r.returncode == 125, (args, r.stderr)
        assert needle in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr


def test_static_ip_and_taken(docker_world: World) -> None:
    ip = f"10.131.{docker_world.n}.77"
    a = docker_world.cnirun("-d", "--rm", "--ip", ip, "busybox", "sleep", "60")
    assert a.returncode == 0, a.stderr
    try:
        b = docker_world.cnirun("--rm", "--ip", ip, "busybox", "true")
        assert b.returncode == 125 and "already taken" in b.stderr
    finally:
        subprocess.run(["docker", "rm", "-f", a.stdout.strip()], capture_output=True)


def test_twenty_concurrent_get_distinct_addresses(docker_world: World) -> None:
    procs = [
        docker_world.popen("--rm", "busybox", "ip", "-o", "-4", "addr", "show", "eth0",
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        for _ in range(20)
    ]
    outs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0] * 20, [e for _, e in outs if e]
    addrs = {first_address(o) for o, _ in outs}
    assert len(addrs) == 20


def test_network_from_file_uses_sandbox(docker_world: World) -> None:
    """-f networks are invisible to the OCI hook: sandbox mode, address in the file's subnet, nothing left."""
    net, bridge, subnet = f"t3f-{docker_world.n}", f"cnr131f{docker_world.n}", f"10.131.{200 + docker_world.n}.0/24"
    spec = docker_world.tmp / "nets.yaml"
    spec.write_text(
        f"networks:\n  {net}:\n    driver: bridge\n"
        f"    driver_opts:\n      com.docker.network.bridge.name: {bridge}\n"
        f"    ipam:\n      config:\n        - subnet: {subnet}\n"
    )
    docker_world.env["CNIRUN_IPAM_DATA_DIR"] = str(docker_world.data_dir)
    try:
        r = docker_world.cnirun("-f", str(spec), "--net", net, "--rm", "busybox", "ip", "-o", "-4", "addr", "show",
                                "eth0")
        assert r.returncode == 0, r.stderr
        assert ipaddress.ip_interface(first_address(r.stdout)).ip in ipaddress.ip_network(subnet)
        h = docker_world.cnirun("-f", str(spec), "--net", net, "--mode", "hook", "--rm", "busybox", "true")
        assert h.returncode == 125 and "-f" in h.stderr and "hook" in h.stderr
        assert len(h.stderr.strip().splitlines()) == 1, h.stderr
        ipam = docker_world.data_dir / net

        def left() -> list[str]:
            """What the run's DEL (in the background once the container's status is known) has not removed yet."""
            out = subprocess.run(["ip", "-br", "link", "show", "master", bridge], capture_output=True,
                                 text=True).stdout.split()[:1]
            out += [p.name for p in ipam.iterdir() if p.name[0].isdigit()] if ipam.is_dir() else []
            rules = subprocess.run(["iptables-save"], capture_output=True, text=True).stdout
            return out + [ln for ln in rules.splitlines() if f"10.131.{200 + docker_world.n}." in ln]

        deadline = time.monotonic() + 15
        while left() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert left() == []
    finally:
        subprocess.run(["ip", "link", "del", bridge], capture_output=True)


# 10.210.N.0/24 and ta-N / ctaN: the -f bridge tests' own World; their file's network is 10.210.(100+N).0/24.
file_world = world_fixture(_make_world, 210, "docker -f", net="ta-{n}", bridge="cta{n}", subnet="10.210.{n}.0/24",
                           name_prefix="taf{n}-")


def test_a_file_networks_bridge_goes_with_its_last_container(file_world: World) -> None:
    """A -f network's bridge stays while a container uses it and goes with the last one: after a --rm
    run, and at gc after a SIGKILLed run; the same network installed (network convert) keeps its bridge."""
    from test_dns import wait_for

    w = file_world
    net, bridge, subnet = f"ta-f{w.n}", f"ctaf{w.n}", f"10.210.{100 + w.n}.0/24"
    spec = w.tmp / "nets.yaml"
    spec.write_text(f"networks:\n  {net}:\n    driver_opts:\n      com.docker.network.bridge.name: {bridge}\n"
                    f"    ipam:\n      config:\n        - subnet: {subnet}\n")
    w.env["CNIRUN_IPAM_DATA_DIR"] = str(w.data_dir)
    w.watch(Net(net, bridge, subnet))

    def bridge_exists() -> bool:
        return subprocess.run(["ip", "link", "show", bridge], capture_output=True).returncode == 0

    def runs() -> list[str]:
        return [p.name for p in (w.state_dir / "containers").iterdir() if not p.name.startswith(".")]

    r = w.cnirun("-f", str(spec), "--net", net, "--rm", "busybox", "true")
    assert r.returncode == 0, r.stderr
    assert wait_for(lambda: not runs() and not bridge_exists(), 15), "the bridge outlived its only container"

    a = w.popen("-f", str(spec), "--net", net, "--name", f"taf{w.n}-a", "busybox", "sleep", "60",
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        assert wait_for(lambda: bool(subprocess.run(["ip", "-br", "link", "show", "master", bridge],
                                                    capture_output=True, text=True).stdout.strip()), 30)
        r = w.cnirun("-f", str(spec), "--net", net, "--rm", "busybox", "true")
        assert r.returncode == 0, r.stderr
        assert wait_for(lambda: len(runs()) == 1, 15)  # the --rm run's teardown is done
        assert bridge_exists()  # the first container still uses it
        os.kill(a.pid, signal.SIGKILL)
        a.wait(timeout=30)
        gc = w.cnirun("gc")
        assert gc.returncode == 0 and "tore down run" in gc.stdout, gc.stdout + gc.stderr
        assert not bridge_exists()
    finally:
        if a.poll() is None:
            a.kill()
            a.wait()
        subprocess.run(["docker", "rm", "-f", f"taf{w.n}-a"], capture_output=True)

    # Installed, the same conflist (its "cnirun" object names the file and the bridge) keeps its bridge.
    assert w.cnirun("network", "convert", str(spec), "--dir", w.env["NETCONFPATH"]).returncode == 0
    r = w.cnirun("--net", net, "--rm", "busybox", "true")
    assert r.returncode == 0, r.stderr
    assert wait_for(lambda: not runs(), 15)
    assert bridge_exists()


def test_same_port_at_the_same_moment_only_one_wins(docker_world: World) -> None:
    port = 18932
    procs = [docker_world.popen("-d", "--rm", "-p", f"{port}:80", "busybox", "sleep", "60",
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE) for _ in range(2)]
    outs = [p.communicate(timeout=120) for p in procs]
    try:
        codes = sorted(p.returncode for p in procs)
        assert codes == [0, 125], outs
        err = next(e for p, (_, e) in zip(procs, outs) if p.returncode == 125)
        assert "already published" in err and len(err.strip().splitlines()) == 1
    finally:
        for p, (o, _) in zip(procs, outs):
            if p.returncode == 0:
                subprocess.run(["docker", "rm", "-f", o.strip()], capture_output=True)


def _eth0_of(engine: str, cid: str, timeout: float = 10.0) -> str:
    """The container's eth0 address, waiting for it to be running again."""
    deadline = time.monotonic() + timeout
    out = ""
    while time.monotonic() < deadline:
        r = subprocess.run([engine, "exec", cid, "ip", "-o", "-4", "addr", "show", "eth0"], capture_output=True,
                           text=True)
        out = r.stdout + r.stderr
        if r.returncode == 0 and "inet " in r.stdout:
            return first_address(r.stdout)
        time.sleep(0.2)
    raise AssertionError(f"{cid[:12]} has no eth0 address after {timeout} s: {out}")


def test_detached_restart_and_stop_start_keep_the_network(docker_world: World) -> None:
    """Sandbox mode: docker restart (x3) and docker stop; docker start bring the container back on its network."""
    r = docker_world.cnirun("-d", "--name", f"cnirun-t8r-{docker_world.n}", "busybox", "sleep", "300")
    assert r.returncode == 0, r.stderr
    cid = r.stdout.strip()
    try:
        addr = _eth0_of("docker", cid)
        for _ in range(3):
            subprocess.run(["docker", "restart", "-t", "0", cid], check=True, capture_output=True)
            time.sleep(1.5)  # the watcher has seen "die" by now and must have left the network alone
            assert _eth0_of("docker", cid) == addr
        subprocess.run(["docker", "stop", "-t", "0", cid], check=True, capture_output=True)
        time.sleep(1.5)
        assert docker_world.leftovers(), "a stopped container keeps its network until it is removed"
        s = subprocess.run(["docker", "start", cid], capture_output=True, text=True)
        assert s.returncode == 0, s.stderr
        assert _eth0_of("docker", cid) == addr
    finally:
        subprocess.run(["docker", "rm", "-f", cid], capture_output=True)
    docker_world.assert_clean(within=8.0)


def test_stopped_container_survives_gc_and_a_removed_one_does_not(docker_world: World) -> None:
    r = docker_world.cnirun("-d", "busybox", "sleep", "300")
    cid = r.stdout.strip()
    try:
        subprocess.run(["docker", "stop", "-t", "0", cid], check=True, capture_output=True)
        g = docker_world.cnirun("gc")
        assert g.returncode == 0 and "tore down" not in g.stdout, g.stdout
        assert subprocess.run(["docker", "start", cid], capture_output=True).returncode == 0
        _eth0_of("docker", cid)
    finally:
        subprocess.run(["docker", "rm", "-f", cid], capture_output=True)
    docker_world.assert_clean(within=8.0)


def test_helper_stopped_behind_our_back_is_restarted_and_reattached(docker_world: World) -> None:
    """What a dockerd restart does to a sandbox run (both containers stop): the watcher restarts the
    helper, re-attaches its new netns at the same address, and `docker start` works again."""
    r = docker_world.cnirun("-d", "busybox", "sleep", "300")
    cid = r.stdout.strip()
    try:
        addr = _eth0_of("docker", cid)
        helper = json.loads(subprocess.run(["docker", "inspect", cid], capture_output=True, text=True).stdout)[0][
            "HostConfig"]["NetworkMode"].split(":", 1)[1]
        subprocess.run(["docker", "kill", cid], check=True, capture_output=True)
        subprocess.run(["docker", "kill", helper], check=True, capture_output=True)
        deadline = time.monotonic() + 20
        started = False
        while time.monotonic() < deadline and not started:
            time.sleep(0.5)
            started = subprocess.run(["docker", "start", cid], capture_output=True).returncode == 0
        assert started, "the helper never came back"
        assert _eth0_of("docker", cid) == addr
        # Exactly one attachment: the old one was DELeted before the new ADD.
        info = json.loads(docker_world.cnirun("inspect", cid[:12]).stdout)
        assert [a["addresses"] for a in info["attachments"]] == [[addr]]
    finally:
        subprocess.run(["docker", "rm", "-f", cid], capture_output=True)
    docker_world.assert_clean(within=8.0)


def _restart_dockerd() -> None:
    from conftest import REPO

    pid = int(subprocess.run(["pgrep", "-xo", "dockerd"], capture_output=True, text=True).stdout.split()[0])
    subprocess.run(["kill", "-TERM", str(pid)], check=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and subprocess.run(["kill", "-0", str(pid)], capture_output=True).returncode == 0:
        time.sleep(0.2)
    r = subprocess.run([str(REPO / "scripts" / "setup.sh"), "docker"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr


@pytest.mark.slow
def test_dockerd_restart_with_detached_runs(docker_world: World) -> None:
    """dockerd restart stops every container: the watcher brings the helpers back and re-attaches them, so
    `docker start` finds the container's network, and a `--restart always` container (compose's `restart:`
    goes the same way) comes back by itself with its network; removal then leaves nothing."""
    r = docker_world.cnirun("-d", "busybox", "sleep", "300")
    assert r.returncode == 0, r.stderr
    cid = r.stdout.strip()
    r = docker_world.cnirun("-d", "--restart", "always", "busybox", "sleep", "300")
    assert r.returncode == 0, r.stderr
    always = r.stdout.strip()
    try:
        addr, addr_always = _eth0_of("docker", cid), _eth0_of("docker", always)
        _restart_dockerd()
        deadline = time.monotonic() + 30
        started = False
        while time.monotonic() < deadline and not started:
            started = subprocess.run(["docker", "start", cid], capture_output=True).returncode == 0
            time.sleep(0.5)
        assert started, "the container could not be started again after the dockerd restart"
        assert _eth0_of("docker", cid) == addr
        deadline = time.monotonic() + 30
        back = ""
        while time.monotonic() < deadline and back != "running":
            back = subprocess.run(["docker", "inspect", "-f", "{{.State.Status}}", always], capture_output=True,
                                  text=True).stdout.strip()
            time.sleep(0.5)
        assert back == "running", "the --restart always container did not come back after the dockerd restart"
        assert _eth0_of("docker", always) == addr_always
    finally:
        subprocess.run(["docker", "rm", "-f", cid, always], capture_output=True)
    docker_world.assert_clean(within=15.0)


def test_reboot_then_gc_frees_everything(docker_world: World) -> None:
    """A reboot, simulated: containers, netns and /run state gone, cache and reservations kept; gc frees them."""
    import shutil

    r = docker_world.cnirun("-d", "-p", "19536:80", "busybox", "sleep", "300")
    assert r.returncode == 0, r.stderr
    cid = r.stdout.strip()
    _eth0_of("docker", cid)
    docker_world.stop_watcher(wait=5.0)
    states = docker_world.state_dir / "containers"
    helpers = subprocess.run(["docker", "ps", "-aq", "--filter", f"label=cnirun.state={states}"], capture_output=True,
                             text=True).stdout.split()
    subprocess.run(["docker", "rm", "-f", *helpers], check=True, capture_output=True)
    shutil.rmtree(docker_world.state_dir)  # /run is a tmpfs: a reboot empties it
    docker_world.state_dir.mkdir()
    assert any("IP reservations" in x for x in docker_world.leftovers())
    g = docker_world.cnirun("gc")
    assert g.returncode == 0 and "DEL" in g.stdout, g.stdout + g.stderr
    docker_world.assert_clean()


# -- a detached run that fails leaves nothing: 10.211.N.0/30 (N from 10), networks tb-N, bridges ctbN -------------

def _tiny_world(tmp_path: Path, engine: str = "") -> World:
    """A /30: one address for containers (.2), the gateway .1."""
    n = next_n("211-tiny", 10)
    return _make_world(tmp_path, 211, "a network with room for one container", n=n, net="tb-{n}",
                       bridge="ctb{n}", subnet="10.211.{n}.0/30", name_prefix="tb{n}-", engine=engine)


tiny_world = world_fixture(_tiny_world)


def failed_detached_runs_leave_nothing(w: World, *mode: str) -> None:
    """The second -d run of a full /30 and a -d run asking for the gateway fail with one line and exit
    125, and leave no container (the name is free again), no run state, nothing for gc; with the first
    container removed, the same name starts on the freed address."""
    engine = w.engine
    first = w.cnirun(*mode, "-d", "--name", f"{w.name_prefix}a", "busybox", "sleep", "300")
    assert first.returncode == 0, first.stderr
    cid = first.stdout.strip()
    states = w.state_dir / "containers"

    def containers() -> list[str]:
        return sorted(subprocess.run([engine, "ps", "-aq", "--no-trunc", "--filter", f"label=cnirun.state={states}"],
                                     capture_output=True, text=True).stdout.split())

    before = containers()  # the first run's (with its helper in Docker's sandbox mode)
    try:
        gateway = w.subnet.replace(".0/30", ".1")
        for args, needle in ((["busybox", "sleep", "300"], "no IP addresses available"),
                             (["--ip", gateway, "busybox", "sleep", "300"], "gateway")):
            r = w.cnirun(*mode, "-d", "--name", f"{w.name_prefix}x", *args)
            assert r.returncode == 125 and needle in r.stderr, (args, r.stdout, r.stderr)
            assert len(r.stderr.strip().splitlines()) == 1 and r.stdout == "", r.stderr
            assert containers() == before, f"{args}: containers left beside the first run's"
            assert subprocess.run([engine, "inspect", f"{w.name_prefix}x"], capture_output=True).returncode != 0
            runs = [p.name for p in states.iterdir() if not p.name.startswith(".")]
            assert len(runs) == 1, f"{args}: run states {runs}"
        g = w.cnirun("gc")
        assert g.returncode == 0 and "tore down" not in g.stdout, g.stdout + g.stderr
    finally:
        subprocess.run([engine, "rm", "-f", cid], capture_output=True)
    w.assert_clean(within=10.0)
    again = w.cnirun(*mode, "-d", "--name", f"{w.name_prefix}x", "busybox", "sleep", "300")
    assert again.returncode == 0, again.stderr
    subprocess.run([engine, "rm", "-f", again.stdout.strip()], capture_output=True)
    w.assert_clean(within=10.0)


@pytest.mark.parametrize("sandbox", ["", "helper"])
def test_failed_detached_sandbox_run_leaves_no_container(tiny_world: World, sandbox: str) -> None:
    """Sandbox mode -d (auto and CNIRUN_SANDBOX=helper take the helper): a failed ADD leaves nothing."""
    tiny_world.env["CNIRUN_SANDBOX"] = sandbox
    failed_detached_runs_leave_nothing(tiny_world, "--mode", "sandbox")


# -- a container that dies while cnirun attaches: one line, nothing left ---------------------------------------
class DyingOnInspect:
    """Lets one container die between dockerd's answer and cnirun (a _chaos.DockerProxy).

    The first time a run inspects a running container of `role` (cnirun.role) from `states` (its
    cnirun.state label), dockerd's answer ("running, pid P") is held while the container is killed and its
    process is gone: cnirun acts on a pid that has exited, as when a container exits at once.
    """

    def __init__(self, path: Path, role: str, states: Path) -> None:
        from _chaos import DockerProxy

        self.role, self.states = role, str(states)
        self.killed = ""  # the ID of the container it killed
        self.proxy = DockerProxy(path, self._hold, self._kill)
        self.path = self.proxy.path

    @staticmethod
    def _cid(head: bytes) -> str:
        import re

        m = re.match(rb"GET (?:/v[0-9.]+)?/containers/([0-9a-f]{64})/json ", head)
        return m.group(1).decode() if m else ""

    def _hold(self, head: bytes, pid: int) -> bool:
        cid = self._cid(head)
        if self.killed or not cid:
            return False
        info = json.loads(subprocess.run(["docker", "inspect", cid], capture_output=True, text=True).stdout or "[{}]")
        labels = (info[0].get("Config") or {}).get("Labels") or {}
        return bool((info[0].get("State") or {}).get("Running")) and labels.get("cnirun.role") == self.role \
            and labels.get("cnirun.state") == self.states

    def _kill(self, head: bytes, answer: bytes) -> None:
        cid = self._cid(head)
        info = json.loads(subprocess.run(["docker", "inspect", cid], capture_output=True, text=True).stdout)
        pid = info[0]["State"]["Pid"]
        subprocess.run(["docker", "kill", cid], capture_output=True)
        deadline = time.monotonic() + 10
        while os.path.exists(f"/proc/{pid}/ns/net") and time.monotonic() < deadline:
            time.sleep(0.01)
        self.killed = cid

    def close(self) -> None:
        self.proxy.close()


@pytest.mark.parametrize("sandbox,role,args", [
    ("helper", "sandbox", ["-d", "--name", "{prefix}d", "busybox", "sleep", "300"]),
    ("helper", "sandbox", ["--rm", "busybox", "true"]),
    ("single", "workload", ["--rm", "busybox", "true"]),
], ids=["helper-detached", "helper-foreground", "single"])
def test_container_that_exits_before_attach_is_one_line_and_leaves_nothing(
        tiny_world: World, sandbox: str, role: str, args: list[str]) -> None:
    """The container holding the netns (the helper, or the user's own held container) exits between
    dockerd's "running, pid P" and cnirun opening /proc/P/ns/net: one line naming the container,
    exit 125, no traceback, no container, nothing for gc."""
    w = tiny_world
    w.env["CNIRUN_SANDBOX"] = sandbox
    proxy = DyingOnInspect(w.tmp / "docker.sock", role, w.state_dir / "containers")
    w.env["DOCKER_HOST"] = f"unix://{proxy.path}"
    try:
        r = w.cnirun("--mode", "sandbox", *[a.format(prefix=w.name_prefix) for a in args])
    finally:
        del w.env["DOCKER_HOST"]
        proxy.close()
    assert proxy.killed, f"no {role} container was inspected while it ran"
    assert r.returncode == 125 and proxy.killed[:12] in r.stderr and "exited" in r.stderr, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr, r.stderr
    w.assert_clean(within=5.0)  # a --rm container dockerd removes as it exits
    g = w.cnirun("gc")
    assert g.returncode == 0 and "nothing to collect" in g.stdout, g.stdout + g.stderr


th_world = world_fixture(_make_world, 217, "docker", net="th-s{n}", bridge="cths{n}", subnet="10.217.{n}.0/24",
                         n=60, name_prefix="th-s")


@pytest.mark.parametrize("how", [["--rm"], ["--rm", "-d"], ["-d", "--name", "th-s-gone"]])
@pytest.mark.parametrize("sandbox", ["auto", "helper"])
def test_missing_command_in_sandbox_mode_is_one_line_and_127(th_world: World, how: list[str], sandbox: str) -> None:
    """A command the image does not have, in sandbox mode (auto: the single container in the foreground, a
    helper with -d; or a helper always): one line naming it (docker's `exec: "X": executable file not found
    in $PATH`, without the daemon's chain of prefixes), exit 127 as docker run's, and nothing left."""
    from conftest import CNIRUN, REPO

    w = th_world
    r = subprocess.run([*CNIRUN, "--mode", "sandbox", *how, "busybox", "th-nosuchcmd"],
                       env=dict(w.env, CNIRUN_SANDBOX=sandbox), capture_output=True, text=True, timeout=90, cwd=REPO)
    assert r.returncode == 127, r.stderr
    assert r.stderr == 'cnirun: exec: "th-nosuchcmd": executable file not found in $PATH\n', r.stderr
    w.assert_clean(within=10.0)


tc_sandbox_world = world_fixture(_make_world, 212, "docker sandbox: restarts", net="tc-{n}", bridge="ctc{n}",
                                 subnet="10.212.{n}.0/24", n=61, name_prefix="tc-sbx-{n}",
                                 extra=[{"type": "tuning", "capabilities": {"mac": True}}])


def test_sandbox_restarts_keep_addresses_and_macs(tc_sandbox_world: World) -> None:
    """Sandbox mode (-d: a helper holds the netns): eth0 (the run's network) and eth1 (`network connect`) keep
    their address and MAC over 6 `docker restart`s and a stop + start."""
    first = detached_restarts_keep_links(tc_sandbox_world, "docker", ["--mode", "sandbox"], "tc-62", "10.212.62.0/24")
    assert first[0][0].startswith("10.212.61.")


def detached_restarts_keep_links(w: World, engine: str, mode: list[str], second: str, subnet: str) -> list[list[str]]:
    """`cnirun MODE -d` on the World's network, `network connect` to `second` (made on `subnet`, with tuning),
    then conftest.restarts_keep_links; the container removed, nothing left. Returns the links."""
    from conftest import restarts_keep_links

    tuning = {"type": "tuning", "capabilities": {"mac": True}}
    w.add_network(second, "c" + second.replace("-", ""), subnet, extra=[tuning])
    try:
        r = w.cnirun(*mode, "-d", "--name", w.name_prefix, "busybox", "sleep", "600")
        assert r.returncode == 0, r.stderr
        c = w.cnirun("network", "connect", second, w.name_prefix)
        assert c.returncode == 0, c.stderr
        first = restarts_keep_links(engine, w.name_prefix)
        assert first[1][0].startswith(subnet.rsplit(".", 2)[0])
    finally:
        subprocess.run([engine, "rm", "-f", w.name_prefix], capture_output=True)
    w.assert_clean(within=15.0)
    return first


def test_helper_gone_before_the_workload_starts_is_one_line_and_leaves_nothing(tiny_world: World) -> None:
    """The helper exits after ADD, just before the workload's start (which then cannot join its netns): one
    line, exit 125, no container (the name free), nothing for gc."""
    import re

    from _chaos import DockerProxy

    w = tiny_world
    killed: list[str] = []

    def before_start(head: bytes, pid: int) -> bool:
        m = re.match(rb"POST (?:/v[0-9.]+)?/containers/([0-9a-f]{64})/start ", head)
        info = json.loads(subprocess.run(["docker", "inspect", m.group(1).decode()], capture_output=True,
                                         text=True).stdout) if m and not killed else [{}]
        helper = ((info[0].get("Config") or {}).get("Labels") or {}).get("cnirun.sandbox", "")
        if helper:
            subprocess.run(["docker", "kill", helper], capture_output=True)
            killed.append(helper)
        return False

    proxy = DockerProxy(w.tmp / "d.sock", before_start, lambda head, answer: None)
    w.env["DOCKER_HOST"] = f"unix://{proxy.path}"
    try:
        r = w.cnirun("--mode", "sandbox", "-d", "--name", f"{w.name_prefix}w", "busybox", "sleep", "300")
    finally:
        del w.env["DOCKER_HOST"]
        proxy.close()
    assert killed, "the workload's start never came"
    assert r.returncode == 125 and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert subprocess.run(["docker", "inspect", f"{w.name_prefix}w"], capture_output=True).returncode != 0
    w.assert_clean()
    g = w.cnirun("gc")
    assert g.returncode == 0 and "nothing to collect" in g.stdout, g.stdout + g.stderr


@pytest.mark.parametrize("engine", ["docker", "podman"])
def test_gc_removes_never_started_containers_of_runs_that_are_gone(tiny_world: World, engine: str) -> None:
    """What a failed -d set-up used to keep: a never-started workload whose run state is gone. gc removes it
    (one line); a workload of a gone run that did run (exited: the user's to look at), one whose run state
    still exists and one of another state dir stay."""
    if engine == "podman" and not HAVE_PODMAN:
        pytest.skip("podman with a busybox image not available")
    w = tiny_world
    states = w.state_dir / "containers"
    states.mkdir(parents=True, exist_ok=True)
    from cnirun.state.runs import RunState

    live_run = os.urandom(32).hex()
    (states / live_run).mkdir()
    live = RunState(states / live_run)
    assert live.lock(blocking=False)  # a run in set-up, its cnirun alive: not gc's to judge

    def make(run_id: str, state: Path, start: bool) -> str:
        labels = {"cnirun.id": run_id, "cnirun.state": str(state), "cnirun.role": "workload"}
        r = subprocess.run([engine, "create", "--network", "none", "--name", f"{w.name_prefix}{len(made)}",
                            *[f"--label={k}={v}" for k, v in labels.items()], "busybox", "true"],
                           capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
        cid = r.stdout.strip()
        if start:
            subprocess.run([engine, "start", "-a", cid], capture_output=True, timeout=60)
        made.append(cid)
        return cid

    made: list[str] = []
    try:
        never = make(os.urandom(32).hex(), states, start=False)
        kept = [make(os.urandom(32).hex(), states, start=True), make(live_run, states, start=False),
                make(os.urandom(32).hex(), w.tmp / "elsewhere", start=False)]
        g = w.cnirun("gc")
        assert g.returncode == 0, g.stderr
        assert f"removed never started container {never[:12]}" in g.stdout, g.stdout
        assert subprocess.run([engine, "inspect", never], capture_output=True).returncode != 0
        for cid in kept:
            assert subprocess.run([engine, "inspect", cid], capture_output=True).returncode == 0, g.stdout
    finally:
        for cid in made:  # one at a time: podman removes none when one is missing
            subprocess.run([engine, "rm", "-f", cid], capture_output=True)
        live.unlock()
        live.remove()
