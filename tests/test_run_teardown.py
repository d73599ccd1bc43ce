"""teardown without an engine: a recording engine stands in, the plugins are noop.

The order and the rules: workload first, DEL while the holder still holds the
netns, then the holder; a failed DEL keeps the state and the cache for gc.
The real engines' side is in test_run_docker.py / test_run_podman.py.
"""
from __future__ import annotations

from typing import Any


from cnirun.state.runs import RunMeta, RunState
from cnirun.run.teardown import teardown

from _core_fixtures import CoreEnv, core  # noqa: F401  (fixture)
from _fakes import FakeEngine, run  # noqa: F401  (fixture)


def test_teardown_order_workload_del_then_holder(run: tuple[RunState, RunMeta, Any], core: CoreEnv) -> None:
    st, meta, _ = run
    eng = FakeEngine({"w1": "running", "h1": "running"})
    assert teardown(st, meta, eng, stop=True) == []
    assert eng.calls == [("kill", "w1"), ("remove", "w1"), ("remove", "h1")]
    assert [c["command"] for c in core.calls("n")] == ["ADD", "DEL"]
    assert core.cache_files() == [] and not st.path.exists()


def test_teardown_keeps_the_state_when_del_fails(run: tuple[RunState, RunMeta, Any], core: CoreEnv) -> None:
    st, meta, _ = run
    core.debug("n", commands={"DEL": {"reportError": "busy", "reportErrorCode": 11}})
    errors = teardown(st, meta, FakeEngine(), stop=False)
    assert len(errors) == 1 and "busy" in errors[0]
    assert st.path.exists() and core.cache_files() != []  # gc retries from both
