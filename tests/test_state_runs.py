"""cnirun.state.runs: a run's state dir, its lock and its metadata, without root."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from cnirun.state.runs import RunMeta, RunState, list_states


def test_run_state_lock_is_exclusive_and_survives_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """RunState: created locked; another owner cannot take it; closing frees it; meta round-trips."""
    import subprocess
    import sys

    monkeypatch.setenv("CNIRUN_STATE_DIR", str(tmp_path / "state"))
    st = RunState.create()
    meta = RunMeta(id=st.id, engine="docker", networks=["a"], cni_env={"CNI_CACHE_DIR": "/x"})
    st.write_meta(meta)
    assert st.read_meta() == meta
    probe = ("import sys; from pathlib import Path; from cnirun.state.runs import RunState; "
             f"sys.exit(0 if RunState(Path({str(st.path)!r})).owned_elsewhere() else 1)")
    assert subprocess.run([sys.executable, "-c", probe]).returncode == 0
    st.unlock()
    assert subprocess.run([sys.executable, "-c", probe]).returncode == 1
    assert [s.id for s in list_states()] == [st.id]
    st.remove()
    assert list_states() == []
    assert json.loads(json.dumps(meta.to_dict()))["networks"] == ["a"]


def test_command_runs_is_the_recorded_pid_with_its_start_time() -> None:
    """An exec run's command counts as running only while its pid has the recorded start time: a pid
    reused by another process, a zombie and an ended process do not count."""
    import subprocess
    import time

    from cnirun.core.process import process_start
    from cnirun.state.runs import command_runs

    proc = subprocess.Popen(["sleep", "60"])
    try:
        start = process_start(proc.pid)
        assert start
        assert command_runs(RunMeta(id="x", engine="", pid=proc.pid, pid_start=start))
        assert not command_runs(RunMeta(id="x", engine="", pid=proc.pid, pid_start=str(int(start) - 1)))
        assert not command_runs(RunMeta(id="x", engine="", pid=proc.pid))  # nothing recorded: no command
        proc.kill()
        deadline = time.monotonic() + 5
        while process_start(proc.pid) and time.monotonic() < deadline:
            time.sleep(0.01)  # until the kernel has made it a zombie
        assert not command_runs(RunMeta(id="x", engine="", pid=proc.pid, pid_start=start))  # a zombie
    finally:
        proc.kill()
        proc.wait()
    assert not command_runs(RunMeta(id="x", engine="", pid=proc.pid, pid_start=start))
