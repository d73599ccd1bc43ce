"""Where a test may run: its markers, the plan tests/run_parallel.py reads, and each worker's loop.

Markers are applied at collection from what a test uses: its function, its
fixtures, and the functions of the test files those call (names and string
constants of their code):
- `host_global`: it installs what is one per host (the cnirun runtime in
  /etc/docker/daemon.json, the hooks in the default hooks.d). A parallel run
  gives all of these to worker 0, one after the other.
- `host_exclusive`: it stops dockerd, which every other Docker test would
  see: a parallel run runs these last, alone, once the workers ended.
- `engine`: it needs a daemon: dockerd or Podman (a World, the
  needs_docker or needs_podman marker) or etcd (a module in
  ENGINE_MODULES); every other test is `unit` (`make test-unit`).
A unit of work is what one worker runs in a row: a World's test alone (the
names, bridges and subnets of a World are its own, from next_n), every other
test with the rest of its module (tests of a module may share fixed names,
bridges and subnets), and the tests that share a module-scoped fixture
together (it is set up once).

In a worker (CNIRUN_TEST_WORKER set), pytest_runtestloop runs what the
worker claims from the runner's queue instead of every collected item, and
each report's outcome and duration go to the worker's results file.
"""
from __future__ import annotations

import fcntl
import inspect
import json
import os
import types
from typing import Any, Iterator

WORKER_ENV = "CNIRUN_TEST_WORKER"  # the worker's index (0 runs the host_global tests)
SHARED_ENV = "CNIRUN_TEST_SHARED"  # the run's shared dir: plan, queue, counters, results
PLAN_ENV = "CNIRUN_TEST_PLAN"  # where a collection writes its plan (the runner's --collect-only)
RUN_PID_ENV = "CNIRUN_TEST_RUN_PID"  # the runner's pid: one number for the whole run

TESTS_DIR = os.path.dirname(os.path.abspath(__file__))
# Modules whose tests shell out to dockerd or Podman without a World or an engine marker, or run etcd.
ENGINE_MODULES = frozenset({"test_docs.py", "test_interop_libcni.py", "test_compose_corpus.py", "test_overlay.py"})
ENGINE_FUNCTIONS = frozenset({"_make_world", "docker_runtime_installed"})
ENGINE_NAMES = frozenset({"HAVE_DOCKER", "HAVE_PODMAN"})  # a test that asks whether an engine is there uses it


def worker() -> int | None:
    """This process's worker index in a parallel run, None in a plain pytest run."""
    value = os.environ.get(WORKER_ENV)
    return int(value) if value else None


def run_pid() -> int:
    """One number for the whole run (the runner's pid in a parallel run): a salt for names other runs must not share."""
    return int(os.environ.get(RUN_PID_ENV) or os.getpid())


def next_n(key: str, start: int = 1) -> int:
    """The next number of the counter `key` (from `start`): unique across the workers of a parallel run."""
    shared = os.environ.get(SHARED_ENV)
    if not shared:
        counter = _local.setdefault(key, iter(range(start, 1 << 30)))
        return next(counter)
    os.makedirs(os.path.join(shared, "counters"), exist_ok=True)
    with _locked(os.path.join(shared, "counters", key)) as fd:
        raw = os.read(fd, 64)
        n = int(raw) + 1 if raw else start
        _rewrite(fd, str(n))
    return n


_local: dict[str, Iterator[int]] = {}


class _locked:
    """An fd of `path` (made if missing), held under an exclusive flock for the block."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __enter__(self) -> int:
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        fcntl.flock(self.fd, fcntl.LOCK_EX)
        return self.fd

    def __exit__(self, *exc: Any) -> None:
        os.close(self.fd)


def _rewrite(fd: int, text: str) -> None:
    os.lseek(fd, 0, os.SEEK_SET)
    os.ftruncate(fd, 0)
    os.write(fd, text.encode())


# -- markers -------------------------------------------------------------------------
def _code_objects(code: types.CodeType) -> Iterator[types.CodeType]:
    yield code
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            yield from _code_objects(const)


def _strings(consts: Any) -> Iterator[str]:
    """The strings among a code object's constants, those in constant tuples (`[*argv, "a", "b"]`) included."""
    for const in consts:
        if isinstance(const, str):
            yield const
        elif isinstance(const, (tuple, frozenset)):
            yield from _strings(const)


def _visit(fn: Any, seen: set[types.CodeType], found: dict[str, bool]) -> None:
    """Flags of `fn` and the test-file functions and classes it names, into `found`."""
    try:
        fn = inspect.unwrap(getattr(fn, "__func__", fn))  # a method, a contextmanager, functools.wraps
    except ValueError:  # a __wrapped__ cycle
        return
    code = getattr(fn, "__code__", None)
    if code is None or code in seen or not code.co_filename.startswith(TESTS_DIR):
        return
    seen.add(code)
    if fn.__name__ in ENGINE_FUNCTIONS:
        found["engine"] = True
    if fn.__name__ == "_make_world":
        found["world"] = True
    names: set[str] = set()
    for c in _code_objects(code):
        strs = set(_strings(c.co_consts))
        names.update(c.co_names)
        if {"install", "docker-runtime"} <= strs and "--daemon-json" not in strs:
            found["host_global"] = True  # the runtime in /etc/docker/daemon.json
        if {"install", "hooks"} <= strs and "--dir" not in strs:
            found["host_global"] = True  # the hooks in the default hooks.d
        if {"dockerd", "kill"} <= strs:
            found["host_exclusive"] = True  # dockerd stopped (and started again)
    if any(fn.__globals__.get(n) is not None for n in names & ENGINE_NAMES):
        found["engine"] = True
    targets = [fn.__globals__.get(name) for name in names]
    targets += [cell.cell_contents for cell in fn.__closure__ or () if _filled(cell)]
    for target in targets:
        if isinstance(target, type) and _in_tests(target):
            for member in vars(target).values():
                _visit(member, seen, found)
        elif callable(target):
            _visit(target, seen, found)


def _filled(cell: Any) -> bool:
    try:
        cell.cell_contents
    except ValueError:
        return False
    return True


def _in_tests(cls: type) -> bool:
    import sys

    return (getattr(sys.modules.get(cls.__module__), "__file__", None) or "").startswith(TESTS_DIR)


def _flags(item: Any) -> dict[str, bool]:
    found = {"host_global": False, "host_exclusive": False, "engine": False, "world": False}
    seen: set[types.CodeType] = set()
    _visit(getattr(item, "function", None), seen, found)
    info = getattr(item, "_fixtureinfo", None)
    for defs in (info.name2fixturedefs.values() if info else ()):
        for fixturedef in defs:
            _visit(fixturedef.func, seen, found)
    for mark in item.iter_markers("skipif"):
        reason = str(mark.kwargs.get("reason", ""))
        if "dockerd" in reason or "podman" in reason:
            found["engine"] = True
    if any(item.iter_markers("alone")):
        found["host_exclusive"] = True  # timed against a budget, or loading the machine itself: not beside others
    if any(item.iter_markers("docker")) or any(item.iter_markers("podman")):
        found["engine"] = True
    if os.path.basename(str(item.path)) in ENGINE_MODULES:
        found["engine"] = True
    return found


def unit_of(item: Any, world: bool) -> str:
    """'' for a test that is a unit of work alone (a World's, not sharing a module-scoped fixture or a World of
    fixed names), else its module."""
    info = getattr(item, "_fixtureinfo", None)
    for defs in (info.name2fixturedefs.values() if info else ()):
        if any(d.scope in ("module", "package", "class") or getattr(d.func, "fixed_resources", False) for d in defs):
            return item.nodeid.split("::")[0]
    return "" if world else item.nodeid.split("::")[0]


_UNITS: dict[str, str] = {}  # node id -> unit, from mark()


def mark(items: list[Any]) -> None:
    """host_global, engine or unit on every item (see the module's docstring)."""
    import pytest

    for item in items:
        flags = _flags(item)
        _UNITS[item.nodeid] = unit_of(item, flags["world"])
        for name in ("host_global", "host_exclusive"):
            if flags[name]:
                item.add_marker(getattr(pytest.mark, name))
        engine = flags["engine"] or flags["host_global"] or flags["host_exclusive"]
        item.add_marker(pytest.mark.engine if engine else pytest.mark.unit)


def write_plan(items: list[Any]) -> None:
    """With CNIRUN_TEST_PLAN set: each item's node id, unit of work and markers (engine, host_*), as JSON."""
    path = os.environ.get(PLAN_ENV)
    if not path:
        return
    plan = [{"id": it.nodeid, "unit": _UNITS.get(it.nodeid, ""),
             **{m: it.get_closest_marker(m) is not None for m in ("engine", "host_global", "host_exclusive")}}
            for it in items]
    with open(path, "w") as f:
        json.dump(plan, f)


# -- a worker's loop -----------------------------------------------------------------
def _claims(shared: str, index: int) -> Iterator[list[str]]:
    """The units of work this worker runs: the serial ones first (its serial_worker's), then the queue's, one
    claim at a time."""
    with open(os.path.join(shared, "queue.json")) as f:
        queue = json.load(f)
    if index == queue["serial_worker"]:
        yield from queue["serial"]
    units = queue["parallel"]
    while True:
        with _locked(os.path.join(shared, "next")) as fd:
            raw = os.read(fd, 64)
            i = int(raw) if raw else 0
            _rewrite(fd, str(i + 1))
        if i >= len(units):
            return
        yield units[i]


def run_claimed(session: Any) -> Any:
    """pytest_runtestloop of a worker: the claimed items, each with the next as pytest's nextitem; None elsewhere."""
    index, shared = worker(), os.environ.get(SHARED_ENV)
    if index is None or not shared:
        return None
    if session.testsfailed and not session.config.option.continue_on_collection_errors:
        raise session.Interrupted(f"{session.testsfailed} error(s) during collection")
    if session.config.option.collectonly:
        return True
    by_id = {item.nodeid: item for item in session.items}
    items = (by_id[nodeid] for unit in _claims(shared, index) for nodeid in unit if nodeid in by_id)
    item = next(items, None)
    while item is not None:
        nextitem = next(items, None)
        item.config.hook.pytest_runtest_protocol(item=item, nextitem=nextitem)
        if session.shouldfail:
            raise session.Failed(session.shouldfail)
        if session.shouldstop:
            raise session.Interrupted(session.shouldstop)
        item = nextitem
    return True


def record(report: Any) -> None:
    """In a worker: one line per phase report (node id, phase, outcome, seconds) in the worker's results file."""
    index, shared = worker(), os.environ.get(SHARED_ENV)
    if index is None or not shared:
        return
    line = json.dumps({"id": report.nodeid, "when": report.when, "outcome": report.outcome,
                       "duration": round(report.duration, 3)})
    with open(os.path.join(shared, f"results-{index}.jsonl"), "a") as f:
        f.write(line + "\n")
