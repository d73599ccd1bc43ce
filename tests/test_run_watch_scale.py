"""The -d watcher with many containers: `docker rm -f` of all at once is torn down concurrently.

Docker sandbox -d runs on one network; a few are removed one by one (the
time one teardown takes, event to nothing left), then the rest with one
`docker rm -f`: all of them are gone (run state, attachments, veths,
reservations, helpers) in well under the time the same teardowns take one
after the other. J28_N sets how many (default 30; the bench's measure uses
50). World: networks j28-N, bridges j28bN, 10.248.N.0/24, containers j28-N-*.
"""
from __future__ import annotations

import os
import signal
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from _wait import wait_for
from conftest import World, _make_world, needs_docker, needs_root, world_fixture

pytestmark = [needs_root, needs_docker, pytest.mark.alone]

N = int(os.environ.get("J28_N", "30"))
ONE_BY_ONE = 3  # removed one after the other first: the serial time of one teardown

sworld = world_fixture(_make_world, 248, "watch scale", net="j28-{n}", bridge="j28b{n}", subnet="10.248.{n}.0/24",
                       name_prefix="j28-{n}-")


def _start(w: World, i: int) -> str:
    p = w.cnirun("--mode", "sandbox", "-d", "--name", f"{w.name_prefix}{i}", "busybox", "sleep", "600", timeout=180)
    assert p.returncode == 0, p.stderr
    return p.stdout.strip()


def _runs(w: World) -> int:
    states = w.state_dir / "containers"
    return len([p for p in states.iterdir() if not p.name.startswith(".")]) if states.is_dir() else 0


def _remove(w: World, cids: list[str]) -> float:
    """`docker rm -f` of `cids` at once; seconds from its return until their runs' state is gone (a run's
    teardown removes it last: after the DELs and the helper)."""
    left = _runs(w) - len(cids)
    t0 = time.monotonic()
    subprocess.run(["docker", "rm", "-f", *cids], check=True, capture_output=True, timeout=300)
    t1 = time.monotonic()
    wait_for(lambda: _runs(w) <= left, 240.0, "the removed containers' runs torn down", step=0.05)
    print(f"rm -f of {len(cids)}: {t1 - t0:.2f} s, torn down {time.monotonic() - t1:.2f} s after it returned")
    return time.monotonic() - t1


def test_rm_of_many_detached_containers_is_torn_down_concurrently(sworld: World) -> None:
    """N Docker sandbox -d containers removed: the first ONE_BY_ONE one after the other (each waited for
    until its run is torn down), the rest with one `docker rm -f`; the rest are all torn down in less
    than half the time their teardowns take one after the other, and nothing of any is left."""
    w = sworld
    with ThreadPoolExecutor(4) as pool:
        cids = list(pool.map(lambda i: _start(w, i), range(N)))
    assert len(set(cids)) == N and _runs(w) == N
    serial = [_remove(w, [cid]) for cid in cids[:ONE_BY_ONE]]
    per_run = sorted(serial)[len(serial) // 2]
    rest = cids[ONE_BY_ONE:]
    took = _remove(w, rest)
    w.assert_clean(within=10.0)
    print(f"\none teardown {per_run:.2f} s (of {[round(s, 2) for s in serial]}); rm -f of {len(rest)}: "
          f"{took:.2f} s, one after the other {per_run * len(rest):.1f} s")
    assert took < per_run * len(rest) / 2, (took, per_run)


def test_a_worker_killed_amid_concurrent_teardowns_loses_none(sworld: World) -> None:
    """SIGKILL of the watcher's worker once the first of many removed runs is torn down, the others under
    way: the worker the supervisor starts again finishes every one of them, nothing left."""
    w = sworld
    n = 16
    with ThreadPoolExecutor(4) as pool:
        cids = list(pool.map(lambda i: _start(w, i), range(n)))
    supervisor = int((w.state_dir / "containers" / ".watcher.pid").read_text())
    worker = int(subprocess.run(["pgrep", "-P", str(supervisor)], capture_output=True, text=True).stdout.split()[0])
    subprocess.run(["docker", "rm", "-f", *cids], check=True, capture_output=True, timeout=300)
    wait_for(lambda: _runs(w) < n, 60.0, "the first teardown", step=0.01)
    os.kill(worker, signal.SIGKILL)
    left = _runs(w)
    print(f"killed the worker with {left} of {n} runs left")
    assert left > 0, "every teardown ended before the kill: nothing was cut short"
    w.assert_clean(within=60.0)
    log = (w.state_dir / "containers" / ".watcher.log").read_text()
    assert f"worker ended with -{int(signal.SIGKILL)}; respawning" in log
