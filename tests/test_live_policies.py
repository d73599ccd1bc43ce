"""Firewall policies of containers (--ingress-allow/--egress-allow, `cnirun update`, labels, connect), with real traffic.

The user side of cnirun.network.policies: `cnirun run` flags on Docker and Podman, the labels of a
hook-mode run, `cnirun update` replacing the lists live (live.verbs.update_policy ->
lifecycle.set_policy), `network connect` carrying the policy, inspect/ps showing it, bad input.
The plugin itself (nftables in the container's netns) is tested in test_plugins_policy.py.
Address plan: 10.237.N.0/24 (network t237-N, bridge c237xN) and 10.237.(100+N).0/24 (t237-N-b,
c237yN, with the plugin) and 10.237.(200+N).0/24 (t237-N-c, c237zN, without it); containers t237-N-*.
"""
from __future__ import annotations

import json
import socket
import subprocess
import time
from pathlib import Path

import pytest

from conftest import CNIRUN, World, _make_world, needs_docker, needs_plugins, needs_podman, needs_root, world_fixture
from test_network_rates import eth0, pid_of, run_detached

pytestmark = [needs_root, needs_plugins]
POLICY = {"type": "cnirun-policy", "capabilities": {"firewallPolicy": True}}
# As on cnirun's own networks: a restarted container keeps its MAC, so its peers' ARP entries stay right.
TUNING = {"type": "tuning", "capabilities": {"mac": True}}
# Answers "hi" on ports 80 and 81, and echoes on 82.
SERVER = ["sh", "-c", "nc -ll -p 80 -e echo hi & nc -ll -p 81 -e echo hi & nc -ll -p 82 -e cat & wait"]


def policy_world(tmp_path: Path, engine: str = "") -> World:
    w = _make_world(tmp_path, 237, net="t237-{n}", bridge="c237x{n}", engine=engine, extra=[TUNING, POLICY],
                    name_prefix="t237-{n}-")
    w.add_network(f"t237-{w.n}-b", f"c237y{w.n}", f"10.237.{100 + w.n}.0/24", extra=[TUNING, POLICY])
    w.add_network(f"t237-{w.n}-c", f"c237z{w.n}", f"10.237.{200 + w.n}.0/24")
    return w


dworld = world_fixture(policy_world)
pworld = world_fixture(policy_world, "podman")


def start_server(w: World, name: str, *opts: str, engine: str = "docker") -> str:
    mode = ["--mode", "sandbox"] if engine == "docker" else []
    p = w.cnirun("run", "-d", *mode, "--name", name, *opts, "busybox", *SERVER, timeout=120)
    assert p.returncode == 0, p.stderr
    return p.stdout.strip().splitlines()[-1]


def reach(engine: str, client: str, address: str, port: int) -> str:
    """What `client` gets from address:port: "hi", or "refused" (the policy resets the connection)."""
    p = subprocess.run([engine, "exec", client, "sh", "-c", f"echo | nc -w 3 {address} {port}"],
                       capture_output=True, text=True, timeout=30)
    return p.stdout.strip() or "refused"


def from_host(address: str, port: int) -> str:
    try:
        with socket.create_connection((address, port), timeout=3) as s:
            s.settimeout(3)
            return s.recv(100).decode().strip() or "refused"
    except OSError:
        return "refused"


def wait_reach(engine: str, client: str, address: str, port: int, want: str, within: float = 10.0) -> str:
    """Poll until `want` (a server just started may not listen yet); the last answer."""
    deadline = time.monotonic() + within
    got = reach(engine, client, address, port)
    while got != want and time.monotonic() < deadline:
        time.sleep(0.2)
        got = reach(engine, client, address, port)
    return got


def inspect_policy(w: World, name: str) -> str:
    p = w.cnirun("inspect", name, "--format", "{{.Policy}}")
    assert p.returncode == 0, p.stderr
    return p.stdout.strip()


def _ingress_by_name_port_and_update(w: World, engine: str) -> None:
    pre = w.name_prefix
    web = run_detached(w, f"{pre}web", engine=engine)
    other = run_detached(w, f"{pre}other", engine=engine)
    start_server(w, f"{pre}db", "--ingress-allow", f"{pre}web:80", "--ingress-allow", "host:82", engine=engine)
    db_ip = eth0(pid_of(f"{pre}db", engine))[0]
    # web may reach db on 80 only; other may not at all; the host on 82 only
    assert wait_reach(engine, web, db_ip, 80, "hi") == "hi"
    assert reach(engine, web, db_ip, 81) == "refused"
    assert reach(engine, other, db_ip, 80) == "refused"
    assert from_host(db_ip, 80) == "refused"
    assert inspect_policy(w, f"{pre}db") == f"ingress from {pre}web:80, host:82; egress unrestricted"
    # a connection the new policy still allows lives through the update
    with socket.create_connection((db_ip, 82), timeout=5) as s:
        s.settimeout(5)
        s.sendall(b"one\n")
        assert s.recv(100) == b"one\n"
        p = subprocess.run([*CNIRUN, "update", f"{pre}db", "--ingress-allow", f"{pre}other:81", "--ingress-allow",
                            "host:82"], env={**w.env, "CNIRUN_TRACE": "1"}, capture_output=True, text=True, timeout=60)
        assert p.returncode == 0, p.stderr
        assert f"ingress from {pre}other:81, host:82" in p.stdout, p.stdout
        # the plugin's ADD alone replaces the table (no DEL: no moment without a policy), run in cnirun's process
        calls = [ln for ln in p.stderr.splitlines() if " plugin " in ln]
        assert len(calls) == 1 and "plugin ADD" in calls[0] and "in process" in calls[0], p.stderr
        s.sendall(b"two\n")
        assert s.recv(100) == b"two\n"
    assert reach(engine, web, db_ip, 80) == "refused"
    assert reach(engine, other, db_ip, 81) == "hi"
    assert eth0(pid_of(f"{pre}db", engine))[0] == db_ip  # the address stays
    # nobody: no peer at all; none: the policy gone, everyone allowed again
    p = w.cnirun("update", f"{pre}db", "--ingress-allow", "nobody")
    assert p.returncode == 0 and "ingress from nobody" in p.stdout, (p.stdout, p.stderr)
    assert reach(engine, other, db_ip, 81) == "refused"
    p = w.cnirun("update", f"{pre}db", "--ingress-allow", "none")
    assert p.returncode == 0 and "no firewall policy" in p.stdout, (p.stdout, p.stderr)
    assert reach(engine, web, db_ip, 80) == "hi" and from_host(db_ip, 80) == "hi"
    assert inspect_policy(w, f"{pre}db") == ""


@needs_docker
def test_docker_ingress_by_name_and_port_then_update_live(dworld: World) -> None:
    """Docker (sandbox mode): --ingress-allow by container name and port and `host`; the other container,
    the other port and the host on a port not named are refused; `cnirun update` replaces the list live
    (an allowed connection survives it, the address stays), `nobody` refuses everyone, `none` removes it;
    inspect shows it. Then rm -f leaves nothing."""
    _ingress_by_name_port_and_update(dworld, "docker")


@needs_podman
def test_podman_ingress_by_name_and_port_then_update_live(pworld: World) -> None:
    """As the Docker test, for `cnirun run` on Podman."""
    _ingress_by_name_port_and_update(pworld, "podman")


@needs_docker
def test_egress_allow_list_keeps_dns_and_connect_carries_the_policy(dworld: World) -> None:
    """--egress-allow: the container reaches only the peers named (by name, and by CIDR with a port); names
    still resolve through the network's resolver; `network connect` to a network with the plugin applies
    the same policy there, and to one without the plugin is refused with one line."""
    w = dworld
    pre = w.name_prefix
    start_server(w, f"{pre}queue")
    start_server(w, f"{pre}db")
    db_ip = eth0(pid_of(f"{pre}db"))[0]
    worker = run_detached(w, f"{pre}worker", "--egress-allow", f"{pre}queue", "--egress-allow", f"{db_ip}/32:81")
    assert wait_reach("docker", worker, f"{pre}queue", 80, "hi") == "hi"  # by name: DNS works under egress
    assert reach("docker", worker, db_ip, 81) == "hi"
    assert reach("docker", worker, db_ip, 80) == "refused"
    # connect: the policy follows onto the new network; a network without the plugin is refused
    b = f"t237-{w.n}-b"
    p = w.cnirun("network", "connect", b, f"{pre}worker")
    assert p.returncode == 0, p.stderr
    rows = json.loads(w.cnirun("inspect", f"{pre}worker").stdout)
    assert [a["policy"] for a in rows["attachments"]] == [rows["policy"]] * 2 and rows["policy"].startswith(
        f"ingress unrestricted; egress to {pre}queue, {db_ip}/32:81"), rows["policy"]
    c = f"t237-{w.n}-c"
    p = w.cnirun("network", "connect", c, f"{pre}worker")
    assert p.returncode != 0 and p.stderr.count("\n") == 1 and "no cnirun-policy plugin" in p.stderr, p.stderr
    subprocess.run(["docker", "rm", "-f", f"{pre}worker", f"{pre}queue", f"{pre}db"], capture_output=True)
    w.assert_clean(within=15)


@needs_docker
def test_bad_policies_are_one_line_and_make_nothing(dworld: World) -> None:
    """A malformed CIDR, port or protocol, none beside peers, a network without the plugin: one line, exit 125, no container, nothing on the host; an unknown name is allowed (it may start later)."""
    w = dworld
    pre = w.name_prefix
    c = f"t237-{w.n}-c"
    for args, needle in ((["--ingress-allow", "10.0.0.0/33"], "10.0.0.0/33"),
                         (["--egress-allow", "db:70000"], "is not a port"),
                         (["--egress-allow", "db:80/icmp"], "icmp"),
                         (["--ingress-allow", "none", "--ingress-allow", "db"], "stands alone"),
                         (["--network", c, "--ingress-allow", "db"], "cnirun-policy plugin")):
        p = w.cnirun("run", "--rm", "--name", f"{pre}bad", *args, "busybox", "true")
        assert p.returncode == 125 and p.stderr.count("\n") == 1 and needle in p.stderr, (args, p.stderr)
        assert "Traceback" not in p.stderr
    left = subprocess.run(["docker", "ps", "-aq", "--filter", f"name={pre}bad"], capture_output=True, text=True)
    assert left.stdout.strip() == ""
    p = w.cnirun("run", "--rm", "--ingress-allow", "not-started-yet:80", "busybox", "true")
    assert p.returncode == 0, p.stderr
    for args in ((), ("--ingress-allow", "x:0"), ("--egress-allow",)):
        p = w.cnirun("update", f"{pre}nosuch", *args)
        assert p.returncode != 0 and p.stderr.count("\n") == 1 and "Traceback" not in p.stderr, (args, p.stderr)
    w.assert_clean(within=15)


@needs_docker
def test_hook_mode_labels_update_and_restart(dworld: World) -> None:
    """Hook mode: --ingress-allow becomes the cnirun.ingress-allow label the hook attaches with; `cnirun update`
    changes it live and a `docker restart` (attach from the labels, then what update recorded) keeps the
    updated one; a plain `docker run --runtime cnirun` with the labels gets it; a bad label value fails
    the start with the label's name and leaves nothing."""
    from test_network_rates import docker_runtime_installed

    w = dworld
    pre = w.name_prefix
    with docker_runtime_installed(w, pre):
        web = run_detached(w, f"{pre}web")
        p = w.cnirun("run", "-d", "--mode", "hook", "--name", f"{pre}db", "--ingress-allow", f"{pre}web:80",
                     "busybox", *SERVER, timeout=120)
        assert p.returncode == 0, p.stderr
        db_ip = eth0(pid_of(f"{pre}db"))[0]
        assert wait_reach("docker", web, db_ip, 80, "hi") == "hi"
        assert reach("docker", web, db_ip, 81) == "refused"
        p = w.cnirun("update", f"{pre}db", "--ingress-allow", f"{pre}web:81")
        assert p.returncode == 0, p.stderr
        r = subprocess.run(["docker", "restart", "-t", "1", f"{pre}db"], capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, r.stderr
        db_ip = eth0(pid_of(f"{pre}db"))[0]
        assert wait_reach("docker", web, db_ip, 81, "hi") == "hi"
        assert reach("docker", web, db_ip, 80) == "refused"
        # the labels, as other tools hand them over
        p = subprocess.run(["docker", "run", "-d", "--runtime", "cnirun", "--network", "none", "--name", f"{pre}lab",
                            "--label", f"cnirun.networks={w.net}", "--label", "cnirun.ingress-allow=host:80 host:82",
                            "busybox", *SERVER], capture_output=True, text=True, env=w.env)
        assert p.returncode == 0, p.stderr
        lab_ip = eth0(pid_of(f"{pre}lab"))[0]
        deadline = time.monotonic() + 10
        while from_host(lab_ip, 80) != "hi" and time.monotonic() < deadline:
            time.sleep(0.2)
        assert from_host(lab_ip, 80) == "hi" and from_host(lab_ip, 81) == "refused"
        assert reach("docker", web, lab_ip, 80) == "refused"
        bad = subprocess.run(["docker", "run", "--rm", "--runtime", "cnirun", "--network", "none",
                              "--label", f"cnirun.networks={w.net}", "--label", "cnirun.ingress-allow=10.0.0.0/33",
                              "busybox", "true"], capture_output=True, text=True, env=w.env)
        assert bad.returncode != 0 and "cnirun.ingress-allow" in bad.stderr, bad.stderr
        subprocess.run(["docker", "rm", "-f", f"{pre}db", f"{pre}web", f"{pre}lab"], capture_output=True)
        w.assert_clean(within=15)


@needs_docker
def test_sigkill_of_update_at_any_moment_then_rm_and_gc_leave_nothing(dworld: World) -> None:
    """`cnirun update --ingress-allow` killed (SIGKILL) at moments through its work, six times: the container
    keeps a policy that is the old or the new one (never none, never a half of each), a later update
    finishes the change, and `docker rm -f` then `cnirun gc` leave no policy record, no rule, nothing."""
    import signal

    w = dworld
    pre = w.name_prefix
    start_server(w, f"{pre}db", "--ingress-allow", "host:80")
    db_ip = eth0(pid_of(f"{pre}db"))[0]
    deadline = time.monotonic() + 10
    while from_host(db_ip, 80) != "hi" and time.monotonic() < deadline:
        time.sleep(0.2)
    assert from_host(db_ip, 80) == "hi" and from_host(db_ip, 81) == "refused"
    for i, delay in enumerate((0.05, 0.1, 0.15, 0.2, 0.3, 0.45)):
        port = 81 if i % 2 == 0 else 80
        p = w.popen("update", f"{pre}db", "--ingress-allow", f"host:{port}", stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL)
        time.sleep(delay)
        p.send_signal(signal.SIGKILL)
        p.wait()
        got = inspect_policy(w, f"{pre}db")
        assert got in ("ingress from host:80; egress unrestricted", "ingress from host:81; egress unrestricted"), got
    p = w.cnirun("update", f"{pre}db", "--ingress-allow", "host:81")
    assert p.returncode == 0, p.stderr
    assert from_host(db_ip, 81) == "hi" and from_host(db_ip, 80) == "refused"
    records = w.state_dir / "policies"
    assert len(list(records.iterdir())) == 1  # the attachment's record: it names the table until DEL
    subprocess.run(["docker", "rm", "-f", f"{pre}db"], capture_output=True)
    g = w.cnirun("gc")
    assert g.returncode == 0, g.stderr
    assert not records.is_dir() or not list(records.iterdir()), list(records.iterdir())
    w.assert_clean(within=15)
