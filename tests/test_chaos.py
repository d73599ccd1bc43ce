"""SIGKILL at any moment leaves nothing behind once `cnirun gc` ran (tests/_chaos.py).

30 killed runs (10 per mechanism: Docker sandbox, Docker hook mode, Podman),
6 killed hooks and 6 killed watchers per `make test`; bench/bench_chaos.py
does the same with 200 runs. Subnets: the Worlds' 10.131.N/10.132.N.
"""
from __future__ import annotations

import json
import signal
import subprocess
import time

import pytest

from _chaos import Chaos, chain_with_slow_noop
from _parallel import next_n
from conftest import (HAVE_PODMAN, World, _make_world, docker_runtime_installed, needs_docker, needs_root,
                      world_fixture)

pytestmark = [needs_root, needs_docker, pytest.mark.slow]


def test_sigkill_of_sandbox_runs_then_gc_leaves_nothing(docker_world: World) -> None:
    c = Chaos(docker_world, seed=81)
    c.kill_runs(10, "docker", "sandbox")
    c.assert_clean()


@pytest.mark.skipif(not HAVE_PODMAN, reason="podman with a busybox image not available")
def test_sigkill_of_podman_runs_then_gc_leaves_nothing(podman_world: World) -> None:
    c = Chaos(podman_world, seed=82)
    c.kill_runs(10, "podman")
    c.assert_clean()


def test_sigkill_of_hook_mode_runs_and_of_hooks_then_gc_leaves_nothing(docker_world: World) -> None:
    chain_with_slow_noop(docker_world, 0.5)  # before install: the runtime records CNI_PATH
    c = Chaos(docker_world, seed=83)
    with docker_runtime_installed(docker_world, f"{docker_world.bridge}-chaos-"):
        c.kill_runs(10, "docker", "hook")
        c.kill_hooks(6, slow_plugin_s=0.5)
        c.assert_clean()
    assert c.report["kill_hooks"]["hooks_killed"] >= 3, c.report


def test_sigkill_of_the_watcher_loses_nothing(docker_world: World) -> None:
    c = Chaos(docker_world, seed=84)
    c.kill_watcher(6)
    c.assert_clean()
    assert c.report["kill_watcher"]["watcher_kills"] >= 3, c.report


# 10.211.N.0/24 (N from 70), networks tb-N, bridges ctbN: detached sandbox runs killed at each moment.
tb_world = world_fixture(lambda tmp: _make_world(tmp, 211, "chaos: -d sandbox", n=next_n("211-chaos", 70), net="tb-{n}",
                                                 bridge="ctb{n}", subnet="10.211.{n}.0/24", name_prefix="tb{n}-k"))


def _one_gc_leaves_nothing(w: World, name: str) -> bool:
    """After a killed run: ONE `cnirun gc`, then nothing may be left, unless the run had handed its container
    over (started it, phase "running"): the user's then, until removed. Returns whether it had."""
    g = w.cnirun("gc", timeout=120)
    assert g.returncode == 0, g.stderr
    metas = [json.loads(p.read_text()) for p in (w.state_dir / "containers").glob("*/meta.json")]
    if any(m["phase"] == "running" for m in metas):
        state = subprocess.run(["docker", "inspect", "-f", "{{.State.Status}}", name], capture_output=True,
                               text=True).stdout.strip()
        assert state == "running", f"{name}: a handed-over run whose container is {state!r}: {g.stdout}"
        subprocess.run(["docker", "rm", "-f", name], capture_output=True)
        w.assert_clean(within=15.0)  # the watcher's teardown
        return True
    left = [x for x in w.leftovers() if not x.startswith("netns: ")]  # Docker runs name no netns: Podman's, exec's
    assert not left, f"{name}: one gc left {left}; gc said {g.stdout!r}"
    return False


def test_sigkill_of_a_detached_sandbox_run_at_each_moment_then_one_gc_leaves_nothing(tb_world: World) -> None:
    """`cnirun --mode sandbox -d` SIGKILLed as each of its Engine API calls is answered (dockerd made the
    helper, started it, made the workload, ... and the run never learnt it: a DockerProxy holds the answer
    while the run is killed), then at evenly spaced moments of its life: each time ONE `cnirun gc` leaves
    nothing (helper and workload containers, run state, reservations, rules) unless the run had already
    handed its started container over."""
    import threading

    from _chaos import DockerProxy

    w = tb_world
    lock = threading.Lock()
    calls: list[bytes] = []  # request lines of the calls of the current run
    target = [0]  # kill the run as the answer to its call number target[0] arrives
    victim: list[subprocess.Popen[str]] = []

    def hold(head: bytes, pid: int) -> bool:
        with lock:
            if pid != victim[0].pid:
                return False  # the watcher a handed-over run started: it inherited DOCKER_HOST
            calls.append(head.split(b"\r\n", 1)[0])
            return len(calls) == target[0]

    def kill(head: bytes, answer: bytes) -> None:
        victim[0].send_signal(signal.SIGKILL)
        victim[0].wait()

    proxy = DockerProxy(w.tmp / "d.sock", hold, kill)
    killed_at: list[bytes] = []
    try:
        for k in range(1, 30):
            calls.clear()
            target[0] = k
            name = f"{w.name_prefix}{k}"
            w.env["DOCKER_HOST"] = f"unix://{proxy.path}"
            with lock:  # its first call waits for victim
                victim[:] = [w.popen("--mode", "sandbox", "-d", "--name", name, "busybox", "sleep", "300",
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)]
            del w.env["DOCKER_HOST"]
            rc = victim[0].wait(timeout=120)
            if rc == 0:  # it made fewer calls than k: every call's moment is done
                subprocess.run(["docker", "rm", "-f", name], capture_output=True)
                w.assert_clean(within=15.0)
                break
            assert rc == -signal.SIGKILL, rc
            killed_at.append(calls[k - 1])
            _one_gc_leaves_nothing(w, name)
        _by_the_clock(w)
    finally:
        w.stop_watcher()  # it may be one a handed-over run started, on the proxy
        proxy.close()
    # The helper's create answered, the run killed before it read the ID: the moment of the report.
    assert killed_at[1] == b"POST /containers/create HTTP/1.1", killed_at
    assert len(killed_at) >= 5 and any(c.endswith(b"/start HTTP/1.1") for c in killed_at), killed_at


def _by_the_clock(w: World) -> None:
    """SIGKILL at 8 evenly spaced moments of a run's life (ADD's plugins included), one gc after each."""
    t0 = time.monotonic()
    r = w.cnirun("--mode", "sandbox", "-d", "--name", f"{w.name_prefix}t", "busybox", "sleep", "300")
    horizon = time.monotonic() - t0
    assert r.returncode == 0, r.stderr
    subprocess.run(["docker", "rm", "-f", r.stdout.strip()], capture_output=True)
    w.assert_clean(within=15.0)
    handed = 0
    for i in range(8):
        name = f"{w.name_prefix}t{i}"
        p = w.popen("--mode", "sandbox", "-d", "--name", name, "busybox", "sleep", "300",
                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(horizon * (i + 0.5) / 8)
        p.send_signal(signal.SIGKILL)
        p.wait()
        handed += _one_gc_leaves_nothing(w, name)
    assert handed < 8, "every kill came after the run had handed its container over"
