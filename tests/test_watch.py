"""The -d watcher without an engine: a recording engine stands in, the plugins are noop.

A stopped container keeps its networks until it is removed; an engine that
cannot be reached keeps the worker waiting instead of idle. The real engines'
side (docker restart, stop/start, a dockerd restart, podman restart) is in
test_runner_docker.py and test_runner_podman.py.
"""
from __future__ import annotations

from typing import Any

from cnirun.run import watch
from cnirun.state.runs import RunMeta, RunState, list_states

from _core_fixtures import CoreEnv, core  # noqa: F401  (fixture)
from _fakes import FakeEngine, run  # noqa: F401  (fixture)


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
