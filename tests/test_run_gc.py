"""cnirun.run.gc and cnirun.run.caches: gc, ps and reload look in the same result caches.

Real plugins; `cnirun exec` stands in for a run (its state records the CNI
paths it started with, as every run's does). Address plan: 10.222.N.0/24,
N from 100 up (connect's tests use N below 100), networks t24b-N, bridges c24bN.
"""
from __future__ import annotations

import json
import subprocess
from pathlib import Path

from _parallel import next_n
from _wait import wait_for
from conftest import CNIRUN, World, _make_world, needs_plugins, needs_root, world_fixture

pytestmark = [needs_root, needs_plugins]



def _world(tmp_path: Path) -> World:
    return _make_world(tmp_path, 222, "gc", net="t24b-{n}", bridge="c24b{n}", subnet="10.222.{n}.0/24",
                       n=next_n("222-gc", 100))


world = world_fixture(_world)


def test_gc_and_ps_find_a_gone_container_in_a_runs_recorded_cache(world: World) -> None:
    """A run started with another CNI_CACHE_DIR than gc's shell records it; a container attached in that
    cache whose netns is gone is listed by ps and DELed by gc (reservation, rules, cache file), while
    the run itself, still running, is left alone."""
    w = world
    other = w.tmp / "run-cache"
    env = {**w.env, "CNI_CACHE_DIR": str(other)}
    results = other / "results"
    run = subprocess.Popen([*CNIRUN, "exec", "--", "cat"], env=env, stdin=subprocess.PIPE,
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    ns = f"t24b-{w.n}-gone"
    try:
        assert wait_for(lambda: results.is_dir() and len(list(results.iterdir())) == 1, 30), run.stderr
        subprocess.run(["ip", "netns", "add", ns], check=True)
        try:
            add = subprocess.run([*CNIRUN, "cni", "add", w.net, ns], env=env, capture_output=True, text=True,
                                 timeout=60)
            assert add.returncode == 0, add.stderr
        finally:
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)
        gone = next(json.loads(p.read_text())["containerId"] for p in results.iterdir()
                    if json.loads(p.read_text())["containerId"].startswith("cnitool-"))
        ps = w.cnirun("ps", "--format", "json")
        assert ps.returncode == 0, ps.stderr
        assert gone in [r["container"] for r in json.loads(ps.stdout)]
        gc = w.cnirun("gc")
        assert gc.returncode == 0, gc.stderr
        assert f"DEL {w.net}/eth0 of {gone[:12]}" in gc.stdout.splitlines(), gc.stdout
        assert run.poll() is None  # the run's own attachment stays: its command still runs
        assert [json.loads(p.read_text())["containerId"] for p in results.iterdir()] != [gone]
        assert len(list(results.iterdir())) == 1
    finally:
        run.stdin.close()  # type: ignore[union-attr]
        run.wait(timeout=60)
    assert run.returncode == 0, run.stderr.read()  # type: ignore[union-attr]
    assert not list(results.iterdir())
    w.assert_clean()

