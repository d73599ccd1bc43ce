"""cnirun.run.gc and cnirun.run.caches: gc, ps and reload look in the same result caches.

Real plugins; `cnirun exec` stands in for a run (its state records the CNI
paths it started with, as every run's does). Address plan: 10.222.N.0/24,
N from 100 up (connect's tests use N below 100), networks t24b-N, bridges c24bN.
"""
from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

from _parallel import next_n
from _wait import wait_for
from conftest import CNIRUN, World, _make_world, needs_plugins, needs_root, world_fixture
from test_plugins_policy import PolicyWorld, world33  # noqa: F401 (world33: a fixture)

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


def test_gc_removes_the_firewall_policies_of_attachments_that_are_gone(world33: PolicyWorld) -> None:
    """Policy records (<state>/policies) whose attachment is gone: one no cache holds (its netns still there:
    its table is removed too, and the peer it refused gets through), one whose netns is gone (a record left
    by a plugin killed mid-ADD, written by hand), one whose container's netns was deleted (gc's DEL of the
    attachment removes it). gc --dry-run only says so; gc removes exactly those: the live attachment's
    policy stays and still refuses."""
    w = world33
    a_name, b_name, c_name = w.space("a"), w.space("b"), w.space("c")
    b = w.ns("b")
    policy = {"ingress": [{"peer": {"cidr": f"{b}/32"}}]}
    a, c = w.ns("a", policy), w.ns("c", policy)
    w.ns("d", policy)
    subprocess.run(["ip", "netns", "del", w.space("d")], check=True)
    ghost = {"network": w.net, "containerId": w.space("ghost"), "ifname": "eth0",
             "netns": f"/run/netns/{w.space('ghost')}", "netnsId": "1:2", "gateways": [], "policy": policy}
    (w.state_dir / "policies" / f"{w.net}-{w.space('ghost')}-eth0").write_text(json.dumps(ghost))
    entry = w.cache_dir / "results" / f"{w.net}-{a_name}-eth0"
    aside = w.tmp / "a-entry"
    entry.rename(aside)  # a's attachment is in no cache now (put back below for its DEL)
    w.serve("a", 8080)
    w.serve("c", 8080)
    assert len(w.records()) == 4 and w.connect("c", a, 8080) == "refused"
    dry = w.cnirun("gc", "--dry-run")
    assert dry.returncode == 0 and "would remove the firewall policy of " in dry.stdout, dry.stdout
    assert len(w.records()) == 4 and "cnirun_eth0" in w.tables("a")
    p = w.cnirun("gc")
    assert p.returncode == 0, p.stderr
    assert f"removed the firewall policy of {w.net}/{a_name[:12]}/eth0 (no runtime's cache" in p.stdout, p.stdout
    assert f"{w.net}/{w.space('ghost')[:12]}/eth0 (its netns is gone)" in p.stdout, p.stdout
    assert w.records() == [f"{w.net}-{c_name}-eth0"]
    assert "cnirun_" not in w.tables("a") and w.connect("c", a, 8080) == "ok"
    assert "cnirun_eth0" in w.tables("c") and w.connect("a", c, 8080) == "refused" and w.connect("b", c, 8080) == "ok"
    aside.rename(entry)
    assert w.cnirun("gc").stdout.count("firewall policy") == 0


def test_gc_after_an_add_killed_while_the_policy_is_made_leaves_nothing(world33: PolicyWorld) -> None:
    """`cnirun cni add` with a firewall policy SIGKILLed while cnirun-policy makes its table (its nft held:
    the record is written, the table not yet), then the container's netns gone: gc kills the plugin left
    running, DELs the attachment, and no record, table, cache entry, address or rule is left."""
    w = world33
    name = w.space("k")
    subprocess.run(["ip", "netns", "add", name], check=True)
    w.spaces.append(name)
    bin_dir, hold, held = w.tmp / "nft-bin", w.tmp / "hold", w.tmp / "held"
    bin_dir.mkdir()
    (bin_dir / "nft").write_text(f"#!/bin/sh\nif [ -e {hold} ]; then touch {held}; exec sleep 60; fi\n"
                                 f"exec {shutil.which('nft')} \"$@\"\n")
    (bin_dir / "nft").chmod(0o755)
    hold.touch()
    env = dict(w.env, CNI_CONTAINERID=name, PATH=f"{bin_dir}:{w.env['PATH']}",
               CAP_ARGS=json.dumps({"firewallPolicy": {"ingress": []}}))
    add = subprocess.Popen([*CNIRUN, "cni", "add", w.net, f"/run/netns/{name}"], env=env,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(held.exists, 60)
    finally:
        add.kill()
        add.wait()
    hold.unlink()
    assert len(w.records()) == 1 and len(list((w.cache_dir / "results").iterdir())) == 1
    subprocess.run(["ip", "netns", "del", name], check=True)
    p = w.cnirun("gc")
    assert p.returncode == 0 and f"DEL {w.net}/eth0 of {name[:12]}" in p.stdout, p.stdout + p.stderr
    assert w.records() == [] and list((w.cache_dir / "results").iterdir()) == []
    w.assert_clean(within=10)
