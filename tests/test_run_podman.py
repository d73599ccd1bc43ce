"""`cnirun --engine podman`: real podman, real plugins (10.132.N.0/24)."""
from __future__ import annotations

import ipaddress
import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from conftest import CNIRUN, REPO, World, _make_world, first_address, links, needs_podman, needs_root, world_fixture

pytestmark = [needs_root, needs_podman]


def test_address_in_subnet(podman_world: World) -> None:
    r = podman_world.cnirun("--rm", "busybox", "sh", "-c", "ip -o -4 addr show eth0; hostname; cat /etc/hosts")
    assert r.returncode == 0, r.stderr
    addr = first_address(r.stdout)
    assert ipaddress.ip_interface(addr).ip in ipaddress.ip_network(podman_world.subnet)
    assert f"{addr.split('/')[0]}\t{r.stdout.splitlines()[1]}" in r.stdout


@pytest.mark.parametrize("cmd,code", [(["true"], 0), (["sh", "-c", "exit 3"], 3), (["/etc"], 126),
                                      (["no-such-command"], 127)])
def test_exit_codes(podman_world: World, cmd: list[str], code: int) -> None:
    r = podman_world.cnirun("--rm", "busybox", *cmd)
    assert r.returncode == code, r.stderr


def test_two_containers_reach_each_other(podman_world: World) -> None:
    a = podman_world.cnirun("-d", "--rm", "busybox", "sleep", "60")
    assert a.returncode == 0, a.stderr
    cid = a.stdout.strip()
    try:
        info = json.loads(podman_world.cnirun("inspect", cid[:12]).stdout)
        ip = info["attachments"][0]["addresses"][0].split("/")[0]
        b = podman_world.cnirun("--rm", "--cap-add", "NET_RAW", "busybox", "ping", "-c", "1", "-W", "3", ip)
        assert b.returncode == 0, b.stdout + b.stderr
    finally:
        subprocess.run(["podman", "rm", "-f", cid], capture_output=True)


def test_foreground_run_returns_before_its_del_and_the_del_finishes(podman_world: World) -> None:
    """The container's exit status comes back once `podman run` returned it; the DEL (here 3 s long: a noop
    plugin that sleeps on DEL) goes on in the background, holding the run's state, and leaves nothing."""
    w = podman_world
    debug = w.chain_noop({"commands": {"DEL": {"sleep": 3}}})
    t = time.monotonic()
    r = w.cnirun("--rm", "busybox", "sh", "-c", "exit 7")
    took = time.monotonic() - t
    assert r.returncode == 7, r.stderr
    assert took < 2.5, took  # not after the 3 s DEL
    assert w.leftovers()  # the DEL is still under way
    w.assert_clean(within=15.0)
    dels = [json.loads(line)["command"] for line in Path(f"{debug}.log").read_text().splitlines()]
    assert dels.count("DEL") == 1 and "ADD" in dels, dels


def test_detached_then_rm_f_tears_down(podman_world: World) -> None:
    r = podman_world.cnirun("-d", "busybox", "sleep", "60")
    assert r.returncode == 0, r.stderr
    cid = r.stdout.strip()
    time.sleep(0.5)
    assert podman_world.leftovers()
    subprocess.run(["podman", "rm", "-f", cid], check=True, capture_output=True)
    podman_world.assert_clean(within=8.0)


def test_sigkill_then_gc_leaves_nothing(podman_world: World) -> None:
    p = podman_world.popen("--rm", "busybox", "sleep", "60", stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    podman_world.wait_for_cache_file()
    time.sleep(1.0)
    p.send_signal(signal.SIGKILL)
    p.wait()
    g = podman_world.cnirun("gc")
    assert g.returncode == 0, g.stderr
    podman_world.assert_clean(within=5.0)


def test_failing_plugin_leaves_nothing(podman_world: World) -> None:
    podman_world.fail_adds_with_noop()
    r = podman_world.cnirun("--rm", "busybox", "true")
    assert r.returncode == 125 and 'type="noop"' in r.stderr and "code 11" in r.stderr
    podman_world.assert_clean()


def test_detached_restart_and_stop_start_keep_the_network(podman_world: World) -> None:
    from test_run_docker import _eth0_of

    r = podman_world.cnirun("-d", "busybox", "sleep", "300")
    assert r.returncode == 0, r.stderr
    cid = r.stdout.strip()
    try:
        addr = _eth0_of("podman", cid)
        for _ in range(2):
            subprocess.run(["podman", "restart", "-t", "0", cid], check=True, capture_output=True)
            time.sleep(1.0)  # the test: the watcher has seen "died" by now and must have left the network alone
            assert _eth0_of("podman", cid) == addr
        subprocess.run(["podman", "stop", "-t", "0", cid], check=True, capture_output=True)
        time.sleep(1.0)  # the test: as after a restart, a stop is no reason to tear down
        assert podman_world.leftovers(), "a stopped container keeps its network until it is removed"
        s = subprocess.run(["podman", "start", cid], capture_output=True, text=True)
        assert s.returncode == 0, s.stderr
        assert _eth0_of("podman", cid) == addr
    finally:
        subprocess.run(["podman", "rm", "-f", "-t", "0", cid], capture_output=True)
    podman_world.assert_clean(within=10.0)


def test_reboot_then_gc_frees_everything(podman_world: World) -> None:
    import shutil

    r = podman_world.cnirun("-d", "busybox", "sleep", "300")
    assert r.returncode == 0, r.stderr
    cid = r.stdout.strip()
    podman_world.stop_watcher(wait=5.0)
    meta = json.loads(next((podman_world.state_dir / "containers").glob("*/meta.json")).read_text())
    subprocess.run(["podman", "rm", "-f", "-t", "0", cid], check=True, capture_output=True)
    subprocess.run(["ip", "netns", "delete", meta["netns"].rsplit("/", 1)[1]], check=True)
    shutil.rmtree(podman_world.state_dir)
    podman_world.state_dir.mkdir()
    g = podman_world.cnirun("gc")
    assert g.returncode == 0 and "DEL" in g.stdout, g.stdout + g.stderr
    podman_world.assert_clean()


def test_failed_detached_run_leaves_no_container(tmp_path: Path) -> None:
    """Podman -d: a failed ADD (full /30, the gateway asked for) leaves no container, the name free."""
    from test_run_docker import _tiny_world, failed_detached_runs_leave_nothing

    w = _tiny_world(tmp_path, engine="podman")
    try:
        failed_detached_runs_leave_nothing(w)
    finally:
        w.finish()


tc_world = world_fixture(_make_world, 212, "podman: a netns lost while stopped", net="tc-{n}", bridge="ctc{n}",
                         subnet="10.212.{n}.0/24", n=51, engine="podman", name_prefix="tc-pod-{n}",
                         extra=[{"type": "tuning", "capabilities": {"mac": True}}])


def _sleeper(w: World) -> str:
    """`cnirun -d` of a sleeping busybox named after the World; its container ID."""
    r = w.cnirun("-d", "--name", w.name_prefix, "busybox", "sleep", "300")
    assert r.returncode == 0, r.stderr
    return r.stdout.strip()


@pytest.mark.parametrize("watcher", [True, False], ids=["watcher", "no-watcher"])
def test_stopped_container_whose_netns_is_gone_starts_again_after_gc(tc_world: World, watcher: bool) -> None:
    """A reboot empties /run: the netns of a stopped `cnirun -d` Podman container is deleted, then `cnirun gc`
    (with the watcher running, or none, as after a reboot): `podman start` works, on the same address and MAC."""
    w = tc_world
    cid = _sleeper(w)
    try:
        before = links("podman", cid)
        meta = json.loads(next((w.state_dir / "containers").glob("*/meta.json")).read_text())
        subprocess.run(["podman", "stop", "-t", "0", cid], check=True, capture_output=True)
        subprocess.run(["ip", "netns", "delete", meta["netns"].rsplit("/", 1)[1]], check=True)
        if not watcher:
            w.stop_watcher(wait=5.0)
        g = w.cnirun("gc")
        assert g.returncode == 0, g.stderr
        assert "has not" not in g.stdout and "cannot" not in g.stdout, g.stdout
        if not watcher:  # else the watcher may have made it before gc looked
            assert f"made the netns {meta['netns']} again" in g.stdout, g.stdout
        assert Path(meta["netns"]).exists()
        s = subprocess.run(["podman", "start", cid], capture_output=True, text=True, timeout=60)
        assert s.returncode == 0, s.stderr
        assert links("podman", cid) == before
    finally:
        subprocess.run(["podman", "rm", "-f", "-t", "0", cid], capture_output=True)
    w.assert_clean(within=10.0)


@pytest.mark.parametrize("watcher", [True, False], ids=["watcher", "no-watcher"])
def test_a_running_containers_lost_netns_name_comes_back_without_touching_its_links(
        tc_world: World, watcher: bool) -> None:
    """`ip netns delete` of a running `cnirun -d` Podman container's netns removes only the name: the
    watcher (or gc, with none) names the same namespace again, and the container keeps its links, its
    address and its host veth (re-attaching would have DELed the running container's network)."""
    w = tc_world
    cid = _sleeper(w)
    try:
        before = links("podman", cid)
        meta = json.loads(next((w.state_dir / "containers").glob("*/meta.json")).read_text())
        veths = _ports_of(w.bridge)
        assert len(veths) == 1, veths
        if not watcher:
            w.stop_watcher(wait=5.0)
        subprocess.run(["ip", "netns", "delete", meta["netns"].rsplit("/", 1)[1]], check=True)
        if watcher:
            deadline = time.monotonic() + 10.0
            while not Path(meta["netns"]).exists() and time.monotonic() < deadline:
                time.sleep(0.05)
        else:
            g = w.cnirun("gc")
            assert g.returncode == 0 and f"named the running container's netns {meta['netns']} again" in g.stdout, \
                (g.stdout, g.stderr)
        st = os.stat(meta["netns"])
        assert f"{st.st_dev}:{st.st_ino}" == meta["netns_id"]
        assert links("podman", cid) == before
        assert _ports_of(w.bridge) == veths
    finally:
        subprocess.run(["podman", "rm", "-f", "-t", "0", cid], capture_output=True)
    w.assert_clean(within=10.0)


def _ports_of(bridge: str) -> list[str]:
    out = subprocess.run(["ip", "-br", "link", "show", "master", bridge], capture_output=True, text=True).stdout
    return [line.split()[0] for line in out.splitlines()]


def test_restarts_keep_addresses_and_macs(tc_world: World) -> None:
    """`cnirun -d` on Podman (a named netns): eth0 (the run's network) and eth1 (`network connect`) keep their
    address and MAC over 6 `podman restart`s and a stop + start."""
    from test_run_docker import detached_restarts_keep_links

    first = detached_restarts_keep_links(tc_world, "podman", [], "tc-52", "10.212.52.0/24")
    assert first[0][0].startswith("10.212.51.")


def in_storage(prefix: str) -> str:
    """Podman's containers named `prefix`*, those only `podman ps --external` lists (storage alone) included."""
    return subprocess.run(["podman", "ps", "-a", "--external", "--format", "{{.Names}} {{.Status}}",
                           "--filter", f"name={prefix}"], capture_output=True, text=True).stdout.strip()


def test_a_failed_undo_is_reported_with_the_error_and_gc_finishes_it(tmp_path: Path) -> None:
    """A run whose ADD fails and whose undo cannot remove its container (podman rm failing here, as it
    does for a moment when its shm is still mounted) prints the ADD error and the teardown line, exits
    125 and keeps its state; `cnirun gc` then removes the container and the state."""
    from test_run_docker import _tiny_world

    w = _tiny_world(tmp_path, engine="podman")
    first = w.cnirun("-d", "--name", f"{w.name_prefix}a", "busybox", "sleep", "300")
    assert first.returncode == 0, first.stderr
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "podman").write_text('#!/bin/sh\n[ "$1" = rm ] && { echo "Error: refused by the test" >&2; exit 1; }\n'
                                 'exec /usr/bin/podman "$@"\n')
    (fake / "podman").chmod(0o755)
    try:
        r = subprocess.run([*CNIRUN, "--rm", "--name", f"{w.name_prefix}x", "busybox", "true"],
                           env={**w.env, "PATH": f"{fake}:{w.env['PATH']}"}, capture_output=True, text=True,
                           timeout=60, cwd=REPO)
        lines = r.stderr.strip().splitlines()
        assert r.returncode == 125, r.stderr
        assert any("no IP addresses available" in line for line in lines), r.stderr
        assert any(line.startswith("cnirun: teardown: podman rm") and "refused by the test" in line
                   for line in lines), r.stderr
        assert len(lines) == 2, r.stderr
        kept = [p.name for p in (w.state_dir / "containers").iterdir() if not p.name.startswith(".")]
        assert len(kept) == 2, kept  # the first run's and the failed one's
        g = w.cnirun("gc")
        assert g.returncode == 0, g.stderr
        assert in_storage(f"{w.name_prefix}x") == ""
    finally:
        subprocess.run(["podman", "rm", "-f", "-t", "0", first.stdout.strip()], capture_output=True)
        w.finish()


def test_failed_foreground_runs_leave_no_container_not_even_in_storage(tmp_path: Path) -> None:
    """Podman in the foreground, --rm and --name, on a full /30, six times: one line and 125 each, and
    nothing left, not even a container only `podman ps --external` lists (podman run killed between
    creating the container's storage and its record: the name stays taken forever)."""
    from test_run_docker import _tiny_world

    w = _tiny_world(tmp_path, engine="podman")
    first = w.cnirun("-d", "--name", f"{w.name_prefix}a", "busybox", "sleep", "300")
    assert first.returncode == 0, first.stderr
    try:
        for i in range(6):
            r = w.cnirun("--rm", "--name", f"{w.name_prefix}x{i % 2}", "busybox", "true")
            assert r.returncode == 125 and "no IP addresses available" in r.stderr, r.stderr
            assert len(r.stderr.strip().splitlines()) == 1, r.stderr
        assert in_storage(f"{w.name_prefix}x") == ""
    finally:
        subprocess.run(["podman", "rm", "-f", "-t", "0", first.stdout.strip()], capture_output=True)
        w.finish()
