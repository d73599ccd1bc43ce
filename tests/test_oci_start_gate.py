"""cnirun.oci.start_gate: the file `runc start` waits on while the Docker shim's worker attaches.

Files only (a tmp state dir); the launcher's use of it is in test_oci_hook.py,
the whole path with dockerd in test_oci_hook_docker.py.
"""
from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from cnirun.oci import start_gate


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return {"CNIRUN_STATE_DIR": str(tmp_path / "state")}


def test_gate_says_ok_or_the_error_once_released(env: dict[str, str]) -> None:
    fd = start_gate.open_gate("c1", env)
    start_gate.settle(fd, "")
    os.close(fd)
    assert start_gate.outcome("c1", env) == "ok"
    fd = start_gate.open_gate("c2", env)
    start_gate.settle(fd, "no IP addresses available\nin range set")
    os.close(fd)
    assert start_gate.outcome("c2", env) == "no IP addresses available in range set"
    assert start_gate.gates(env) == ["c1", "c2"]
    start_gate.remove_gate("c1", env)
    assert start_gate.gates(env) == ["c2"]
    assert start_gate.outcome("c1", env) is None


def test_reopening_a_gate_empties_it(env: dict[str, str]) -> None:
    fd = start_gate.open_gate("c", env)
    start_gate.settle(fd, "")
    os.close(fd)
    fd = start_gate.open_gate("c", env)  # a restart's create
    os.close(fd)
    assert start_gate.outcome("c", env) == ""


def test_outcome_waits_for_the_holder(env: dict[str, str]) -> None:
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the worker: holds the gate, settles it late
        code = 1
        try:
            fd = start_gate.open_gate("slow", env)
            os.write(w, b"x")
            time.sleep(0.4)  # the test: the worker settles the gate late
            start_gate.settle(fd, "")
            code = 0
        finally:
            os._exit(code)
    os.close(w)
    assert os.read(r, 1) == b"x"
    t = time.monotonic()
    assert start_gate.outcome("slow", env) == "ok"
    assert time.monotonic() - t >= 0.3
    os.waitpid(pid, 0)


def test_a_killed_holder_leaves_an_empty_gate(env: dict[str, str]) -> None:
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            start_gate.open_gate("dead", env)
            os.write(w, b"x")
            time.sleep(60)
        finally:
            os._exit(1)
    os.close(w)
    assert os.read(r, 1) == b"x"
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    assert start_gate.outcome("dead", env) == ""
