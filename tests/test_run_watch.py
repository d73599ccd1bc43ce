"""The -d watcher: its worker without an engine, and its processes across upgrades on the real engines.

Without an engine (a recording engine stands in, the plugins are noop): a
stopped container keeps its networks until it is removed; an engine that
cannot be reached keeps the worker waiting instead of idle. The real
engines' side (docker restart, stop/start, a dockerd restart, podman
restart) is in test_run_docker.py and test_run_podman.py.

On Docker: a watcher an earlier cnirun started is replaced by the current
one, which tears its run down; a running watcher outlives the files of its
modules; and none imports a `cnirun/` folder of the directory `cnirun -d`
runs in. Their Worlds: networks t24j-N, bridges c24jN, 10.230.N.0/24.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from cnirun.core.process import process_start
from cnirun.run import watch
from cnirun.state.runs import RunMeta, RunState, list_states

from _core_fixtures import CoreEnv, core  # noqa: F401  (fixture)
from _earlier import BEFORE_PACKAGES, earlier_cnirun
from _fakes import FakeEngine, run  # noqa: F401  (fixture)
from _host import conf_file_args
from _wait import wait_for
from conftest import CNIRUN_BIN, REPO, World, _make_world, needs_docker, needs_root, world_fixture
from test_layers import LAYERS


def _worker_with(eng: FakeEngine) -> watch.Worker:
    w = watch.Worker()
    w._engines["fake"] = eng
    return w


def test_watcher_keeps_a_stopped_container_and_tears_down_a_removed_one(
    run: tuple[RunState, RunMeta, Any], core: CoreEnv
) -> None:
    st, meta, _ = run
    meta.sandbox = ""  # no helper: nothing to keep running
    st.write_meta(meta)
    st.unlock()  # handed over, as `run -d` does
    eng = FakeEngine({"w1": "exited"})
    w = _worker_with(eng)
    w.adopt_new()
    assert list(w.owned) == [st.id] and eng.followed == [st.id]
    w.check(st.id)
    assert st.id in w.owned and core.cache_files() != []  # stopped: it may start again
    del eng.containers_state["w1"]  # docker rm
    w.check(st.id)
    assert w.owned == {} and core.cache_files() == [] and list_states() == []


def test_watcher_waits_for_an_engine_it_cannot_reach(run: tuple[RunState, RunMeta, Any], monkeypatch: Any) -> None:
    st, _, _ = run
    st.unlock()
    w = watch.Worker()

    def down(name: str) -> Any:
        raise RuntimeError("cannot reach the engine")

    monkeypatch.setattr(w, "engine", down)
    w.adopt_new()
    assert w.owned == {} and w.waiting == {st.id}  # not adopted, and not idle either
    assert st.lock(blocking=False)  # it let go of the run for the next pass (or gc)
    st.unlock()


def test_a_woken_worker_adopts_at_once(run: tuple[RunState, RunMeta, Any]) -> None:
    """ensure_watcher wakes a running worker through its FIFO: the loop is told at once to adopt (a run
    removed right after `run -d` returned is torn down as fast as any), not at its next scan."""
    st, _, _ = run
    st.unlock()
    w = _worker_with(FakeEngine({"w1": "running"}))
    w.listen()
    watch.wake(st.path.parent)
    assert w.todo.get(timeout=watch.SCAN_SECONDS / 2) == ""


def test_the_worker_checks_runs_at_once_each_by_one_thread(monkeypatch: Any) -> None:
    """dispatch hands runs to at most CONCURRENT checking threads: two runs are checked at the same time
    (each waits for the other at a barrier), a third waits for a free thread, and a run dispatched again
    while it is checked is not checked twice at once but handed back to the loop once its check ended."""
    import threading

    monkeypatch.setattr(watch, "CONCURRENT", 2)
    w = watch.Worker()
    unused: Any = (None, None)  # check is replaced: what a run holds is not looked at
    w.owned = dict.fromkeys(("a", "b", "c"), unused)
    barrier = threading.Barrier(2, timeout=30)
    dispatched = threading.Event()
    calls: list[str] = []

    def check(run_id: str) -> None:
        calls.append(run_id)
        if run_id != "c":
            barrier.wait()
            dispatched.wait(30)

    monkeypatch.setattr(w, "check", check)
    for rid in ("a", "b", "c", "a"):
        w.dispatch(rid)
    dispatched.set()
    assert w.todo.get(timeout=30) == "a"  # its second event: back to the loop once its check ended
    wait_for(lambda: not w.busy, 5, "the checks to end")
    assert not barrier.broken and sorted(calls) == ["a", "b", "c"] and calls[2] == "c" and w._threads == 2


def test_a_podman_rm_is_torn_down_when_the_storage_goes(
    run: tuple[RunState, RunMeta, Any], core: CoreEnv, tmp_path: Path, monkeypatch: Any
) -> None:
    """A Podman -d run's poststop hook (the script podman runs) writes the run's ID to the worker's FIFO;
    the worker then watches the container's storage dir, and when `podman rm` removes it the run is torn
    down without asking podman (which would take a poll interval and two podman calls more)."""
    import json

    from cnirun.engines import podman_run as podman

    st, meta, _ = run
    cid = "c" * 64
    graph = tmp_path / "graph"
    (graph / "overlay-containers" / cid).mkdir(parents=True)
    (tmp_path / "storage.conf").write_text(f'[storage]\ndriver = "overlay"\ngraphroot = "{graph}"\n')
    monkeypatch.setenv("CONTAINERS_STORAGE_CONF", str(tmp_path / "storage.conf"))
    meta.engine, meta.workload, meta.sandbox = "podman", cid, ""
    st.write_meta(meta)
    st.unlock()
    eng = FakeEngine({cid: "running"})  # podman would still list it: only the storage says it goes
    w = watch.Worker()
    w._engines["podman"] = eng
    w.listen()
    w.adopt_new()
    assert w.todo.get_nowait() == st.id  # adopted: checked once at once
    hooks = tmp_path / "hooks.d"
    podman.write_exit_hook(str(hooks), str(watch.wake_path(st.path.parent)), st.id)
    hook = json.loads((hooks / "cnirun-exit.json").read_text())["hook"]
    subprocess.run([hook["path"], *hook["args"][1:]], check=True, timeout=10)  # the container stopped
    assert w.todo.get(timeout=5) == ""
    (graph / "overlay-containers" / cid).rmdir()  # podman rm
    assert w.todo.get(timeout=5) == st.id
    w.check(st.id)
    assert w.owned == {} and core.cache_files() == [] and list_states() == []


def test_podman_follow_watches_the_storage_dirs_in_one_thread(tmp_path: Path, monkeypatch: Any) -> None:
    """Podman.follow of many containers starts one thread and no podman process (a `podman wait` each
    would be a process per running -d container): each run is told when its container's storage dir goes
    (`podman rm`), the others are not."""
    import queue
    import threading

    from cnirun.engines import podman

    graph = tmp_path / "graph"
    cids = [f"{i:x}" * 64 for i in range(1, 6)]
    for cid in cids:
        (graph / "overlay-containers" / cid).mkdir(parents=True)
    (tmp_path / "storage.conf").write_text(f'[storage]\ndriver = "overlay"\ngraphroot = "{graph}"\n')
    monkeypatch.setenv("CONTAINERS_STORAGE_CONF", str(tmp_path / "storage.conf"))
    calls = tmp_path / "podman-calls"
    fake = tmp_path / "podman"
    fake.write_text(f"#!/bin/sh\necho \"$@\" >> {calls}\nsleep 1\n")
    fake.chmod(0o755)
    eng = podman.Podman.__new__(podman.Podman)
    eng.bin = str(fake)
    told: queue.Queue[str] = queue.Queue()
    threads = threading.active_count()
    for i, cid in enumerate(cids):
        eng.follow(cid, f"run{i}", told.put)
    assert threading.active_count() == threads + 1
    (graph / "overlay-containers" / cids[2]).rmdir()  # podman rm
    assert told.get(timeout=5) == "run2"
    with pytest.raises(queue.Empty):
        told.get(timeout=2 * podman.FOLLOW_SECONDS)
    assert not calls.exists()


def test_a_reattach_cut_short_is_finished_from_the_saved_copy(
    run: tuple[RunState, RunMeta, Any], core: CoreEnv, monkeypatch: Any
) -> None:
    """The worker was killed after reattach's DELs, before its ADDs: the cache is empty, the copy is
    not, and the next check attaches the full set into the helper's new netns."""
    import shutil

    st, meta, cni = run
    meta.netns, meta.netns_id = "/nonexistent/old-netns", "0:0"  # the helper's netns before dockerd restarted
    st.write_meta(meta)
    st.unlock()
    saved = st.path / "reattach"
    saved.mkdir()
    for f in (core.cache / "results").iterdir():
        shutil.copy2(f, saved / f.name)
        f.unlink()  # DEL done, then SIGKILL
    eng = FakeEngine({"w1": "exited", "h1": "running"})
    monkeypatch.setattr(eng, "netns_of", lambda cid: str(core.netns_file))
    w = _worker_with(eng)
    w.adopt_new()
    w.check(st.id)
    assert core.cache_files() != [] and not saved.exists()
    assert RunState(st.path).read_meta().netns == str(core.netns_file)
    assert [c["command"] for c in core.calls("n")][-1] == "ADD"


def test_the_watcher_preloads_its_layer_and_those_below() -> None:
    """What the watcher imports when it starts is every package a run/ module may import (test_layers)."""
    names = [name for name, _ in LAYERS]
    assert watch.PRELOADED == tuple(names[:names.index("run") + 1])


# -- on Docker: watchers of other generations and other directories (t24j-N, c24jN, 10.230.N.0/24) -------
jworld = world_fixture(_make_world, 230, "watch", net="t24j-{n}", bridge="c24j{n}", subnet="10.230.{n}.0/24",
                       name_prefix="t24j-{n}-")


def _watching(w: World, cid: str) -> int:
    """Wait until the World's watcher watches container `cid`; the supervisor's pid."""
    log = w.state_dir / "containers" / ".watcher.log"
    wait_for(lambda: log.exists() and f"watching docker container {cid[:12]}" in log.read_text(), 20,
             "the watcher to watch the container")
    return int((w.state_dir / "containers" / ".watcher.pid").read_text())


def _run_detached(w: World, argv: list[str], cwd: Path, env: dict[str, str], name: str) -> str:
    """`argv -d --name <name> busybox sleep 300` (a cnirun CLI) in `cwd`; the container's ID."""
    p = subprocess.run([*argv, "-d", "--name", w.name_prefix + name, "busybox", "sleep", "300"], env=env, cwd=cwd,
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    return p.stdout.strip()


def _resolvers(w: World) -> list[str]:
    return [conf for _, conf in conf_file_args() if conf.startswith(f"--conf-file={w.state_dir}/")]


def _remove_and_check(w: World, cid: str) -> None:
    """Remove the container: its run is torn down, nothing of it left (its resolver included)."""
    subprocess.run(["docker", "rm", "-f", cid], check=True, capture_output=True)
    w.assert_clean(within=20.0)
    assert wait_for(lambda: not _resolvers(w), 10.0), _resolvers(w)


@needs_root
@needs_docker
def test_a_watcher_of_an_earlier_generation_is_replaced(jworld: World, tmp_path: Path) -> None:
    """A -d run and its watcher started by cnirun before the packages (BEFORE_PACKAGES, from a copy), left
    by an upgrade without the modules its worker imports as it goes (the copy's teardown.py and
    lifecycle.py removed while it runs): `cnirun gc` of the current code stops that watcher (supervisor and
    worker) and starts its own, of this generation, which takes the run over and tears it down once its
    container is removed."""
    w = jworld
    old_tree = earlier_cnirun(tmp_path, BEFORE_PACKAGES)
    old_env = {**w.env, "PYTHONPATH": str(old_tree)}
    cid = _run_detached(w, [sys.executable, "-m", "cnirun.cli.main"], old_tree, old_env, "old")
    old = _watching(w, cid)
    assert str(old_tree) in Path(f"/proc/{old}/environ").read_text()
    worker = wait_for(lambda: subprocess.run(["pgrep", "-P", str(old)], capture_output=True,
                                             text=True).stdout.split(), 10, "the earlier watcher's worker")
    for gone in ("teardown.py", "lifecycle.py"):
        (old_tree / "cnirun" / gone).unlink()
    g = w.cnirun("gc")
    assert g.returncode == 0, g.stderr
    lock = w.state_dir / "containers" / ".watcher.lock"
    new = wait_for(lambda: [int(p) for p, gen in [lock.read_text().split() or ["0", ""]]
                            if gen == watch.WATCHER_GENERATION and int(p) != old], 10, "a watcher of this generation")[0]
    assert not [pid for pid in [old, *map(int, worker)] if process_start(pid)], "the earlier watcher lives"
    assert _watching(w, cid) == new
    assert str(old_tree) not in Path(f"/proc/{new}/environ").read_text()
    _remove_and_check(w, cid)


@needs_root
@needs_docker
def test_a_running_watcher_outlives_the_files_of_its_modules(jworld: World, tmp_path: Path) -> None:
    """A -d run started from a copy of the current package, whose watcher then sees the copy replaced by a
    package that cannot be imported (a later cnirun that moved every module): the run is still torn down
    once its container is removed."""
    w = jworld
    tree = tmp_path / "install"
    shutil.copytree(REPO / "cnirun", tree / "cnirun", ignore=shutil.ignore_patterns("__pycache__"))
    env = {**w.env, "PYTHONPATH": str(tree)}
    cid = _run_detached(w, [sys.executable, "-m", "cnirun.cli.main"], tree, env, "moved")
    supervisor = _watching(w, cid)
    assert str(tree) in Path(f"/proc/{supervisor}/environ").read_text()
    shutil.rmtree(tree / "cnirun")
    (tree / "cnirun").mkdir()
    (tree / "cnirun" / "__init__.py").write_text("raise ImportError('cnirun moved')\n")
    _remove_and_check(w, cid)
    assert int((w.state_dir / "containers" / ".watcher.pid").read_text()) == supervisor


@needs_root
@needs_docker
def test_resident_processes_never_import_from_the_callers_directory(jworld: World, tmp_path: Path) -> None:
    """`cnirun -d` (the installed launcher, no PYTHONPATH) run in a directory holding a cnirun package whose
    every module writes a marker: the run works, its watcher and the resolvers' keeper run this install,
    the marker is never written, and the run is torn down once its container is removed."""
    w = jworld
    project = tmp_path / "project"
    marker = tmp_path / "imported"
    for rel in ("cnirun/__init__.py", "cnirun/run/__init__.py", "cnirun/run/watch.py", "cnirun/dns/__init__.py"):
        (project / rel).parent.mkdir(parents=True, exist_ok=True)
        (project / rel).write_text(f"open({str(marker)!r}, 'a').write(__name__ + '\\n')\n")
    env = {k: v for k, v in w.env.items() if k != "PYTHONPATH"}
    cid = _run_detached(w, [CNIRUN_BIN], project, env, "cwd")
    _watching(w, cid)
    keeper = w.state_dir / "dns" / ".keeper.lock"
    wait_for(lambda: keeper.exists() and keeper.read_text().split(), 10, "the resolvers' keeper")
    assert _resolvers(w)
    _remove_and_check(w, cid)
    assert not marker.exists(), marker.read_text()
