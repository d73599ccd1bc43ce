"""Teardown for detached (`-d`) containers: a supervised watcher process.

`cnirun run -d` hands its run over to one host-wide watcher and returns.
Layout: `python -m cnirun.watch supervise` (new session, no terminal) holds
<state root>/.watcher.lock and runs `python -m cnirun.watch worker`, which
inherits the locked descriptor, so the lock is held while either lives; the
supervisor respawns a worker that dies. The worker:

- adopts every detached run whose lock is free (flocks its state dir),
- tears a run down (DEL, helper removal) when its container dies or is
  removed: Docker events for speed, `podman wait` threads for Podman, and
  a periodic re-check in case an event was missed,
- reconciles from the state dirs on every (re)start, so nothing that died
  while no watcher ran is forgotten; it exits after a while with nothing to
  watch.

Every `run -d` and every `cnirun gc` calls ensure_watcher(), and gc tears
down what no watcher owns, so even a killed supervisor loses nothing.
"""
from __future__ import annotations

import fcntl
import os
import queue
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from .state import RunMeta, RunState, list_states, state_root

RECHECK_SECONDS = 10.0
SCAN_SECONDS = 1.0


def _idle_seconds() -> float:
    try:
        return float(os.environ.get("CNIRUN_WATCHER_IDLE", "30"))
    except ValueError:
        return 30.0


def lock_path(root: Path | None = None) -> Path:
    return (root or state_root()) / ".watcher.lock"


def _try_lock(path: Path) -> int | None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd


def watcher_running(root: Path | None = None) -> bool:
    fd = _try_lock(lock_path(root))
    if fd is None:
        return True
    os.close(fd)
    return False


def ensure_watcher(root: Path | None = None) -> None:
    """Start the supervisor unless one runs (a second one started in a race exits at once)."""
    root = root or state_root()
    if watcher_running(root):
        return
    log = open(root / ".watcher.log", "ab")
    try:
        subprocess.Popen(
            [sys.executable, "-m", "cnirun.watch", "supervise"],
            stdin=subprocess.DEVNULL, stdout=log, stderr=log,
            start_new_session=True, close_fds=True, cwd="/",
        )
    finally:
        log.close()


def _log(msg: str) -> None:
    sys.stderr.write(f"{time.strftime('%Y-%m-%dT%H:%M:%S')} cnirun-watch[{os.getpid()}]: {msg}\n")
    sys.stderr.flush()


def supervise() -> int:
    root = state_root()
    fd = _try_lock(lock_path(root))
    if fd is None:
        return 0  # another supervisor (or its worker) is running
    (root / ".watcher.pid").write_text(str(os.getpid()))
    _log("supervisor started")
    while True:
        child = subprocess.Popen([sys.executable, "-m", "cnirun.watch", "worker"], pass_fds=(fd,))
        rc = child.wait()
        if rc == 0:
            _log("worker idle, exiting")
            return 0
        _log(f"worker ended with {rc}; respawning")
        time.sleep(0.3)


class Worker:
    def __init__(self) -> None:
        self.owned: dict[str, tuple[RunState, RunMeta]] = {}
        self.todo: queue.Queue[str] = queue.Queue()
        self._docker: Any = None
        self._events_started = False
        self._waiting: set[str] = set()

    def docker(self) -> Any:
        if self._docker is None:
            from .engines.docker import Docker

            self._docker = Docker()
        return self._docker

    def adopt_new(self) -> None:
        for st in list_states():
            if st.id in self.owned:
                continue
            meta = st.read_meta()
            if meta is None or not meta.detached or meta.phase != "running":
                continue
            if not st.lock(blocking=False):
                continue  # its run is still finishing, or gc is at it
            self.owned[st.id] = (st, meta)
            _log(f"watching {meta.engine} container {meta.workload[:12]} (run {st.id[:12]})")
            if meta.engine == "podman":
                self._podman_wait(st.id, meta.workload)
            else:
                self._docker_events()
            self.todo.put(st.id)  # check once now: it may have died already

    def _podman_wait(self, run_id: str, cid: str) -> None:
        from .engines import podman

        def wait() -> None:
            podman.wait(cid)
            self.todo.put(run_id)

        threading.Thread(target=wait, daemon=True).start()

    def _docker_events(self) -> None:
        if self._events_started:
            return
        self._events_started = True

        def stream() -> None:
            while True:
                try:
                    client = self.docker().clone()
                    for ev in client.events({"type": "container", "label": ["cnirun.role=workload"]}):
                        if ev.get("Action") in ("die", "destroy", "oom"):
                            run_id = ((ev.get("Actor") or {}).get("Attributes") or {}).get("cnirun.id", "")
                            if run_id:
                                self.todo.put(run_id)
                except Exception as e:  # noqa: BLE001 - reconnect; the periodic re-check covers the gap
                    _log(f"docker events: {e}")
                    time.sleep(1.0)

        threading.Thread(target=stream, daemon=True).start()

    def check(self, run_id: str) -> None:
        from .teardown import teardown

        if run_id not in self.owned:
            return
        st, meta = self.owned[run_id]
        if meta.engine == "podman":
            from .engines import podman

            alive = podman.container_running(meta.workload) if meta.workload else False
            if alive:
                return
            errors = teardown(st, meta, stop=False)
        else:
            if meta.workload and self.docker().is_running(meta.workload):
                return
            errors = teardown(st, meta, self.docker(), stop=False)
        for e in errors:
            _log(f"teardown of run {run_id[:12]}: {e}")
        if not errors:
            _log(f"tore down run {run_id[:12]} (container {meta.workload[:12]})")
            del self.owned[run_id]

    def loop(self) -> int:
        idle_since = time.monotonic()
        last_recheck = time.monotonic()
        while True:
            self.adopt_new()
            try:
                run_id = self.todo.get(timeout=SCAN_SECONDS)
                self.check(run_id)
            except queue.Empty:
                pass
            now = time.monotonic()
            if now - last_recheck > RECHECK_SECONDS:
                last_recheck = now
                for rid in list(self.owned):
                    self.todo.put(rid)
            if self.owned:
                idle_since = now
            elif now - idle_since > _idle_seconds():
                return 0


def main(argv: list[str]) -> int:
    cmd = argv[0] if argv else ""
    if cmd == "supervise":
        return supervise()
    if cmd == "worker":
        _log("worker started")
        try:
            return Worker().loop()
        except Exception as e:  # noqa: BLE001 - logged; the supervisor respawns us
            _log(f"worker failed: {e}")
            return 1
    sys.stderr.write("usage: python -m cnirun.watch supervise|worker\n")
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
