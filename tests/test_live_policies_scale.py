"""Firewall policies over IPv6 with real traffic, and many containers with policies removed at once.

The lead's end-to-end tests are test_live_policies.py (whose helpers these reuse); here: a dual-stack
network whose chain ends with tuning(mac) + cnirun-policy, a policy by bracketed IPv6 CIDR with a port
and by name, egress by name over IPv6 with DNS; and 100 containers with policies on one network, then
`rm -f` of all of them at once, after which nothing of them is left.
Address plan: 10.238.N.0/24 (network t238-N, bridge c238xN) and 10.238.(100+N).0/24 plus
fd00:238:N::/64 (t238-N-6, c238yN); containers t238-N-*.
"""
from __future__ import annotations

import json
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from _wait import wait_for
from conftest import (World, _make_world, docker_runtime_installed, needs_docker, needs_plugins, needs_root,
                      world_fixture)
from test_live_policies import POLICY, TUNING, reach, start_server, wait_reach
from test_ipv6 import _addr6
from test_network_rates import eth0, pid_of, run_detached

pytestmark = [needs_root, needs_plugins]


def dual_policy_world(tmp_path: Path) -> World:
    """t238-N (IPv4) and the dual-stack t238-N-6, both with tuning(mac) + cnirun-policy at the chain's end."""
    w = _make_world(tmp_path, 238, net="t238-{n}", bridge="c238x{n}", extra=[TUNING, POLICY],
                    name_prefix="t238-{n}-")
    dual = w.add_network(f"t238-{w.n}-6", f"c238y{w.n}", f"10.238.{100 + w.n}.0/24", extra=[TUNING, POLICY])
    dual.subnet6 = f"fd00:238:{w.n:x}::"
    path = Path(w.env["NETCONFPATH"]) / f"{dual.name}.conflist"
    conf = json.loads(path.read_text())
    conf["plugins"][0]["ipam"]["ranges"].append([{"subnet": f"{dual.subnet6}/64"}])
    path.write_text(json.dumps(conf))
    return w


dworld = world_fixture(dual_policy_world)


def addr4(name: str) -> str:
    """The Docker container's IPv4 address on eth0."""
    return eth0(pid_of(name))[0]


@needs_docker
def test_ipv6_policy_by_cidr_and_name_with_real_traffic(dworld: World) -> None:
    """Docker (sandbox mode) on a dual-stack network: --ingress-allow [CIDR6]:80 (bracketed, with a port) and
    NAME:81. A client inside the CIDR reaches the server over IPv6 on 80 and is refused on 81; the named
    client reaches 81 (IPv6 and IPv4) and is refused on 80 (it is outside the CIDR); a client outside
    the CIDR is refused on both. A client with --egress-allow PEER:80 by name reaches the peer over IPv6 on
    80 only and nobody else, and the peer's name still resolves (to its IPv6 address too). rm -f: nothing left."""
    w = dworld
    pre, dual = w.name_prefix, f"t238-{w.n}-6"
    v6 = f"fd00:238:{w.n:x}::"
    inside = f"{v6}1:10"  # in the CIDR below; the others get addresses from the start of the /64
    start_server(w, f"{pre}srv", "--network", dual, "--ingress-allow", f"[{v6}1:0/112]:80",
                 "--ingress-allow", f"{pre}web:81")
    start_server(w, f"{pre}peer", "--network", dual)
    web = run_detached(w, f"{pre}web", "--network", dual)
    far = run_detached(w, f"{pre}out", "--network", dual)
    eg = run_detached(w, f"{pre}eg", "--network", dual, "--egress-allow", f"{pre}peer:80")
    near = run_detached(w, f"{pre}in", "--network", dual, "--ip6", inside)  # last: host-local goes on from it
    srv6, peer6 = _addr6(w, f"{pre}srv"), _addr6(w, f"{pre}peer")
    assert _addr6(w, f"{pre}in") == inside and not _addr6(w, f"{pre}out").startswith(f"{v6}1:")
    # ingress: the CIDR on 80, the name on 81, over IPv6 (busybox nc takes a bare IPv6 address)
    assert wait_reach("docker", near, srv6, 80, "hi") == "hi"
    assert reach("docker", near, srv6, 81) == "refused"
    assert wait_reach("docker", web, srv6, 81, "hi") == "hi"
    assert reach("docker", web, addr4(f"{pre}srv"), 81) == "hi"
    assert reach("docker", web, srv6, 80) == "refused"
    assert reach("docker", far, srv6, 80) == "refused"
    assert reach("docker", far, srv6, 81) == "refused"
    # egress by name over IPv6: the peer on 80 only, nobody else; its name still resolves, AAAA included
    assert wait_reach("docker", eg, peer6, 80, "hi") == "hi"
    assert reach("docker", eg, peer6, 81) == "refused"
    assert reach("docker", eg, srv6, 80) == "refused"
    look = subprocess.run(["docker", "exec", eg, "nslookup", f"{pre}peer"], capture_output=True, text=True,
                          timeout=30)
    assert peer6 in look.stdout and addr4(f"{pre}peer") in look.stdout, look.stdout + look.stderr
    assert reach("docker", eg, f"{pre}peer", 80) == "hi"
    names = [f"{pre}{x}" for x in ("srv", "peer", "web", "in", "out", "eg")]
    subprocess.run(["docker", "rm", "-f", *names], capture_output=True, timeout=120)
    w.assert_clean(within=15)


SCALE = 100
# Hook mode: on the 2-core test VM it was the fastest way to start and remove 100 (start 42 s, nothing left
# 14 s after `docker rm -f`); sandbox mode took 58 s and 60 s (a pause container per run, removed by the
# watcher after rm -f), Podman 69 s and 157 s (`podman rm -f` itself).
SCALE_MODE = ("--mode", "hook")
SCALE_JOBS = 4  # runs at once: as a user's script or compose would start them


def _start_many(w: World, names: list[str]) -> float:
    """`cnirun run -d` of every name, SCALE_JOBS at a time, each allowing in the next two names and out to
    the whole network; the seconds it took."""
    net = w.net

    def start(i: int) -> None:
        a, b = names[(i + 1) % len(names)], names[(i + 2) % len(names)]
        run_detached(w, names[i], *SCALE_MODE, "--ingress-allow", a, "--ingress-allow", b,
                     "--egress-allow", f"net:{net}")

    t0 = time.monotonic()
    with ThreadPoolExecutor(SCALE_JOBS) as pool:
        list(pool.map(start, range(len(names))))
    return time.monotonic() - t0


@pytest.mark.alone  # loads the machine, and its teardown has a budget
@needs_docker
def test_100_containers_with_policies_then_rm_f_leave_nothing(dworld: World) -> None:
    """100 `cnirun run -d` containers on one network, each with --ingress-allow naming the next two and
    --egress-allow net:NETWORK; three pairs checked with real traffic (the two named may connect, a third
    container may not); then `docker rm -f` of all of them at once: within 30 s no policy record, netns,
    veth, container, state dir or reservation is left. Prints how long the start and the teardown took."""
    w = dworld
    names = [f"{w.name_prefix}c{i:03d}" for i in range(SCALE)]
    with docker_runtime_installed(w, w.name_prefix):
        try:
            _many_then_rm_f(w, names)
        except BaseException:
            # The World's end allows 10 s for a teardown: give 100 of them time before the runtime goes.
            subprocess.run(["docker", "rm", "-f", *names], capture_output=True, timeout=300)
            wait_for(lambda: not w.leftovers(), 120, step=1)  # the World's end then says what is left
            raise


def _many_then_rm_f(w: World, names: list[str]) -> None:
    started = _start_many(w, names)
    print(f"\n{SCALE} containers with policies (docker {' '.join(SCALE_MODE)}, {SCALE_JOBS} at a time) started "
          f"in {started:.1f} s")
    for i in (0, 41, 97):
        target = names[i]
        subprocess.run(["docker", "exec", "-d", target, "nc", "-ll", "-p", "80", "-e", "echo", "hi"], check=True)
        ip = addr4(target)
        allowed, other = [names[(i + k) % SCALE] for k in (1, 2)], names[(i + 3) % SCALE]
        assert wait_reach("docker", allowed[0], ip, 80, "hi") == "hi", (allowed[0], target)
        assert reach("docker", allowed[1], ip, 80) == "hi", (allowed[1], target)
        assert reach("docker", other, ip, 80) == "refused", (other, target)
    records = w.state_dir / "policies"
    assert len(list(records.iterdir())) == SCALE
    t0 = time.monotonic()
    rm = subprocess.run(["docker", "rm", "-f", *names], capture_output=True, text=True, timeout=300)
    assert rm.returncode == 0, rm.stderr
    removed = time.monotonic() - t0
    wait_for(lambda: not w.leftovers() and not list(records.glob("*")), 30, step=0.25)
    w.assert_clean()
    assert not list(records.glob("*")), sorted(p.name for p in records.glob("*"))
    print(f"docker rm -f of all {SCALE} took {removed:.1f} s; nothing left after {time.monotonic() - t0:.1f} s")

