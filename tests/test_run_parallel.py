"""tests/run_parallel.py and tests/_parallel.py: what runs where, the queue, the results, the shared counters."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

import _parallel
import run_parallel
from conftest import REPO


def _plan(*entries: tuple[str, str, bool, bool]) -> list[dict]:
    return [{"id": i, "unit": u, "engine": e, "host_global": h == "global", "host_exclusive": h == "exclusive"}
            for i, u, e, h in entries]


def test_schedule_gives_host_global_units_to_worker_0_and_queues_the_rest_longest_first() -> None:
    plan = _plan(("a.py::t1", "a.py", False, ""), ("a.py::t2", "a.py", False, ""),
                 ("b.py::w1", "", True, ""), ("b.py::w2", "", True, ""), ("b.py::x", "", True, "exclusive"),
                 ("c.py::h1", "c.py", True, "global"), ("c.py::h2", "c.py", True, ""), ("d.py::h", "", True, "global"))
    known = {"a.py::t1": 1.0, "a.py::t2": 1.0, "b.py::w1": 5.0, "b.py::w2": 30.0, "b.py::x": 4.0, "c.py::h1": 9.0}
    serial, queue, last, total = run_parallel.schedule(plan, known)
    # a unit with one host_global test is worker 0's whole; its other test is estimated as its module's mean
    assert serial == [["c.py::h1", "c.py::h2"], ["d.py::h"]]
    assert queue == [["b.py::w2"], ["b.py::w1"], ["a.py::t1", "a.py::t2"]]
    assert last == [["b.py::x"]]
    assert total == 1 + 1 + 5 + 30 + 4 + 9 + 9 + run_parallel.UNKNOWN_SECONDS[True]


def test_results_are_read_as_the_workers_write_them(tmp_path: Path) -> None:
    results = run_parallel.Results(tmp_path, 2)
    with open(tmp_path / "results-1.jsonl", "w") as f:
        for when, outcome in (("setup", "passed"), ("call", "failed"), ("teardown", "passed")):
            f.write(json.dumps({"id": "x::f", "when": when, "outcome": outcome, "duration": 1.5}) + "\n")
        f.write(json.dumps({"id": "x::e", "when": "setup", "outcome": "failed", "duration": 0.5}) + "\n")
        f.write('{"id": "x::e", "when": "teard')  # a line being written
    assert results.poll() == ["failed"]
    with open(tmp_path / "results-1.jsonl", "a") as f:
        f.write('own", "outcome": "passed", "duration": 0.25}\n')
    assert results.poll() == ["error"]
    assert results.seconds == {"x::f": 4.5, "x::e": 0.75} and results.worker_of["x::e"] == 1


def test_failure_report_is_the_workers_failures_section() -> None:
    log = "..F.\n=== FAILURES ===\n___ test_x ___\nE   assert 1 == 2\n=== short test summary info ===\n" \
          "FAILED t.py::test_x\n1 failed, 3 passed in 2.50s\n"
    assert run_parallel.failure_report(log) == \
        "=== FAILURES ===\n___ test_x ___\nE   assert 1 == 2\n=== short test summary info ===\nFAILED t.py::test_x"
    assert run_parallel.failure_report("....\n4 passed in 1.00s\n") == ""


def test_next_n_is_unique_across_processes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Workers (here threads and a second process) draw distinct numbers from one counter, from `start` on."""
    monkeypatch.setenv(_parallel.SHARED_ENV, str(tmp_path))
    got: list[int] = []
    threads = [threading.Thread(target=lambda: got.extend(_parallel.next_n("k", 5) for _ in range(20)))
               for _ in range(4)]
    for t in threads:
        t.start()
    other = subprocess.run([sys.executable, "-c", "import _parallel; print(_parallel.next_n('k', 5))"],
                           env={**os.environ, "PYTHONPATH": str(REPO / "tests")}, capture_output=True, text=True)
    for t in threads:
        t.join()
    got.append(int(other.stdout))
    assert sorted(got) == list(range(5, 5 + 81))


def test_markers_come_from_what_a_test_uses() -> None:
    """A collection marks the runtime installers host_global, dockerd's restart host_exclusive, World and engine
    tests engine, the rest unit."""
    def collect(*args: str) -> set[str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("CNIRUN_TEST_")}  # not a worker's
        p = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider", *args],
                           cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
        assert p.returncode == 0, p.stdout + p.stderr
        return {ln for ln in p.stdout.splitlines() if "::" in ln}

    files = ["tests/test_oci_hook_docker.py", "tests/test_run_docker_hook.py", "tests/test_run_docker.py",
             "tests/test_cni_result.py", "tests/test_oci_hook.py"]
    host_global, engine, unit, exclusive = (collect("-m", m, *files) for m in ("host_global", "engine", "unit",
                                                                               "host_exclusive"))
    assert exclusive == {"tests/test_run_docker.py::test_dockerd_restart_with_detached_runs"}  # dockerd stopped
    assert {i.split("::")[0] for i in host_global} == {"tests/test_oci_hook_docker.py", "tests/test_run_docker_hook.py"}
    assert host_global <= engine and not engine & unit
    assert {i.split("::")[0] for i in engine} == {"tests/test_oci_hook_docker.py", "tests/test_run_docker_hook.py",
                                                  "tests/test_run_docker.py"}
    assert "tests/test_cni_result.py" in {i.split("::")[0] for i in unit}
    # the launcher's name in test_oci_hook is a file name there, not an install: its tests stay unit
    assert "tests/test_oci_hook.py::test_installed_runtime_seen_from_engine_info" in unit


def test_world_numbers_come_from_next_n() -> None:
    """No test file counts its own World numbers: a per-process counter hands the same names, bridges and
    subnets to two workers at once."""
    needle = "itertools" + ".count("  # not this line's own text
    own = [f"{p.name}:{i}" for p in sorted((REPO / "tests").glob("*.py"))
           for i, line in enumerate(p.read_text().splitlines(), 1) if needle in line]
    assert own == [], f"count with _parallel.next_n(key, start) instead: {own}"
