"""`make test`: the suite spread over worker pytest processes, the host checked once around them all.

usage: .venv/bin/python tests/run_parallel.py [--workers N] [pytest arguments...]

The tests mostly wait (on dockerd, Podman, plugins, watchers), so N workers
(default 5, or CNIRUN_TEST_WORKERS) share the 2 cores well. The runner
1. byte-compiles cnirun, collects once (--collect-only, the arguments
   given) and reads the plan conftest writes: node ids, units of work, the
   engine and host_global markers (tests/_parallel.py);
2. queues the units longest first, by the durations the previous run
   recorded in .pytest_cache/cnirun/durations.json (tests/durations.json,
   committed, on a fresh machine); the host_global units go to worker 0, in
   a row, before it joins the queue;
3. snapshots the host (tests/_host.py), starts the workers (each its own
   --basetemp, no cache provider, one shared dir for the queue, the Worlds'
   counters and the results), prints a character per finished test as
   pytest -q does, and once all ended compares the host with the snapshot;
4. prints the workers' failure reports, the 15 slowest tests, the failed
   ones, and exits non-zero if a test failed, a worker broke or the host
   changed.
"""
from __future__ import annotations

import compileall
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

TESTS = Path(__file__).resolve().parent
REPO = TESTS.parent
sys.path.insert(0, str(TESTS))

from _host import changes_since, host_state  # noqa: E402
from _parallel import PLAN_ENV, RUN_PID_ENV, SHARED_ENV, WORKER_ENV  # noqa: E402

DURATIONS = REPO / ".pytest_cache" / "cnirun" / "durations.json"
ESTIMATE = TESTS / "durations.json"
DEFAULT_WORKERS = 5
# A test no run has timed, in a module no run has timed: an engine test takes seconds, the others a fraction.
UNKNOWN_SECONDS = {True: 8.0, False: 0.3}
SLOWEST = 15
MARKS = {"passed": ".", "failed": "F", "error": "E", "skipped": "s"}


def say(text: str = "") -> None:
    print(text, flush=True)


def parse(argv: list[str]) -> tuple[int, list[str]]:
    workers = int(os.environ.get("CNIRUN_TEST_WORKERS") or DEFAULT_WORKERS)
    rest: list[str] = []
    it = iter(argv)
    for arg in it:
        if arg in ("-n", "--workers"):
            workers = int(next(it))
        elif arg.startswith("--workers="):
            workers = int(arg.split("=", 1)[1])
        else:
            rest.append(arg)
    return max(1, workers), rest


# -- the plan ----------------------------------------------------------------------
def collect(args: list[str], env: dict[str, str], shared: Path) -> tuple[int, list[dict[str, Any]], str]:
    """(pytest's exit code, the plan, pytest's output) of one --collect-only run."""
    plan_path = shared / "plan.json"
    p = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider", *args],
                       env={**env, PLAN_ENV: str(plan_path)}, cwd=REPO, capture_output=True, text=True)
    plan = json.loads(plan_path.read_text()) if plan_path.exists() else []
    return p.returncode, plan, p.stdout + p.stderr


def load_durations() -> dict[str, float]:
    """Seconds per node id: the committed estimate, overridden by what the last run on this machine measured."""
    out: dict[str, float] = {}
    for path in (ESTIMATE, DURATIONS):
        try:
            out.update(json.loads(path.read_text()))
        except (OSError, ValueError):
            continue
    return out


def estimate(entry: dict[str, Any], known: dict[str, float], by_module: dict[str, float]) -> float:
    nodeid = entry["id"]
    return known.get(nodeid, by_module.get(nodeid.split("::")[0], UNKNOWN_SECONDS[entry["engine"]]))


def schedule(plan: list[dict[str, Any]], known: dict[str, float]) -> tuple[list[list[str]], list[list[str]],
                                                                          list[list[str]], float]:
    """(worker 0's host_global units in collection order, the other units longest first, the host_exclusive units
    to run alone at the end, their seconds in all)."""
    sums: dict[str, list[float]] = {}
    for nodeid, secs in known.items():
        sums.setdefault(nodeid.split("::")[0], []).append(secs)
    by_module = {m: sum(v) / len(v) for m, v in sums.items()}
    units: dict[str, list[str]] = {}
    cost: dict[str, float] = {}
    host_global: set[str] = set()
    exclusive: set[str] = set()
    for entry in plan:
        key = entry["unit"] or entry["id"]
        units.setdefault(key, []).append(entry["id"])
        cost[key] = cost.get(key, 0.0) + estimate(entry, known, by_module)
        if entry.get("host_exclusive"):
            exclusive.add(key)
        elif entry["host_global"]:
            host_global.add(key)
    host_global -= exclusive
    serial = [ids for key, ids in units.items() if key in host_global]
    rest = sorted((key for key in units if key not in host_global | exclusive), key=lambda k: -cost[k])
    last = [ids for key, ids in units.items() if key in exclusive]
    return serial, [units[k] for k in rest], last, sum(cost.values())


# -- the workers -------------------------------------------------------------------
class Results:
    """The workers' results files, read as they grow: one outcome and duration per finished test."""

    def __init__(self, shared: Path, workers: int) -> None:
        self.paths = [shared / f"results-{k}.jsonl" for k in range(workers)]
        self.offsets = [0] * workers
        self.phases: dict[str, dict[str, Any]] = {}
        self.outcome: dict[str, str] = {}
        self.seconds: dict[str, float] = {}
        self.worker_of: dict[str, int] = {}

    def poll(self) -> list[str]:
        """The outcomes of the tests finished since the last poll."""
        finished = []
        for k, path in enumerate(self.paths):
            try:
                with open(path, "rb") as f:
                    f.seek(self.offsets[k])
                    chunk = f.read()
            except FileNotFoundError:
                continue
            complete = chunk[: chunk.rfind(b"\n") + 1]  # a line being written waits for the next poll
            self.offsets[k] += len(complete)
            for line in complete.splitlines():
                rec = json.loads(line)
                finished += self._add(rec, k)
        return finished

    def _add(self, rec: dict[str, Any], worker: int) -> list[str]:
        nodeid, when = rec["id"], rec["when"]
        self.worker_of[nodeid] = worker
        self.seconds[nodeid] = self.seconds.get(nodeid, 0.0) + rec["duration"]
        phases = self.phases.setdefault(nodeid, {})
        phases[when] = rec["outcome"]
        if when != "teardown":
            return []
        if phases.get("call") == "failed":
            outcome = "failed"
        elif "failed" in phases.values():
            outcome = "error"
        elif "skipped" in phases.values():
            outcome = "skipped"
        else:
            outcome = "passed"
        self.outcome[nodeid] = outcome
        return [outcome]


def start_workers(indexes: range, args: list[str], env: dict[str, str], shared: Path) -> list[subprocess.Popen[bytes]]:
    procs = []
    for k in indexes:
        with open(shared / f"worker-{k}.log", "wb") as log:
            procs.append(subprocess.Popen(
                [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", f"--basetemp={shared / f'w{k}'}",
                 *args], env={**env, WORKER_ENV: str(k)}, cwd=REPO, stdout=log, stderr=subprocess.STDOUT))
    return procs


def follow(procs: list[subprocess.Popen[bytes]], results: Results, total: int, done: int = 0) -> int:
    """Until every worker ended: a character per finished test, 72 a line with the share done, as pytest -q;
    returns how many tests finished, `done` before."""
    while True:
        running = any(p.poll() is None for p in procs)
        for outcome in results.poll():
            sys.stdout.write(MARKS[outcome])
            done += 1
            if done % 72 == 0:
                sys.stdout.write(f" [{100 * done // max(total, 1):3d}%]\n")
            sys.stdout.flush()
        if not running:
            break
        time.sleep(0.5)
    return done


REPORT_START = re.compile(r"^=+ (FAILURES|ERRORS) =+$")
SUMMARY = re.compile(r"^=* ?\d+ (passed|failed|error|skipped|deselected).* in [\d.]+s")


def failure_report(log: str) -> str:
    """A worker's report of its failures and errors: from its FAILURES/ERRORS header to its summary line."""
    lines = log.splitlines()
    start = next((i for i, ln in enumerate(lines) if REPORT_START.match(ln)), None)
    if start is None:
        return ""
    end = next((i for i in range(len(lines) - 1, start, -1) if SUMMARY.match(lines[i])), len(lines))
    return "\n".join(lines[start:end])


# -- the end -----------------------------------------------------------------------
def save_durations(results: Results) -> None:
    old: dict[str, float] = {}
    try:
        old = json.loads(DURATIONS.read_text())
    except (OSError, ValueError):
        pass
    old.update({k: round(v, 2) for k, v in results.seconds.items() if k in results.outcome})
    DURATIONS.parent.mkdir(parents=True, exist_ok=True)
    tmp = DURATIONS.with_suffix(".tmp")
    tmp.write_text(json.dumps(dict(sorted(old.items())), indent=0))
    tmp.replace(DURATIONS)


def report(procs: list[subprocess.Popen[bytes]], results: Results, plan: list[dict[str, Any]], shared: Path,
           host_change: str, took: float) -> int:
    bad_workers = []
    for k, p in enumerate(procs):
        log = (shared / f"worker-{k}.log").read_text(errors="replace")
        text = failure_report(log)
        if text:
            say(f"\n---------------- worker {k} ----------------\n{text}")
        if p.returncode not in (0, 1, 5):
            bad_workers.append(k)
            say(f"\ncnirun: worker {k} ended with {p.returncode}; its last lines:")
            say("\n".join(log.splitlines()[-40:]))
    say(f"\n============================= slowest {SLOWEST} tests (setup + call + teardown) "
        "=============================")
    for nodeid, secs in sorted(results.seconds.items(), key=lambda kv: -kv[1])[:SLOWEST]:
        say(f"{secs:7.2f}s  {nodeid}  (worker {results.worker_of[nodeid]})")
    counts: dict[str, int] = {}
    for outcome in results.outcome.values():
        counts[outcome] = counts.get(outcome, 0) + 1
    failed = sorted(k for k, v in results.outcome.items() if v in ("failed", "error"))
    not_run = [e["id"] for e in plan if e["id"] not in results.outcome]
    if failed or not_run:
        say("=========================== short test summary info ============================")
    for nodeid in failed:
        say(f"{results.outcome[nodeid].upper()} {nodeid}")
    for nodeid in not_run[:30]:
        say(f"NOT RUN {nodeid}")
    if len(not_run) > 30:
        say(f"NOT RUN ... and {len(not_run) - 30} more")
    if host_change:
        say(f"cnirun: the test run left the host changed: {host_change}")
    summary = ", ".join(f"{counts[k]} {k}" for k in ("failed", "error", "passed", "skipped") if counts.get(k))
    say(f"cnirun: {summary or 'no tests ran'}{f', {len(not_run)} not run' if not_run else ''} "
        f"in {took:.1f}s ({int(took) // 60}m{int(took) % 60:02d}s, {len(procs)} workers)")
    return 1 if failed or not_run or bad_workers or host_change else 0


def main(argv: list[str]) -> int:
    workers, args = parse(argv)
    started = time.monotonic()
    # Byte-compile first: with PYTHONDONTWRITEBYTECODE set, every cnirun process of every test would
    # otherwise compile the modules changed since their .pyc was written again.
    compileall.compile_dir(str(REPO / "cnirun"), quiet=1)
    shared = Path(tempfile.mkdtemp(prefix="cnt-", dir="/tmp"))
    env = {**os.environ, SHARED_ENV: str(shared), RUN_PID_ENV: str(os.getpid())}
    rc, plan, out = collect(args, env, shared)
    if rc != 0 or not plan:
        say(out)
        shutil.rmtree(shared, ignore_errors=True)
        return rc or 5
    serial, queue, last, total = schedule(plan, load_durations())
    (shared / "queue.json").write_text(json.dumps({"serial": serial, "serial_worker": 0, "parallel": queue}))
    workers = max(1, min(workers, len(queue) + (1 if serial else 0)))
    say(f"cnirun: {len(plan)} tests in {len(queue) + len(serial) + len(last)} units over {workers} workers "
        f"(about {total / 60:.1f} min of test time; {sum(map(len, serial))} host_global tests in worker 0, "
        f"{sum(map(len, last))} host_exclusive ones alone at the end); logs in {shared}")
    before = host_state()
    procs = start_workers(range(workers), args, env, shared)

    def stop(signum: int, frame: Any) -> None:
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGINT)

    signal.signal(signal.SIGTERM, stop)
    results = Results(shared, workers + 1)
    try:
        done = follow(procs, results, len(plan))
        if last:  # the workers ended: the host_exclusive units, alone, in one more worker
            (shared / "queue.json").write_text(json.dumps({"serial": last, "serial_worker": workers, "parallel": []}))
            procs += start_workers(range(workers, workers + 1), args, env, shared)
            done = follow(procs, results, len(plan), done)
        if done % 72:
            say(f" [{100 * done // max(len(plan), 1):3d}%]")
    except KeyboardInterrupt:
        stop(signal.SIGINT, None)
        for p in procs:
            p.wait()
        raise
    save_durations(results)
    host_change = changes_since(before)
    rc = report(procs, results, plan, shared, host_change, time.monotonic() - started)
    if rc == 0:
        shutil.rmtree(shared, ignore_errors=True)
    else:
        say(f"cnirun: the workers' logs and tmp dirs are in {shared}")
    return rc


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
